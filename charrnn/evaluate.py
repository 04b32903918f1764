"""Deterministic loss of a model on a text: nats and bits per character, perplexity.

The text is cut into B contiguous streams (like the training layout) and read T characters
at a time with the state carried, no dropout and no gradients, so every character is
predicted exactly once from everything before it in its stream. The same numbers come
out however often it runs, and the training loop's validation and ``charrnn eval`` are this
one function.

It runs where the parameters are (``charrnn.device``): the text's index arrays are copied
to the device once, and the loss is read back once, at the end.
"""

import math
from typing import NamedTuple

import numpy as np

from charrnn import model as M
from charrnn.device import array_module


class EvalResult(NamedTuple):
    nats: float  # mean -log p per predicted character
    chars: int  # characters predicted

    @property
    def bits(self):
        return self.nats / math.log(2)

    @property
    def perplexity(self):
        return math.exp(self.nats)


def evaluate(params, spec, data, batch_size=32, seq_length=128):
    """Mean negative log-likelihood of ``data`` (a 1-D index array) under the model.

    Predicts characters 1..N-1 from the ones before them, in ``batch_size`` streams of
    consecutive characters (each stream starts from a zero state), ``seq_length`` at a time.
    ``data`` is a host array; the work runs on the parameters' device.
    """
    pairs = len(data) - 1
    if pairs < 1:
        raise ValueError("need at least two characters to evaluate")
    B = min(batch_size, pairs)
    L = -(-pairs // B)  # stream length, ceil(pairs / B); the last stream may be shorter
    idx = np.arange(L)[:, None] + L * np.arange(B)[None, :]  # (L, B) pair index
    valid = idx < pairs
    safe = np.where(valid, idx, 0)
    xp = array_module(params["Why"])
    X, Y = xp.asarray(data[safe]), xp.asarray(data[safe + 1])
    state = M.zero_state(spec, B, params["Why"].dtype, xp)
    prepared = M.prepare(params, spec, B)  # the weights do not change between chunks here
    total = 0.0  # a float64 scalar, on the device with CuPy: read once, after the loop
    for t0 in range(0, L, seq_length):
        x, y, v = X[t0:t0 + seq_length], Y[t0:t0 + seq_length], valid[t0:t0 + seq_length]
        logits, state, _ = M.forward(params, spec, x, state, prepared=prepared)
        logp_y, _ = M.target_log_probs(logits, y.reshape(-1))
        # The valid positions, as indices found on the host (a boolean mask would make the
        # device report how many it selected, a wait per chunk): the same values in the same
        # order as the mask selects.
        total -= logp_y[xp.asarray(np.flatnonzero(v))].sum(dtype=np.float64)
    return EvalResult(float(total) / pairs, pairs)
