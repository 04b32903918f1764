"""Generating text from a model, one character at a time.

    p = softmax(logits / temperature), restricted to the top k and/or the nucleus top p,
    next ~ p   (or argmax p, greedy)

Draws with one uniform number against the cumulative distribution (``np.random.choice``
costs several times more per call, and sampling is a per-character loop).

Sampling runs on the host, whatever device trained the weights: ``prime`` and ``generate``
copy device arrays to the host first (``device.to_host``; host arrays are used as they
are). One character at a time is a chain of tiny kernels on a GPU, each waiting for the
last (the next input is the draw from this output), so a GPU would be slower than the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from charrnn import data as D
from charrnn import model as M
from charrnn.device import Array, Arrays, to_host

T = TypeVar("T", str, bytes)


def step(params: Arrays, spec: M.ModelSpec, index: int, state: M.State,
         prepared: dict | None = None) -> tuple[Array, M.State]:
    """Feed one character through the model. Returns (logits (V,), new state).

    ``prepared``: ``model.prepare(params, spec, 1)``, when feeding many characters through the
    same weights (it holds transposed copies of them that would cost more than the step).
    """
    logits, state, _ = M.forward(params, spec, np.array([[index]]), state, prepared=prepared)
    return logits[0], state


def prime(params: Arrays, spec: M.ModelSpec, indices: Sequence[int] | Array) -> M.State:
    """Run the model over ``indices`` (all but the last) from a zero state.

    Returns the state after them; the last index is the first input of generation.
    Runs on the host (``params`` on a device are copied over).
    """
    params = to_host(params)
    state = M.zero_state(spec, 1, params["Why"].dtype)
    if len(indices) > 1:
        X = np.asarray(indices[:-1], dtype=np.int64).reshape(-1, 1)
        _, state, _ = M.forward(params, spec, X, state)
    return state


def probabilities(logits: Array, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Array:
    """The distribution to draw from, (V,) float64.

    softmax(logits / temperature); then, with ``top_k``, only the k most likely characters
    keep their probability; with ``top_p``, only the smallest set of most likely characters
    whose probability adds up to at least p (the nucleus; always at least one). The rest
    get 0 and the kept ones are renormalised.
    """
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):  # a tiny temperature sends all but the largest to -inf: p 0
        z = (z - z.max()) / temperature  # the largest is 0 before dividing, so never inf - inf
    p = np.exp(z)
    p /= p.sum()
    order = None
    if top_k is not None and top_k < len(p):
        order = np.argsort(-p, kind="stable")
        p = _keep(p, order[:top_k])  # exactly k, even with ties
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable") if order is None else order
        cum = np.cumsum(p[order])
        n = int(np.searchsorted(cum, top_p * cum[-1])) + 1  # smallest prefix reaching top_p
        p = _keep(p, order[:n])
    return p


def _keep(p, kept):
    """``p`` with everything but the indices ``kept`` set to 0, renormalised."""
    q = np.zeros_like(p)
    q[kept] = p[kept]
    return q / q.sum()


def draw(p: Array, rng: np.random.Generator) -> int:
    """One index drawn from distribution ``p``: the first whose cumulative sum passes u."""
    c = np.cumsum(p)
    i = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(p) - 1)
    while p[i] == 0:  # only when rounding put u at the very end, after zero-probability entries
        i -= 1
    return i


def next_index(logits: Array, rng: np.random.Generator, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False) -> int:
    """The next character: argmax when greedy (or temperature 0), else a draw."""
    if greedy or temperature == 0:
        return int(np.argmax(logits))
    return draw(probabilities(logits, temperature, top_k, top_p), rng)


def generate(params: Arrays, spec: M.ModelSpec, first: int, state: M.State, length: int, rng: np.random.Generator,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             greedy: bool = False) -> Iterator[int]:
    """Yield ``length`` character indices, starting by feeding index ``first`` in ``state``.

    The weights are read once, when the first index is asked for (``model.prepare``):
    changing ``params`` while iterating does not change this sample. Runs on the host
    (``params`` and ``state`` on a device are copied over).
    """
    params, state = to_host(params), to_host(state)
    index = first
    prepared = M.prepare(params, spec, 1)  # the weights do not change while generating
    for _ in range(length):
        logits, state = step(params, spec, index, state, prepared)
        index = next_index(logits, rng, temperature, top_k, top_p, greedy)
        yield index


def start_indices(prime_text: str | None, vocab: np.ndarray, unit: str = "chars") -> list[int]:
    """The indices a sample feeds first: the prime's (``data.encode``; an unknown character is
    a one-line CharrnnError), or with no prime, a line break's, as if the sample began a new
    line (it is not printed), or the first symbol's where the vocabulary has no line break."""
    if prime_text:
        return D.encode(prime_text, vocab, unit)
    nl = int(np.searchsorted(vocab, ord("\n")))
    return [nl if nl < len(vocab) and vocab[nl] == ord("\n") else 0]


def until(pieces: Iterable[T], stop: T | None) -> Iterator[T]:
    """``pieces`` (str or bytes) as they come, ending right after the ones produced end with
    ``stop`` (None or empty: all of them)."""
    produced = stop[:0] if stop else None
    for piece in pieces:
        yield piece
        if stop:
            produced = (produced + piece)[-len(stop):]
            if produced == stop:
                return


def samples(params: Arrays, spec: M.ModelSpec, vocab: np.ndarray, unit: str, prime_text: str, length: int,
            rng: np.random.Generator, num_samples: int = 1, stop: str | None = None, temperature: float = 1.0,
            top_k: int | None = None, top_p: float | None = None, greedy: bool = False) -> Iterator[str | bytes]:
    """What ``charrnn sample`` writes, piece by piece as it is generated: each sample is the
    prime, then up to ``length`` symbols (ending early after ``stop``), then a line break; a
    line of dashes separates samples. Every sample starts from the state after the prime.

    ``unit`` "bytes": the pieces are bytes (each symbol a byte; the prime, ``stop`` and the
    separators as UTF-8), otherwise str.
    """
    indices = start_indices(prime_text, vocab, unit)
    if unit == "bytes":
        symbol, out = (lambda v: bytes([v])), (lambda text: text.encode("utf-8"))
    else:
        symbol, out = chr, (lambda text: text)
    stop = out(stop) if stop else None
    state0 = prime(params, spec, indices)
    for n in range(num_samples):
        if n:
            yield out("\n" + "-" * 40 + "\n")
        yield out(prime_text)
        generated = (symbol(vocab[i]) for i in generate(params, spec, int(indices[-1]), state0, length, rng,
                                                        temperature, top_k, top_p, greedy))
        yield from until(generated, stop)
        yield out("\n")
