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
from typing import NamedTuple, TypeVar

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


PRIME_CHUNK = 256  # characters per ``forward`` when feeding a prime: long primes go as fast as training reads


def feed(params: Arrays, spec: M.ModelSpec, indices: Sequence[int] | Array, state: M.State,
         chunk: int = PRIME_CHUNK, prepared: dict | None = None) -> M.State:
    """Run the model over every index of ``indices`` from ``state``; the state after them.

    One ``forward`` over a (``chunk``, B) block at a time, the state carried from block to
    block: the same arithmetic as feeding the characters one by one (bitwise, as the cells'
    time loop steps one character at a time either way), at the speed of a chunk. The
    state's B streams all read the same indices.
    """
    n = len(indices)
    if n == 0:
        return state
    B = state[0][0].shape[0]
    if prepared is None:
        prepared = M.prepare(params, spec, B)
    flat = np.asarray(indices, dtype=np.int64)
    for start in range(0, n, chunk):
        X = np.repeat(flat[start:start + chunk].reshape(-1, 1), B, axis=1)
        _, state, _ = M.forward(params, spec, X, state, prepared=prepared)
    return state


def prime(params: Arrays, spec: M.ModelSpec, indices: Sequence[int] | Array,
          chunk: int = PRIME_CHUNK) -> M.State:
    """Run the model over ``indices`` (all but the last) from a zero state, ``chunk`` at a time.

    Returns the state after them; the last index is the first input of generation.
    Runs on the host (``params`` on a device are copied over).
    """
    params = to_host(params)
    state = M.zero_state(spec, 1, params["Why"].dtype)
    return feed(params, spec, indices[:-1], state, chunk)


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


def sample_rng(seed: int | np.random.SeedSequence | None, index: int = 0) -> np.random.Generator:
    """The generator of sample ``index`` of a ``charrnn sample --seed seed`` (None: fresh entropy).

    Sample 0 draws from ``np.random.default_rng(seed)``, what a single sample has always
    drawn from; sample i ≥ 1 from the i-th child of ``SeedSequence(seed)``,
    ``default_rng(SeedSequence(seed, spawn_key=(i,)))``. Each sample owning its generator is
    what lets N samples run as one batch and each be regenerated alone (``--sample-index i``).
    """
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    if index == 0:
        return np.random.default_rng(root)
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=tuple(root.spawn_key) + (index,)))


def generate_batch(params: Arrays, spec: M.ModelSpec, first: int, state: M.State, length: int,
                   rngs: Sequence[np.random.Generator], temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, greedy: bool = False) -> Iterator[Array]:
    """Yield ``length`` (B,) arrays of indices: B = ``len(rngs)`` samples generated at once.

    Each starts by feeding index ``first`` in ``state`` (one stream, (1, H) arrays, copied to
    every row) and draws from its own generator ``rngs[b]``, with one ``forward`` over all B
    streams per character. Row b draws what ``generate`` with ``rngs[b]`` alone draws: a
    row's arithmetic does not depend on the others, and its generator is its own.
    """
    params, state = to_host(params), to_host(state)
    B = len(rngs)
    state = [tuple(np.repeat(a, B, axis=0) for a in layer) for layer in state]
    index = np.full((1, B), first, dtype=np.int64)
    prepared = M.prepare(params, spec, B)
    for _ in range(length):
        logits, state, _ = M.forward(params, spec, index, state, prepared=prepared)
        index = next_indices(logits, rngs, temperature, top_k, top_p, greedy).reshape(1, B)
        yield index[0]


