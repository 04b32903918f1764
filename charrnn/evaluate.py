"""Deterministic loss of a model on a text: nats and bits per character, perplexity.

The text is cut into B contiguous streams (like the training layout) and read T characters
at a time with the state carried, no dropout and no gradients, so every character is
predicted exactly once from everything before it in its stream. The same numbers come
out however often it runs, and the training loop's validation and ``charrnn eval`` are this
one function.

It runs where the parameters are (``charrnn.device``): the text's index arrays are copied
to the device once, and the loss is read back once, at the end.

Under MPI (``charrnn.distributed``) every process evaluates a contiguous part of the
streams and their sums are added: the same number as one process, to rounding (the
partial sums are float64; the result agrees to about 1e-15 relative in float64, and to
the float32 rounding of the forward pass, about 1e-7, in float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from charrnn import model as M
from charrnn.device import Array, Arrays, array_module
from charrnn.distributed import SINGLE, Ranks, Single


class EvalResult(NamedTuple):
    nats: float  # mean -log p per predicted character
    chars: int  # characters predicted

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats)


def evaluate(params: Arrays, spec: M.ModelSpec, data: Array, batch_size: int = 32, seq_length: int = 128,
             progress: Callable[[int], object] | None = None, comm: Single | Ranks = SINGLE) -> EvalResult:
    """Mean negative log-likelihood of ``data`` (a 1-D index array) under the model.

    Predicts characters 1..N-1 from the ones before them, in ``batch_size`` streams of
    consecutive characters (each stream starts from a zero state), ``seq_length`` at a time.
    ``data`` is a host array (or an index file read from disk): each chunk of (T, B) inputs is
    gathered from it when it is needed, so memory does not grow with the text; the work runs on
    the parameters' device. ``progress``, if given, is called with the number of characters
    predicted after each chunk.
    comm : the processes sharing the work (``charrnn.distributed``; SINGLE: this one alone):
        each takes its part of the streams (``comm.span``) and ``comm.total`` adds the sums.
    """
    pairs = len(data) - 1
    if pairs < 1:
        raise ValueError("need at least two characters to evaluate")
    B = min(batch_size, pairs)
    L = -(-pairs // B)  # stream length, ceil(pairs / B); the last stream may be shorter
    starts = (L * np.arange(B))[comm.span(B)]  # first pair index of this process's streams (all, in one)
    xp = array_module(params["Why"])
    state = M.zero_state(spec, len(starts), params["Why"].dtype, xp)
    prepared = M.prepare(params, spec, len(starts))  # the weights do not change between chunks here
    total = 0.0  # a float64 scalar, on the device with CuPy: read once, after the loop
    chunks = range(0, L, seq_length) if len(starts) else ()  # a short text may leave a process no stream
    for t0 in chunks:
        idx = np.arange(t0, min(t0 + seq_length, L))[:, None] + starts[None, :]  # (T, B) pair index
        v = idx < pairs
        safe = np.where(v, idx, 0)
        x, y = xp.asarray(data[safe]), xp.asarray(data[safe + 1])  # (T, B) indices, to the device
        logits, state, _ = M.forward(params, spec, x, state, prepared=prepared)
        logp_y, _ = M.target_log_probs(logits, y.reshape(-1))
        # The valid positions, as indices found on the host (a boolean mask would make the
        # device report how many it selected, a wait per chunk): the same values in the same
        # order as the mask selects.
        total -= logp_y[xp.asarray(np.flatnonzero(v))].sum(dtype=np.float64)
        if progress is not None:
            progress(int(v.sum()))
    total = comm.total(float(total))  # the sum over the processes
    return EvalResult(total / pairs, pairs)
