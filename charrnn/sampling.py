"""Generating text from a model, one character at a time.

    p = softmax(logits / temperature);  next ~ p

Draws with one uniform number against the cumulative distribution (``np.random.choice``
costs several times more per call, and sampling is a per-character loop).
"""

import numpy as np

from charrnn import model as M


def step(params, spec, index, state):
    """Feed one character through the model. Returns (logits (V,), new state)."""
    logits, state, _ = M.forward(params, spec, np.array([[index]]), state)
    return logits[0], state


def prime(params, spec, indices):
    """Run the model over ``indices`` (all but the last) from a zero state.

    Returns the state after them; the last index is the first input of generation.
    """
    state = M.zero_state(spec, 1, params["Why"].dtype)
    if len(indices) > 1:
        X = np.asarray(indices[:-1], dtype=np.int64).reshape(-1, 1)
        _, state, _ = M.forward(params, spec, X, state)
    return state


def probabilities(logits, temperature):
    """softmax(logits / temperature) in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max()
    e = np.exp(z)
    return e / e.sum()


def draw(p, rng):
    """One index drawn from distribution ``p``: the first whose cumulative sum passes u."""
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(p) - 1))


def generate(params, spec, first, state, length, rng, temperature=1.0):
    """Yield ``length`` character indices, starting by feeding index ``first`` in ``state``."""
    index = first
    for _ in range(length):
        logits, state = step(params, spec, index, state)
        index = draw(probabilities(logits, temperature), rng)
        yield index
