"""The minLSTM cell of Feng et al. 2024, "Were RNNs All We Needed?" (arXiv 2410.01201; the
authors' code: BorealisAI/minRNNs, ``models/minRNNs.py``); docs/math.md lists the derivation.

    f_t  = σ(U_f x_t + b_f)                         forget gate
    i_t  = σ(U_i x_t + b_i)                         input gate
    h̃_t  = g(U_h x_t + b_h)                         candidate (g: see ``mingru.py``)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)   (normalized: f' + i' = 1)
    h_t  = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

Like minGRU it has **no recurrent weights** (``RECURRENT = False``) and no cell state: the
gates of the whole chunk are computed at once and the recurrence is the scan
``h_t = a_t ⊙ h_{t-1} + b_t`` with a_t = f'_t, b_t = i'_t ⊙ h̃_t (``mingru.scan``).

The normalized gates are computed as the authors' log-space code does, from
d_t = log f_t - log i_t = softplus(-(U_i x_t + b_i)) - softplus(-(U_f x_t + b_f)):
f' = σ(d), i' = 1 - f' (equal to f / (f + i), but defined where both gates round to 0,
which 0.5 (1 + tanh(a/2)) does in float32 below a ≈ -17).

Stored fused, row blocks in the order **f, i, h̃**: ``Wxh`` (3H, D) stacks the U's, ``bh`` (3H,) the b's.

Backward, with dH_t the whole gradient at h_t carried back by the scan
(``dH_t = dhs[t] + f'_{t+1} ⊙ dH_{t+1}``) and, as d log σ(a)/da = 1 - σ(a),

    dd   = dH_t ⊙ (h_{t-1} - h̃_t) ⊙ f'(1 - f')      (the gradient at d_t)
    daf  = dd ⊙ (1 - f_t),   dai = -dd ⊙ (1 - i_t)
    dah̃  = dH_t ⊙ i'_t ⊙ g'(U_h x_t + b_h)
    dh_{-1} = f'_0 ⊙ dH_0

Letters: T time steps, B streams, H hidden units.
"""

from __future__ import annotations

from typing import NamedTuple

from charrnn.cells import mingru
from charrnn.cells.mingru import g, g_prime, log_sigmoid, no_recurrence, scan, scan_backward, sigmoid
from charrnn.device import Array, array_module

GATES = 3
STATE = ("h",)
RECURRENT = False  # no Whh: the gates read the input only
NORM = {}  # no layer normalization: ModelSpec and the config refuse model.layer_norm
BOUNDED_H = False  # h > 0 but not ≤ 1 (g(a) = a + 0.5 above 0): the page scales it per unit, as c
kink_distance = mingru.kink_distance  # the same g, so the same kink (for charrnn.gradcheck)


class Cache(NamedTuple):
    hs: Array  # (T+1, B, H): hs[0] = h_{-1} (carried in), hs[t+1] = h_t
    f: Array  # (T, B, H) forget gate σ(U_f x_t + b_f)
    i: Array  # (T, B, H) input gate σ(U_i x_t + b_i)
    fn: Array  # (T, B, H) normalized forget gate f' = f / (f + i)
    hc: Array  # (T, B, H) candidate h̃
    sg: Array  # (T, B, H) σ(min(a, 0)) of the candidate's pre-activation a (g's sigmoid part)
    pos: Array  # (T, B, H) bool: a ≥ 0 (g's branch)


def forward(xa: Array, state0: tuple[Array, ...], Whh: None = None, prepared: None = None,
            xm: None = None, norm: None = None) -> tuple[Array, tuple[Array, ...], Cache]:
    """Run the recurrence over one chunk.

    Parameters
    ----------
    xa : (T, B, 3H) input pre-activations ``Wxh x_t + bh``, blocks f, i, h̃.
    state0 : ``(h0,)`` with h0 (B, H), the state carried in from the previous chunk.
    Whh, prepared, xm, norm : None (the contract's arguments; this cell has no recurrent product
        and no layer normalization).

    Returns
    -------
    hs : (T, B, H) hidden states h_0 .. h_{T-1}.
    state : ``(h_{T-1},)``, to carry into the next chunk.
    cache : Cache for ``backward``.
    """
    no_recurrence("minlstm", Whh, xm, norm)
    H = xa.shape[2] // GATES
    (h0,) = state0
    af, ai = xa[:, :, :H], xa[:, :, H : 2 * H]
    f, i = sigmoid(af), sigmoid(ai)
    d = log_sigmoid(af)  # d = log f - log i;  f' = σ(d)
    d -= log_sigmoid(ai)
    fn = sigmoid(d)
    hc, sg, pos = g(xa[:, :, 2 * H :])
    hs = scan(fn, (1 - fn) * hc, h0)  # h_t = f' ⊙ h_{t-1} + i' ⊙ h̃
    return hs[1:], (hs[-1],), Cache(hs, f, i, fn, hc, sg, pos)


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
    dxa : (T, B, 3H) gradient with respect to the pre-activations (blocks f, i, h̃).
    dWhh : None (no recurrent weights).
    dstate0 : ``(dh_{-1},)`` gradient with respect to the carried-in state.
    dxm : None.
    dnorm : None.
    """
    hs, f, i, fn, hc, sg, pos = cache
    T, B, H = dhs.shape
    xp = array_module(dhs)
    (dh_last,) = dstate
    dH, dh0 = scan_backward(dhs, dh_last, fn)
    inn = 1 - fn  # i'
    dd = hs[:-1] - hc
    dd *= dH
    dd *= fn * inn  # dH ⊙ (h_{t-1} - h̃) ⊙ f'(1 - f')
    dxa = xp.empty((T, B, GATES * H), dtype=dhs.dtype)
    xp.multiply(dd, 1 - f, out=dxa[:, :, :H])
    xp.multiply(dd, i - 1, out=dxa[:, :, H : 2 * H])  # -dd ⊙ (1 - i)
    dah = dxa[:, :, 2 * H :]
    xp.multiply(dH, inn, out=dah)
    dah *= g_prime(sg, pos)  # dH ⊙ i' ⊙ g'
    return dxa, None, (dh0,), None, None
