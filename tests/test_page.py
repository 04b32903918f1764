"""The visualize page in a real browser: what a person sees once its script has run.

test_visualize.py checks the page's HTML and the numbers in its JSON document; this module
opens pages in headless Chromium (Debian's chromium and chromium-driver, driven by selenium)
and checks what the page's JavaScript puts on screen against what the Python side computed:
the colours of the characters for a chosen unit, the tooltip's predictions and loss, the
ranked list of units; that hostile text stays text; that nothing is fetched from anywhere.

One browser for the module; pages come from a small LSTM of random weights (float64).
Without Chromium, chromedriver or selenium the tests skip, saying which is missing.
"""

import base64
import json
import os
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

from charrnn import data as D
from charrnn import model as M
from charrnn import visualize as viz

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
try:
    import selenium  # noqa: F401

    MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
except ImportError:
    MISSING = ["selenium (pip install 'charrnn[test]')"]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"browser tests need {', '.join(MISSING)}: apt-get install chromium chromium-driver")

TEXT = ('KING HENRY.\nSo "shaken" as we are, so wan with care,\n[Aside] Find we a time for frighted peace to pant,\n'
        'And breathe short-winded accents of new broils.\nWESTMORELAND.\nMy liege, this haste was hot in question.\n')
HOSTILE = ('</script><script>window.pwned=1</script>\n<img src=x onerror="window.pwned=1"> &lt;b&gt; &amp;\n'
           '<!-- x --> <u>under</u> __DATA__ __SCRIPT__ __TITLE__ __STYLE__ ]]> \'q\' "dq"\n')
SHOWN = {" ": "\u2423 (space)", "\n": "\u21b5 (line break)", "\t": "\u21e5 (tab)"}  # as the page's shown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Debian's, and its driver: no selenium-manager download
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # DevTools' network events
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def make_page(directory, text, checkpoint="random.npz", source="test"):
    """A page of a random model over ``text``, and what Python computed for it."""
    vocab = D.build_vocab(text)
    spec = M.ModelSpec("lstm", len(vocab), 6)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=0.5)  # activations spread out
    header = {"checkpoint": checkpoint, "model": spec.describe(), "step": 0, "val_loss": None, "source": source}
    html, data = viz.build(params, spec, vocab, text, header)
    path = directory / f"page{len(list(directory.iterdir()))}.html"
    path.write_text(html, encoding="utf-8")
    tr = viz.trace(params, spec, D.encode(text, vocab))
    return SimpleNamespace(url=path.as_uri(), text=text, vocab=vocab, tr=tr, data=data, keys=list(tr.arrays))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_page(tmp_path_factory.mktemp("pages"), TEXT)


