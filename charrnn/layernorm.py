"""Layer normalization of gate blocks (Ba, Kiros & Hinton 2016, "Layer Normalization").

A pre-activation row of G·H values holds G gate blocks of H units; each block is normalized
over its own H units and scaled by a gain (no bias: the cell's ``bh`` is the one bias):

    N(a)_k = (a_k - μ) / sqrt(σ² + ε)        μ, σ² the mean and variance of a_k's block of H
    y      = gain ⊙ N(a)                     gain (G·H,)

ε = 1e-5 inside the square root, as torch's ``LayerNorm``. Backward, with n = N(a),
dn = gain ⊙ dy and ⟨·⟩ the mean over the block:

    da    = (dn - ⟨dn⟩ - n ⊙ ⟨dn ⊙ n⟩) / sqrt(σ² + ε)
    dgain = Σ_rows dy ⊙ n

Shapes: ``a`` is (..., G·H), any number of leading axes (N rows: the (V, G·H) input table,
T·B positions, or one step's B streams). The array module comes from ``a``.
"""

from __future__ import annotations

from typing import NamedTuple

from charrnn.device import Array, array_module

EPS = 1e-5


class Cache(NamedTuple):
    n: Array  # (..., G·H) the normalized values N(a)
    rstd: Array  # (..., G, 1) 1 / sqrt(σ² + ε) of each block
    gain: Array  # (G·H,)
    blocks: int  # G


def forward(a: Array, gain: Array, blocks: int, eps: float = EPS) -> tuple[Array, Cache]:
    """``gain ⊙ N(a)``, each of the ``blocks`` blocks of a's last axis normalized on its own.

    a : (..., G·H); gain : (G·H,); blocks : G. Returns (y (..., G·H), cache).
    """
    xp = array_module(a)
    shape = a.shape
    ab = a.reshape(*shape[:-1], blocks, shape[-1] // blocks)  # (..., G, H)
    xc = ab - ab.mean(axis=-1, keepdims=True)
    rstd = 1 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    n = (xc * rstd).reshape(shape)
    return n * gain, Cache(n, rstd, gain, blocks)


def backward(dy: Array, cache: Cache) -> tuple[Array, Array]:
    """Gradients of ``forward``: (da (..., G·H), dgain (G·H,), summed over all rows)."""
    n, rstd, gain, blocks = cache
    shape = dy.shape
    dgain = (dy * n).reshape(-1, shape[-1]).sum(axis=0)
    H = shape[-1] // blocks
    dn = (dy * gain).reshape(*shape[:-1], blocks, H)
    nb = n.reshape(*shape[:-1], blocks, H)
    da = (dn - dn.mean(axis=-1, keepdims=True) - nb * (dn * nb).mean(axis=-1, keepdims=True)) * rstd
    return da.reshape(shape), dgain
