"""The minGRU cell of Feng et al. 2024, "Were RNNs All We Needed?" (arXiv 2410.01201; the
authors' code: BorealisAI/minRNNs, ``models/minRNNs.py``); docs/math.md lists the derivation.

    z_t = σ(U_z x_t + b_z)                          update gate
    h̃_t = g(U_h x_t + b_h)                          candidate
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    g(a) = a + 0.5 for a ≥ 0,  σ(a) for a < 0       (the paper's g: h stays positive; continuous at 0)

Neither gate reads h_{t-1}: the cell has **no recurrent weights** (``RECURRENT = False``:
``model.py`` gives it no ``Whh``, passes ``Whh=None`` and stores no Whh gradient). Every
gate of the chunk is then computed at once, over all T·B positions, from the input
pre-activation ``xa`` that ``model.py`` computes in one product (or one gather), and the
recurrence left is elementwise, a first-order linear scan:

    h_t = a_t ⊙ h_{t-1} + b_t,   a_t = 1 - z_t,  b_t = z_t ⊙ h̃_t

Stored fused, row blocks in the order **z, h̃**: ``Wxh`` (2H, D) stacks the U's, ``bh`` (2H,) the b's.
(The paper's z → 1 takes the candidate; the GRU of ``gru.py`` writes z → 1 keeps the old state.)

Backward, with dH_t the whole gradient at h_t (from outside and from step t+1), carried back
as the scan's only loop; the rest for all steps at once (σ' = σ(1 - σ); g' = 1 for a ≥ 0,
σ(a)(1 - σ(a)) = h̃(1 - h̃) for a < 0):

    dH_t   = dhs[t] + a_{t+1} ⊙ dH_{t+1}     (dH_T's carried part: the gradient at the final state)
    daz    = dH_t ⊙ (h̃_t - h_{t-1}) ⊙ z(1 - z)
    dah̃    = dH_t ⊙ z_t ⊙ g'(U_h x_t + b_h)
    dh_{-1} = a_0 ⊙ dH_0

There is no multiplicative integration (nothing to scale: config.py refuses it). The scan,
σ and g live here and ``minlstm.py`` shares them.

Letters: T time steps, B streams, H hidden units.
"""

from __future__ import annotations

from typing import NamedTuple

from charrnn.device import Array, array_module

GATES = 2
STATE = ("h",)
RECURRENT = False  # no Whh: the gates read the input only
NORM = {}  # no layer normalization: ModelSpec and the config refuse model.layer_norm
BOUNDED_H = False  # h > 0 but not ≤ 1 (g(a) = a + 0.5 above 0): the page scales it per unit, as c


class Cache(NamedTuple):
    hs: Array  # (T+1, B, H): hs[0] = h_{-1} (carried in), hs[t+1] = h_t
    z: Array  # (T, B, H) update gate
    hc: Array  # (T, B, H) candidate h̃
    sg: Array  # (T, B, H) σ(min(a, 0)) of the candidate's pre-activation a (g's sigmoid part)
    pos: Array  # (T, B, H) bool: a ≥ 0 (g's branch)


def log_sigmoid(a: Array) -> Array:
    """log σ(a) = min(a, 0) - log(1 + e^{-|a|}) as a new array: no overflow, and no log of an
    underflowed σ (``logaddexp`` gives the same and is ten times slower in NumPy)."""
    xp = array_module(a)
    e = xp.abs(a)
    e *= -1
    xp.exp(e, out=e)
    xp.log1p(e, out=e)
    out = xp.minimum(a, 0)
    out -= e
    return out


def sigmoid(a: Array) -> Array:
    """σ(a) as a new array, as 0.5 (1 + tanh(a/2)): never overflows (the other cells' form)."""
    xp = array_module(a)
    s = a * 0.5
    xp.tanh(s, out=s)
    s += 1
    s *= 0.5
    return s


def g(a: Array) -> tuple[Array, Array, Array]:
    """The paper's g(a) (a + 0.5 for a ≥ 0, σ(a) below) as σ(min(a, 0)) + max(a, 0), with no
    branch: (g(a), σ(min(a, 0)), the mask a ≥ 0). (A select, ``where``, over a random mask is
    ten times slower than the arithmetic.)"""
    xp = array_module(a)
    sg = sigmoid(xp.minimum(a, 0))  # σ(a) below 0, σ(0) = 0.5 above
    return sg + xp.maximum(a, 0), sg, a >= 0


def g_prime(sg: Array, pos: Array) -> Array:
    """g'(a) from g's parts: σ'(a) = σ(1 - σ) below 0, 1 above; as σ(1 - σ) + 0.75 · [a ≥ 0]
    (σ(min(a, 0)) is exactly 0.5 above 0, so the sum is exactly 1 there)."""
    gp = 1 - sg
    gp *= sg
    step = pos.astype(sg.dtype)
    step *= 0.75
    gp += step
    return gp