def load(driver, url):
    """Open the page and wait for its script to finish (it sets body's data-ready-ms last)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.body.dataset.readyMs !== undefined"))


def colour_values():
    """JS: each character's background colour as the activation it stands for, in units of
    the unit's scale: the inverse of the page's white-to-red (positive) and white-to-blue
    (negative) scales, each reaching 0.85 of the way at ±1."""
    return """
      return Array.from(document.querySelectorAll('#text span')).map((s) => {
        const [r, g, b] = getComputedStyle(s).backgroundColor.match(/\\d+/g).map(Number);
        return b > g ? -(255 - r) / (255 - 33) / 0.85 : (255 - g) / (255 - 40) / 0.85;
      });"""


def check_colours(driver, made, a, u):
    """The characters are coloured by unit u of array a, as Python computed it."""
    layer, name = made.keys[a]
    values = made.tr.arrays[(layer, name)][:, u]
    scale = viz.state_scale(made.tr.arrays[(layer, name)], name)[u]
    assert np.ptp(values / scale) > 0.2  # a unit that varies, so that the colours say which one it is
    shown = np.array(driver.execute_script(colour_values()))
    assert shown.shape == values.shape
    # half an 8-bit code step, and half a step of a colour channel
    tol = 0.5 / 127 + 0.5 / 215 / 0.85 + 1e-9
    err = np.abs(shown - values / scale).max()
    assert err <= tol, f"array {a} unit {u}: colours off by {err:.4f} (tolerance {tol:.4f})"
    assert driver.find_element("id", "unitinfo").text.startswith(f"layer {layer + 1} {name}")
    assert f"unit {u} of 6" in driver.find_element("id", "unitinfo").text


@pytest.mark.slow
def test_choosing_a_unit_recolours_the_text_with_its_values(browser, made):
    from selenium.webdriver.support.ui import Select

    load(browser, made.url)
    first = made.data["ranking"][0]
    check_colours(browser, made, first["array"], first["unit"])  # the page opens at the best-ranked unit
    # A click in the ranked list: an entry of another array and another unit.
    items = browser.find_elements("css selector", "#ranking li")
    n = next(i for i, p in enumerate(made.data["ranking"])
             if p["array"] != first["array"] and p["unit"] != first["unit"])
    p = made.data["ranking"][n]
    items[n].click()
    check_colours(browser, made, p["array"], p["unit"])
    assert "sel" in items[n].get_attribute("class").split() and "sel" not in items[0].get_attribute("class").split()
    # The unit chooser: the next-unit button, a unit typed in, and the layer menu.
    browser.find_element("id", "next").click()
    check_colours(browser, made, p["array"], (p["unit"] + 1) % 6)
    box = browser.find_element("id", "unit")
    box.clear()
    box.send_keys("4\n")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", box)
    check_colours(browser, made, p["array"], 4)
    Select(browser.find_element("id", "array")).select_by_value(str(first["array"]))
    check_colours(browser, made, first["array"], 4)


def hover(driver, i):
    """Move the mouse onto character i; the tooltip's text, and its rows' (character, probability)."""
    from selenium.webdriver.common.action_chains import ActionChains

    span = driver.execute_script("return document.querySelectorAll('#text span')[arguments[0]]", i)
    ActionChains(driver).move_to_element(span).perform()
    tip = driver.find_element("id", "tip")
    assert tip.is_displayed()
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#tip tr'))"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    return tip.text, rows


@pytest.mark.slow
def test_hovering_a_character_shows_its_top_five_and_its_loss(browser, made):
    load(browser, made.url)
    for i in (8, 40, 131):
        assert made.text[i] != "\n"
        text, rows = hover(browser, i)
        expect = [chr(made.vocab[j]) for j in made.tr.top_idx[i]]
        assert [c for c, _ in rows] == [SHOWN.get(c, c) for c in expect], (i, text)
        shown_p = [float(p.rstrip("%")) for _, p in rows]
        # shown to 0.1 % (0.01 % below 0.1 %), stored to 1/65535
        np.testing.assert_allclose(shown_p, 100 * made.tr.top_p[i], atol=0.05 + 100 / 65535 / 2 + 1e-9)
        loss = float(re.search(r"loss here: ([0-9.]+) nats", text).group(1))
        assert abs(loss - made.tr.loss[i]) <= 0.0005 + 0.0005 + 1e-9, (i, loss, made.tr.loss[i])
        assert f"character {i + 1} of {len(made.text)}" in text
        assert f"actual next: {SHOWN.get(made.text[i + 1], made.text[i + 1])}" in text
    text, _ = hover(browser, 0)
    assert "loss: none (the first character" in text


@pytest.mark.slow
def test_the_ranked_list_is_pythons_ranking(browser, made):
    load(browser, made.url)
    feats = viz.features(made.text)
    corrs = {key: viz.correlations(a, feats) for key, a in made.tr.arrays.items()}
    picks = viz.rank_units(corrs, list(feats))
    assert len(picks) >= 8 and {p.array[1] for p in picks} == {"h", "c"}  # both of the LSTM's arrays
    items = browser.find_elements("css selector", "#ranking li")
    shown = [[s.text for s in li.find_elements("tag name", "span")] for li in items]
    assert [name for name, _ in shown] == [f"L{p.array[0] + 1} {p.array[1]} unit {p.unit}: {p.feature}" for p in picks]
    np.testing.assert_allclose([float(r) for _, r in shown], [p.r for p in picks], atol=0.005 + 0.0005 + 1e-9)
    assert [(int(li.get_attribute("data-a")), int(li.get_attribute("data-u"))) for li in items] == \
        [(made.keys.index(p.array), p.unit) for p in picks]


def test_hostile_text_is_shown_as_text_and_runs_nothing(browser, tmp_path):
    # and in the file names the header shows
    checkpoint = 'x"><img src=y onerror="window.pwned=2"></title><script>window.pwned=3</script>.npz'
    source = '<img src=z onerror="window.pwned=4">&amp;.txt'
    hostile = make_page(tmp_path, HOSTILE, checkpoint, source)
    load(browser, hostile.url)
    time.sleep(0.3)  # an injected image's onerror would have fired by now
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, u').length") == 0
    assert browser.execute_script("return document.querySelectorAll('style').length") == 1
    assert browser.execute_script("return document.scripts.length") == 2  # the page's own data and script
    spans = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span')).map(s => s.textContent)")
    assert spans == ["\u21b5" if c == "\n" else c for c in HOSTILE]
    assert browser.find_element("id", "text").text == HOSTILE.replace("\n", "\u21b5\n").rstrip("\n")
    assert browser.find_element("id", "title").text == f"charrnn visualize \u2014 {checkpoint}"
    assert browser.title == f"charrnn visualize: {checkpoint}"
    assert f"text {source}  \u00b7  characters" in browser.find_element("id", "meta").get_attribute("textContent")
    text, rows = hover(browser, HOSTILE.index("<img"))  # the tooltip shows the text as text too
    assert text.startswith("<") and len(rows) == 5


def test_the_page_requests_nothing(browser, made):
    browser.get_log("performance")  # drop the events of earlier pages
    load(browser, made.url)
    # What a reader does: another unit, the loss colouring, a tooltip.
    browser.find_element("id", "next").click()
    browser.execute_script("const m = document.getElementById('mode'); m.value = 'loss';"
                           "m.dispatchEvent(new Event('change'))")
    hover(browser, 20)
    # Select, Match, Search (their sparklines are SVG made in the page, nothing loaded)
    browser.execute_script("document.getElementById('sel-to').value = '5';"
                           "document.getElementById('search-q').value = 'e'; const F = window.charrnnFind;"
                           "F.runSelect(); F.runMatch(); F.runSearch()")
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    requested = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requested == [made.url]
    assert browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    linked = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src], [href], [srcset], [action]')).map(e => e.outerHTML)")
    assert linked == []



def contrast(fg, bg):
    """WCAG 2's contrast ratio of two sRGB colours (0-255 channels): (L1 + 0.05) / (L2 + 0.05)."""
    def luminance(rgb):
        c = np.asarray(rgb, dtype=np.float64) / 255
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def cell_colours():
    """JS: each character's text and background colour as the browser renders them, [r, g, b]
    each (a transparent background: the text box's white)."""
    return """
      const rgb = (c) => {
        const v = c.match(/[\\d.]+/g).map(Number);
        return v.length > 3 && v[3] === 0 ? [255, 255, 255] : v.slice(0, 3);
      };
      return Array.from(document.querySelectorAll('#text span')).map((s) => {
        const st = getComputedStyle(s); return [rgb(st.color), rgb(st.backgroundColor)]; });"""


