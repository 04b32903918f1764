"""Fused CUDA kernels for the LSTM's and the GRU's gate arithmetic (used when the arrays are CuPy's).

Why: on a GPU every NumPy-style line of a cell's time loop is one kernel launch, and at
B = 32, H = 512 a launch costs more (5-20 µs of Python, driver and GPU start-up) than the
arithmetic it carries. A step's elementwise work between two recurrent products is therefore
done by one kernel here, and a step of the LSTM is two launches forward (cuBLAS product +
gates) and three backward instead of about fifteen and twenty-five.

One implementation of the math: each function here replaces one NumPy step function of a
cell, named in its docstring, takes the same arguments, and its kernel body is that
function's equations in the same order, written per unit. Each kernel has the name of the
function that launches it (its key in ``_SOURCES``; ``charrnn_<name>`` to CuPy), so a
profile or a compiler error names the function to read. ``tests/test_gpu.py`` runs every
cell on the GPU with and without these kernels and compares. The vanilla RNN has none: its
step is a product, an add and a tanh, little to fuse.

``fused(xp)`` hands the cells these kernels when ``xp`` is CuPy and they are enabled, and None
otherwise (NumPy, and the recording module of tests/test_device.py), in which case the cells
run their NumPy lines. ``enabled(False)`` turns them off, to compare or to measure.

Index arithmetic in every kernel: ``i`` runs over the B·H units of a (B, H) state; unit
``j`` of row ``b`` reads block ``k`` of a (B, G·H) gate row at ``b·G·H + k·H + j``.
Arrays passed ``raw`` are indexed by that flat C-order position (CuPy honours their strides).
"""

import contextlib
import functools
import sys

from charrnn.device import array_module

_enabled = True


def fused(xp):
    """This module, whose functions are the fused kernels, when ``xp`` is CuPy and they are
    enabled; otherwise None (the cells then run their NumPy step functions)."""
    if _enabled and xp is sys.modules.get("cupy"):
        return sys.modules[__name__]
    return None


@contextlib.contextmanager
def enabled(on):
    """``with kernels.enabled(False):`` runs the cells' plain array-module lines on CuPy too."""
    global _enabled
    old, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = old


# σ as each cell writes it: the LSTM as s ⊙ tanh(s ⊙ a) + k with s = k = ½, the GRU as
# (tanh(a/2) + 1)/2. The same value; written each cell's way so each kernel mirrors its cell.
_PREAMBLE = r"""
template <typename T> __device__ __forceinline__ T sigmoid_lstm(T x) {
    return (T)0.5 * tanh((T)0.5 * x) + (T)0.5;
}
template <typename T> __device__ __forceinline__ T sigmoid_gru(T x) {
    return (tanh(x * (T)0.5) + (T)1) * (T)0.5;
}
"""