def kink_distance(cache: NamedTuple) -> float:
    """The smallest |pre-activation| of g over the chunk (of a cache with ``hc`` and ``pos``;
    for the charrnn.gradcheck only: ``where`` is slow, but this runs on small problems).

    g is continuous at 0 but its slope jumps there (σ'(0) = 1/4 below, 1 above): a finite
    difference whose stencil straddles 0 is wrong by construction, so ``charrnn.gradcheck``
    draws its random problem again while a pre-activation lies that close. The pre-activation
    is read back from g: h̃ - 0.5 above 0, log(h̃ / (1 - h̃)) below.
    """
    xp = array_module(cache.hc)
    hc, pos = cache.hc, cache.pos
    below = xp.log(xp.where(pos, 0.5, hc) / xp.where(pos, 0.5, 1 - hc))  # σ⁻¹(h̃)
    return float(xp.abs(xp.where(pos, hc - 0.5, below)).min())


def no_recurrence(cell: str, Whh: Array | None, xm: Array | None, norm: tuple | None) -> None:
    """The contract's recurrent arguments, which a min cell has no use for, must be None (the
    model never passes them: a value here is a caller's mistake, not something to ignore)."""
    if Whh is not None or xm is not None or norm is not None:
        raise ValueError(f"{cell} has no recurrent weights, multiplicative integration or layer norm: "
                         "pass Whh=None, xm=None, norm=None")


def scan(a: Array, b: Array, h0: Array) -> Array:
    """hs (T+1, B, H) with hs[0] = h0 and hs[t+1] = a_t ⊙ hs[t] + b_t; a, b (T, B, H), h0 (B, H).

    The only loop over time of the forward pass: two elementwise operations a step.
    """
    T = a.shape[0]
    xp = array_module(a)
    hs = xp.empty((T + 1,) + h0.shape, dtype=a.dtype)
    hs[0] = h0
    for t in range(T):
        xp.multiply(a[t], hs[t], out=hs[t + 1])
        hs[t + 1] += b[t]
    return hs


def scan_backward(dhs: Array, dh_last: Array, a: Array) -> tuple[Array, Array]:
    """The scan's gradients: (dH (T, B, H), the whole gradient at each h_t, and dh_{-1} (B, H)).

    dhs : (T, B, H) gradient at each h_t from outside; dh_last : (B, H) from after the chunk.
    dH_t = dhs[t] + a_{t+1} ⊙ dH_{t+1}; then db_t = dH_t, da_t = dH_t ⊙ h_{t-1} (the caller's).
    """
    T = dhs.shape[0]
    xp = array_module(dhs)
    dH = xp.empty_like(dhs)
    dhnext = dh_last
    buf = xp.empty_like(dhs[0])  # dhnext lives here from the first step on
    for t in reversed(range(T)):
        xp.add(dhs[t], dhnext, out=dH[t])
        dhnext = xp.multiply(a[t], dH[t], out=buf)
    return dH, dhnext


def forward(xa: Array, state0: tuple[Array, ...], Whh: None = None, prepared: None = None,
            xm: None = None, norm: None = None) -> tuple[Array, tuple[Array, ...], Cache]:
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, 2H) input pre-activations ``Wxh x_t + bh``, blocks z, h̃.
    state0 : ``(h0,)`` with h0 (B, H), the state carried in from the previous chunk.
    Whh, prepared, xm, norm : None (the contract's arguments; this cell has no recurrent product
        and no layer normalization).

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1},)``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    no_recurrence("mingru", Whh, xm, norm)
    H = xa.shape[2] // GATES
    (h0,) = state0
    z = sigmoid(xa[:, :, :H])  # (T, B, H), all steps at once
    hc, sg, pos = g(xa[:, :, H:])
    hs = scan(1 - z, z * hc, h0)  # h_t = (1 - z) ⊙ h_{t-1} + z ⊙ h̃
    return hs[1:], (hs[-1],), Cache(hs, z, hc, sg, pos)


def backward(dhs: Array, dstate: tuple[Array, ...],
             cache: Cache) -> tuple[Array, None, tuple[Array, ...], None, None]:
    """Backpropagate through the chunk: the scan's loop carries dH back, the rest is vectorized.

    Parameters
    ----------
    dhs : (T, B, H) gradient of the loss with respect to each h_t from outside the
        recurrence (the output layer, or the layer above).
    dstate : ``(dh,)`` gradient with respect to the last state from after the chunk.
    cache : from ``forward``.

    Returns
    -------
    dxa : (T, B, 2H) gradient with respect to the pre-activations (blocks z, h̃).
    dWhh : None (no recurrent weights).
    dstate0 : ``(dh_{-1},)`` gradient with respect to the carried-in state.
    dxm : None.
    dnorm : None.
    """
    hs, z, hc, sg, pos = cache
    T, B, H = dhs.shape
    xp = array_module(dhs)
    (dh_last,) = dstate
    dH, dh0 = scan_backward(dhs, dh_last, 1 - z)
    dxa = xp.empty((T, B, GATES * H), dtype=dhs.dtype)
    daz = dxa[:, :, :H]
    xp.subtract(hc, hs[:-1], out=daz)
    daz *= dH
    daz *= z * (1 - z)  # dH ⊙ (h̃ - h_{t-1}) ⊙ z(1 - z)
    dah = dxa[:, :, H:]
    xp.multiply(dH, z, out=dah)
    dah *= g_prime(sg, pos)  # dH ⊙ z ⊙ g'
    return dxa, None, (dh0,), None, None
