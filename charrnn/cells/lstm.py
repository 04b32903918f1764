"""The LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate), as written in
*循环神经网络* ("Recurrent neural networks", study notes; docs/math.md lists the derivations).

    i_t = σ(W_i h_{t-1} + U_i x_t + b_i)        input gate
    f_t = σ(W_f h_{t-1} + U_f x_t + b_f)        forget gate
    g_t = tanh(W_c h_{t-1} + U_c x_t + b_c)     candidate c̃_t
    o_t = σ(W_o h_{t-1} + U_o x_t + b_o)        output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The four gates are stored fused, row blocks in the order **i, f, g, o** (PyTorch's
``nn.LSTM`` order, so the weights map onto torch one to one): ``Wxh`` (4H, D) stacks the
U's, ``Whh`` (4H, H) the W's and ``bh`` (4H,) the b's. One step is then a single
(B, H) @ (H, 4H) product for all four gates.

Backward, with ``dh = dhs[t] + dhnext`` and ``dcnext`` the gradient reaching c_t from
step t+1 (σ' = σ(1 - σ), tanh' = 1 - tanh²):

    do     = dh ⊙ tanh(c_t)                 dao = do ⊙ o(1 - o)
    dc     = dcnext + dh ⊙ o ⊙ (1 - tanh²(c_t))
    di     = dc ⊙ g                         dai = di ⊙ i(1 - i)
    df     = dc ⊙ c_{t-1}                   daf = df ⊙ f(1 - f)
    dg     = dc ⊙ i                         dag = dg ⊙ (1 - g²)
    dcnext = dc ⊙ f
    dhnext = Whhᵀ [dai, daf, dag, dao]
    dWhh  += [dai, daf, dag, dao] h_{t-1}ᵀ   (summed after the loop in one product)

Both h and c are carried from chunk to chunk, so both get a carried gradient.

With multiplicative integration (``xm`` given, see ``model.py``) the product is scaled by
m_t, block by block: ``a_t = m_t ⊙ (W h_{t-1}) + U x_t + b``. Then the gradient at the
product is ``m_t ⊙ da`` (it takes da's place in dWhh and dhnext), and ``dm_t = da ⊙ W h_{t-1}``.

With layer normalization (``norm=(gh, gc, bc)``, see ``model.py`` and ``charrnn.layernorm``;
Ba, Kiros & Hinton 2016, "Layer Normalization", their LSTM of section 3.1), each of the four
H-blocks of the recurrent term is normalized and scaled by its gain, and so is the cell
before its tanh (the input part ``xa`` comes normalized from the model):

    a_t = gh ⊙ N(W h_{t-1}) + xa_t          (N of m_t ⊙ (W h_{t-1}) with multipliers)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t         (unchanged; ``cs`` holds this raw c_t)
    h_t = o_t ⊙ tanh(gc ⊙ N(c_t) + bc)

Backward, with u_t = gc ⊙ N(c_t) + bc and ``tcs`` holding tanh(u_t): dao as above with this
tanh, ``du = dh ⊙ o ⊙ (1 - tanh²(u_t))`` (dbc = Σ du), dc = dcnext + the layer norm's
backward of du (which gives dgc), and da passes through the recurrent term's layer norm
(giving dgh) before it reaches the product. The gate arithmetic of this backward step is its
own NumPy lines (``_backward_step_ln``): the normalization of c_t sits in the middle of the
step, where the fused kernel cannot reach across the H units.

Letters: T time steps, B streams, H hidden units. Row vectors: h is (B, H), so
``Whh h`` is written ``h @ Whh.T``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from charrnn import kernels, layernorm
from charrnn.device import Array, array_module

GATES = 4
STATE = ("h", "c")
NORM = {"gh": GATES, "gc": 1, "bc": 1}  # layer norm's parameters of the recurrent part and the cell (``norm``), (k·H,)


class Cache(NamedTuple):
    hs: Array  # (T+1, B, H): hs[0] = h_{-1} (carried in), hs[t+1] = h_t
    cs: Array  # (T+1, B, H): cs[0] = c_{-1} (carried in), cs[t+1] = c_t
    gates: Array  # (T, B, 4H): i, f, g, o after their nonlinearities
    tcs: Array  # (T, B, H): tanh(c_t)
    Whh: Array  # (4H, H)
    xm: Array | None = None  # (T, B, 4H) multipliers m_t, or None
    rec: Array | None = None  # (T, B, 4H) Whh h_{t-1} before the multiplier (only with xm)
    norm: tuple | None = None  # (gh, gc, bc) of layer normalization, or None
    lna: list | None = None  # per step: layernorm.Cache of the recurrent term (only with norm)
    lnc: list | None = None  # per step: layernorm.Cache of c_t (only with norm); tcs then holds tanh(u_t)


def init_bias(bh: Array) -> None:
    """Set the forget-gate block of ``bh`` (4H,) to 1, in place.

    With f ≈ σ(1) ≈ 0.73 instead of σ(0) = 0.5 the cell remembers by default, so the
    gradient through c survives many steps early in training, before the gate has learnt
    when to forget (Gers et al. 2000; Jozefowicz et al. 2015; char-rnn does the same).
    """
    H = bh.shape[0] // GATES
    bh[H : 2 * H] = 1.0


@functools.cache
def _activation_coefficients(H, dtype, xp=np):
    """(4H,) arrays s, k such that ``s ⊙ tanh(s ⊙ a) + k`` is each gate's nonlinearity.

    σ(a) = 0.5 tanh(a/2) + 0.5 on the i, f, o blocks (s = k = 0.5): the same values as
    1 / (1 + exp(-a)) but never overflowing; tanh(a) on the g block (s = 1, k = 0). One
    pass of each operation over the whole contiguous (B, 4H) row is faster than separate
    passes over the blocks, which are strided column slices. Cached (read-only on the
    host), per array module: sampling calls ``forward`` once per character.
    """
    dtype = np.dtype(dtype)
    s = np.full(GATES * H, 0.5, dtype=dtype)
    k = np.full(GATES * H, 0.5, dtype=dtype)
    s[2 * H : 3 * H] = 1
    k[2 * H : 3 * H] = 0
    s.flags.writeable = k.flags.writeable = False
    return xp.asarray(s), xp.asarray(k)


def prepare(Whh: Array, batch_size: int) -> Array:
    """Whhᵀ (H, 4H) as a contiguous copy, the operand the time loop multiplies by.

    BLAS multiplies by it ~10% faster than by the transposed view at these sizes; the copy
    is made once per chunk, or once per ``sampling.generate`` (for any ``batch_size``).
    """
    return array_module(Whh).ascontiguousarray(Whh.T)


def _forward_step(xp, s, k, ig, a, xa_t, c_prev, c, tc, h):
    """One step's gate arithmetic (``kernels.lstm_forward_step`` is this in one kernel).

    a : (B, 4H) holds W h_{t-1} (⊙ m_t) on entry and i, f, g, o on exit.
    xa_t : (B, 4H) U x_t + b.  c_prev : (B, H) c_{t-1}.
    c, tc, h : (B, H), receive c_t, tanh(c_t) and h_t.
    s, k : ``_activation_coefficients``; ig : (B, H) scratch for i ⊙ g.
    """
    H = c.shape[1]
    a += xa_t  # + U x_t + b
    # i, f, o = σ(·) and g = c̃ = tanh(·), all as s ⊙ tanh(s ⊙ ·) + k, in place
    a *= s
    xp.tanh(a, out=a)
    a *= s
    a += k
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    xp.multiply(f, c_prev, out=c)  # c_t = f ⊙ c_{t-1}
    c += xp.multiply(i, g, out=ig)  #      + i ⊙ g
    xp.tanh(c, out=tc)
    xp.multiply(o, tc, out=h)  # h_t = o ⊙ tanh(c_t)


def forward(xa: Array, state0: tuple[Array, ...], Whh: Array, prepared: Array | None = None,
            xm: Array | None = None, norm: tuple[Array, ...] | None = None) -> tuple[Array, tuple[Array, ...], Cache]:
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, 4H) input pre-activations ``Wxh x_t + bh``, blocks i, f, g, o.
    xm : (T, B, 4H) multipliers m_t of multiplicative integration, or None.
    state0 : ``(h0, c0)``, each (B, H), the state carried in from the previous chunk.
    Whh : (4H, H) recurrent weights.
    prepared : ``prepare(Whh, B)`` if the caller already has it (sampling reuses it for every
        character); None computes it here.
    norm : ``(gh, gc, bc)``, gh (4H,), gc and bc (H,): the gains of layer normalization of the
        recurrent term and the cell's gain and bias, or None (off).

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1}, c_{T-1})``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    T, B, G = xa.shape
    H = G // GATES
    h0, c0 = state0
    xp = array_module(xa)
    hs = xp.empty((T + 1, B, H), dtype=xa.dtype)
    cs = xp.empty((T + 1, B, H), dtype=xa.dtype)
    gates = xp.empty((T, B, G), dtype=xa.dtype)
    tcs = xp.empty((T, B, H), dtype=xa.dtype)
    hs[0] = h0
    cs[0] = c0
    WhhT = prepare(Whh, B) if prepared is None else prepared  # (H, 4H)
    fused = kernels.fused(xp)
    if fused:
        step = fused.lstm_forward_step
    else:
        ig = xp.empty((B, H), dtype=xa.dtype)  # scratch for i ⊙ g
        step = functools.partial(_forward_step, xp, *_activation_coefficients(H, xa.dtype, xp), ig)
    # dot rather than matmul: the same BLAS call with less overhead per call
    dot, multiply = xp.dot, xp.multiply
    rec = None if xm is None else xp.empty_like(xa)
    lna = lnc = None
    if norm is not None:
        lna, lnc = [], []
        gh, gc, bc = norm
    for t in range(T):
        a = gates[t]
        if xm is None:
            dot(hs[t], WhhT, out=a)  # W h_{t-1}, all four blocks in one product
        else:
            dot(hs[t], WhhT, out=rec[t])
            multiply(rec[t], xm[t], out=a)  # m_t ⊙ W h_{t-1}
        if norm is not None:
            a[...], ca = layernorm.forward(a, gh, GATES)
            lna.append(ca)
        step(a, xa[t], cs[t], cs[t + 1], tcs[t], hs[t + 1])
        if norm is not None:  # the step's c_t stands; its tanh(c_t) and h_t are redone from u_t
            u, cc = layernorm.forward(cs[t + 1], gc, 1)
            u += bc
            xp.tanh(u, out=tcs[t])
            multiply(a[:, 3 * H :], tcs[t], out=hs[t + 1])  # h_t = o ⊙ tanh(u_t)
            lnc.append(cc)
    return hs[1:], (hs[T], cs[T]), Cache(hs, cs, gates, tcs, Whh, xm, rec, norm, lna, lnc)


def backward(dhs: Array, dstate: tuple[Array, ...],
             cache: Cache) -> tuple[Array, Array, tuple[Array, ...], Array | None, tuple[Array, ...] | None]:
    """Backpropagate through the chunk, carrying ``dhnext`` and ``dcnext`` from t+1 to t.

    Parameters
    ----------
    dhs : (T, B, H) gradient of the loss with respect to each h_t from outside the
        recurrence (the output layer, or the layer above).
    dstate : ``(dh, dc)``, each (B, H): gradient with respect to the last state from after
        the chunk (zeros in truncated BPTT).
    cache : from ``forward``.

    Returns
    -------
    dxa : (T, B, 4H) gradient with respect to the pre-activations (blocks i, f, g, o),
        from which the caller gets dWxh, dbh and the gradient for the layer below.
    dWhh : (4H, H).
    dstate0 : ``(dh_{-1}, dc_{-1})`` gradient with respect to the carried-in state.
    dxm : (T, B, 4H) gradient with respect to the multipliers ``xm``, or None without them.
    dnorm : ``(dgh, dgc, dbc)`` gradients with respect to ``norm``, or None without it.
    """
    hs, cs, gates, tcs, Whh, xm, rec, norm, lna, lnc = cache
    T, B, H = dhs.shape
    dt = dhs.dtype
    xp = array_module(dhs)
    dxa = xp.empty((T, B, GATES * H), dtype=dt)
    dhbuf, dcbuf = xp.empty((B, H), dtype=dt), xp.empty((B, H), dtype=dt)
    dhnext, dcnext = dstate
    fused = kernels.fused(xp)
    if fused:
        step = fused.lstm_backward_step
    else:
        step = functools.partial(_backward_step, xp, *(xp.empty((B, H), dtype=dt) for _ in range(3)))
    dnorm = None
    dpre = dxa  # the gradient at the recurrent term (before its normalization, with norm)
    if norm is not None:
        step = functools.partial(_backward_step_ln, xp)
        dpre = xp.empty_like(dxa)
        dnorm = tuple(xp.zeros_like(p) for p in norm)
    # With multipliers, the gradient at the product W h_{t-1} is m_t ⊙ da.
    drec = dpre if xm is None else xp.empty_like(dxa)
    for t in reversed(range(T)):
        if norm is None:
            dcnext = step(gates[t], cs[t], tcs[t], dhs[t], dhnext, dcnext, dxa[t], dcbuf)
        else:
            dcnext = step(gates[t], cs[t], tcs[t], dhs[t], dhnext, dcnext, dxa[t], lnc[t], dnorm)
            dpre[t], dg = layernorm.backward(dxa[t], lna[t])
            dnorm[0][...] += dg
        if xm is not None:
            xp.multiply(dpre[t], xm[t], out=drec[t])
        dhnext = xp.dot(drec[t], Whh, out=dhbuf)  # Whhᵀ [dai, daf, dag, dao], in row form: all blocks at once
    TB = T * B
    # Σ_t da_t h_{t-1}ᵀ over all steps and streams in one product.
    dWhh = drec.reshape(TB, -1).T @ hs[:-1].reshape(TB, -1)
    dxm = None if xm is None else dpre * rec  # dm_t = da ⊙ W h_{t-1}
    return dxa, dWhh, (dhnext, dcnext), dxm, dnorm


def _backward_step_ln(xp, a, c_prev, tu, dhs_t, dhnext, dcnext, da, lnc, dnorm):
    """One step's gate gradients with layer normalization of c_t (``norm`` on).

    a : (B, 4H) i, f, g, o.  c_prev : (B, H) c_{t-1}.  tu : (B, H) tanh(u_t), u_t = gc ⊙ N(c_t) + bc.
    dhs_t, dhnext, dcnext : as in ``_backward_step``.  da : (B, 4H) receives [dai, daf, dag, dao].
    lnc : layernorm.Cache of c_t.  dnorm : (dgh, dgc, dbc), to which dgc and dbc are added.
    Returns dcnext for step t-1, a new array.
    """
    H = c_prev.shape[1]
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    dh = dhs_t + dhnext
    da[:, 3 * H :] = dh * tu * o * (1 - o)  # dao, through h_t = o ⊙ tanh(u_t)
    du = dh * o * (1 - tu * tu)
    dnorm[2][...] += du.sum(axis=0)  # dbc
    dc, dgc = layernorm.backward(du, lnc)
    dnorm[1][...] += dgc
    dc += dcnext
    # through c_t = f ⊙ c_{t-1} + i ⊙ g
    da[:, :H] = dc * g * i * (1 - i)
    da[:, H : 2 * H] = dc * c_prev * f * (1 - f)
    da[:, 2 * H : 3 * H] = dc * i * (1 - g * g)
    return dc * f


def _backward_step(xp, dh, dc, q, a, c_prev, tc, dhs_t, dhnext, dcnext, da, dcout):
    """One step's gate gradients (``kernels.lstm_backward_step`` is this in one kernel).

    a : (B, 4H) i, f, g, o of step t.  c_prev, tc : (B, H) c_{t-1} and tanh(c_t).
    dhs_t, dhnext, dcnext : (B, H) the gradients reaching h_t from outside and from step t+1,
        and reaching c_t from step t+1.
    da : (B, 4H) receives [dai, daf, dag, dao].  dcout : (B, H) receives dcnext for step t-1,
        and is returned.  dh, dc, q : (B, H) scratch.
    """
    H = dh.shape[1]
    B = dh.shape[0]
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    Ki, Kf, Kg, Ko = da[:, :H], da[:, H : 2 * H], da[:, 2 * H : 3 * H], da[:, 3 * H :]
    # First each gate's local derivative times the factor it meets, in da's memory:
    #   K = [g ⊙ i(1-i), c_{t-1} ⊙ f(1-f), i ⊙ (1-g²), tanh(c_t) ⊙ o(1-o)]
    xp.subtract(1, i, out=Ki)
    Ki *= i
    Ki *= g
    xp.subtract(1, f, out=Kf)
    Kf *= f
    Kf *= c_prev
    xp.multiply(g, g, out=Kg)
    xp.subtract(1, Kg, out=Kg)
    Kg *= i
    xp.subtract(1, o, out=Ko)
    Ko *= o
    Ko *= tc
    xp.add(dhs_t, dhnext, out=dh)  # dh = dhs[t] + dhnext
    # h_t = o ⊙ tanh(c_t):  dc = dcnext + dh ⊙ o ⊙ (1 - tanh²(c_t))
    xp.multiply(tc, tc, out=q)
    xp.subtract(1, q, out=q)
    q *= o
    xp.multiply(dh, q, out=dc)
    dc += dcnext
    # then da = [dc, dc, dc, dh] ⊙ K: dai, daf, dag through c_t = f ⊙ c_{t-1} + i ⊙ g, dao through h_t
    da.reshape(B, GATES, H)[:, :3] *= dc[:, None, :]
    Ko *= dh
    return xp.multiply(dc, f, out=dcout)  # dcnext, through c_t = f ⊙ c_{t-1}
