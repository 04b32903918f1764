"""charrnn visualize: the page's structure and data, escaping of hostile text, every cell,
and the ranking of units. The page is parsed with the standard library's html.parser,
which ends a <script> element at the first "</script" exactly as browsers do; no browser
is needed."""

import base64
import json
import math
import os
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import corpus_text, one_line_error, run, small_config

from charrnn import checkpoint as ckpt_io
from charrnn import data as D
from charrnn import model as M
from charrnn import sampling
from charrnn import visualize as viz
from charrnn.corpus import validation_split

HOSTILE = (
    'He said "</script><script>alert(1)</script>" and <img src=x onerror=alert(2)>\n'
    "<!-- not a comment --> & &amp; 'single' \"double\" </SCRIPT > <style>*{}</style>\n"
)


class Page(HTMLParser):
    """Every element the HTML parser sees, and the content of each <script>."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._script = [], [], None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = [dict(attrs), ""]

    def handle_data(self, data):
        if self._script is not None:
            self._script[1] += data

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append(tuple(self._script))
            self._script = None

    @property
    def data(self):
        (content,) = [c for attrs, c in self.scripts if attrs.get("type") == "application/json"]
        return json.loads(content)


def decode(b64, dtype):
    return np.frombuffer(base64.b64decode(b64), dtype=dtype)


@pytest.fixture
def hostile_corpus(tmp_path):
    """3,000 characters of the bundled text and HOSTILE: the page must show every one as text."""
    path = tmp_path / "c.txt"
    path.write_text(corpus_text(3000) + HOSTILE, encoding="utf-8")
    return path


def train(tmp_path, write_config, hostile_corpus, cell="rnn", layers=1, multiplicative=False, out="run",
          layer_norm=False, residual=False):
    cfg = small_config(write_config, hostile_corpus, steps=3)
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / out, "--set", f"model.cell={cell}",
            "--set", f"model.layers={layers}", "--set", f"model.multiplicative={str(multiplicative).lower()}",
            "--set", f"model.layer_norm={str(layer_norm).lower()}",
            "--set", f"model.residual={str(residual).lower()}",
            "--set", "model.init_std=0.3")  # large weights: activations spread over [-1, 1]
    assert r.exit_code == 0, r.output
    return tmp_path / out / "ckpt.npz"


def check_page(html, ck, text, layers):
    """The structure, and every number against the model run one character at a time."""
    page = Page(html)
    tags = {t for t, _ in page.tags}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "div", "label",
                    "select", "option", "button", "input", "span", "main", "pre", "aside", "p", "ol", "script",
                    "svg"}, tags  # svg: an empty one, whose namespace the sparklines take (no address in the page)
    # Self-contained: nothing is fetched from anywhere.
    assert not [a for _, attrs in page.tags for a in attrs if a in ("src", "href", "srcset", "action")]
    assert "url(" not in html and "@import" not in html and "http" not in html.lower()
    assert [attrs for attrs, _ in page.scripts] == [{"type": "application/json", "id": "data"}, {}]
    for f in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert f not in html, f  # user text reaches the screen through textContent only
    data = page.data
    assert data["text"] == text
    assert (data["step"], data["model"]) == (ck.run.step, ck.spec.describe())
    N, H, spec = len(text), ck.spec.hidden_size, ck.spec
    assert [(a["layer"], a["state"]) for a in data["arrays"]] == [(n, s) for n in layers for s in spec.module.STATE]
    # The reference: the model fed one character at a time (sampling.step), its state kept.
    params, idx = ckpt_io.weights(ck), D.encode(text, ck.vocab)
    state, states, logits = M.zero_state(spec, 1, params["Why"].dtype), [], []
    for i in idx:
        lg, state = sampling.step(params, spec, int(i), state)
        states.append(state)
        logits.append(np.asarray(lg, dtype=np.float64))
    for a in data["arrays"]:
        q = decode(a["q"], np.uint8).reshape(H, N)  # unit-major: every unit of the layer, every character
        scale = np.ones(H) if a["scale"] is None else np.array(a["scale"])
        values = (q.astype(np.float64) - 128) / 127 * scale[:, None]
        which = spec.module.STATE.index(a["state"])
        ref = np.array([s[a["layer"] - 1][which][0] for s in states]).T  # (H, N)
        # within half a code step of each unit
        err = np.abs(values - ref) / (0.5 / 127 * scale[:, None] + 1e-6)
        assert err.max() <= 1, f"{a['layer']} {a['state']}: quantized value off by {err.max():.2f} half-steps"
        assert len(a["corr"]) == H and all(len(row) == len(data["features"]) for row in a["corr"])
    K = data["top"]["k"]
    top = decode(data["top"]["idx"], np.uint8 if data["top"]["dtype"] == "u8" else "<u2").reshape(N, K)
    p = decode(data["top"]["p"], "<u2").reshape(N, K) / 65535
    probs = np.exp(np.array(logits) - np.max(logits, axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert K == 5
    assert np.array_equal(top, np.argsort(-probs, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(p, np.take_along_axis(probs, top, axis=1), atol=0.5 / 65535 + 1e-7)
    loss = decode(data["loss"], "<u2")
    assert loss[0] == viz.NO_LOSS
    np.testing.assert_allclose(loss[1:] / 1000, -np.log(probs[np.arange(N - 1), idx[1:]]), atol=5e-4 + 1e-6)
    return data


@pytest.mark.parametrize("cell, layers, multiplicative, layer_norm, residual",
                         [("rnn", 1, False, False, False), ("rnn", 2, True, False, False),
                          ("lstm", 2, False, False, False), ("lstm", 1, True, False, False),
                          ("gru", 2, True, False, False), ("gru", 1, False, False, False),
                          ("lstm", 2, True, True, False), ("gru", 1, False, True, False),
                          ("mingru", 1, False, False, False), ("minlstm", 2, False, False, False),
                          ("mingru", 2, False, False, True), ("gru", 2, False, False, True),
                          ("lstm", 2, False, True, True)])
def test_page_holds_text_activations_and_predictions_for_every_cell(tmp_path, write_config, hostile_corpus, cell,
                                                                    layers, multiplicative, layer_norm, residual):
    path = train(tmp_path, write_config, hostile_corpus, cell, layers, multiplicative, layer_norm=layer_norm,
                 residual=residual)
    spec = ckpt_io.load(str(path)).spec
    assert (spec.layer_norm, spec.residual) == (layer_norm, residual)
    text = corpus_text()[5000:5300]  # more than one 256-character chunk
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    r = run("visualize", "--checkpoint", path, "--text", tmp_path / "t.txt", "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and "wrote" in r.stderr
    check_page((tmp_path / "p.html").read_text(encoding="utf-8"), ckpt_io.load(str(path)), text,
               range(1, layers + 1))


def test_layers_option_keeps_only_the_chosen_layers(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus, "lstm", 2)
    (tmp_path / "t.txt").write_text("ROMEO.\nAy me!\n", encoding="utf-8")
    r = run("visualize", "--checkpoint", path, "--text", tmp_path / "t.txt", "--layers", "2",
            "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    data = check_page((tmp_path / "p.html").read_text(encoding="utf-8"), ckpt_io.load(str(path)),
                      "ROMEO.\nAy me!\n", [2])
    assert data["arrays"][1]["scale"] is not None  # c is unbounded: a scale per unit


def test_hostile_text_and_file_names_stay_text(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)
    # A checkpoint path that reads as markup too: directory "x<", file "script><img ...>.npz".
    (tmp_path / "x<").mkdir()
    evil_ckpt = tmp_path / "x<" / "script><img src=y onerror=alert(3)>.npz"
    evil_ckpt.write_bytes(path.read_bytes())
    assert "</script>" in str(evil_ckpt)
    (tmp_path / "evil.txt").write_text(HOSTILE, encoding="utf-8")
    for extra in (["--text", tmp_path / "evil.txt"], ["--prime", HOSTILE, "--length", 20, "--seed", 0]):
        r = run("visualize", "--checkpoint", evil_ckpt, *extra, "--out", tmp_path / "p.html")
        assert r.exit_code == 0, r.output
        html = (tmp_path / "p.html").read_text(encoding="utf-8")
        page = Page(html)
        assert "img" not in {t for t, _ in page.tags}
        assert [t for t, _ in page.tags].count("script") == 2 and [t for t, _ in page.tags].count("style") == 1
        assert "<img" not in html and "<!--" not in html and html.lower().count("</script") == 2  # the page's own two
        data = page.data
        assert data["text"].startswith(HOSTILE) and data["checkpoint"] == str(evil_ckpt)
        # Outside the data, the name appears once, escaped, in the title.
        assert "&lt;img src=y" in html.split("<title>")[1].split("</title>")[0]
    check_page(html, ckpt_io.load(str(path)), data["text"], [1])


def test_json_for_script_escapes_what_could_end_the_element():
    s = viz.json_for_script({"t": "</script><!--<script>&\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s
    assert json.loads(s) == {"t": "</script><!--<script>&\u2028"}


def test_sampled_text_is_the_sample_commands_text(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)
    r = run("visualize", "--checkpoint", path, "--prime", "KING", "--length", 60, "--seed", 5, "-t", 0.9,
            "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    data = Page((tmp_path / "p.html").read_text(encoding="utf-8")).data
    s = run("sample", "--checkpoint", path, "--prime", "KING", "--length", 60, "--seed", 5, "-t", 0.9)
    assert data["text"] == s.stdout[:-1] and len(data["text"]) == 64
    assert data["source"] == "sampled at temperature 0.9, seed 5"
    # Without a prime, as charrnn sample: after a line break, which the page shows.
    r = run("visualize", "--checkpoint", path, "--length", 30, "--seed", 2, "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    s = run("sample", "--checkpoint", path, "--length", 30, "--seed", 2)
    assert Page((tmp_path / "p.html").read_text(encoding="utf-8")).data["text"] == "\n" + s.stdout[:-1]


def test_default_text_is_whole_lines_from_the_start_of_the_validation_split(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)
    r = run("visualize", "--checkpoint", path, "--chars", 100, "--out", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    ck = ckpt_io.load(str(path))
    val = D.decode(validation_split(ck.config, ck.vocab)[:1100], ck.vocab)
    data = Page((tmp_path / "p.html").read_text(encoding="utf-8")).data
    start = val.index("\n") + 1
    assert 0 < start < 1000 and val[start - 1] == "\n"  # the split starts mid-line: there is a cut to make
    end = val.rindex("\n", start, start + 100) + 1
    assert end - start >= 50 and data["text"] == val[start:end]
    assert data["source"].startswith("validation split of")
    # The state is warmed up on the characters before the shown text: the page's numbers are
    # the model run over the split from its start, and the first character has a loss.
    params = ckpt_io.weights(ck)
    full = viz.trace(params, ck.spec, D.encode(val[:end], ck.vocab))
    tr = Page((tmp_path / "p.html").read_text(encoding="utf-8")).data
    loss = decode(tr["loss"], "<u2")
    np.testing.assert_allclose(loss, np.minimum(np.rint(full.loss[start:] * 1000), 65534))
    assert loss[0] != viz.NO_LOSS
    cold = viz.trace(params, ck.spec, D.encode(val[start:end], ck.vocab))
    assert not np.allclose(cold.arrays[(0, "h")][0], full.arrays[(0, "h")][start])  # the warm-up matters


def test_at_lines_cuts_to_whole_lines_within_the_search():
    from charrnn.visualize.checkpoint_page import LINE_SEARCH, at_lines

    assert at_lines("rd.\nTwo\nthree\nfo", 100) == ("rd.\n", "Two\nthree\n")
    assert at_lines("rd.\nTwo\nthree\nfo", 5) == ("rd.\n", "Two\n")
    assert at_lines("rd.\nT\nwo three\n", 10) == ("rd.\n", "T\nwo three")  # a cut there keeps under half
    assert at_lines("no line break", 5) == ("", "no li")
    far = "x" * LINE_SEARCH + "\nyz\n"
    assert at_lines(far, 10) == ("", "x" * 10)  # a line break beyond the search: the split's start


def test_trace_warmup_is_the_tail_of_the_whole_trace():
    spec = M.ModelSpec("gru", 9, 6, 2)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=0.5)
    idx = np.random.default_rng(1).integers(0, 9, size=40)
    whole, warm = viz.trace(params, spec, idx, chunk=7), viz.trace(params, spec, idx, chunk=7, warmup=15)
    for key in whole.arrays:
        assert np.array_equal(whole.arrays[key][15:], warm.arrays[key])
    assert np.array_equal(whole.top_idx[15:], warm.top_idx) and np.array_equal(whole.loss[15:], warm.loss)
    assert not np.isnan(warm.loss[0])


def test_skip_unknown_drops_and_counts_the_characters_outside_the_vocabulary(tmp_path, write_config,
                                                                              hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)
    (tmp_path / "u.txt").write_text("snow ☃ and ☃☃ ice 日", encoding="utf-8")
    out = tmp_path / "p.html"
    r = run("visualize", "--checkpoint", path, "--text", tmp_path / "u.txt", "--skip-unknown", "--out", out)
    assert r.exit_code == 0, r.output
    assert Page(out.read_text(encoding="utf-8")).data["text"] == "snow  and  ice "
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("wrote")]
    assert "15 characters, 4 unknown skipped" in line, line
    # --chars counts the characters kept; the unknown ones after the last of them are not counted
    r = run("visualize", "--checkpoint", path, "--text", tmp_path / "u.txt", "--skip-unknown", "--chars", 8,
            "--out", out)
    assert r.exit_code == 0, r.output
    assert Page(out.read_text(encoding="utf-8")).data["text"] == "snow  an"
    assert "8 characters, 1 unknown skipped" in r.stderr, r.stderr


def test_usage_errors(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)
    out = tmp_path / "p.html"
    (tmp_path / "t.txt").write_text("ab", encoding="utf-8")
    one_line_error(run("visualize", "--checkpoint", path, "--text", tmp_path / "t.txt", "--prime", "a", "--length", 3,
                       "--out", out), 2, "--text", "--prime")
    one_line_error(run("visualize", "--checkpoint", path, "--prime", "a", "--out", out), 2, "--length")
    one_line_error(run("visualize", "--checkpoint", path, "--seed", 1, "--out", out), 2, "--length")
    one_line_error(run("visualize", "--checkpoint", path, "--layers", "2", "--out", out), 2, "layer 2", "1 to 1")
    one_line_error(run("visualize", "--checkpoint", path, "--layers", "one", "--out", out), 2, "--layers")
    (tmp_path / "u.txt").write_text("snow ☃", encoding="utf-8")
    one_line_error(run("visualize", "--checkpoint", path, "--text", tmp_path / "u.txt", "--out", out), 1,
                   "u.txt", "'☃' (U+2603)", "--skip-unknown")
    one_line_error(run("visualize", "--checkpoint", path, "--text", tmp_path / "t.txt", "--chars", 1, "--out", out), 2,
                   "--chars")
    one_line_error(run("visualize", "--checkpoint", path, "--length", 5, "--temperature", "nan", "--out", out), 2,
                   "--temperature")
    assert not out.exists()


def test_a_model_of_bytes_gets_a_page_of_bytes_and_a_corpus_without_validation_is_refused(tmp_path, write_config):
    text = tmp_path / "c.txt"
    text.write_text(corpus_text(3000) + "é日", encoding="utf-8")
    out = tmp_path / "p.html"
    for name, options in (("bytes", ["--bytes"]), ("all", ["--val-fraction", "0"])):
        assert run("prepare", text, "--out", tmp_path / name, "-q", *options).exit_code == 0
        cfg = small_config(write_config, tmp_path / name, steps=3)
        assert run("train", "--config", cfg, "--out", tmp_path / f"run-{name}", "-q").exit_code == 0
    one_line_error(run("visualize", "--checkpoint", tmp_path / "run-all" / "ckpt.npz", "--out", out), 2,
                   "no validation split", "--text FILE")
    assert not out.exists()
    # the validation split of a model of bytes, in bytes (the page itself: test_page.py)
    r = run("visualize", "--checkpoint", tmp_path / "run-bytes" / "ckpt.npz", "--out", out, "--chars", 300)
    assert r.exit_code == 0, r.output
    assert " bytes," in r.output and out.exists()
    data = Page(out.read_text(encoding="utf-8")).data
    assert data["unit"] == "bytes" and len(data["cells"]) <= 300 and "a model of bytes" in data["live"]["omitted"]
    # a sampled text: the bytes `charrnn sample` writes
    ckpt = tmp_path / "run-bytes" / "ckpt.npz"
    r = run("visualize", "--checkpoint", ckpt, "--prime", "KING", "--length", 40, "--seed", 5, "--out", out)
    assert r.exit_code == 0, r.output
    data = Page(out.read_text(encoding="utf-8")).data
    s = run("sample", "--checkpoint", ckpt, "--prime", "KING", "--length", 40, "--seed", 5)
    assert base64.b64decode(data["raw"]) == s.stdout_bytes[:44] and len(data["cells"]) == 44
    # --text: the file's bytes; one the model has not seen is one line, or dropped with --skip-unknown
    (tmp_path / "t.bin").write_bytes(b"KING\xffKING")
    one_line_error(run("visualize", "--checkpoint", ckpt, "--text", tmp_path / "t.bin", "--out", out), 1,
                   "t.bin", "0xff", "--skip-unknown")
    r = run("visualize", "--checkpoint", ckpt, "--text", tmp_path / "t.bin", "--skip-unknown", "--out", out)
    assert r.exit_code == 0 and "8 bytes, 1 unknown skipped" in r.output, r.output
    assert base64.b64decode(Page(out.read_text(encoding="utf-8")).data["raw"]) == b"KINGKING"


def test_byte_cells_show_whole_characters_once_and_invalid_bytes_escaped():
    raw = "aé日".encode() + b"\xe9" + "𝄞".encode() + b"\xe6\x97" + b"\xed\xa0\x80"  # lone, cut, a surrogate
    cells, starts, decoded = viz.render.byte_cells(raw)
    dot = viz.render.CONTINUATION
    assert cells == ["a", "é", dot, "日", dot, dot, "\\xe9", "𝄞", dot, dot, dot, "\\xe6", "\\x97",
                     "\\xed", "\\xa0", "\\x80"]
    assert len(cells) == len(raw)
    assert starts == [0, 1, 3, 6, 7, 11, 12, 13, 14, 15, 16]
    assert decoded == "aé日\ufffd𝄞" + "\ufffd" * 5
    assert [viz.render.byte_name(b) for b in (0x41, 0x0A, 0x20, 0x7F, 0xE9, 0x00)] == ["A", "\n", " ", "0x7f", "0xe9",
                                                                                        "0x00"]


def test_trace_does_not_depend_on_the_chunk_length():
    spec = M.ModelSpec("lstm", 9, 6, 2, multiplicative=True)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=0.5)
    idx = np.random.default_rng(1).integers(0, 9, size=40)
    a, b = viz.trace(params, spec, idx, chunk=7), viz.trace(params, spec, idx, chunk=1000)
    for key in a.arrays:
        np.testing.assert_allclose(a.arrays[key], b.arrays[key], rtol=1e-12, atol=1e-14)
    assert np.array_equal(a.top_idx, b.top_idx)
    np.testing.assert_allclose(a.loss[1:], b.loss[1:], rtol=1e-12)


def test_quantize_round_trips_within_half_a_step():
    rng = np.random.default_rng(0)
    h = np.tanh(rng.standard_normal((50, 4)) * 2)
    c = rng.standard_normal((50, 4)) * [1, 10, 100, 0]
    for a, name in ((h, "h"), (c, "c")):
        scale = viz.state_scale(a, name)
        q = viz.quantize(a, scale)
        assert q.shape == (4, 50) and q.dtype == np.uint8
        back = (q.T.astype(np.float64) - 128) / 127 * scale
        assert np.all(np.abs(back - a) <= 0.5 / 127 * scale + 1e-12)
    assert viz.quantize(np.zeros((1, 1)), np.ones(1))[0, 0] == 128


def test_features_follow_the_text():
    f = viz.features('ab "cd" [e(f)]\nKING.\nx')
    assert list(f["inside quotes"][:8]) == [0, 0, 0, 1, 1, 1, 1, 0]
    assert list(f["inside brackets"][7:15]) == [0, 1, 1, 1, 1, 1, 1, 0]
    assert list(f["position in line"][13:17]) == [14, 0, 1, 2]
    assert list(f["position in word"][:4]) == [1, 2, 0, 0]
    assert list(f["line in capitals"][14:22]) == [0, 1, 1, 1, 1, 1, 0, 0]


def latch_model(vocab):
    """A vanilla RNN with two units built by hand, and four random ones.

    Unit 0 is a latch: '[' drives it to +1, ']' to -1, and a self-weight of 3 with a bias of
    -1 holds it there (tanh(3 - 1) = 0.96, tanh(-3 - 1) = -0.999; it starts outside), so it
    follows "inside brackets". Unit 1 is a counter: a line break drives it to -1 and every
    other character moves it up (h ← tanh(h + 0.03)), so it rises with the position in the line.
    """
    V_, H = len(vocab), 6
    spec = M.ModelSpec("rnn", V_, H)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=0.3)
    ix = {chr(c): i for i, c in enumerate(vocab)}
    for u in (0, 1):
        params["Whh"][u] = 0
        params["Whh"][:, u] = 0  # the random units do not read the two hand-built ones
        params["Wxh"][u] = 0
    params["Whh"][0, 0], params["Wxh"][0, ix["["]], params["Wxh"][0, ix["]"]] = 3.0, 10.0, -10.0
    params["Whh"][1, 1], params["bh"][1], params["Wxh"][1, ix["\n"]] = 1.0, 0.03, -30.0
    params["bh"][0] = -1.0
    return spec, params


def test_ranking_finds_the_hand_built_units():
    text = corpus_text()[100000:106000]  # 16 stage directions in [...]
    assert text.count("[") > 10
    vocab = D.build_vocab(text)
    spec, params = latch_model(vocab)
    tr = viz.trace(params, spec, D.encode(text, vocab))
    data = viz.page_data(text, vocab, tr, {"checkpoint": "hand-built"})
    first = data["ranking"][0]
    assert (first["unit"], first["feature"]) == (0, "inside brackets") and first["r"] > 0.95, data["ranking"]
    line = [p for p in data["ranking"] if p["unit"] == 1]
    assert line and line[0]["feature"] == "position in line" and line[0]["r"] > 0.9, data["ranking"]
    rs = [abs(p["r"]) for p in data["ranking"]]
    assert rs == sorted(rs, reverse=True) and len(rs) == 3 * 4  # three units for each feature in the text
    assert [p["unit"] for p in data["ranking"] if p["feature"] == "position in line"][0] == 1
    # Not in the text: quotes (so no unit is ranked for them).
    assert not {f["name"] for f in data["features"] if not f["present"]} - {"inside quotes"}
    assert all(p["feature"] != "inside quotes" for p in data["ranking"])


def test_correlations_of_constructed_activations():
    rng = np.random.default_rng(0)
    feats = {"a": rng.random(200), "flat": np.ones(200), "b": rng.random(200)}
    acts = np.stack([rng.random(200), -3 * feats["b"] + 1, np.zeros(200), feats["a"] + 0.01 * rng.random(200)], axis=1)
    r = viz.correlations(acts, feats)
    assert r.shape == (4, 3) and np.all(np.isnan(r[:, 1]))
    assert r[1, 2] == pytest.approx(-1) and r[3, 0] > 0.99 and r[2, 0] == 0 and abs(r[0, 0]) < 0.3
    picks = viz.rank_units({(0, "h"): r, (1, "h"): r[::-1] * 0.5}, list(feats), per_feature=2)
    assert [(p.array, p.unit, p.feature) for p in picks[:2]] == [((0, "h"), 1, "b"), ((0, "h"), 3, "a")]
    assert [(p.array, p.unit) for p in picks[2:]] == [((1, "h"), 2), ((1, "h"), 0)]  # r[::-1]: units reversed
    assert [p.r for p in picks[2:]] == [r[1, 2] * 0.5, r[3, 0] * 0.5] and len(picks) == 4


@pytest.mark.slow  # builds a wheel
def test_the_wheel_ships_the_page_files_and_a_page_builds_from_it(tmp_path):
    """The page's HTML, CSS and JS are package data: a wheel without them would install a
    command that fails on its first page. Built from a copy of the sources (pip builds in
    the tree it is given, and would leave build/ and *.egg-info in the checkout)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from conftest import ROOT

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ("charrnn", "configs", "data"):  # configs/ and data/: package data too (pyproject.toml)
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("charrnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "installed")
    for name in viz.render.PAGE_FILES:
        assert f"charrnn/visualize/{name}" in names, sorted(n for n in names if "visualize" in n)
    # And a page builds from the wheel's files alone (not from this checkout or an editable install).
    probe = ("import numpy as np, charrnn, charrnn.visualize as viz\n"
             "from charrnn import model as M\n"
             "spec = M.ModelSpec('rnn', 3, 4)\n"
             "p = M.init_params(spec, np.random.default_rng(0), np.float64)\n"
             "html, _ = viz.build(p, spec, np.array([97, 98, 99]), 'abcab', {'checkpoint': 'w'})\n"
             "print(charrnn.__file__)\n"
             "print('function paint()' in html and '#ranking li' in html and '<select id=\"mode\">' in html)\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "installed", capture_output=True, text=True,
                       timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr
    where, ok = r.stdout.split()
    assert where == str(tmp_path / "installed" / "charrnn" / "__init__.py") and ok == "True", r.stdout


@pytest.mark.parametrize("where", ["missing", "a-file", "read-only"])
def test_a_page_into_a_folder_that_cannot_take_it_names_the_file_asked_for(tmp_path, write_config, hostile_corpus,
                                                                            request, where):
    """As for plot: ENOENT, ENOTDIR, EROFS (a read-only tmpfs, which stops root too)."""
    ckpt = train(tmp_path, write_config, hostile_corpus)
    if where == "read-only":
        out, reason = request.getfixturevalue("read_only_dir") / "x.html", "Read-only file system"
    elif where == "a-file":
        (tmp_path / "f").write_text("a file\n")
        out, reason = tmp_path / "f" / "x.html", "Not a directory"
    else:
        out, reason = tmp_path / "missing" / "x.html", "No such file or directory"
    line = one_line_error(run("visualize", "--checkpoint", ckpt, "--out", out), 1,
                          f"Error: {out}: cannot write ({reason})")
    assert ".tmp" not in line


def test_without_out_the_page_is_the_runs_own_visualize_html(tmp_path, write_config, hostile_corpus):
    path = train(tmp_path, write_config, hostile_corpus)  # tmp_path/run/ckpt.npz
    before = set(os.listdir(tmp_path))
    r = run("visualize", "--checkpoint", tmp_path / "run", "--chars", 50)
    assert r.exit_code == 0, r.output
    page = tmp_path / "run" / "visualize.html"
    assert f"wrote {page}:" in r.stderr, r.stderr
    assert Page(page.read_text(encoding="utf-8")).data["checkpoint"] == str(tmp_path / "run" / "best.npz")
    assert set(os.listdir(tmp_path)) == before  # nothing beside the run directory
    page.unlink()
    assert run("visualize", "--checkpoint", path, "--chars", 50).exit_code == 0 and page.exists()
    # --overwrite moves the old run's page aside with its other files: it shows the old model
    cfg = small_config(write_config, hostile_corpus, steps=3)
    assert run("train", "--config", cfg, "-q", "--out", tmp_path / "run", "--overwrite").exit_code == 0
    assert not page.exists()
    (aside,) = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("replaced-")]
    assert (aside / "visualize.html").exists()


def test_the_weights_go_into_the_page_as_float32_up_to_the_limit():
    vocab = D.build_vocab("abcab\n")
    spec = M.ModelSpec("lstm", len(vocab), 3, layers=2, multiplicative=True)
    params = M.init_params(spec, np.random.default_rng(1), np.float64, std=0.7)
    n = viz.weights.weight_bytes(spec)
    assert n == 4 * sum(a.size for a in params.values())
    live = viz.weights.pack(params, spec, limit=n)
    assert {k: live[k] for k in ("cell", "layers", "H", "V", "multiplicative", "layer_norm", "residual", "bytes")} == \
        {"cell": "lstm", "layers": 2, "H": 3, "V": len(vocab), "multiplicative": True, "layer_norm": False,
         "residual": False, "bytes": n}
    assert list(live["params"]) == list(M.param_shapes(spec))  # every parameter, in model order
    for name, a in params.items():
        got = np.frombuffer(base64.b64decode(live["params"][name]["f32"]), dtype="<f4")
        assert live["params"][name]["shape"] == list(a.shape)
        np.testing.assert_array_equal(got, a.astype(np.float32).ravel())  # row-major, float32, little-endian
    over = viz.weights.pack(params, spec, limit=n - 1)
    assert "params" not in over and f"over the page's limit of {(n - 1) / 1e6:g} MB" in over["omitted"]
    html, data = viz.build(params, spec, vocab, "abcab\n", {"checkpoint": "c", "source": "s"}, weight_limit=n - 1)
    assert data["live"] == over and '"f32"' not in html  # the key, not the script's word


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_layer_norm_checkpoint_samples_and_evaluates(tmp_path, write_config, hostile_corpus, cell):
    """sample and eval of a layer-norm run: the model its checkpoint describes, gains and all
    (its page is test_page_holds_text_activations_and_predictions_for_every_cell's)."""
    path = train(tmp_path, write_config, hostile_corpus, cell, 2, layer_norm=True)
    ck = ckpt_io.load(str(path))
    assert ck.spec.describe() == f"{cell}, 2 layer(s) of {ck.spec.hidden_size}, layer norm"
    assert {"gx", "gh", "gx_1", "gh_1"} <= set(ck.run.params) and ("bc_1" in ck.run.params) == (cell == "lstm")
    assert not np.array_equal(ck.run.params["gh"], np.ones_like(ck.run.params["gh"]))  # trained: the gains moved
    r = run("sample", "--checkpoint", path, "-n", 50, "--seed", 2)
    assert r.exit_code == 0, r.output
    assert len(r.stdout) >= 40
    r = run("eval", "--checkpoint", path, "--json")
    assert r.exit_code == 0, r.output
    assert math.isfinite(json.loads(r.stdout.strip().splitlines()[-1])["nats_per_char"])