def next_indices(logits: Array, rngs: Sequence[np.random.Generator], temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, greedy: bool = False) -> Array:
    """``next_index`` for each row of ``logits`` (B, V), row b drawing with ``rngs[b]``: (B,) int64.

    Plain draws (no top-k or top-p) of several rows are computed for all rows at once: the
    same operations as ``probabilities`` and ``draw`` on each row (a reduction along a
    contiguous row sums in the same order as over a 1-D array; ``searchsorted(c, x, "right")``
    on a non-decreasing c is the count of entries <= x), so row b is what it would be alone.
    """
    if greedy or temperature == 0 or len(rngs) == 1 or top_k is not None or top_p is not None:
        return np.array([next_index(logits[b], rngs[b], temperature, top_k, top_p, greedy)
                         for b in range(len(rngs))], dtype=np.int64)
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):
        z = (z - z.max(axis=1, keepdims=True)) / temperature
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    c = np.cumsum(p, axis=1)
    u = np.array([rng.random() for rng in rngs]) * c[:, -1]
    out = np.minimum((c <= u[:, None]).sum(axis=1), p.shape[1] - 1)
    for b in np.flatnonzero(p[np.arange(len(out)), out] == 0):  # as draw: rounding put u past the end
        while p[b, out[b]] == 0:
            out[b] -= 1
    return out.astype(np.int64)


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
            rng: np.random.Generator | None = None, num_samples: int = 1, stop: str | None = None,
            temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
            seed: int | np.random.SeedSequence | None = None, first_index: int = 0) -> Iterator[str | bytes]:
    """What ``charrnn sample`` writes: each sample is the prime, then up to ``length`` symbols
    (ending early after ``stop``), then a line break; a line of 40 dashes separates samples.
    Every sample starts from the state after the prime.

    Sample i (counted from ``first_index``) draws from ``sample_rng(seed, i)``, or, for a
    single sample given ``rng`` (``num_samples`` 1), from ``rng``. One sample is written piece by piece as it is
    generated; several are generated as one batch (``generate_batch``) and written once all
    are done, each the same text as when generated alone.

    ``unit`` "bytes": the pieces are bytes (each symbol a byte; the prime, ``stop`` and the
    separators as UTF-8), otherwise str.
    """
    indices = start_indices(prime_text, vocab, unit)
    if unit == "bytes":
        symbol, out, join = (lambda v: bytes([v])), (lambda text: text.encode("utf-8")), b"".join
    else:
        symbol, out, join = chr, (lambda text: text), "".join
    stop = out(stop) if stop else None
    if rng is not None:
        if num_samples != 1:
            raise ValueError("samples: rng is one sample's generator; give seed for several samples")
        rngs = [rng]
    else:
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        rngs = [sample_rng(root, first_index + n) for n in range(num_samples)]
    state0 = prime(params, spec, indices)
    steps = generate_batch(params, spec, int(indices[-1]), state0, length, rngs, temperature, top_k, top_p, greedy)
    if len(rngs) == 1:  # streamed as it comes
        yield out(prime_text)
        yield from until((symbol(vocab[row[0]]) for row in steps), stop)
        yield out("\n")
        return
    texts: list[list] = [[] for _ in rngs]
    tails = [stop[:0] if stop else None for _ in rngs]
    done = [False] * len(rngs)
    for row in steps:
        for b, i in enumerate(row):
            if done[b]:
                continue
            piece = symbol(vocab[i])
            texts[b].append(piece)
            if stop:
                tails[b] = (tails[b] + piece)[-len(stop):]
                done[b] = tails[b] == stop
        if all(done):
            break
    for n, text in enumerate(texts):
        if n:
            yield out("\n" + "-" * 40 + "\n")
        yield out(prime_text)
        yield join(text)
        yield out("\n")


def symbols(indices: Iterable[int], vocab: np.ndarray, unit: str) -> str | bytes:
    """The text of ``indices``: str, or bytes for a model of bytes."""
    values = [int(vocab[i]) for i in indices]
    return bytes(values) if unit == "bytes" else "".join(map(chr, values))


class Beam(NamedTuple):
    indices: list[int]  # the continuation, after the prime
    log_prob: float  # its total log-probability given the prime, nats


