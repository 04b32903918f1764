"""See inside a trained model: hidden units and predictions over a text, as one web page.

What Karpathy's "The Unreasonable Effectiveness of Recurrent Neural Networks" shows: the
text coloured by one hidden unit's activation (a unit that follows quotes, one that counts
the position in a line), and under every character the model's guesses for the next one.

``trace`` runs the model over a text with ``model.forward``, chunk by chunk with the state
carried (exactly as ``charrnn eval`` reads a stream), and keeps from the cells' own caches
what each layer computed at every character: h, and for the LSTM the cell state c. Nothing
here recomputes a cell's equations. ``features`` and ``rank_units`` pick units worth a look
by how well they follow simple properties of the text. ``page`` writes it all into one
self-contained HTML file: no network, no external script, font or style.

Safety: the text is user data. It enters the page only inside a JSON document in a
``<script type="application/json">`` element, with ``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026`` (so ``</script>`` in the text cannot end the element), and the page's
script puts it on screen through ``textContent``, never as markup.

Size: activations are stored as 8-bit codes (``quantize``), unit-major, base64 in the JSON:
about 4/3 · N · H bytes per layer and state array, 6.8 MB for 10,000 characters of H = 512.

Letters: N characters of text, H hidden units, V vocabulary, K predictions kept (5).
"""

import base64
import html
import json
from typing import NamedTuple

import numpy as np

from charrnn import data as D
from charrnn import model as M
from charrnn import sampling
from charrnn.errors import CharrnnError, UsageError

TOP_K = 5
NO_LOSS = 65535  # the loss code of the first character: nothing predicted it


class Trace(NamedTuple):
    arrays: dict  # (layer, state name) -> (N, H) value after reading each character
    top_idx: np.ndarray  # (N, K) vocabulary indices of the K likeliest next characters, likeliest first
    top_p: np.ndarray  # (N, K) their probabilities
    loss: np.ndarray  # (N,) -log p of each character given the ones before it (nan for the first)


def trace(params, spec, indices, layers=None, chunk=256, k=TOP_K):
    """Run the model over ``indices`` from a zero state and record what it computed.

    Parameters
    ----------
    params, spec : the weights (``checkpoint.weights``) and their ModelSpec.
    indices : (N,) character indices, N ≥ 1.
    layers : the layers (from 0) whose states to keep; None: all.
    chunk : characters per ``model.forward`` call; the state is carried between calls, so
        the result does not depend on it (a test checks that).

    Returns a ``Trace``. ``arrays[(l, name)][t]`` is the state array ``name`` (``"h"``, or
    ``"c"`` for the LSTM) of layer l after reading character t, taken from the cell's cache
    (``hs``, ``cs``); ``top_*[t]`` are the predictions for character t+1 made from it.
    """
    X = np.asarray(indices, dtype=np.int64)
    N = len(X)
    layers = range(spec.layers) if layers is None else layers
    dtype = params["Why"].dtype
    k = min(k, spec.vocab_size)
    arrays = {(l, name): np.empty((N, spec.hidden_size), dtype=dtype) for l in layers for name in spec.module.STATE}
    top_idx = np.empty((N, k), dtype=np.int64)
    top_p = np.empty((N, k), dtype=np.float64)
    logp_next = np.empty(N, dtype=np.float64)  # log p of character t+1 (the last one: unused)
    state = M.zero_state(spec, 1, dtype)
    prepared = M.prepare(params, spec, 1)  # the weights do not change between chunks
    Y = np.append(X[1:], 0)  # targets; the last character has none (a placeholder)
    for t0 in range(0, N, chunk):
        x = X[t0:t0 + chunk]
        logits, state, cache = M.forward(params, spec, x[:, None], state, prepared=prepared)
        for (l, name), a in arrays.items():
            # the cell caches hold the state before the chunk at [0], after character t at [t+1]
            a[t0:t0 + len(x)] = getattr(cache.cell_caches[l], name + "s")[1:, 0]
        logp, probs = M.target_log_probs(logits, Y[t0:t0 + len(x)])
        logp_next[t0:t0 + len(x)] = logp
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        top_idx[t0:t0 + len(x)] = order
        top_p[t0:t0 + len(x)] = np.take_along_axis(probs, order, axis=1)
    loss = np.concatenate([[np.nan], -logp_next[:-1]])
    return Trace(arrays, top_idx, top_p, loss)