def test_every_character_keeps_a_wcag_aa_contrast_with_its_colour(browser, tmp_path):
    # Large weights: h saturates at ±1 and the loss passes 5 nats, so the ends of both colour
    # scales (the saturated blue, red and purple) are on screen, with the middle (white).
    vocab = D.build_vocab(TEXT)
    spec = M.ModelSpec("lstm", len(vocab), 6)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=3.0)
    html, data = viz.build(params, spec, vocab, TEXT, {"checkpoint": "x", "model": spec.describe(), "step": 0,
                                                        "val_loss": None, "source": "test"})
    (tmp_path / "p.html").write_text(html, encoding="utf-8")
    load(browser, (tmp_path / "p.html").as_uri())
    seen = []
    for a in range(len(data["arrays"])):
        for u in range(6):
            browser.execute_script(f"const s = document.getElementById('array'); s.value = '{a}';"
                                   f"s.dispatchEvent(new Event('change')); const u = document.getElementById('unit');"
                                   f"u.value = '{u}'; u.dispatchEvent(new Event('change'))")
            seen += browser.execute_script(cell_colours())
    browser.execute_script("const m = document.getElementById('mode'); m.value = 'loss';"
                           "m.dispatchEvent(new Event('change'))")
    seen += browser.execute_script(cell_colours())
    backgrounds = {tuple(bg) for _, bg in seen}
    for end in ((66, 125, 208), (220, 72, 72), (143, 65, 176)):  # the scales' ends: 0.85 of blue, red, purple
        assert end in backgrounds, (end, sorted(backgrounds)[:5])
    assert (255, 255, 255) in backgrounds
    worst = min(seen, key=lambda c: contrast(*c))
    assert contrast(*worst) >= 4.5, f"text {worst[0]} on {worst[1]}: {contrast(*worst):.2f}:1"
    inks = {tuple(fg) for fg, _ in seen}
    assert inks == {(0, 0, 0), (255, 255, 255)}  # black on light, white on dark: both occur


# The model live in the page (live.js): its forward pass against the Python model's, for every
# cell, depth, multiplicative, layer-norm and residual option, on real checkpoints written by `charrnn train`.

LIVE_TEXT_AT = (400, 700)  # the characters of the corpus the live tests read (all in its vocabulary)


def live_page(directory, cell, layers, multiplicative, layer_norm=False, residual=False):
    """A real run of 1 step (H = 8, large weights), its page (`charrnn visualize --text`) and
    `charrnn eval --json` of the same text file; returns what the tests compare."""
    from conftest import corpus_text, run

    corpus = directory / "c.txt"
    corpus.write_text(corpus_text(1500), encoding="utf-8")
    text = corpus_text(1500)[slice(*LIVE_TEXT_AT)]
    (directory / "t.txt").write_text(text, encoding="utf-8")
    (directory / "cfg.yaml").write_text(
        f"data:\n  path: {corpus}\nmodel:\n  hidden_size: 8\ntrain:\n  seq_length: 8\n  batch_size: 2\n"
        f"  steps: 1\n  log_every: 1\n  sample_every: 0\n  checkpoint_every: 1\n  out_dir: run\n", encoding="utf-8")
    r = run("train", "--config", directory / "cfg.yaml", "-q", "--out", directory / "run",
            "--set", f"model.cell={cell}", "--set", f"model.layers={layers}",
            "--set", f"model.multiplicative={str(multiplicative).lower()}",
            "--set", f"model.layer_norm={str(layer_norm).lower()}",
            "--set", f"model.residual={str(residual).lower()}",
            "--set", "model.init_std=1.0")  # large weights: a distribution far from uniform
    assert r.exit_code == 0, r.output
    ckpt = directory / "run" / "ckpt.npz"
    r = run("visualize", "--checkpoint", ckpt, "--text", directory / "t.txt", "--out", directory / "p.html")
    assert r.exit_code == 0, r.output
    r = run("eval", "--checkpoint", ckpt, "--text", directory / "t.txt", "--json")
    assert r.exit_code == 0, r.output
    return SimpleNamespace(url=(directory / "p.html").as_uri(), ckpt=str(ckpt), text=text,
                           nats=json.loads(r.stdout.strip().splitlines()[-1])["nats_per_char"])


def python_probabilities(ck, text, dtype=None):
    """The next-character distribution after ``text`` from the zero state, by model.forward
    (in the checkpoint's float32, or in ``dtype``)."""
    from charrnn import checkpoint as ckpt_io

    params = {k: v if dtype is None else v.astype(dtype) for k, v in ckpt_io.weights(ck).items()}
    x = D.encode(text, ck.vocab)[:, None]
    logits, _, _ = M.forward(params, ck.spec, x, M.zero_state(ck.spec, 1, params["Why"].dtype))
    _, probs = M.target_log_probs(logits, np.zeros(len(x), dtype=np.int64))
    return probs[-1].astype(np.float64)


# Every cell × 1 and 2 layers × multiplicative and layer norm (the cells with a recurrent product
# and a NORM), residual connections at 2 layers, and residual with layer norm.
LIVE_MODELS = [(c, n, mi, ln, False) for c in ("rnn", "lstm", "gru") for n in (1, 2) for mi in (False, True)
               for ln in (False, True)] + \
    [(c, n, False, False, False) for c in ("mingru", "minlstm") for n in (1, 2)] + \
    [(c, 2, False, False, True) for c in ("lstm", "mingru", "minlstm")] + [("gru", 2, False, True, True)]


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "layers", "multiplicative", "layer_norm", "residual"), LIVE_MODELS,
                         ids=[f"{c}-{n}" + "-mi" * mi + "-ln" * ln + "-residual" * r
                              for c, n, mi, ln, r in LIVE_MODELS])
