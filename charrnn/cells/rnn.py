"""The vanilla RNN cell of min-char-rnn.

Its forward pass and its backpropagation through time are derived in *RNN基本原理和手写实现*
("The basic principles of RNNs, and an implementation by hand") and *Learning RNN* (a
tutorial walking through min-char-rnn), batched as in *关于 RNN 循环神经网络的反向传播求导*
("On the derivatives of an RNN's backward pass"); docs/math.md lists these derivations.

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)

Backward, with ``dh`` the gradient arriving at h_t from the output layer (and from the
layer above) and ``dhnext`` the gradient flowing back from step t+1:

    dh     = dhs[t] + dhnext
    dhraw  = (1 - h_t²) ⊙ dh            (tanh' = 1 - tanh²)
    dWhh  += dhraw h_{t-1}ᵀ             (summed after the loop in one product)
    dhnext = Whhᵀ dhraw

With multiplicative integration (``xm`` given, see ``model.py``) the product is scaled by
m_t: ``h_t = tanh(m_t ⊙ (Whh h_{t-1}) + Wxh x_t + bh)``. Then the gradient at the product
is ``m_t ⊙ dhraw`` (it takes dhraw's place in dWhh and dhnext), and ``dm_t = dhraw ⊙ Whh h_{t-1}``.

With layer normalization (``norm=(gh,)``, see ``model.py`` and ``charrnn.layernorm``; Ba, Kiros
& Hinton 2016, "Layer Normalization"): ``h_t = tanh(gh ⊙ N(Whh h_{t-1}) + xa_t)``, xa_t coming
normalized from the model (N of m_t ⊙ (Whh h_{t-1}) with multipliers). Backward, dhraw passes
through ``layernorm.backward`` (giving dgh) before it reaches the product.

Letters: T time steps, B streams, H hidden units. Row vectors: h is (B, H), so
``Whh h`` is written ``h @ Whh.T``.
"""

from __future__ import annotations

from typing import NamedTuple

from charrnn import layernorm
from charrnn.device import Array, array_module

GATES = 1
STATE = ("h",)
NORM = {"gh": GATES}  # layer norm's gain of the recurrent part (``norm``), (H,)


class Cache(NamedTuple):
    hs: Array  # (T+1, B, H): hs[0] = h_{-1} (the carried state), hs[t+1] = h_t
    Whh: Array  # (H, H)
    xm: Array | None = None  # (T, B, H) multipliers m_t, or None
    rec: Array | None = None  # (T, B, H) Whh h_{t-1} before the multiplier (only with xm)
    lns: list | None = None  # per step: layernorm.Cache of the recurrent term (only with norm)


def prepare(Whh: Array, batch_size: int) -> Array:
    """Whhᵀ (H, H), the operand the time loop multiplies a (B, H) block of states by.

    For B > 1 a contiguous copy: BLAS multiplies by it 1.6× faster than by the transposed
    view at H = 512, B = 32, and the copy is made once per chunk. For one stream
    (min-char-rnn, sampling) the product is a matrix-vector one, as fast with the view, so
    no copy is worth making.
    """
    return Whh.T if batch_size == 1 else array_module(Whh).ascontiguousarray(Whh.T)