# Simple properties of the text at each character, for finding units that follow them.
# Each is a function of the characters up to and including t (what the model has read).
FEATURES = {
    "inside quotes": "1 from a double quote to the next one, both quotes included, else 0",
    "inside brackets": "1 inside (...) or [...], the brackets included, else 0; Shakespeare's stage directions are in [...]",
    "position in line": "characters since the last line break",
    "position in word": "letters since the word began; 0 outside words",
    "line in capitals": "1 while the line so far has letters and all are capitals (a speaker's name: ROMEO.), else 0",
}


def features(text):
    """Name -> (N,) float64 value of each of ``FEATURES`` at each character of ``text``."""
    N = len(text)
    f = {name: np.zeros(N) for name in FEATURES}
    quote = depth = line_pos = word_pos = 0
    caps = None  # the line so far: None no letters yet, True all capitals, False not
    for t, ch in enumerate(text):
        if ch == '"':
            quote ^= 1
            f["inside quotes"][t] = 1  # both quotes count as inside, as both brackets do
        else:
            f["inside quotes"][t] = quote
        if ch in "([":
            depth += 1
        f["inside brackets"][t] = depth > 0
        if ch in ")]":
            depth = max(0, depth - 1)
        if ch == "\n":
            line_pos, caps = 0, None
        else:
            line_pos += 1
            if ch.isalpha():
                caps = ch.isupper() if caps is None else caps and ch.isupper()
        f["position in line"][t] = line_pos
        word_pos = word_pos + 1 if ch.isalpha() else 0
        f["position in word"][t] = word_pos
        f["line in capitals"][t] = bool(caps)
    return f