_SOURCES = {
    # lstm._forward_step
    "lstm_forward_step": (
        "raw T xa, T c_prev, int32 H",
        "raw T a, T c, T tc, T h",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H, r = b * 4 * H + j;
        const T ig = sigmoid_lstm(a[r] + xa[r]);                  // i = sigmoid(W_i h + U_i x + b_i)
        const T fg = sigmoid_lstm(a[r + H] + xa[r + H]);          // f
        const T gg = tanh(a[r + 2 * H] + xa[r + 2 * H]);          // g = c~ = tanh(...)
        const T og = sigmoid_lstm(a[r + 3 * H] + xa[r + 3 * H]);  // o
        a[r] = ig; a[r + H] = fg; a[r + 2 * H] = gg; a[r + 3 * H] = og;
        c = fg * c_prev + ig * gg;                                // c_t = f * c[t-1] + i * g
        tc = tanh(c);
        h = og * tc;                                              // h_t = o * tanh(c_t)
        """,
    ),
    # lstm._backward_step
    "lstm_backward_step": (
        "raw T a, T c_prev, T tc, T dhs, T dhnext, T dcnext, int32 H",
        "raw T da, T dcout",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H, r = b * 4 * H + j;
        const T ig = a[r], fg = a[r + H], gg = a[r + 2 * H], og = a[r + 3 * H];
        const T dh = dhs + dhnext;
        const T dc = dh * (((T)1 - tc * tc) * og) + dcnext;  // dcnext + dh * o * (1 - tanh^2(c_t))
        da[r] = ((T)1 - ig) * ig * gg * dc;                   // dai = dc * g * i(1 - i)
        da[r + H] = ((T)1 - fg) * fg * c_prev * dc;           // daf = dc * c[t-1] * f(1 - f)
        da[r + 2 * H] = ((T)1 - gg * gg) * ig * dc;           // dag = dc * i * (1 - g^2)
        da[r + 3 * H] = ((T)1 - og) * og * tc * dh;           // dao = dh * tanh(c_t) * o(1 - o)
        dcout = dc * fg;                                      // dcnext for step t-1
        """,
    ),
    # gru._forward_gates
    "gru_forward_gates": (
        "raw T xa, T hprev, int32 H",
        "raw T rz, T rh",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H, q = b * 2 * H + j, x = b * 3 * H + j;
        const T r = sigmoid_gru(rz[q] + xa[x]);          // r = sigmoid(W_r h + U_r x + b_r)
        const T z = sigmoid_gru(rz[q + H] + xa[x + H]);  // z = sigmoid(W_z h + U_z x + b_z)
        rz[q] = r; rz[q + H] = z;
        rh = r * hprev;                                  // r * h[t-1]
        """,
    ),
    # gru._forward_state
    "gru_forward_state": (
        "raw T xa, raw T rz, T hprev, int32 H",
        "T hc, T h",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H;
        const T c = tanh(hc + xa[b * 3 * H + 2 * H + j]);  // hc = tanh(W_h (r * h) + U_h x + b_h)
        hc = c;
        h = (hprev - c) * rz[b * 2 * H + H + j] + c;       // h_t = hc + z * (h[t-1] - hc)
        """,
    ),
    # gru._backward_state
    "gru_backward_state": (
        "T dhs, T dhnext, T hprev, T hc, raw T rz, int32 H",
        "T dh, raw T da",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H, x = b * 3 * H + j;
        const T z = rz[b * 2 * H + H + j];
        dh = dhs + dhnext;
        da[x + H] = (hprev - hc) * dh * z * ((T)1 - z);            // daz = dh * (h[t-1] - hc) * z(1 - z)
        da[x + 2 * H] = ((T)1 - z) * dh * ((T)1 - hc * hc);        // dahc = dh * (1 - z) * (1 - hc^2)
        """,
    ),
    # gru._backward_gates
    "gru_backward_gates": (
        "T drh, T hprev, T dh, raw T rz, int32 H",
        "raw T da, T dhn",
        r"""
        const ptrdiff_t b = i / H, j = i - b * H;
        const T r = rz[b * 2 * H + j], z = rz[b * 2 * H + H + j];
        da[b * 3 * H + j] = drh * hprev * r * ((T)1 - r);  // dar = drh * h[t-1] * r(1 - r)
        dhn = dh * z + drh * r;                            // dhnext, before the W_rz^T [dar, daz] term
        """,
    ),
}


@functools.cache
def _kernel(name: str):
    import cupy  # only reached through fused(), i.e. with CuPy already imported

    in_params, out_params, body = _SOURCES[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, f"charrnn_{name}", preamble=_PREAMBLE)


def lstm_forward_step(a, xa_t, c_prev, c, tc, h):
    """``lstm._forward_step`` in one kernel: a (B, 4H) holds W h_{t-1} (⊙ m_t) on entry and
    i, f, g, o on exit; c, tc, h (B, H) receive c_t, tanh(c_t), h_t."""
    _kernel("lstm_forward_step")(xa_t, c_prev, c.shape[1], a, c, tc, h)


def lstm_backward_step(a, c_prev, tc, dhs_t, dhnext, dcnext, da, dcout):
    """``lstm._backward_step`` in one kernel: da (B, 4H) receives [dai, daf, dag, dao];
    returns ``dcout`` (B, H), holding dcnext for step t-1."""
    _kernel("lstm_backward_step")(a, c_prev, tc, dhs_t, dhnext, dcnext, c_prev.shape[1], da, dcout)
    return dcout


def gru_forward_gates(rz, xa_t, hprev, rh):
    """``gru._forward_gates`` in one kernel: rz (B, 2H) from W_rz h_{t-1} (⊙ m) to r, z;
    rh (B, H) receives r ⊙ h_{t-1}."""
    _kernel("gru_forward_gates")(xa_t, hprev, hprev.shape[1], rz, rh)


def gru_forward_state(hc, xa_t, rz, hprev, h):
    """``gru._forward_state`` in one kernel: hc (B, H) from W_h (r ⊙ h_{t-1}) (⊙ m) to h̃;
    h (B, H) receives h_t."""
    _kernel("gru_forward_state")(xa_t, rz, hprev, hprev.shape[1], hc, h)


def gru_backward_state(dhs_t, dhnext, hprev, hc, rz, dh, da):
    """``gru._backward_state`` in one kernel: dh = dhs_t + dhnext; daz, dah̃ into da (B, 3H)."""
    _kernel("gru_backward_state")(dhs_t, dhnext, hprev, hc, rz, hprev.shape[1], dh, da)


def gru_backward_gates(drh, hprev, dh, rz, da):
    """``gru._backward_gates`` in one kernel: dar into da; returns dh ⊙ z + drh ⊙ r, (B, H)."""
    dhn = array_module(dh).empty_like(dh)
    _kernel("gru_backward_gates")(drh, hprev, dh, rz, hprev.shape[1], da, dhn)
    return dhn
