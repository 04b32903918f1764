"""The GRU cell (Cho et al. 2014), as written in seed 001.

    r_t = σ(W_r h_{t-1} + U_r x_t + b_r)               reset gate
    z_t = σ(W_z h_{t-1} + U_z x_t + b_z)               update gate
    h̃_t = tanh(W_h (r_t ⊙ h_{t-1}) + U_h x_t + b_h)    candidate
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t

Stored fused, row blocks in the order **r, z, h̃**: ``Wxh`` (3H, D) stacks the U's,
``Whh`` (3H, H) the W's, ``bh`` (3H,) the b's. A step takes two recurrent products: one
(B, H) @ (H, 2H) for r and z together, then the candidate's, which needs r first.

**Not torch.nn.GRU.** The reset gate here multiplies h_{t-1} *before* the recurrent
product (the original paper's form, and the seed's). PyTorch (like cuDNN) applies it
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

Letters: T time steps, B streams, H hidden units. Row vectors: h is (B, H), so
``Whh h`` is written ``h @ Whh.T``.
"""

from typing import NamedTuple

import numpy as np

GATES = 3
STATE = ("h",)


class Cache(NamedTuple):
    hs: np.ndarray  # (T+1, B, H): hs[0] = h_{-1} (carried in), hs[t+1] = h_t
    rzs: np.ndarray  # (T, B, 2H): r, z
    hcs: np.ndarray  # (T, B, H): h̃
    rhs: np.ndarray  # (T, B, H): r_t ⊙ h_{t-1}, the candidate's recurrent input
    Whh: np.ndarray  # (3H, H)
    mrz: np.ndarray = None  # (T, B, 2H) multipliers of the r, z products (only with xm)
    mh: np.ndarray = None  # (T, B, H) multiplier of the candidate's product (only with xm)
    arz: np.ndarray = None  # (T, B, 2H) W_rz h_{t-1} (only with xm)
    ah: np.ndarray = None  # (T, B, H) W_h (r ⊙ h_{t-1}) (only with xm)


def _sigmoid_(a):
    """σ(a) in place, as 0.5 (1 + tanh(a/2)): never overflows, unlike 1 / (1 + exp(-a))."""
    a *= 0.5
    np.tanh(a, out=a)
    a += 1
    a *= 0.5


def prepare(Whh, batch_size):
    """The two operands the time loop multiplies by: W_rzᵀ (H, 2H) and W_hᵀ (H, H).

    Contiguous copies of the transposes: BLAS multiplies by them ~10% faster than by
    transposed views at these sizes; they are made once per chunk, or once per
    ``sampling.generate`` (for any ``batch_size``).
    """
    H = Whh.shape[1]
    return np.ascontiguousarray(Whh[: 2 * H].T), np.ascontiguousarray(Whh[2 * H :].T)


def forward(xa, state0, Whh, prepared=None, xm=None):
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, 3H) input pre-activations ``Wxh x_t + bh``, blocks r, z, h̃.
    xm : (T, B, 3H) multipliers m_t of multiplicative integration, or None.
    state0 : ``(h0,)`` with h0 (B, H), the state carried in from the previous chunk.
    Whh : (3H, H) recurrent weights.
    prepared : ``prepare(Whh, B)`` if the caller already has it (sampling reuses it for every
        character); None computes it here.

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1},)``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    T, B, G = xa.shape
    H = G // GATES
    (h0,) = state0
    hs = np.empty((T + 1, B, H), dtype=xa.dtype)
    # r, z and h̃ in separate buffers rather than one (T, B, 3H): every elementwise pass
    # then runs over contiguous memory instead of column slices (~20% faster forward).
    rzs = np.empty((T, B, 2 * H), dtype=xa.dtype)
    hcs = np.empty((T, B, H), dtype=xa.dtype)
    rhs = np.empty((T, B, H), dtype=xa.dtype)
    hs[0] = h0
    WrzT, WhT = prepare(Whh, B) if prepared is None else prepared  # (H, 2H), (H, H)
    mi = xm is not None
    mrz = mh = arz = ah = None
    if mi:
        arz = np.empty((T, B, 2 * H), dtype=xa.dtype)
        ah = np.empty((T, B, H), dtype=xa.dtype)
        mrz = np.ascontiguousarray(xm[:, :, : 2 * H])
        mh = np.ascontiguousarray(xm[:, :, 2 * H :])
    for t in range(T):
        rz, hc, hprev = rzs[t], hcs[t], hs[t]
        if mi:
            np.dot(hprev, WrzT, out=arz[t])
            np.multiply(arz[t], mrz[t], out=rz)
        else:
            np.dot(hprev, WrzT, out=rz)  # W_r h_{t-1}, W_z h_{t-1} in one product
        rz += xa[t, :, : 2 * H]  # + U x_t + b
        _sigmoid_(rz)  # r, z
        r, z = rz[:, :H], rz[:, H:]
        np.multiply(r, hprev, out=rhs[t])  # r ⊙ h_{t-1}
        if mi:
            np.dot(rhs[t], WhT, out=ah[t])
            np.multiply(ah[t], mh[t], out=hc)
        else:
            np.dot(rhs[t], WhT, out=hc)  # h̃ = tanh(W_h (r ⊙ h_{t-1})
        hc += xa[t, :, 2 * H :]  #            + U_h x_t + b_h)
        np.tanh(hc, out=hc)
        h = hs[t + 1]
        # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃, as h̃ + z ⊙ (h_{t-1} - h̃): one product fewer
        np.subtract(hprev, hc, out=h)
        h *= z
        h += hc
    return hs[1:], (hs[T],), Cache(hs, rzs, hcs, rhs, Whh, mrz, mh, arz, ah)