def correlations(a, feats):
    """Pearson correlation of every unit with every feature over the text.

    a : (N, H) activations; feats : name -> (N,) values. Returns (H, F) in the order of
    ``feats``: nan for a feature that is constant over the text (nothing to follow), 0 for a
    unit that is.
    """
    A = np.asarray(a, dtype=np.float64)
    A = A - A.mean(axis=0)
    F = np.stack([np.asarray(v, dtype=np.float64) for v in feats.values()], axis=1)
    F = F - F.mean(axis=0)
    na, nf = np.sqrt((A * A).sum(axis=0)), np.sqrt((F * F).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (A.T @ F) / np.outer(np.where(na > 0, na, np.inf), nf)
    r[:, nf == 0] = np.nan
    return r


class Pick(NamedTuple):
    array: tuple  # (layer, state name)
    unit: int
    feature: str
    r: float  # Pearson correlation with the feature


def rank_units(corrs, names, per_feature=3):
    """The units that follow each feature most closely, best first.

    corrs : (layer, state name) -> (H, F) correlations (``correlations``); names : the F
    feature names. For every feature present in the text (r not nan), the ``per_feature``
    units of any layer with the largest |r|; all of them ordered by |r|. A few per feature
    rather than the best overall, because one feature (the position in a word, which many
    units follow a little) would otherwise fill the list. Returns a list of Picks.
    """
    picks = []
    for j, name in enumerate(names):
        cands = [(abs(r[u, j]), key, u) for key, r in corrs.items() if not np.isnan(r[0, j])
                 for u in np.argsort(-np.abs(r[:, j]), kind="stable")[:per_feature]]
        for _, key, u in sorted(cands, key=lambda c: -c[0])[:per_feature]:
            picks.append(Pick(key, int(u), name, float(corrs[key][u, j])))
    picks.sort(key=lambda p: -abs(p.r))
    return picks


def quantize(a, scale):
    """8-bit codes of activations, unit-major: ``q = round(127 · a / scale) + 128``.

    a : (N, H); scale : (H,) the largest magnitude per unit (1 for h, which tanh bounds).
    Returns (H, N) uint8, each value within 0.5 / 127 · scale of the original; 128 is 0.
    """
    q = np.rint(np.asarray(a, dtype=np.float64) / scale * 127) + 128
    return np.clip(q, 1, 255).astype(np.uint8).T.copy()


def state_scale(a, name):
    """Per-unit scale for ``quantize``: 1 for h (in [-1, 1] for every cell), else max |a|."""
    if name == "h":
        return np.ones(a.shape[1])
    m = np.abs(a).max(axis=0).astype(np.float64)
    return np.where(m > 0, m, 1.0)


def _b64(a, dtype):
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def page_data(text, vocab, tr, header, per_feature=3):
    """The JSON document the page reads: text, vocabulary, activations, predictions, ranking."""
    feats = features(text)
    names = list(feats)
    corrs = {key: correlations(a, feats) for key, a in tr.arrays.items()}
    keys = list(tr.arrays)
    arrays = []
    for (layer, name), a in tr.arrays.items():
        scale = state_scale(a, name)
        arrays.append({
            "layer": layer + 1,
            "state": name,
            "H": int(a.shape[1]),
            "scale": None if name == "h" else [float(s) for s in scale],
            "q": _b64(quantize(a, scale), np.uint8),
            # rounded to 0.01: shown, not computed with
            "corr": [[None if np.isnan(v) else round(float(v), 2) for v in row] for row in corrs[(layer, name)]],
        })
    loss = np.where(np.isnan(tr.loss), NO_LOSS, np.minimum(np.rint(np.nan_to_num(tr.loss) * 1000), NO_LOSS - 1))
    small = len(vocab) <= 256
    return {
        **header,
        "text": text,
        "vocab": [chr(c) for c in vocab],
        "features": [{"name": n, "doc": FEATURES[n], "present": bool(np.ptp(feats[n]) > 0)} for n in names],
        "arrays": arrays,
        "per_feature": per_feature,
        "ranking": [{"array": keys.index(p.array), "unit": p.unit, "feature": p.feature, "r": round(p.r, 3)}
                    for p in rank_units(corrs, names, per_feature)],
        "top": {
            "k": int(tr.top_idx.shape[1]),
            "dtype": "u8" if small else "u16",
            "idx": _b64(tr.top_idx, np.uint8 if small else "<u2"),
            "p": _b64(np.rint(tr.top_p * 65535), "<u2"),  # probability · 65535
        },
        "loss": _b64(loss, "<u2"),  # millinats; 65535: none (the first character)
    }


def json_for_script(obj):
    """JSON text that cannot end or break out of the ``<script>`` element holding it.

    ``<``, ``>`` and ``&`` are written as JSON's ``\\u003c``, ``\\u003e``, ``\\u0026``: the
    same string to ``JSON.parse``, but no ``</script>`` or ``<!--`` for the HTML parser to see.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(data):
    """The self-contained HTML page for ``page_data``'s document."""
    title = html.escape(f"charrnn visualize: {data.get('checkpoint', '')}")
    # The data first, then the title, each once: the title precedes the data in the
    # template, so neither can put a marker where the other is looked for.
    return _TEMPLATE.replace("__DATA__", json_for_script(data), 1).replace("__TITLE__", title, 1)


def sample_text(params, spec, vocab, prime_indices, length, rng, temperature):
    """The prime followed by ``length`` characters sampled from the model, as a string."""
    state0 = sampling.prime(params, spec, prime_indices)
    drawn = sampling.generate(params, spec, int(prime_indices[-1]), state0, length, rng, temperature)
    return "".join(chr(vocab[i]) for i in prime_indices) + "".join(chr(vocab[i]) for i in drawn)


def build(params, spec, vocab, text, header, layers=None, chunk=256):
    """Trace ``text`` and return the page's HTML and its data document.

    layers : layers counted from 1 to include (None: all). Raises CharrnnError for a text
    shorter than 2 characters or with characters outside the vocabulary, UsageError for a
    layer the model does not have.
    """
    if len(text) < 2:
        raise CharrnnError("the text to visualize has fewer than 2 characters")
    if layers is not None:
        bad = [l for l in layers if not 1 <= l <= spec.layers]
        if bad:
            raise UsageError(f"--layers: layer {bad[0]} does not exist: the model has layers 1 to {spec.layers}")
        layers = sorted({l - 1 for l in layers})
    try:
        indices = D.encode(text, vocab)
    except CharrnnError as e:
        raise CharrnnError(f"{header.get('source', 'the text')}: {e}") from None
    tr = trace(params, spec, indices, layers, chunk)
    data = page_data(text, vocab, tr, header)
    return page(data), data


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
* { box-sizing: border-box; }
html, body { height: 100%; }
body { display: flex; flex-direction: column; margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; background: #fafafa; }
header { padding: 8px 14px; background: #263238; color: #eceff1; }
header h1 { font-size: 16px; margin: 0 0 2px 0; font-weight: 600; }
header .meta { font-size: 12.5px; color: #b0bec5; }
header .meta b { color: #eceff1; font-weight: 600; }
#controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; padding: 7px 14px; background: #eceff1; border-bottom: 1px solid #cfd8dc; }
#controls label { white-space: nowrap; }
#controls input[type=number] { width: 5.5em; }
#controls button { padding: 1px 8px; }
#unitinfo { font-size: 12.5px; color: #37474f; }
main { flex: 1; min-height: 0; display: grid; grid-template-columns: minmax(0, 1fr) 300px; }
#text { margin: 0; padding: 12px 16px; overflow: auto; white-space: pre-wrap; word-wrap: break-word; font: 14px/1.55 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #fff; border-right: 1px solid #cfd8dc; }
#text span { cursor: default; border-radius: 2px; }
#text span.nl { color: #b0bec5; font-size: 11px; }
#text span.cur { outline: 2px solid #111; }
aside { overflow: auto; padding: 10px 12px; font-size: 13px; }
aside h2 { font-size: 13.5px; margin: 4px 0 6px 0; }
aside p { margin: 4px 0 8px 0; color: #455a64; font-size: 12px; }
#ranking { list-style: none; padding: 0; margin: 0 0 10px 0; }
#ranking li { padding: 3px 6px; margin: 1px 0; border-radius: 3px; cursor: pointer; display: flex; justify-content: space-between; gap: 6px; }
#ranking li:hover { background: #e3f2fd; }
#ranking li.sel { background: #bbdefb; }
#ranking .r { font-variant-numeric: tabular-nums; color: #1565c0; }
#legend { display: flex; align-items: center; gap: 6px; font-size: 12px; }
#legend .bar { width: 140px; height: 12px; border: 1px solid #b0bec5; }
#tip { position: fixed; display: none; z-index: 10; min-width: 190px; max-width: 320px; padding: 7px 9px; background: #fff; border: 1px solid #90a4ae; border-radius: 4px; box-shadow: 0 2px 8px rgba(0,0,0,.2); font-size: 12.5px; pointer-events: none; }
#tip .ch { font: 600 15px "DejaVu Sans Mono", Menlo, monospace; }
#tip table { border-collapse: collapse; margin-top: 3px; }
#tip td { padding: 0 5px 0 0; font-variant-numeric: tabular-nums; }
#tip td.c { font-family: "DejaVu Sans Mono", Menlo, monospace; }
#tip tr.hit td { font-weight: 700; color: #1b5e20; }
#tip .pbar { display: inline-block; height: 8px; background: #64b5f6; }
#tip .muted { color: #78909c; }
@media (max-width: 700px) { body { display: block; height: auto; } main { grid-template-columns: 1fr; } #text { max-height: 70vh; } }
</style>
</head>
<body>
<header><h1 id="title"></h1><div class="meta" id="meta"></div></header>
<div id="controls">
  <label>colour by <select id="mode"><option value="act">a unit's activation</option><option value="loss">loss at each character</option></select></label>
  <label>layer <select id="array"></select></label>
  <label>unit <button id="prev" title="previous unit (&#8592;)">&#9664;</button> <input id="unit" type="number" min="0" value="0"> <button id="next" title="next unit (&#8594;)">&#9654;</button></label>
  <span id="legend"><span id="lo"></span><span class="bar" id="bar"></span><span id="hi"></span></span>
  <span id="unitinfo"></span>
</div>
<main>
<pre id="text"></pre>
<aside>
  <h2>Units worth a look</h2>
  <p id="rankdoc"></p>
  <ol id="ranking"></ol>
  <h2>How to read this page</h2>
  <p>Each character is coloured by the chosen unit's value after the model has read it: red positive, blue negative, white near 0. Hover over (or tap) a character to see the model's five likeliest next characters and how surprised it was by this one (its loss, &minus;log p, in nats). "loss at each character" colours the text by that surprise, so the hard spots stand out.</p>
  <h2>Features</h2>
  <p id="featdoc"></p>
</aside>
</main>
<div id="tip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function bytes(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function u16(b64) {  // little-endian, as written (every browser's typed arrays are)
    const b = bytes(b64);
    return new Uint16Array(b.buffer, 0, b.length >> 1);
  }
  const chars = Array.from(D.text);  // by code point, as Python counts
  const N = chars.length, K = D.top.k;
  const topIdx = D.top.dtype === "u8" ? bytes(D.top.idx) : u16(D.top.idx);
  const topP = u16(D.top.p), loss = u16(D.loss);
  const NO_LOSS = 65535, LOSS_MAX = 5000;  // millinats; colours saturate at 5 nats
  const codes = [];  // decoded lazily: a layer of H = 512 over 10,000 characters is 5 MB
  function arrayCodes(a) {
    if (!codes[a]) codes[a] = bytes(D.arrays[a].q);
    return codes[a];
  }
  function arrayName(a) {
    const A = D.arrays[a];
    return "layer " + A.layer + " " + (A.state === "h" ? "h (hidden state)" : A.state === "c" ? "c (cell state)" : A.state);
  }
  function shown(c) {
    return c === " " ? "\u2423 (space)" : c === "\n" ? "\u21b5 (line break)" : c === "\t" ? "\u21e5 (tab)" : c;
  }

  // Header
  $("title").textContent = "charrnn visualize \u2014 " + D.checkpoint;
  const meta = $("meta");
  const parts = [["model", D.model], ["step", String(D.step)], ["validation loss", D.val_loss], ["text", D.source], ["characters", N.toLocaleString("en")]];
  parts.forEach(([k, v], i) => {
    if (v === null || v === undefined) return;
    if (meta.childNodes.length) meta.appendChild(document.createTextNode("  \u00b7  "));
    meta.appendChild(document.createTextNode(k + " "));
    meta.appendChild(el("b", v));
  });

  // Colours: 256 for activation codes (blue - white - red), 256 for loss (white - purple)
  function mix(a, b, t) { return a.map((x, i) => Math.round(x + (b[i] - x) * t)); }
  const WHITE = [255, 255, 255], RED = [214, 40, 40], BLUE = [33, 102, 200], PURPLE = [123, 31, 162];
  const actColour = [], lossColour = [];
  for (let q = 0; q < 256; q++) {
    const v = Math.max(-1, Math.min(1, (q - 128) / 127));
    const c = v >= 0 ? mix(WHITE, RED, v * 0.85) : mix(WHITE, BLUE, -v * 0.85);
    actColour.push("rgb(" + c + ")");
    lossColour.push("rgb(" + mix(WHITE, PURPLE, 0.85 * q / 255) + ")");
  }

  // The text, one span per character, put on screen as text only
  const box = $("text"), spans = new Array(N), frag = document.createDocumentFragment();
  for (let i = 0; i < N; i++) {
    const c = chars[i], s = el("span", c === "\n" ? "\u21b5" : c);
    s.i = i;
    spans[i] = s;
    frag.appendChild(s);
    if (c === "\n") { s.className = "nl"; frag.appendChild(document.createTextNode("\n")); }
  }
  box.appendChild(frag);

  // Controls
  const arraySel = $("array"), unitIn = $("unit"), modeSel = $("mode");
  D.arrays.forEach((A, a) => { const o = el("option", arrayName(a)); o.value = a; arraySel.appendChild(o); });
  let cur = { a: 0, u: 0 };
  const present = D.features.map((f) => f.present);

  function paint() {
    const A = D.arrays[cur.a], H = A.H;
    if (modeSel.value === "loss") {
      for (let i = 0; i < N; i++) {
        const l = loss[i];
        spans[i].style.backgroundColor = l === NO_LOSS ? "" : lossColour[Math.min(255, Math.round(255 * l / LOSS_MAX))];
      }
      $("lo").textContent = "0 nats";
      $("hi").textContent = "\u2265 5 nats";
      $("bar").style.background = "linear-gradient(to right, " + lossColour[0] + ", " + lossColour[255] + ")";
    } else {
      const q = arrayCodes(cur.a), off = cur.u * N;
      for (let i = 0; i < N; i++) spans[i].style.backgroundColor = actColour[q[off + i]];
      const s = A.scale ? A.scale[cur.u] : 1;
      $("lo").textContent = (-s).toPrecision(2);
      $("hi").textContent = "+" + s.toPrecision(2);
      $("bar").style.background = "linear-gradient(to right, " + actColour[1] + ", " + actColour[128] + ", " + actColour[255] + ")";
    }
    const info = $("unitinfo");
    info.textContent = "";
    const row = A.corr[cur.u], bits = [];
    D.features.forEach((f, j) => { if (present[j] && row[j] !== null) bits.push(f.name + " " + (row[j] >= 0 ? "+" : "") + row[j].toFixed(2)); });
    info.textContent = arrayName(cur.a) + ", unit " + cur.u + " of " + H + ": r with " + (bits.length ? bits.join(", ") : "no feature present in this text");
    document.querySelectorAll("#ranking li").forEach((li) => li.classList.toggle("sel", +li.dataset.a === cur.a && +li.dataset.u === cur.u));
  }
  function select(a, u) {
    const H = D.arrays[a].H;
    cur = { a: a, u: ((u % H) + H) % H };
    arraySel.value = String(a);
    unitIn.max = H - 1;
    unitIn.value = cur.u;
    paint();
  }
  arraySel.addEventListener("change", () => select(+arraySel.value, cur.u));
  unitIn.addEventListener("change", () => select(cur.a, Math.floor(+unitIn.value) || 0));
  $("prev").addEventListener("click", () => select(cur.a, cur.u - 1));
  $("next").addEventListener("click", () => select(cur.a, cur.u + 1));
  modeSel.addEventListener("change", paint);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight") select(cur.a, cur.u + 1);
    else if (e.key === "ArrowLeft") select(cur.a, cur.u - 1);
  });

  // Ranked units
  $("rankdoc").textContent = "Each unit's value over this text is correlated (Pearson r) with simple features of the text listed below; for each feature the " + D.per_feature + " units that follow it best are listed, all ordered by |r|. |r| near 1: the unit follows the feature closely; near 0: not at all. A high r says the unit goes with the feature here, not that this is all it does. Click one to colour the text by it.";
  const ol = $("ranking");
  if (!D.ranking.length) ol.appendChild(el("li", "none of the features occurs in this text"));
  D.ranking.forEach((p) => {
    const li = el("li");
    li.dataset.a = p.array;
    li.dataset.u = p.unit;
    li.appendChild(el("span", "L" + D.arrays[p.array].layer + " " + D.arrays[p.array].state + " unit " + p.unit + ": " + p.feature));
    li.appendChild(el("span", (p.r >= 0 ? "+" : "") + p.r.toFixed(2), "r"));
    li.addEventListener("click", () => { modeSel.value = "act"; select(p.array, p.unit); });
    ol.appendChild(li);
  });
  $("featdoc").textContent = D.features.map((f) => f.name + ": " + f.doc + (f.present ? "." : " (not in this text)."))
    .join(" ");

  // Tooltip: the character, the unit's value, its loss, the five likeliest next characters
  const tip = $("tip");
  let pinned = null, marked = null;
  function fmtP(p) { return (100 * p).toFixed(p < 0.001 ? 2 : 1) + "%"; }
  function show(i, x, y) {
    tip.textContent = "";
    const head = el("div");
    head.appendChild(el("span", shown(chars[i]), "ch"));
    head.appendChild(el("span", "  character " + (i + 1).toLocaleString("en") + " of " + N.toLocaleString("en"), "muted"));
    tip.appendChild(head);
    const A = D.arrays[cur.a], q = arrayCodes(cur.a)[cur.u * N + i];
    const v = (q - 128) / 127 * (A.scale ? A.scale[cur.u] : 1);
    tip.appendChild(el("div", "L" + A.layer + " " + A.state + " unit " + cur.u + ": " + (v >= 0 ? "+" : "") + v.toFixed(3)));
    const l = loss[i];
    tip.appendChild(el("div", l === NO_LOSS ? "loss: none (the first character; nothing predicted it)"
      : "loss here: " + (l / 1000).toFixed(3) + " nats (the model gave it " + fmtP(Math.exp(-l / 1000)) + ")"));
    tip.appendChild(el("div", "next character, the model's top " + K + ":", "muted"));
    const tb = el("table"), nextc = i + 1 < N ? chars[i + 1] : null;
    for (let k = 0; k < K; k++) {
      const c = D.vocab[topIdx[i * K + k]], p = topP[i * K + k] / 65535, tr = el("tr");
      tr.appendChild(el("td", shown(c), "c"));
      tr.appendChild(el("td", fmtP(p)));
      const bar = el("td"), b = el("span", undefined, "pbar");
      b.style.width = Math.max(1, Math.round(80 * p)) + "px";
      bar.appendChild(b);
      tr.appendChild(bar);
      if (c === nextc) tr.className = "hit";
      tb.appendChild(tr);
    }
    tip.appendChild(tb);
    if (nextc !== null) tip.appendChild(el("div", "actual next: " + shown(nextc), "muted"));
    tip.style.display = "block";
    const w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.max(4, Math.min(x + 14, window.innerWidth - w - 4)) + "px";
    tip.style.top = (y + 18 + h > window.innerHeight ? Math.max(4, y - h - 10) : y + 18) + "px";
    if (marked) marked.classList.remove("cur");
    marked = spans[i];
    marked.classList.add("cur");
  }
  function hide() { tip.style.display = "none"; if (marked) marked.classList.remove("cur"); marked = null; }
  box.addEventListener("mousemove", (e) => { if (pinned === null && e.target.i !== undefined) show(e.target.i, e.clientX, e.clientY); });
  box.addEventListener("mouseleave", () => { if (pinned === null) hide(); });
  box.addEventListener("click", (e) => {  // a tap pins the tooltip; a tap elsewhere unpins it
    if (e.target.i !== undefined && pinned !== e.target.i) { pinned = e.target.i; show(pinned, e.clientX, e.clientY); }
    else { pinned = null; hide(); }
  });
  function showAt(i) {  // beside character i wherever it is on screen
    const r = spans[i].getBoundingClientRect();
    show(i, r.left, r.bottom - 14);
  }
  box.addEventListener("scroll", () => { if (pinned !== null) showAt(pinned); });  // a pinned tooltip follows its character

  // Start at the best-ranked unit, or where the address says: #a=ARRAY&u=UNIT&mode=loss&tip=CHAR
  // (numbers only are read from it), so that a view can be linked to.
  const first = D.ranking.length ? D.ranking[0] : { array: 0, unit: 0 };
  const want = {};
  location.hash.slice(1).split("&").forEach((kv) => { const [k, v] = kv.split("="); want[k] = v; });
  const num = (v, lo, hi, dflt) => { const n = parseInt(v, 10); return n >= lo && n <= hi ? n : dflt; };
  if (want.mode === "loss") modeSel.value = "loss";
  const a0 = num(want.a, 0, D.arrays.length - 1, first.array);
  select(a0, num(want.u, 0, D.arrays[a0].H - 1, a0 === first.array ? first.unit : 0));
  const t0 = num(want.tip, 0, N - 1, -1);
  if (t0 >= 0) {
    box.scrollTop += spans[t0].getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4;
    pinned = t0;
    showAt(t0);
  }
  document.body.dataset.readyMs = Math.round(performance.now());  // time to a painted page, for measuring
})();
</script>
</body>
</html>
"""
