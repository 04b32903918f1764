"""Deterministic loss of a model on a text: nats and bits per character, perplexity.

The text is cut into B contiguous streams (like the training layout) and read T characters
at a time with the state carried, no dropout and no gradients, so every character is
predicted exactly once from everything before it in its stream. The same numbers come
out however often it runs, and the training loop's validation and ``charrnn eval`` are this
one function.
"""

import math
from typing import NamedTuple

import numpy as np

from charrnn import model as M


class EvalResult(NamedTuple):
    nats: float  # mean -log p per predicted character
    chars: int  # characters predicted

    @property
    def bits(self):
        return self.nats / math.log(2)

    @property
    def perplexity(self):
        return math.exp(self.nats)


def evaluate(params, spec, data, batch_size=32, seq_length=128, progress=None):
    """Mean negative log-likelihood of ``data`` (a 1-D index array) under the model.

    Predicts characters 1..N-1 from the ones before them, in ``batch_size`` streams of
    consecutive characters (each stream starts from a zero state), ``seq_length`` at a time.
    Each chunk of (T, B) inputs is gathered from ``data`` when it is needed, so memory does
    not grow with the text and ``data`` may be read from disk. ``progress``, if given, is
    called with the number of characters predicted after each chunk.
    """
    pairs = len(data) - 1
    if pairs < 1:
        raise ValueError("need at least two characters to evaluate")
    B = min(batch_size, pairs)
    L = -(-pairs // B)  # stream length, ceil(pairs / B); the last stream may be shorter
    starts = L * np.arange(B)  # (B,) first pair index of every stream
    state = M.zero_state(spec, B, params["Why"].dtype)
    prepared = M.prepare(params, spec, B)  # the weights do not change between chunks here
    total = 0.0
    for t0 in range(0, L, seq_length):
        idx = np.arange(t0, min(t0 + seq_length, L))[:, None] + starts[None, :]  # (T, B) pair index
        v = idx < pairs
        safe = np.where(v, idx, 0)
        x, y = data[safe], data[safe + 1]
        logits, state, _ = M.forward(params, spec, x, state, prepared=prepared)
        logp_y, _ = M.target_log_probs(logits, y.reshape(-1))
        total -= float(logp_y[v.reshape(-1)].sum(dtype=np.float64))
        if progress is not None:
            progress(int(v.sum()))
    return EvalResult(total / pairs, pairs)