def beam_search(params: Arrays, spec: M.ModelSpec, indices: Sequence[int] | Array, length: int,
                beam: int) -> Beam:
    """The most probable continuation of ``length`` characters after ``indices`` that a beam
    of width ``beam`` finds (exact for a beam of V^(length-1) or more; ``beam`` 1 is greedy).

    Each step feeds the last character of every beam as one batch, scores each beam's V
    extensions by total log-probability (float64 log-softmax), and keeps the ``beam`` best;
    ties go to the earlier beam, then the smaller index, so the result is deterministic.
    Runs on the host.
    """
    params = to_host(params)
    state = prime(params, spec, indices)
    prepared = M.prepare(params, spec, beam)  # valid for any batch size up to the beam
    V = params["Why"].shape[0]
    scores = np.zeros(1)
    steps = []  # per character: (the beam each kept one extends, its last index)
    last = np.array([int(indices[-1])], dtype=np.int64)
    for _ in range(length):
        logits, state, _ = M.forward(params, spec, last.reshape(1, -1), state, prepared=prepared)
        z = np.asarray(logits, dtype=np.float64)
        zmax = z.max(axis=1, keepdims=True)
        logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        cand = (scores[:, None] + logp).ravel()
        best = np.argsort(-cand, kind="stable")[:beam]
        origin, last = np.divmod(best, V)
        scores = cand[best]
        steps.append((origin, last))
        state = [tuple(a[origin] for a in layer) for layer in state]
    found, beam_at = [], 0  # back from the best beam, through the beams it extended
    for origin, chars in reversed(steps):
        found.append(int(chars[beam_at]))
        beam_at = int(origin[beam_at])
    return Beam(found[::-1], float(scores[0]))


class Session:
    """An interactive session (``charrnn sample --interactive``): text fed in, continuations out,
    the state carried through both from one exchange to the next.

    The settings (``length``, ``temperature``, ``top_k``, ``top_p``, ``greedy``, ``stop``) are
    attributes the caller may change between exchanges. The last symbol of what was fed or
    generated is held back as the next step's input, as ``prime`` holds the prime's.
    """

    def __init__(self, params: Arrays, spec: M.ModelSpec, vocab: np.ndarray, unit: str, rng: np.random.Generator,
                 length: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 greedy: bool = False, stop: str | None = None, prime_text: str = ""):
        self.params, self.spec, self.vocab, self.unit, self.rng = to_host(params), spec, vocab, unit, rng
        self.length, self.temperature, self.top_k, self.top_p = length, temperature, top_k, top_p
        self.greedy, self.stop = greedy, stop
        self.prepared = M.prepare(self.params, spec, 1)
        self.prime_text = prime_text
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to the state after the prime (or a line break)."""
        indices = start_indices(self.prime_text, self.vocab, self.unit)
        self.state = prime(self.params, self.spec, indices)
        self.pending = int(indices[-1])

    def feed(self, text: str) -> None:
        """Run the model over ``text`` (an unknown character: a one-line CharrnnError, nothing fed)."""
        indices = D.encode(text, self.vocab, self.unit)
        if len(indices):
            self.state = feed(self.params, self.spec, [self.pending, *indices[:-1]], self.state,
                              prepared=self.prepared)
            self.pending = int(indices[-1])

    def generate(self) -> str | bytes:
        """Up to ``length`` symbols from where the session is (ending early after ``stop``)."""
        out = []
        stop = (self.stop.encode("utf-8") if self.unit == "bytes" else self.stop) if self.stop else None
        for _ in range(self.length):
            logits, self.state = step(self.params, self.spec, self.pending, self.state, self.prepared)
            self.pending = next_index(logits, self.rng, self.temperature, self.top_k, self.top_p, self.greedy)
            out.append(self.pending)
            if stop and symbols(out[-len(stop):], self.vocab, self.unit) == stop:
                break
        return symbols(out, self.vocab, self.unit)
