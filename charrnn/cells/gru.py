"""The GRU cell (Cho et al. 2014), as written in *循环神经网络* ("Recurrent neural networks",
study notes; docs/math.md lists the derivations).

    r_t = σ(W_r h_{t-1} + U_r x_t + b_r)               reset gate
    z_t = σ(W_z h_{t-1} + U_z x_t + b_z)               update gate
    h̃_t = tanh(W_h (r_t ⊙ h_{t-1}) + U_h x_t + b_h)    candidate
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t

Stored fused, row blocks in the order **r, z, h̃**: ``Wxh`` (3H, D) stacks the U's,
``Whh`` (3H, H) the W's, ``bh`` (3H,) the b's. A step takes two recurrent products: one
(B, H) @ (H, 2H) for r and z together, then the candidate's, which needs r first.

**Not torch.nn.GRU.** The reset gate here multiplies h_{t-1} *before* the recurrent
product (the original paper's form, and that of the notes). PyTorch (like cuDNN) applies it
*after*, and has a second bias inside: ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``.
The two cells compute different functions, so weights do not transfer between them, and
the tests check this cell against its equations written with torch operations instead.
The block order (r, z, h̃ here, r, z, n in torch) and the meaning of z (z → 1 keeps the
old state) are the same; only the candidate differs.

Backward, with ``dh = dhs[t] + dhnext`` (σ' = σ(1 - σ), tanh' = 1 - tanh²):

    daz    = dh ⊙ (h_{t-1} - h̃_t) ⊙ z(1 - z)
    dah̃    = dh ⊙ (1 - z) ⊙ (1 - h̃²)
    drh    = W_hᵀ dah̃                      (gradient at r ⊙ h_{t-1})
    dar    = drh ⊙ h_{t-1} ⊙ r(1 - r)
    dhnext = dh ⊙ z + drh ⊙ r + W_rzᵀ [dar, daz]
    dW_rz += [dar, daz] h_{t-1}ᵀ,  dW_h += dah̃ (r ⊙ h_{t-1})ᵀ   (after the loop)

With multiplicative integration (``xm`` given, see ``model.py``) each product is scaled
by its block of m_t before the input is added:

    r_t = σ(m_r ⊙ (W_r h_{t-1}) + U_r x_t + b_r),  z_t likewise with m_z,
    h̃_t = tanh(m_h ⊙ (W_h (r_t ⊙ h_{t-1})) + U_h x_t + b_h)

Backward, the gradient at each product is m ⊙ (its da) (it takes da's place in drh,
dhnext and dWhh), and ``dm = da ⊙ (the product)``.

With layer normalization (``norm=(gh,)``, see ``model.py`` and ``charrnn.layernorm``; Ba,
Kiros & Hinton 2016, "Layer Normalization") each recurrent term is normalized, block by
block, and scaled by its gain before the (already normalized) input part is added:

    [r, z]_t = σ(gh_rz ⊙ N(W_rz h_{t-1}) + xa_rz),   h̃_t = tanh(gh_h ⊙ N(W_h (r_t ⊙ h_{t-1})) + xa_h)

(N over each H-block; with multipliers too, N of m ⊙ (the product)). Backward, each
recurrent term's da passes through ``layernorm.backward`` (which gives dgh) before it
reaches the product, where it takes da's place as above.

Letters: T time steps, B streams, H hidden units. Row vectors: h is (B, H), so
``Whh h`` is written ``h @ Whh.T``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from charrnn import kernels, layernorm
from charrnn.device import Array, array_module

GATES = 3
STATE = ("h",)
NORM = {"gh": GATES}  # layer norm's parameters of the recurrent part (``norm``), each (k·H,)


class Cache(NamedTuple):
    hs: Array  # (T+1, B, H): hs[0] = h_{-1} (carried in), hs[t+1] = h_t
    rzs: Array  # (T, B, 2H): r, z
    hcs: Array  # (T, B, H): h̃
    rhs: Array  # (T, B, H): r_t ⊙ h_{t-1}, the candidate's recurrent input
    Whh: Array  # (3H, H)
    mrz: Array | None = None  # (T, B, 2H) multipliers of the r, z products (only with xm)
    mh: Array | None = None  # (T, B, H) multiplier of the candidate's product (only with xm)
    arz: Array | None = None  # (T, B, 2H) W_rz h_{t-1} (only with xm)
    ah: Array | None = None  # (T, B, H) W_h (r ⊙ h_{t-1}) (only with xm)
    lnrz: list | None = None  # per step: layernorm.Cache of the r, z recurrent terms (only with norm)
    lnh: list | None = None  # per step: layernorm.Cache of the candidate's recurrent term (only with norm)


def _sigmoid_(a, xp):
    """σ(a) in place, as 0.5 (1 + tanh(a/2)): never overflows, unlike 1 / (1 + exp(-a))."""
    a *= 0.5
    xp.tanh(a, out=a)
    a += 1
    a *= 0.5


def prepare(Whh: Array, batch_size: int) -> tuple[Array, Array]:
    """The two operands the time loop multiplies by: W_rzᵀ (H, 2H) and W_hᵀ (H, H).

    Contiguous copies of the transposes: BLAS multiplies by them ~10% faster than by
    transposed views at these sizes; they are made once per chunk, or once per
    ``sampling.generate`` (for any ``batch_size``).
    """
    H = Whh.shape[1]
    xp = array_module(Whh)
    return xp.ascontiguousarray(Whh[: 2 * H].T), xp.ascontiguousarray(Whh[2 * H :].T)


def _forward_gates(xp, rz, xa_t, hprev, rh):
    """The reset and update gates of one step (``kernels.gru_forward_gates`` in one kernel).

    rz : (B, 2H) holds W_rz h_{t-1} (⊙ m_rz) on entry and r, z on exit.
    xa_t : (B, 3H) U x_t + b.  hprev : (B, H) h_{t-1}.  rh : (B, H) receives r ⊙ h_{t-1}.
    """
    H = hprev.shape[1]
    rz += xa_t[:, : 2 * H]  # + U x_t + b
    _sigmoid_(rz, xp)  # r, z
    xp.multiply(rz[:, :H], hprev, out=rh)  # r ⊙ h_{t-1}


def _forward_state(xp, hc, xa_t, rz, hprev, h):
    """The candidate and the new state of one step (``kernels.gru_forward_state`` in one kernel).

    hc : (B, H) holds W_h (r ⊙ h_{t-1}) (⊙ m_h) on entry and h̃ on exit.
    xa_t : (B, 3H) U x_t + b.  rz : (B, 2H) r, z.  hprev : (B, H).  h : (B, H) receives h_t.
    """
    H = hprev.shape[1]
    hc += xa_t[:, 2 * H :]  # h̃ = tanh(W_h (r ⊙ h_{t-1}) + U_h x_t + b_h)
    xp.tanh(hc, out=hc)
    # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃, as h̃ + z ⊙ (h_{t-1} - h̃): one product fewer
    xp.subtract(hprev, hc, out=h)
    h *= rz[:, H:]
    h += hc


def forward(xa: Array, state0: tuple[Array, ...], Whh: Array, prepared: tuple[Array, Array] | None = None,
            xm: Array | None = None, norm: tuple[Array, ...] | None = None) -> tuple[Array, tuple[Array, ...], Cache]:
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, 3H) input pre-activations ``Wxh x_t + bh``, blocks r, z, h̃.
    xm : (T, B, 3H) multipliers m_t of multiplicative integration, or None.
    state0 : ``(h0,)`` with h0 (B, H), the state carried in from the previous chunk.
    Whh : (3H, H) recurrent weights.
    prepared : ``prepare(Whh, B)`` if the caller already has it (sampling reuses it for every
        character); None computes it here.
    norm : ``(gh,)`` with gh (3H,) the gains of layer normalization of the recurrent terms, or
        None (off).

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1},)``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    T, B, G = xa.shape
    H = G // GATES
    (h0,) = state0
    xp = array_module(xa)
    hs = xp.empty((T + 1, B, H), dtype=xa.dtype)
    # r, z and h̃ in separate buffers rather than one (T, B, 3H): every elementwise pass
    # then runs over contiguous memory instead of column slices (~20% faster forward).
    rzs = xp.empty((T, B, 2 * H), dtype=xa.dtype)
    hcs = xp.empty((T, B, H), dtype=xa.dtype)
    rhs = xp.empty((T, B, H), dtype=xa.dtype)
    hs[0] = h0
    WrzT, WhT = prepare(Whh, B) if prepared is None else prepared  # (H, 2H), (H, H)
    fused = kernels.fused(xp)
    gates = fused.gru_forward_gates if fused else functools.partial(_forward_gates, xp)
    new_state = fused.gru_forward_state if fused else functools.partial(_forward_state, xp)
    mi = xm is not None
    mrz = mh = arz = ah = None
    if mi:
        arz = xp.empty((T, B, 2 * H), dtype=xa.dtype)
        ah = xp.empty((T, B, H), dtype=xa.dtype)
        mrz = xp.ascontiguousarray(xm[:, :, : 2 * H])
        mh = xp.ascontiguousarray(xm[:, :, 2 * H :])
    lnrz = lnh = None
    if norm is not None:
        lnrz, lnh = [], []
        gh_rz, gh_h = norm[0][: 2 * H], norm[0][2 * H :]
    for t in range(T):
        rz, hc, hprev = rzs[t], hcs[t], hs[t]
        if mi:
            xp.dot(hprev, WrzT, out=arz[t])
            xp.multiply(arz[t], mrz[t], out=rz)
        else:
            xp.dot(hprev, WrzT, out=rz)  # W_r h_{t-1}, W_z h_{t-1} in one product
        if norm is not None:  # the recurrent term normalized before the kernels add the input's
            rz[...], c = layernorm.forward(rz, gh_rz, 2)
            lnrz.append(c)
        gates(rz, xa[t], hprev, rhs[t])  # r, z, and r ⊙ h_{t-1}
        if mi:
            xp.dot(rhs[t], WhT, out=ah[t])
            xp.multiply(ah[t], mh[t], out=hc)
        else:
            xp.dot(rhs[t], WhT, out=hc)  # W_h (r ⊙ h_{t-1})
        if norm is not None:
            hc[...], c = layernorm.forward(hc, gh_h, 1)
            lnh.append(c)
        new_state(hc, xa[t], rz, hprev, hs[t + 1])  # h̃ and h_t
    return hs[1:], (hs[T],), Cache(hs, rzs, hcs, rhs, Whh, mrz, mh, arz, ah, lnrz, lnh)


def _backward_state(xp, tmp, dhs_t, dhnext, hprev, hc, rz, dh, da):
    """Gradients through the interpolation of one step (``kernels.gru_backward_state``).

    dhs_t, dhnext : (B, H) the gradients reaching h_t from outside and from step t+1.
    hprev, hc : (B, H) h_{t-1}, h̃.  rz : (B, 2H) r, z.
    dh : (B, H) receives dhs_t + dhnext.  da : (B, 3H) receives daz and dah̃ in its z and h̃
    blocks.  tmp : (B, H) scratch.
    """
    H = dh.shape[1]
    z = rz[:, H:]
    daz, dahc = da[:, H : 2 * H], da[:, 2 * H :]
    xp.add(dhs_t, dhnext, out=dh)  # dh = dhs[t] + dhnext
    # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃
    xp.subtract(hprev, hc, out=daz)
    daz *= dh
    daz *= z
    daz *= 1 - z  # daz = dh ⊙ (h_{t-1} - h̃) ⊙ z(1 - z)
    xp.multiply(hc, hc, out=tmp)
    xp.subtract(1, tmp, out=tmp)
    xp.subtract(1, z, out=dahc)
    dahc *= dh
    dahc *= tmp  # dah̃ = dh ⊙ (1 - z) ⊙ (1 - h̃²)


def _backward_gates(xp, tmp, drh, hprev, dh, rz, da):
    """The reset gate's gradient and most of dhnext, of one step (``kernels.gru_backward_gates``).

    drh : (B, H) W_hᵀ dah̃, the gradient at r ⊙ h_{t-1}.  hprev, dh : (B, H).  rz : (B, 2H).
    da : (B, 3H) receives dar in its r block.  Returns ``dh ⊙ z + drh ⊙ r`` (B, H), a new
    array: dhnext before the W_rzᵀ [dar, daz] term.  tmp : (B, H) scratch.
    """
    H = dh.shape[1]
    r, z = rz[:, :H], rz[:, H:]
    dar = da[:, :H]
    xp.multiply(drh, hprev, out=dar)
    dar *= r
    dar *= 1 - r  # dar = drh ⊙ h_{t-1} ⊙ r(1 - r)
    # h_{t-1} reaches the loss through the interpolation, r ⊙ h_{t-1}, and r and z.
    dhnext = dh * z
    dhnext += xp.multiply(drh, r, out=tmp)
    return dhnext


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
    dxa : (T, B, 3H) gradient with respect to the pre-activations (blocks r, z, h̃),
        from which the caller gets dWxh, dbh and the gradient for the layer below.
    dWhh : (3H, H).
    dstate0 : ``(dh_{-1},)`` gradient with respect to the carried-in state.
    dxm : (T, B, 3H) gradient with respect to the multipliers ``xm``, or None without them.
    dnorm : ``(dgh,)`` (3H,) gradient with respect to ``norm``'s gains, or None without it.
    """
    hs, rzs, hcs, rhs, Whh, mrz, mh, arz, ah, lnrz, lnh = cache
    ln = lnrz is not None
    mi = mrz is not None
    T, B, H = dhs.shape
    xp = array_module(dhs)
    dxm = None
    if mi:
        grz, gh = xp.empty_like(arz), xp.empty_like(ah)  # m ⊙ da: the gradients at the products
        dxm = xp.empty((T, B, GATES * H), dtype=dhs.dtype)
    dnorm = None
    if ln:  # the gradients at the recurrent terms before normalization, and of the gains
        prz, ph = xp.empty((T, B, 2 * H), dtype=dhs.dtype), xp.empty((T, B, H), dtype=dhs.dtype)
        dgh = xp.zeros(GATES * H, dtype=dhs.dtype)
        dnorm = (dgh,)
    Wrz, Wh = Whh[: 2 * H], Whh[2 * H :]  # (2H, H), (H, H)
    dxa = xp.empty((T, B, GATES * H), dtype=dhs.dtype)
    dh = xp.empty((B, H), dtype=dhs.dtype)
    fused = kernels.fused(xp)
    if fused:
        through_state, through_gates = fused.gru_backward_state, fused.gru_backward_gates
    else:
        tmp = xp.empty((B, H), dtype=dhs.dtype)
        through_state = functools.partial(_backward_state, xp, tmp)
        through_gates = functools.partial(_backward_gates, xp, tmp)
    (dhnext,) = dstate
    for t in reversed(range(T)):
        da, hprev = dxa[t], hs[t]
        dahc = da[:, 2 * H :]
        through_state(dhs[t], dhnext, hprev, hcs[t], rzs[t], dh, da)  # dh; daz, dah̃
        qh = dahc  # the gradient at the candidate's recurrent term (before its normalization)
        if ln:
            ph[t], dg = layernorm.backward(dahc, lnh[t])
            dgh[2 * H :] += dg
            qh = ph[t]
        # h̃ = tanh(W_h (r ⊙ h_{t-1}) + ...)
        drh = (xp.multiply(qh, mh[t], out=gh[t]) if mi else qh) @ Wh  # W_hᵀ dah̃, in row form
        dhnext = through_gates(drh, hprev, dh, rzs[t], da)  # dar; dh ⊙ z + drh ⊙ r
        qrz = da[:, : 2 * H]
        if ln:
            prz[t], dg = layernorm.backward(qrz, lnrz[t])
            dgh[: 2 * H] += dg
            qrz = prz[t]
        dhnext += (xp.multiply(qrz, mrz[t], out=grz[t]) if mi else qrz) @ Wrz
        if mi:  # dm = da ⊙ (the product), here while da is in cache
            xp.multiply(qrz, arz[t], out=dxm[t, :, : 2 * H])
            xp.multiply(qh, ah[t], out=dxm[t, :, 2 * H :])
    TB = T * B
    # Σ_t of the outer products over all steps and streams: the r, z blocks saw
    # h_{t-1}, the candidate saw r ⊙ h_{t-1} (of da, or with multipliers of m ⊙ da).
    if mi:
        drz2, dhc2 = grz.reshape(TB, -1), gh.reshape(TB, -1)
    elif ln:
        drz2, dhc2 = prz.reshape(TB, -1), ph.reshape(TB, -1)
    else:
        dxa2 = dxa.reshape(TB, -1)
        drz2, dhc2 = dxa2[:, : 2 * H], dxa2[:, 2 * H :]
    dWhh = xp.empty_like(Whh)
    xp.matmul(drz2.T, hs[:-1].reshape(TB, -1), out=dWhh[: 2 * H])
    xp.matmul(dhc2.T, rhs.reshape(TB, -1), out=dWhh[2 * H :])
    return dxa, dWhh, (dhnext,), dxm, dnorm