def test_the_page_runs_the_model_as_python_does(browser, tmp_path, cell, layers, multiplicative, layer_norm, residual):
    from charrnn import checkpoint as ckpt_io

    made = live_page(tmp_path, cell, layers, multiplicative, layer_norm, residual)
    ck = ckpt_io.load(made.ckpt)
    assert (ck.spec.cell, ck.spec.layers, ck.spec.multiplicative, ck.spec.layer_norm, ck.spec.residual) == \
        (cell, layers, multiplicative, layer_norm, residual)
    load(browser, made.url)
    js = browser.execute_script("const c = window.charrnn; return [c.vocab, c.cell, c.layers, c.multiplicative, "
                                "c.layer_norm, c.residual]")
    assert js == [[chr(c) for c in ck.vocab], cell, layers, multiplicative, layer_norm, residual]
    for n in (1, 7, 120, len(made.text)):
        p_js = np.array(browser.execute_script("return window.charrnn.probabilities(arguments[0])", made.text[:n]))
        p_py = python_probabilities(ck, made.text[:n])
        assert p_js.shape == p_py.shape == (len(ck.vocab),)
        assert np.ptp(p_py) > 0.01  # weights large enough that the distribution says something
        np.testing.assert_allclose(p_js, p_py, rtol=0, atol=1e-5, err_msg=f"after {n} characters")
        # The page computes in float64 (JavaScript's numbers) over the float32 weights: the same
        # numbers as the Python model in float64, to rounding, however long the text.
        np.testing.assert_allclose(p_js, python_probabilities(ck, made.text[:n], np.float64), rtol=0, atol=1e-9)
    loss = browser.execute_script("return window.charrnn.loss(arguments[0])", made.text)
    assert loss == pytest.approx(made.nats, rel=1e-5), (loss, made.nats)
    # and not one stream from the start: charrnn eval's 32 streams, each from a zero state
    one = browser.execute_script("return window.charrnn.loss(arguments[0], 1)", made.text)
    assert abs(one - made.nats) > 1e-4


@pytest.fixture(scope="module")
def live_made(tmp_path_factory):
    return live_page(tmp_path_factory.mktemp("live"), "lstm", 1, False)


def test_choose_mode_appends_the_clicked_character_and_a_typed_one(browser, live_made):
    load(browser, live_made.url)
    prime = browser.find_element("id", "live-prime")
    prime.clear()
    prime.send_keys("the ")
    browser.find_element("id", "live-choose").click()
    out = browser.find_element("id", "live-out")
    assert out.get_attribute("textContent") == "the "
    buttons = browser.find_elements("css selector", "#live-choices button")
    assert len(buttons) == 5
    p = browser.execute_script("return window.charrnn.probabilities('the ')")
    best = browser.execute_script("return window.charrnn.top(arguments[0], 5)", p)
    assert [int(b.get_attribute("data-k")) for b in buttons] == best
    assert sorted(p, reverse=True)[:5] == [p[k] for k in best]
    buttons[2].click()
    vocab = browser.execute_script("return window.charrnn.vocab")
    assert out.get_attribute("textContent") == "the " + vocab[best[2]]
    assert len(browser.find_elements("css selector", "#live-choices button")) == 5  # for the longer text
    browser.find_element("id", "live-type").send_keys("e")
    assert out.get_attribute("textContent") == "the " + vocab[best[2]] + "e"


def test_generate_is_reproducible_and_the_prime_stays_text(browser, live_made):
    load(browser, live_made.url)
    vocab = set(browser.execute_script("return window.charrnn.vocab"))
    assert {"<", ">", "="} - vocab  # the hostile prime below has characters the model never saw
    hostile = '<img src=x onerror="window.pwned=1"><b>x</b>'
    prime = browser.find_element("id", "live-prime")
    prime.clear()
    prime.send_keys(hostile)
    browser.find_element("id", "live-generate").click()
    browser.find_element("id", "live-choose").click()
    time.sleep(0.3)  # an injected image's onerror would have fired by now
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, #live b').length") == 0
    assert browser.find_element("id", "live-out").get_attribute("textContent") == hostile  # shown as text
    assert "is not in the model's vocabulary" in browser.find_element("id", "live-error").text
    # A prime it knows: the same seed, the same text; another seed, another one.
    prime.clear()
    prime.send_keys("And ")
    length = browser.find_element("id", "live-length")
    length.clear()
    length.send_keys("60")
    texts = []
    for seed in ("3", "3", "4"):
        box = browser.find_element("id", "live-seed")
        box.clear()
        box.send_keys(seed)
        browser.find_element("id", "live-generate").click()
        texts.append(browser.find_element("id", "live-out").get_attribute("textContent"))
    assert texts[0] == texts[1] != texts[2]
    assert all(t.startswith("And ") and len(t) == 64 and set(t) <= vocab for t in texts)
    assert browser.execute_script("return window.charrnn.generate('And ', 60, 0.8, 3)") == texts[0][4:]


def test_a_model_over_the_size_limit_gets_a_page_without_weights_that_says_why(browser, tmp_path):
    vocab = D.build_vocab(TEXT)
    spec = M.ModelSpec("gru", len(vocab), 6, layers=2)
    params = M.init_params(spec, np.random.default_rng(0), np.float32)
    header = {"checkpoint": "big.npz", "model": spec.describe(), "step": 0, "val_loss": None, "source": "test"}
    limit = viz.weights.weight_bytes(spec) - 4  # one float over
    html, data = viz.build(params, spec, vocab, TEXT, header, weight_limit=limit)
    assert "params" not in data["live"] and '"f32"' not in html
    (tmp_path / "big.html").write_text(html, encoding="utf-8")
    load(browser, (tmp_path / "big.html").as_uri())
    note = browser.find_element("id", "live-note").text
    assert "not in this page" in note and f"over the page's limit of {limit / 1e6:g} MB" in note, note
    assert not browser.find_element("id", "live-box").is_displayed()
    assert browser.execute_script("return window.charrnn.probabilities") is None
    # At the limit exactly: the weights are in, and the box is shown.
    html, data = viz.build(params, spec, vocab, TEXT, header, weight_limit=limit + 4)
    assert set(data["live"]["params"]) == set(M.param_shapes(spec))
    (tmp_path / "ok.html").write_text(html, encoding="utf-8")
    load(browser, (tmp_path / "ok.html").as_uri())
    assert browser.find_element("id", "live-box").is_displayed()
    assert len(browser.execute_script("return window.charrnn.probabilities('KING')")) == len(vocab)