def backward(dhs, dstate, cache):
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
    """
    hs, rzs, hcs, rhs, Whh, mrz, mh, arz, ah = cache
    mi = mrz is not None
    T, B, H = dhs.shape
    dxm = None
    if mi:
        grz, gh = np.empty_like(arz), np.empty_like(ah)  # m ⊙ da: the gradients at the products
        dxm = np.empty((T, B, GATES * H), dtype=dhs.dtype)
    Wrz, Wh = Whh[: 2 * H], Whh[2 * H :]  # (2H, H), (H, H)
    dxa = np.empty((T, B, GATES * H), dtype=dhs.dtype)
    dh = np.empty((B, H), dtype=dhs.dtype)
    tmp = np.empty((B, H), dtype=dhs.dtype)
    (dhnext,) = dstate
    for t in reversed(range(T)):
        da, hprev, hc = dxa[t], hs[t], hcs[t]
        r, z = rzs[t, :, :H], rzs[t, :, H:]
        dar, daz, dahc = da[:, :H], da[:, H : 2 * H], da[:, 2 * H :]
        np.add(dhs[t], dhnext, out=dh)  # dh = dhs[t] + dhnext
        # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃
        np.subtract(hprev, hc, out=daz)
        daz *= dh
        daz *= z
        daz *= 1 - z  # daz = dh ⊙ (h_{t-1} - h̃) ⊙ z(1 - z)
        np.multiply(hc, hc, out=tmp)
        np.subtract(1, tmp, out=tmp)
        np.subtract(1, z, out=dahc)
        dahc *= dh
        dahc *= tmp  # dah̃ = dh ⊙ (1 - z) ⊙ (1 - h̃²)
        # h̃ = tanh(W_h (r ⊙ h_{t-1}) + ...)
        drh = (np.multiply(dahc, mh[t], out=gh[t]) if mi else dahc) @ Wh  # W_hᵀ dah̃, in row form
        np.multiply(drh, hprev, out=dar)
        dar *= r
        dar *= 1 - r  # dar = drh ⊙ h_{t-1} ⊙ r(1 - r)
        # h_{t-1} reaches the loss through the interpolation, r ⊙ h_{t-1}, and r and z.
        dhnext = dh * z
        dhnext += np.multiply(drh, r, out=tmp)
        dhnext += (np.multiply(da[:, : 2 * H], mrz[t], out=grz[t]) if mi else da[:, : 2 * H]) @ Wrz
        if mi:  # dm = da ⊙ (the product), here while da is in cache
            np.multiply(da[:, : 2 * H], arz[t], out=dxm[t, :, : 2 * H])
            np.multiply(dahc, ah[t], out=dxm[t, :, 2 * H :])
    TB = T * B
    # Σ_t of the outer products over all steps and streams: the r, z blocks saw
    # h_{t-1}, the candidate saw r ⊙ h_{t-1} (of da, or with multipliers of m ⊙ da).
    if mi:
        drz2, dhc2 = grz.reshape(TB, -1), gh.reshape(TB, -1)
    else:
        dxa2 = dxa.reshape(TB, -1)
        drz2, dhc2 = dxa2[:, : 2 * H], dxa2[:, 2 * H :]
    dWhh = np.empty_like(Whh)
    np.matmul(drz2.T, hs[:-1].reshape(TB, -1), out=dWhh[: 2 * H])
    np.matmul(dhc2.T, rhs.reshape(TB, -1), out=dWhh[2 * H :])
    return dxa, dWhh, (dhnext,), dxm
