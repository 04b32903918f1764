"""Run a model over a text and find the units worth a look (the numbers behind the page).

``trace`` runs the model over a text with ``model.forward``, chunk by chunk with the state
carried (exactly as ``charrnn eval`` reads a stream), and keeps from the cells' own caches
what each layer computed at every character: h, and for the LSTM the cell state c. Nothing
here recomputes a cell's equations. ``features``, ``correlations`` and ``rank_units`` pick
units worth a look by how well they follow simple properties of the text. ``sample_text``
is the text ``charrnn sample`` would print, for a page over the model's own writing.

Letters: N characters of text, H hidden units, V vocabulary, K predictions kept (5), F features.
"""

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from charrnn import model as M
from charrnn import sampling

TOP_K = 5
NO_LOSS = 65535  # the loss code of the first character: nothing predicted it


class Trace(NamedTuple):
    arrays: dict  # (layer, state name) -> (N, H) value after reading each character
    top_idx: np.ndarray  # (N, K) vocabulary indices of the K likeliest next characters, likeliest first
    top_p: np.ndarray  # (N, K) their probabilities
    loss: np.ndarray  # (N,) -log p of each character given the ones before it (nan for the first)


def trace(params: dict, spec: M.ModelSpec, indices: Sequence[int], layers: Iterable[int] | None = None,
          chunk: int = 256, k: int = TOP_K, warmup: int = 0) -> Trace:
    """Run the model over ``indices`` from a zero state and record what it computed.

    Parameters
    ----------
    params, spec : the weights (``checkpoint.weights``) and their ModelSpec.
    indices : (N,) character indices, N ≥ 1.
    layers : the layers (from 0) whose states to keep; None: all.
    chunk : characters per ``model.forward`` call; the state is carried between calls, so
        the result does not depend on it (a test checks that).
    warmup : the first ``warmup`` indices are read only to bring the state up to them (the
        context before the shown text): the Trace covers the rest, and its first loss is
        then a real one (what the context predicted), not nan.

    Returns a ``Trace``. ``arrays[(l, name)][t]`` is the state array ``name`` (``"h"``, or
    ``"c"`` for the LSTM) of layer l after reading character t, taken from the cell's cache
    (``hs``, ``cs``); ``top_*[t]`` are the predictions for character t+1 made from it.
    """
    X = np.asarray(indices, dtype=np.int64)
    N = len(X)
    layers = range(spec.layers) if layers is None else layers
    dtype = params["Why"].dtype
    k = min(k, spec.vocab_size)
    arrays = {(layer, name): np.empty((N, spec.hidden_size), dtype=dtype)
              for layer in layers for name in spec.module.STATE}
    top_idx = np.empty((N, k), dtype=np.int64)
    top_p = np.empty((N, k), dtype=np.float64)
    logp_next = np.empty(N, dtype=np.float64)  # log p of character t+1 (the last one: unused)
    state = M.zero_state(spec, 1, dtype)
    prepared = M.prepare(params, spec, 1)  # the weights do not change between chunks
    Y = np.append(X[1:], 0)  # targets; the last character has none (a placeholder)
    for t0 in range(0, N, chunk):
        x = X[t0:t0 + chunk]
        logits, state, cache = M.forward(params, spec, x[:, None], state, prepared=prepared)
        for (layer, name), a in arrays.items():
            # the cell caches hold the state before the chunk at [0], after character t at [t+1]
            a[t0:t0 + len(x)] = getattr(cache.cell_caches[layer], name + "s")[1:, 0]
        logp, probs = M.target_log_probs(logits, Y[t0:t0 + len(x)])
        logp_next[t0:t0 + len(x)] = logp
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        top_idx[t0:t0 + len(x)] = order
        top_p[t0:t0 + len(x)] = np.take_along_axis(probs, order, axis=1)
    loss = np.concatenate([[np.nan], -logp_next[:-1]])
    if warmup:  # the context is read like the rest (the same chunks, the same state), then left out
        return Trace({key: a[warmup:] for key, a in arrays.items()}, top_idx[warmup:], top_p[warmup:], loss[warmup:])
    return Trace(arrays, top_idx, top_p, loss)


# Simple properties of the text at each character, for finding units that follow them.
# Each is a function of the characters up to and including t (what the model has read).
FEATURES = {
    "inside quotes": "1 from a double quote to the next one, both quotes included, else 0",
    "inside brackets": "1 inside (...) or [...], the brackets included, else 0; "
                       "Shakespeare's stage directions are in [...]",
    "position in line": "characters since the last line break",
    "position in word": "letters since the word began; 0 outside words",
    "line in capitals": "1 while the line so far has letters and all are capitals (a speaker's name: ROMEO.), else 0",
}


def features(text: str) -> dict[str, np.ndarray]:
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


def correlations(a: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
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


def rank_units(corrs: dict[tuple[int, str], np.ndarray], names: Sequence[str], per_feature: int = 3) -> list[Pick]:
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


def sample_text(params: dict, spec: M.ModelSpec, vocab: np.ndarray, prime_indices: Sequence[int], length: int,
                rng: np.random.Generator, temperature: float, unit: str = "chars") -> str | bytes:
    """The prime followed by ``length`` characters sampled from the model, as a string (for
    the unit "bytes": the prime's bytes and ``length`` bytes, as bytes)."""
    state0 = sampling.prime(params, spec, prime_indices)
    drawn = sampling.generate(params, spec, int(prime_indices[-1]), state0, length, rng, temperature)
    if unit == "bytes":
        return bytes(vocab[np.concatenate([np.asarray(prime_indices, np.int64), np.fromiter(drawn, np.int64)])]
                     .astype(np.uint8))
    return "".join(chr(vocab[i]) for i in prime_indices) + "".join(chr(vocab[i]) for i in drawn)