# Select, Match, Search (page.js): pages from crafted traces, with units planted where the
# tests want them, so that what the page must find is known exactly.

PLANT_TEXT = ('Find we a time for frighted peace to pant,\nAnd peace, and war: <img src=x onerror="window.pwned=1">\n'
              'war and peace; "war" is war.\nThe peace of it.\n')


def crafted_page(directory, text, arrays, name="crafted.html"):
    """A page over ``text`` whose states are ``arrays`` ((layer, state) -> (N, H)), no model."""
    vocab = D.build_vocab(text)
    N = len(text)
    top_idx = np.zeros((N, 5), dtype=np.int64)
    top_p = np.full((N, 5), 0.2)
    loss = np.concatenate([[np.nan], np.ones(N - 1)])
    tr = viz.tracing.Trace(arrays, top_idx, top_p, loss)
    header = {"checkpoint": "crafted.npz", "model": "crafted", "step": 0, "val_loss": None, "source": "test"}
    data = viz.render.page_data(text, vocab, tr, header)
    path = directory / name
    path.write_text(viz.render.page(data), encoding="utf-8")
    return SimpleNamespace(url=path.as_uri(), data=data)


def stretches(text, word):
    return [(m.start(), m.end()) for m in re.finditer(re.escape(word), text)]


U, V, NEAR = 3, 5, 1  # U: on inside every "peace" only; V: inside "peace" and "war"; NEAR: one too early


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    N = len(PLANT_TEXT)
    h = np.random.default_rng(1).uniform(-0.45, 0.45, (N, 8))  # never on at 0.5
    h[:, U], h[:, V], h[:, NEAR] = -0.9, -0.2, -0.5
    for s, e in stretches(PLANT_TEXT, "peace"):
        h[s:e, U] = 0.9
        h[s:e, V] = 0.6
        h[s - 1:e, NEAR] = 0.8  # on just before the stretch too: not "off outside"
    for s, e in stretches(PLANT_TEXT, "war"):
        h[s:e, V] = 0.6
    c = np.random.default_rng(2).uniform(-3, 3, (N, 8))  # c: its scale is each unit's largest |c|
    c[:, 2] = -4.0
    for s, e in stretches(PLANT_TEXT, "peace"):
        c[s:e, 2] = np.linspace(2.3, 2.7, e - s)  # about 0.6 of its scale (4): on at 0.5, off at 0.7; r < 1
    return crafted_page(tmp_path_factory.mktemp("planted"), PLANT_TEXT, {(0, "h"): h, (0, "c"): c})


def listed(driver, list_id):
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('#{list_id} li')).map(li => [+li.dataset.a, +li.dataset.u])")


def set_value(driver, id_, value):
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];", id_, str(value))


