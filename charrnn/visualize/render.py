"""The page: a trace's numbers as one JSON document, inlined with the page's own files into
one self-contained HTML file.

The page is ``page.html``, ``page.css`` and ``page.js`` beside this module (package data,
read with ``importlib.resources``), joined into one file: no network, no external script,
font or style, so that it opens offline and can be mailed as it is. ``live.js`` follows
``page.js`` in the same script element: the model's forward pass over the document's weights. ``page.html`` holds four
markers, each once: ``__TITLE__``, ``__STYLE__`` (page.css), ``__DATA__`` (the JSON document)
and ``__SCRIPT__`` (page.js). They are replaced in one pass over the template, so that a
marker inside the text or a file name is never replaced in its turn.

Safety: the text is user data. It enters the page only inside a JSON document in a
``<script type="application/json">`` element, with ``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026`` (so ``</script>`` in the text cannot end the element), and the page's
script puts it on screen through ``textContent``, never as markup.

Size: activations are stored as 8-bit codes (``quantize``), unit-major, base64 in the JSON:
about 4/3 · N · H bytes per layer and state array, 6.8 MB for 10,000 characters of H = 512.

A model of bytes: the text is bytes, one cell per byte (``byte_cells``: a whole UTF-8
character on its first byte, an invalid byte as its escape), the vocabulary shown as
``byte_name`` gives it, and no live model (``BYTES_LIVE``).

Letters: N characters of text, H hidden units, V vocabulary, K predictions kept (5).
"""

import base64
import functools
import html
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources

import numpy as np

from charrnn import data as D
from charrnn import model as M
from charrnn.errors import CharrnnError, UsageError
from charrnn.visualize import weights
from charrnn.visualize.tracing import FEATURES, NO_LOSS, Trace, correlations, features, rank_units, trace

PAGE_FILES = ("page.html", "page.css", "page.js", "live.js")  # package data: pyproject.toml ships them in the wheel
_MARKER = re.compile(r"__(TITLE|STYLE|DATA|SCRIPT)__")


