"""Gradient clipping and optimizers, on name-keyed dicts of arrays, updating in place.

An optimizer's state is a plain dict of arrays keyed ``"<slot>.<param>"`` (e.g.
``"mem.Wxh"``), created by ``init_state`` and passed in to every ``update``: it is saved
in checkpoints as it is, so a resumed run continues exactly.
"""

import numpy as np


def clip_by_value(grads, limit):
    """min-char-rnn's clipping: every element into [-limit, limit], in place."""
    for g in grads.values():
        np.clip(g, -limit, limit, out=g)


def global_norm(grads):
    """sqrt(Σ ‖g‖²) over all gradients, accumulated in float64."""
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_by_norm(grads, max_norm):
    """Scale all gradients together so their global norm is at most ``max_norm``.

    Returns the norm before clipping.
    """
    norm = global_norm(grads)
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= g.dtype.type(scale)
    return norm


class Adagrad:
    """min-char-rnn's update, exactly::

        mem   += g²
        param -= lr · g / sqrt(mem + eps)
    """

    slots = ("mem",)

    def __init__(self, eps=1e-8):
        self.eps = eps

    def init_state(self, params):
        return {f"mem.{k}": np.zeros_like(p) for k, p in params.items()}

    def update(self, params, grads, state, lr):
        eps = self.eps
        for k, p in params.items():
            g, mem = grads[k], state[f"mem.{k}"]
            mem += g * g
            p += -lr * g / np.sqrt(mem + eps)


def from_config(ocfg):
    """The optimizer named by an ``optim`` config section (any object with its attributes)."""
    if ocfg.name == "adagrad":
        return Adagrad(eps=ocfg.eps)
    raise ValueError(f"unknown optimizer {ocfg.name!r}")