@pytest.mark.slow
def test_selecting_a_stretch_lists_the_unit_planted_there_first_and_match_finds_its_repeats(browser, planted):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    load(browser, planted.url)
    Select(browser.find_element("id", "array")).select_by_value("0")  # Select looks in the layer chosen: h
    s, e = stretches(PLANT_TEXT, "peace")[1]
    spans = browser.find_elements("css selector", "#text span")
    # A drag with the mouse over the second "peace": its characters become the stretch.
    w = spans[s].size["width"]  # from the left edge of its first character to the right edge of its last
    ActionChains(browser).move_to_element_with_offset(spans[s], -w // 2 + 1, 0).click_and_hold() \
        .move_to_element_with_offset(spans[e - 1], w // 2 - 1, 0).release().perform()
    assert browser.find_element("id", "sel-from").get_attribute("value") == str(s + 1)
    assert browser.find_element("id", "sel-to").get_attribute("value") == str(e)
    assert listed(browser, "sel-units") == [[0, U], [0, V]]  # NEAR is on just before it: not listed
    assert len(browser.find_elements("css selector", "#sel-units li svg polyline")) == 2  # the sparklines
    assert "2 of the 8 units" in browser.find_element("id", "sel-note").text
    browser.find_elements("css selector", "#sel-units li")[0].click()  # colours the text by U
    assert f"unit {U} of 8" in browser.find_element("id", "unitinfo").text
    # Match, k = all (2): exactly the "peace"s; k = 1: the "war"s too (V alone).
    browser.find_element("id", "match-go").click()
    got = browser.execute_script(
        "return Array.from(document.querySelectorAll('#match-list li')).map(li => [+li.dataset.s, +li.dataset.e])")
    assert sorted(map(tuple, got)) == stretches(PLANT_TEXT, "peace")
    marked = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span'))"
        ".map((s, i) => s.classList.contains('match') ? i : -1).filter(i => i >= 0)")
    assert marked == [i for s0, e0 in stretches(PLANT_TEXT, "peace") for i in range(s0, e0)]
    ctx = browser.find_elements("css selector", "#match-list li .ctx")[0]
    assert "peace" == ctx.find_element("tag name", "b").text
    # each match in sight in the panel: its first character inside its row's context box,
    # and the selection's own row marked (its label once pushed the match out of sight)
    clipped = browser.execute_script(
        "return Array.from(document.querySelectorAll('#match-list li')).filter(li => {"
        " const c = li.querySelector('.ctx').getBoundingClientRect();"
        " const b = li.querySelector('b').getBoundingClientRect();"
        " return b.left < c.left || b.left + 8 > c.right; }).length")
    assert clipped == 0
    selves = browser.execute_script(
        "return Array.from(document.querySelectorAll('#match-list li.self')).map(li => +li.dataset.s)")
    assert selves == [s]
    set_value(browser, "match-k", 1)
    browser.find_element("id", "match-go").click()
    got = browser.execute_script(
        "return Array.from(document.querySelectorAll('#match-list li')).map(li => [+li.dataset.s, +li.dataset.e])")
    assert sorted(map(tuple, got)) == sorted(stretches(PLANT_TEXT, "peace") + stretches(PLANT_TEXT, "war"))
    # typed bounds and other thresholds
    set_value(browser, "sel-from", s + 1)
    set_value(browser, "sel-to", e)
    set_value(browser, "sel-threshold", -0.6)
    browser.find_element("id", "sel-go").click()
    assert listed(browser, "sel-units") == [[0, U]]  # U's -0.9 outside is off; V's -0.2 and the rest on there
    set_value(browser, "sel-threshold", 0.7)
    browser.find_element("id", "sel-go").click()
    assert listed(browser, "sel-units") == [[0, U]]  # V's 0.6 is under it
    # the cell state c (the layer menu's second array): the threshold is a fraction of each unit's scale
    Select(browser.find_element("id", "array")).select_by_value("1")
    set_value(browser, "sel-threshold", 0.5)
    browser.find_element("id", "sel-go").click()
    assert listed(browser, "sel-units")[0] == [1, 2]
    set_value(browser, "sel-threshold", 0.7)
    browser.find_element("id", "sel-go").click()
    assert [1, 2] not in listed(browser, "sel-units")
    time.sleep(0.2)
    assert browser.execute_script("return window.pwned") is None


@pytest.mark.slow
def test_search_ranks_the_unit_that_tracks_the_word_first_and_a_bad_regex_is_a_message(browser, planted):
    load(browser, planted.url)
    for query, regex in (("peace", False), ("pea+ce", True), ("p[e]ace|peace", True)):
        set_value(browser, "search-q", query)
        browser.execute_script("document.getElementById('search-regex').checked = arguments[0]", regex)
        browser.execute_script("window.charrnnFind.runSearch()")  # throws into Python if the page would throw
        ranked = listed(browser, "search-units")
        assert ranked[0] == [0, U], (query, ranked)
        assert browser.find_element("css selector", "#search-units li .r").text == "+1.00"
        n = len(stretches(PLANT_TEXT, "peace"))
        assert browser.find_element("id", "search-note").text.startswith(f"{n} occurrences")
        assert len(browser.find_elements("css selector", "#text span.found")) == 5 * n
    # r is tracing.correlations' r with the indicator, for every unit listed
    ind = np.zeros(len(PLANT_TEXT))
    for s, e in stretches(PLANT_TEXT, "war"):
        ind[s:e] = 1
    set_value(browser, "search-q", "war")
    browser.execute_script("document.getElementById('search-regex').checked = false; window.charrnnFind.runSearch()")
    shown = browser.execute_script("return window.charrnnFind.rankByIndicator("
                                   "window.charrnnFind.occurrences('war', false), 100)")
    assert shown[0]["u"] == V and shown[0]["a"] == 0
    for x in shown:
        A = planted.data["arrays"][x["a"]]
        q = np.frombuffer(base64.b64decode(A["q"]), np.uint8).reshape(A["H"], -1)[x["u"]].astype(np.float64)
        r = viz.correlations(q[:, None], {"war": ind})[0, 0]
        assert x["r"] == pytest.approx(r, abs=1e-12)
    # an invalid expression: one line on the page, no exception, nothing marked
    set_value(browser, "search-q", "(peace")
    browser.execute_script("document.getElementById('search-regex').checked = true; window.charrnnFind.runSearch()")
    note = browser.find_element("id", "search-note")
    assert note.text.startswith("not a regular expression: ") and "\n" not in note.text
    assert listed(browser, "search-units") == [] and browser.find_elements("css selector", "#text span.found") == []


def test_search_counts_characters_as_python_does_past_the_basic_plane(browser, tmp_path):
    text = "a\U0001F600b peace \U0001F600\U0001F600 peace!\n"  # characters of two UTF-16 code units each
    h = np.zeros((len(text), 2))
    for s, e in stretches(text, "peace"):
        h[s:e, 1] = 0.9
    load(browser, crafted_page(tmp_path, text, {(0, "h"): h}).url)
    for query, regex in (("peace", False), ("pe.ce", True), ("\U0001F600", False), ("\\p{Emoji_Presentation}", True)):
        got = browser.execute_script("return window.charrnnFind.occurrences(arguments[0], arguments[1])"
                                     ".map(r => [r.s, r.e])", query, regex)
        want = [(m.start(), m.end()) for m in re.finditer("peace" if query[0] == "p" else "\U0001F600", text)]
        assert [tuple(r) for r in got] == want, (query, got)
    ranked = browser.execute_script("return window.charrnnFind.rankByIndicator("
                                    "window.charrnnFind.occurrences('peace', false), 2)")
    assert (ranked[0]["u"], round(ranked[0]["r"], 9)) == (1, 1.0)


def test_a_hostile_search_string_and_text_stay_text(browser, planted):
    load(browser, planted.url)
    hostile = '<img src=x onerror="window.pwned=1">'
    for regex in (False, True):
        set_value(browser, "search-q", hostile)
        browser.execute_script("document.getElementById('search-regex').checked = arguments[0];"
                               "window.charrnnFind.runSearch()", regex)
        assert browser.find_element("id", "search-note").text.startswith("1 occurrences")
        found = browser.execute_script("return Array.from(document.querySelectorAll('#text span.found'))"
                                       ".map(s => s.textContent).join('')")
        assert found == hostile
    # a Match whose context shows the hostile text: a stretch next to it
    s = PLANT_TEXT.index("<img")
    set_value(browser, "sel-from", s - 3)
    set_value(browser, "sel-to", s - 2)
    browser.execute_script("window.charrnnFind.runSelect(); window.charrnnFind.runMatch()")
    time.sleep(0.3)  # an injected image's onerror would have fired by now
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2


@pytest.mark.slow
def test_select_match_and_search_answer_fast_on_10000_characters_of_512_units(browser, tmp_path):
    N, H = 10000, 512
    text = (TEXT * (N // len(TEXT) + 1))[:N]
    h = np.random.default_rng(0).uniform(-1, 1, (N, H)).astype(np.float32)
    s, e = 5000, 5010
    h[s:e, 7] = 0.9
    h[[s - 1, e], 7] = -0.9
    load(browser, crafted_page(tmp_path, text, {(0, "h"): h}, "big.html").url)
    times = browser.execute_script("""
      const F = window.charrnnFind, ms = {};
      const t = (name, f) => { const t0 = performance.now(), r = f(); ms[name] = performance.now() - t0; return r; };
      t('first unitsOn (decodes the layer)', () => F.unitsOn(0, 5000, 5010, 0.5, 1));
      const units = t('unitsOn', () => F.unitsOn(0, 5000, 5010, 0.5, 1));
      t('unitsOn, 9,000 characters every unit passes', () => F.unitsOn(0, 500, 9500, -1, 1));  // the worst case
      const wide = Array.from({length: 512}, (_, u) => u);
      t('matchRuns, 512 units', () => F.matchRuns(0, wide, 0.5, 256));
      const occ = t('occurrences', () => F.occurrences('peace', false));
      t('first rankByIndicator (unit statistics)', () => F.rankByIndicator(occ, 15));
      t('rankByIndicator', () => F.rankByIndicator(F.occurrences('[Aa]nd', false).concat(occ), 15));
      ms.found = units.map(x => x.u);
      return ms;""")
    print(times)
    assert 7 in times.pop("found")
    for name, ms in times.items():
        assert ms < 1000, (name, ms)


# Compare with a second unit (page.js's compare): a band under each character in the second
# unit's colour, the background staying the first unit's.

COMPARE_TEXT = 'So shaken as we are, <img src=x onerror="window.pwned=1"> </script>\nso wan with care.\n'


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    """A crafted trace of two layers (an LSTM's h and c in each), known values: unit A of layer 1
    rises along the text, unit B of layer 2 falls, so that the two colours differ nearly everywhere."""
    N = len(COMPARE_TEXT)
    rng = np.random.default_rng(3)
    arrays = {(layer, name): rng.uniform(-0.9, 0.9, (N, 6)) * (1 if name == "h" else 3)
              for layer in (0, 1) for name in ("h", "c")}
    arrays[(0, "h")][:, 2] = np.linspace(-0.95, 0.95, N)
    arrays[(1, "h")][:, 4] = np.linspace(0.95, -0.95, N)
    made = crafted_page(tmp_path_factory.mktemp("compare"), COMPARE_TEXT, arrays, "compare.html")
    made.arrays = arrays
    made.keys = list(arrays)
    return made


def shown_colours(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#text span')).map((s) => { const st = getComputedStyle(s);"
        " return [st.backgroundColor, st.borderBottomStyle, st.borderBottomColor, st.borderBottomWidth]; })")


def expected_colours(driver, made, key, u):
    """The page's own colour (window.charrnnColours) of each character's code for unit u of ``key``."""
    a = made.arrays[key]
    q = viz.render.quantize(a, viz.state_scale(a, key[1]))[u]
    act = driver.execute_script("return window.charrnnColours.act")
    return [act[c].replace(",", ", ") for c in q]  # as getComputedStyle writes rgb(r, g, b)


def choose(driver, select_id, unit_id, a, u):
    driver.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = String(arguments[2]);"
        "s.dispatchEvent(new Event('change'));"
        "const i = document.getElementById(arguments[1]); i.value = String(arguments[3]);"
        "i.dispatchEvent(new Event('change'))",
        select_id, unit_id, a, u)


@pytest.mark.slow
def test_compare_colours_the_band_by_a_second_layers_unit_and_none_removes_it(browser, two_layers):
    from selenium.webdriver.support.ui import Select

    made = two_layers
    load(browser, made.url)
    assert all(style == "none" for _, style, _, _ in shown_colours(browser))  # no band until one is chosen
    a1, a2 = made.keys.index((0, "h")), made.keys.index((1, "h"))
    choose(browser, "array", "unit", a1, 2)
    Select(browser.find_element("id", "cmp-array")).select_by_visible_text("layer 2 h (hidden state)")
    choose(browser, "cmp-array", "cmp-unit", a2, 4)
    back, band = expected_colours(browser, made, (0, "h"), 2), expected_colours(browser, made, (1, "h"), 4)
    assert sum(x != y for x, y in zip(back, band, strict=True)) > len(back) * 0.8  # the two say which unit is which
    shown = shown_colours(browser)
    assert [bg for bg, _, _, _ in shown] == back
    assert [c for _, _, c, _ in shown] == band
    assert {(style, width) for _, style, _, width in shown} == {("solid", "4px")}
    # the tooltip: both values, each to 3 places (stored to half an 8-bit step)
    i = 10
    text, _ = hover(browser, i)
    v1 = float(re.search(r"L1 h unit 2: ([-+][0-9.]+)", text).group(1))
    v2 = float(re.search(r"band: L2 h unit 4: ([-+][0-9.]+)", text).group(1))
    assert abs(v1 - made.arrays[(0, "h")][i, 2]) <= 0.5 / 127 + 0.0005 + 1e-9
    assert abs(v2 - made.arrays[(1, "h")][i, 4]) <= 0.5 / 127 + 0.0005 + 1e-9
    # h against c of the same layer: the c band is on c's scale (each unit's largest |c|)
    choose(browser, "cmp-array", "cmp-unit", made.keys.index((0, "c")), 1)
    assert [c for _, _, c, _ in shown_colours(browser)] == expected_colours(browser, made, (0, "c"), 1)
    # the main unit changes, the band stays
    choose(browser, "array", "unit", a2, 4)
    shown = shown_colours(browser)
    assert [bg for bg, _, _, _ in shown] == band
    assert [c for _, _, c, _ in shown] == expected_colours(browser, made, (0, "c"), 1)
    # none: no band, and the tooltip shows one value
    Select(browser.find_element("id", "cmp-array")).select_by_visible_text("none")
    assert all(style == "none" for _, style, _, _ in shown_colours(browser))
    assert "band:" not in hover(browser, i)[0]
    # hostile text stays text, with the bands on
    choose(browser, "cmp-array", "cmp-unit", a2, 4)
    time.sleep(0.3)  # an injected image's onerror would have fired by now
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    spans = browser.execute_script("return Array.from(document.querySelectorAll('#text span')).map(s => s.textContent)")
    assert spans == ["\u21b5" if c == "\n" else c for c in COMPARE_TEXT]


def test_the_address_can_name_the_compared_unit(browser, two_layers):
    browser.get("about:blank")  # else only the address's fragment would change: no new page
    load(browser, two_layers.url + f"#a=0&u=2&ca={two_layers.keys.index((1, 'h'))}&cu=4")
    assert [c for _, _, c, _ in shown_colours(browser)] == expected_colours(browser, two_layers, (1, "h"), 4)
    assert browser.find_element("id", "cmp-unit").get_attribute("value") == "4"


# A model of bytes (`charrnn prepare --bytes`): a page of bytes, each multi-byte character shown
# once, on its first byte, an invalid byte as its escape.

BYTES_TEXT = ('So "caf\u00e9" \u65e5\u672c <script>window.pwned=5</script> <img src=x onerror="window.pwned=6">\n'
              .encode() + b"\xe9 lone, \xf0\x9d\x84\x9e clef.\n")
BYTES_SHOWN = ('So "caf\u00e9" \u65e5\u672c <script>window.pwned=5</script> <img src=x onerror="window.pwned=6">\u21b5'
               '\\xe9 lone, \U0001d11e clef.\u21b5')  # the first byte of each character, as the page shows it


@pytest.mark.slow
def test_a_model_of_bytes_shows_each_byte_its_characters_whole_and_invalid_bytes_escaped(browser, tmp_path,
                                                                                         write_config):
    from conftest import corpus_text, run, small_config

    corpus = tmp_path / "c.txt"
    corpus.write_bytes(corpus_text(3000).encode() + BYTES_TEXT * 3)
    assert run("prepare", corpus, "--out", tmp_path / "prep", "--bytes", "-q").exit_code == 0
    cfg = small_config(write_config, tmp_path / "prep", steps=3)
    assert run("train", "--config", cfg, "--out", tmp_path / "run", "-q").exit_code == 0
    (tmp_path / "t.bin").write_bytes(BYTES_TEXT)
    out = tmp_path / "bytes.html"
    r = run("visualize", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--text", tmp_path / "t.bin", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"{len(BYTES_TEXT)} bytes" in r.output
    load(browser, out.as_uri())
    time.sleep(0.3)  # an injected image's onerror would have fired by now
    assert browser.execute_script("return window.pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span')).map(s => [s.textContent, s.className])")
    assert len(cells) == len(BYTES_TEXT)  # one cell per byte
    assert "".join(t for t, cls in cells if "cont" not in cls) == BYTES_SHOWN
    assert sum("cont" in cls for _, cls in cells) == len(BYTES_TEXT) - len(BYTES_SHOWN.replace("\\xe9", "."))
    assert f"bytes {len(BYTES_TEXT)}" in browser.find_element("id", "meta").text
    # the tooltip: the byte in hex, the character it is part of, the top five next bytes as Python ranks them
    ck = viz.checkpoint_page.ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    tr = viz.trace(viz.checkpoint_page.ckpt_io.weights(ck), ck.spec, viz.render.byte_indices(BYTES_TEXT, ck.vocab))
    i = BYTES_TEXT.index("\u65e5".encode()) + 1  # the second byte of 日
    text, rows = hover(browser, i)
    assert "byte 0x97, part of \u65e5 from byte" in text and f"byte {i + 1} of {len(BYTES_TEXT)}" in text
    expect = [viz.render.byte_name(int(ck.vocab[j])) for j in tr.top_idx[i]]
    assert [c for c, _ in rows] == [SHOWN.get(c, c) for c in expect]
    np.testing.assert_allclose([float(p.rstrip("%")) for _, p in rows], 100 * tr.top_p[i],
                               atol=0.05 + 100 / 65535 / 2 + 1e-9)
    text, _ = hover(browser, BYTES_TEXT.index(b"\xe9 lone"))
    assert "byte 0xe9" in text and "part of" not in text
    # Search counts in characters and marks their bytes
    set_value(browser, "search-q", "\u65e5\u672c")
    browser.execute_script("window.charrnnFind.runSearch()")
    marked = browser.execute_script("return Array.from(document.querySelectorAll('#text span'))"
                                    ".map((s, i) => s.classList.contains('found') ? i : -1).filter(i => i >= 0)")
    s = BYTES_TEXT.index("\u65e5\u672c".encode())
    assert marked == list(range(s, s + 6))
    assert "a model of bytes" in browser.find_element("id", "live-note").text