def forward(xa: Array, state0: tuple[Array, ...], Whh: Array, prepared: Array | None = None,
            xm: Array | None = None, norm: tuple[Array, ...] | None = None) -> tuple[Array, tuple[Array, ...], Cache]:
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, H) input pre-activations ``Wxh x_t + bh``.
    xm : (T, B, H) multipliers m_t of multiplicative integration, or None.
    state0 : ``(h0,)`` with h0 (B, H), the state carried in from the previous chunk.
    Whh : (H, H) recurrent weights.
    prepared : ``prepare(Whh, B)`` if the caller already has it (sampling reuses it for every
        character); None computes it here.
    norm : ``(gh,)`` with gh (H,) the gain of layer normalization of the recurrent term, or
        None (off).

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1},)``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    T = xa.shape[0]
    (h0,) = state0
    xp = array_module(xa)
    hs = xp.empty((T + 1,) + h0.shape, dtype=xa.dtype)
    hs[0] = h0
    WhhT = prepare(Whh, h0.shape[0]) if prepared is None else prepared
    # Local names, and dot rather than matmul (same BLAS call, less overhead per
    # call): at B = 1 the calls in this loop are most of the cost.
    dot, tanh = xp.dot, xp.tanh
    # Two loops rather than a test per step: at min-char-rnn's B = 1 the calls in this loop
    # are most of the cost, so the plain one is kept exactly as it was.
    if xm is None and norm is None:
        for t in range(T):
            h = hs[t + 1]
            dot(hs[t], WhhT, out=h)  # Whh h_{t-1}
            h += xa[t]  # + Wxh x_t + bh
            tanh(h, out=h)
        return hs[1:], (hs[T],), Cache(hs, Whh)
    rec = None if xm is None else xp.empty_like(xa)
    lns = None if norm is None else []
    for t in range(T):
        h = hs[t + 1]
        if xm is None:
            dot(hs[t], WhhT, out=h)  # Whh h_{t-1}
        else:
            dot(hs[t], WhhT, out=rec[t])  # Whh h_{t-1}
            xp.multiply(rec[t], xm[t], out=h)  # m_t ⊙ Whh h_{t-1}
        if norm is not None:
            h[...], c = layernorm.forward(h, norm[0], 1)  # gh ⊙ N(·)
            lns.append(c)
        h += xa[t]  # + Wxh x_t + bh
        tanh(h, out=h)
    return hs[1:], (hs[T],), Cache(hs, Whh, xm, rec, lns)


def backward(dhs: Array, dstate: tuple[Array, ...],
             cache: Cache) -> tuple[Array, Array, tuple[Array, ...], Array | None, tuple[Array, ...] | None]:
    """Backpropagate through the chunk, carrying ``dhnext`` from step t+1 to t.

    Parameters
    ----------
    dhs : (T, B, H) gradient of the loss with respect to each h_t from outside the
        recurrence (the output layer, or the layer above).
    dstate : ``(dh,)`` gradient with respect to the last state from after the chunk
        (zeros in truncated BPTT).
    cache : from ``forward``.

    Returns
    -------
    dxa : (T, B, H) gradient with respect to the pre-activations (``dhraw``), from which
        the caller gets dWxh, dbh and the gradient for the layer below.
    dWhh : (H, H).
    dstate0 : ``(dh_{-1},)`` gradient with respect to the carried-in state.
    dxm : (T, B, H) gradient with respect to the multipliers ``xm``, or None without them.
    dnorm : ``(dgh,)`` (H,) gradient with respect to ``norm``'s gain, or None without it.
    """
    hs, Whh, xm, rec, lns = cache
    T = dhs.shape[0]
    xp = array_module(dhs)
    # tanh' = 1 - h_t² for all steps at once: it does not depend on the recurrence.
    dxa = xp.multiply(hs[1:], hs[1:])
    xp.subtract(1, dxa, out=dxa)  # (T, B, H)
    (dhnext,) = dstate
    buf = xp.empty_like(dhs[0])  # dhnext lives here from the first step on
    dot, add = xp.dot, xp.add
    dnorm = None
    dpre = dxa  # the gradient at the recurrent term (before its normalization, with norm)
    if lns is not None:
        dpre = xp.empty_like(dxa)
        dnorm = (xp.zeros(dxa.shape[2], dtype=dxa.dtype),)
    # With multipliers, the gradient at the product Whh h_{t-1} is m_t ⊙ dhraw.
    drec = dpre if xm is None else xp.empty_like(dxa)
    for t in reversed(range(T)):
        dhraw = dxa[t]  # holds 1 - h_t² until overwritten here
        dhraw *= add(dhs[t], dhnext, out=buf)  # (1 - h_t²) ⊙ (dhs[t] + dhnext)
        if lns is not None:
            dpre[t], dg = layernorm.backward(dhraw, lns[t])
            dnorm[0][...] += dg
        if xm is not None:
            xp.multiply(dpre[t], xm[t], out=drec[t])
        dhnext = dot(drec[t], Whh, out=buf)  # Whhᵀ dhraw, in row form
    TB = dxa.shape[0] * dxa.shape[1]
    # Σ_t dhraw_t h_{t-1}ᵀ over all steps and streams in one product.
    dWhh = drec.reshape(TB, -1).T @ hs[:-1].reshape(TB, -1)
    dxm = None if xm is None else dpre * rec  # dm_t = dhraw ⊙ Whh h_{t-1}
    return dxa, dWhh, (dhnext,), dxm, dnorm