def quantize(a: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """8-bit codes of activations, unit-major: ``q = round(127 · a / scale) + 128``.

    a : (N, H); scale : (H,) the largest magnitude per unit (1 for h, which tanh bounds).
    Returns (H, N) uint8, each value within 0.5 / 127 · scale of the original; 128 is 0.
    """
    q = np.rint(np.asarray(a, dtype=np.float64) / scale * 127) + 128
    return np.clip(q, 1, 255).astype(np.uint8).T.copy()


def state_scale(a: np.ndarray, name: str, bounded_h: bool = True) -> np.ndarray:
    """Per-unit scale (H,) for ``quantize`` of a (N, H): 1 for h where the cell keeps it in [-1, 1]
    (rnn, lstm, gru: ``bounded_h``), else max |a| (c; the h of mingru and minlstm, which g leaves
    unbounded above: ``BOUNDED_H = False`` in their modules)."""
    if name == "h" and bounded_h:
        return np.ones(a.shape[1])
    m = np.abs(a).max(axis=0).astype(np.float64)
    return np.where(m > 0, m, 1.0)


def _b64(a, dtype):
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


CONTINUATION = "\u00b7"  # the cell of a byte that continues a character shown on its first byte


def byte_cells(raw: bytes) -> tuple[list[str], list[int], str]:
    """What each byte of ``raw`` shows on a page of a model of bytes.

    Returns (cells, starts, decoded): cells, one per byte, the character on the first byte of
    each whole UTF-8 character and ``CONTINUATION`` on its other bytes, an invalid byte (one
    that does not begin a whole, valid sequence) as its escape ``\\xe9``; starts, the byte
    offset of each character or invalid byte, then len(raw); decoded, those characters, an
    invalid byte as U+FFFD (what the features and Search read).
    """
    cells, starts, chars = [], [], []
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        size = 1 if b < 0x80 else 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        ch = None
        if size and i + size <= n:
            try:  # strict: no surrogates, no overlong forms
                ch = raw[i:i + size].decode("utf-8")
            except UnicodeDecodeError:
                ch = None
        starts.append(i)
        if ch is None:
            cells.append(f"\\x{b:02x}")
            chars.append("\ufffd")
            i += 1
        else:
            cells.append(ch)
            cells.extend([CONTINUATION] * (size - 1))
            chars.append(ch)
            i += size
    return cells, starts + [n], "".join(chars)


def byte_name(b: int) -> str:
    """A byte as the tooltip lists it: the character for printable ASCII (and tab, line break), else hex."""
    return chr(b) if 0x20 <= b < 0x7F or b in (9, 10) else f"0x{b:02x}"


def page_data(text: str | bytes, vocab: np.ndarray, tr: Trace, header: Mapping, per_feature: int = 3,
              bounded_h: bool = True) -> dict:
    """The JSON document the page reads: text, vocabulary, activations, predictions, ranking.

    text : the N characters ``tr`` was traced over (for a model of bytes: the N bytes, as
    bytes); vocab : (V,) code points (byte values); header : what the page's header shows
    (checkpoint, model, step, val_loss, source), copied into the document; bounded_h : whether
    the cell keeps h in [-1, 1] (its module's ``BOUNDED_H``, True when absent; see ``state_scale``).
    """
    extra = {}
    if isinstance(text, bytes):  # a model of bytes: one cell per byte, the features of its character
        cells, starts, decoded = byte_cells(text)
        owner = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
        feats = {k: v[owner] for k, v in features(decoded).items()}
        extra = {"unit": "bytes", "cells": cells, "char_start": starts,
                 "raw": _b64(np.frombuffer(text, np.uint8), np.uint8), "vocab_bytes": [int(b) for b in vocab]}
        shown_vocab = [byte_name(int(b)) for b in vocab]
        text = decoded
    else:
        feats = features(text)
        shown_vocab = [chr(c) for c in vocab]
    names = list(feats)
    corrs = {key: correlations(a, feats) for key, a in tr.arrays.items()}
    keys = list(tr.arrays)
    arrays = []
    for (layer, name), a in tr.arrays.items():
        scale = state_scale(a, name, bounded_h)
        arrays.append({
            "layer": layer + 1,
            "state": name,
            "H": int(a.shape[1]),
            "scale": None if name == "h" and bounded_h else [float(s) for s in scale],
            "q": _b64(quantize(a, scale), np.uint8),
            # rounded to 0.01: shown, not computed with
            "corr": [[None if np.isnan(v) else round(float(v), 2) for v in row] for row in corrs[(layer, name)]],
        })
    loss = np.where(np.isnan(tr.loss), NO_LOSS, np.minimum(np.rint(np.nan_to_num(tr.loss) * 1000), NO_LOSS - 1))
    small = len(vocab) <= 256
    return {
        **header,
        "text": text,
        **extra,
        "vocab": shown_vocab,
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


def json_for_script(obj: object) -> str:
    """JSON text that cannot end or break out of the ``<script>`` element holding it.

    ``<``, ``>`` and ``&`` are written as JSON's ``\\u003c``, ``\\u003e``, ``\\u0026``: the
    same string to ``JSON.parse``, but no ``</script>`` or ``<!--`` for the HTML parser to see.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def page_files() -> dict[str, str]:
    """The page's own files, name -> text, read once from the installed package."""
    here = resources.files("charrnn.visualize")
    return {name: here.joinpath(name).read_text(encoding="utf-8") for name in PAGE_FILES}


def page(data: dict) -> str:
    """The self-contained HTML page for ``page_data``'s document."""
    files = page_files()
    template = files["page.html"]
    found = _MARKER.findall(template)
    if sorted(found) != sorted(["TITLE", "STYLE", "DATA", "SCRIPT"]):
        raise RuntimeError(f"page.html: expected each of __TITLE__, __STYLE__, __DATA__, __SCRIPT__ once, "
                           f"found {found}")
    parts = {
        "TITLE": html.escape(f"charrnn visualize: {data.get('checkpoint', '')}"),
        "STYLE": files["page.css"],
        "DATA": json_for_script(data),
        "SCRIPT": files["page.js"] + files["live.js"],  # live.js: the model itself, when the document has it
    }
    # One pass over the template only: what is put in is not searched for markers again.
    return _MARKER.sub(lambda m: parts[m.group(1)], template)


def byte_indices(raw: bytes, vocab: np.ndarray) -> np.ndarray:
    """Indices of the bytes of ``raw`` in a model of bytes' ``vocab``; a CharrnnError lists
    the byte values it lacks (as ``data.encode`` does for a text)."""
    b = np.frombuffer(raw, np.uint8).astype(np.int32)
    idx = np.searchsorted(vocab, b)
    missing = np.unique(b[vocab[np.minimum(idx, len(vocab) - 1)] != b])
    if len(missing):
        raise CharrnnError(f"{len(missing)} byte value(s) not in the model's vocabulary: "
                           + ", ".join(f"0x{v:02x}" for v in missing))
    return idx.astype(D.index_dtype(len(vocab)))


BYTES_LIVE = ("a model of bytes: the live box reads a prime and writes characters, and a character may take "
              "several bytes; the page shows the traced bytes only")


def build(params: dict, spec: M.ModelSpec, vocab: np.ndarray, text: str | bytes, header: Mapping,
          layers: Iterable[int] | None = None, chunk: int = 256, context: str = "",
          weight_limit: int = weights.LIMIT) -> tuple[str, dict]:
    """Trace ``text`` and return the page's HTML and its data document.

    The document's ``live`` entry holds the weights for the page's own forward pass
    (``weights.pack``), or, above ``weight_limit`` bytes of float32 weights, why they are left out.

    vocab : (V,) code points; layers : layers counted from 1 to include (None: all);
    context : text read before ``text`` to warm the state up, not shown (``trace``'s warmup).
    For a model of bytes ``text`` and ``context`` are bytes, and the page has no live model
    (``BYTES_LIVE`` says why). Raises
    CharrnnError for a text shorter than 2 characters or with characters outside the
    vocabulary, UsageError for a layer the model does not have.
    """
    if len(text) < 2:
        raise CharrnnError("the text to visualize has fewer than 2 characters")
    if layers is not None:
        bad = [n for n in layers if not 1 <= n <= spec.layers]
        if bad:
            raise UsageError(f"--layers: layer {bad[0]} does not exist: the model has layers 1 to {spec.layers}")
        layers = sorted({n - 1 for n in layers})
    is_bytes = isinstance(text, bytes)
    try:
        indices = byte_indices(context + text, vocab) if is_bytes else D.encode(context + text, vocab)
    except CharrnnError as e:
        raise CharrnnError(f"{header.get('source', 'the text')}: {e}") from None
    tr = trace(params, spec, indices, layers, chunk, warmup=len(context))
    data = page_data(text, vocab, tr, header, bounded_h=getattr(spec.module, "BOUNDED_H", True))
    data["live"] = {"omitted": BYTES_LIVE} if is_bytes else weights.pack(params, spec, weight_limit)
    return page(data), data

