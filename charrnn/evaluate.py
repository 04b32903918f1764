"""Deterministic loss of a model on a text: nats and bits per character, perplexity.

The text is cut into B contiguous streams (like the training layout) and read T characters
at a time with the state carried, no dropout and no gradients, so every character is
predicted exactly once from everything before it in its stream. The same numbers come
out however often it runs, and the training loop's validation and ``charrnn eval`` are this
one function.

Under MPI (``charrnn.distributed``) every process evaluates a contiguous part of the
streams and their sums are added: the same number as one process, to rounding (the
partial sums are float64; the result agrees to about 1e-15 relative in float64, and to
the float32 rounding of the forward pass, about 1e-7, in float32).
"""

import math
from typing import NamedTuple

import numpy as np

from charrnn import model as M
from charrnn.distributed import SINGLE


class EvalResult(NamedTuple):
    nats: float  # mean -log p per predicted character
    chars: int  # characters predicted

    @property
    def bits(self):
        return self.nats / math.log(2)

    @property
    def perplexity(self):
        return math.exp(self.nats)


def evaluate(params, spec, data, batch_size=32, seq_length=128, comm=SINGLE):
    """Mean negative log-likelihood of ``data`` (a 1-D index array) under the model.

    Predicts characters 1..N-1 from the ones before them, in ``batch_size`` streams of
    consecutive characters (each stream starts from a zero state), ``seq_length`` at a time.
    comm : the processes sharing the work (``charrnn.distributed``; SINGLE: this one alone):
        each takes its part of the streams (``comm.span``) and ``comm.total`` adds the sums.
    """
    pairs = len(data) - 1
    if pairs < 1:
        raise ValueError("need at least two characters to evaluate")
    B = min(batch_size, pairs)
    L = -(-pairs // B)  # stream length, ceil(pairs / B); the last stream may be shorter
    idx = np.arange(L)[:, None] + L * np.arange(B)[None, :]  # (L, B) pair index
    idx = idx[:, comm.span(B)]  # this process's streams (all of them in one process)
    valid = idx < pairs
    safe = np.where(valid, idx, 0)
    X, Y = data[safe], data[safe + 1]
    state = M.zero_state(spec, idx.shape[1], params["Why"].dtype)
    prepared = M.prepare(params, spec, idx.shape[1])  # the weights do not change between chunks here
    total = 0.0
    chunks = range(0, L, seq_length) if idx.shape[1] else ()  # a short text may leave a process no stream
    for t0 in chunks:
        x, y, v = X[t0:t0 + seq_length], Y[t0:t0 + seq_length], valid[t0:t0 + seq_length]
        logits, state, _ = M.forward(params, spec, x, state, prepared=prepared)
        logp_y, _ = M.target_log_probs(logits, y.reshape(-1))
        total -= float(logp_y[v.reshape(-1)].sum(dtype=np.float64))
    total = comm.total(total)  # the sum over the processes
    return EvalResult(total / pairs, pairs)
