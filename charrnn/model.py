"""The character model: input lookup, a stack of recurrent cells, softmax output.

    x_t  = column y_{t-1} of the identity (a character index; never built as a one-hot)
    h_t  = cell(Wxh x_t + bh, h_{t-1})          for each layer; layer l>0 reads layer l-1's h_t
    p_t  = softmax(Why h_t + by)                (top layer)
    loss = -Σ_t log p_t[y_t], averaged over the B streams

Letters used in every docstring: T time steps in a chunk, B streams (batch), V vocabulary
size, H hidden units, G gate blocks of the cell (1 rnn, 4 lstm, 3 gru, 2 mingru, 3 minlstm), L layers.

Parameters are a dict of arrays keyed by name. Layer 0 uses min-char-rnn's names
``Wxh`` (G·H, V), ``Whh`` (G·H, H), ``bh`` (G·H,); layer l ≥ 1 adds ``_l``: ``Wxh_1`` (G·H, H),
``Whh_1``, ``bh_1``. The output layer is ``Why`` (V, H), ``by`` (V,). A one-layer vanilla
model therefore has exactly min-char-rnn's five arrays, and its weights carry over.
A cell without recurrent weights (``RECURRENT = False``: minGRU, minLSTM) has no ``Whh``.

**Residual connections** (``residual``, layers ≥ 2; as the stacked models of Feng et al.
2024, "Were RNNs All We Needed?"): layer l ≥ 1 outputs its cell's h plus its own input,

    y_l = h_l + x_l        (x_l = the layer's input: layer l-1's output after its dropout mask)
    x_{l+1} = y_l ⊙ mask_l (dropout applies to the sum, as to a plain layer's h)

and the gradient reaching y_l flows into both, so dx_l = Wxh_lᵀ dxa_l + dy_l. Layer 0 (input
of size V) has none. The carried state is the cell's h, not y.

**Multiplicative integration** (``multiplicative``; Wu et al. 2016, "On Multiplicative
Integration with Recurrent Neural Networks"): every recurrent product is scaled, unit by unit,
by a vector computed from the input,

    m_t  = Wmx x_t + bm                         (G·H,), bm starting at 1
    cell pre-activations  m_t ⊙ (W h_{t-1}) + Wxh x_t + bh   instead of   W h_{t-1} + Wxh x_t + bh

so that the character just read chooses how strongly each unit listens to the past
(for a one-hot x_t, column x_t of Wmx is a per-character gain on Whh's rows; this is the
paper's ``α ⊙ Wx ⊙ Uh + β₁ ⊙ Uh + β₂ ⊙ Wx + b`` with its two input vectors untied). The
cells apply m_t inside their time loop (``xm``); each layer adds ``Wmx`` (G·H, D) and
``bm`` (G·H,). With m_t = 1 it is the plain cell exactly.

**Layer normalization** (``layer_norm``, for rnn, lstm and gru; Ba, Kiros & Hinton 2016, "Layer
Normalization"): the input part and the recurrent part of each gate's pre-activation are
normalized separately, each H-block over its H units (``charrnn.layernorm``), and scaled by
gains; ``bh`` stays the one bias:

    a_t = gh ⊙ N(W h_{t-1}) + gx ⊙ N(Wxh x_t) + bh

The input part does not depend on the recurrence, so it is normalized here, outside the time
loop: for layer 0 the (V, G·H) table Wxhᵀ once per chunk (then gathered), for layer l ≥ 1 the
T·B rows. The recurrent part is normalized by the cell, inside its loop (``norm``: the
layer's ``gh``, and the LSTM's ``gc``, ``bc`` of its normalized cell: the cell's ``NORM``). Each layer adds ``gx``
and ``gh`` (G·H,), starting at 1, and the LSTM's ``gc`` (H,) = 1 and ``bc`` (H,) = 0.

The carried state is a list with one tuple per layer, holding the arrays named by the
cell's ``STATE`` (``(h,)`` or ``(h, c)``), each (B, H).

Every function takes its array module from the parameters (``charrnn.device``): with CuPy
arrays the model runs on the GPU, and index arrays given from the host (X, Y) are copied
over. ``init_params`` draws on the host; ``device.to_device`` moves the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from charrnn import layernorm
from charrnn.cells import CELLS, recurrent
from charrnn.device import Array, Arrays, CounterRNG, array_module, lazy_float

if TYPE_CHECKING:
    from charrnn.config import ModelConfig

# The carried state: for each layer, the cell's arrays (h; h and c for the LSTM), each (B, H).
State = list[tuple[Array, ...]]


@dataclass(frozen=True)
class ModelSpec:
    """The architecture: everything needed to build, check or run a set of parameters."""

    cell: str  # a name in charrnn.cells.CELLS: "rnn" | "lstm" | "gru" | "mingru" | "minlstm"
    vocab_size: int  # V
    hidden_size: int  # H
    layers: int = 1  # L
    dropout: float = 0.0  # on non-recurrent connections only (between layers, before output)
    multiplicative: bool = False  # multiplicative integration (see the module docstring)
    layer_norm: bool = False  # layer normalization (see the module docstring), for a cell with NORM
    residual: bool = False  # layer l ≥ 1 outputs h_l + its input (see the module docstring)

    def __post_init__(self) -> None:
        cell = CELLS.get(self.cell)
        if self.layer_norm and cell is not None and not cell.NORM:
            raise ValueError(f"model.layer_norm needs a cell with layer normalization (a NORM), not {self.cell}")
        if self.multiplicative and cell is not None and not recurrent(cell):
            raise ValueError(f"{self.cell} has no recurrent product for multiplicative integration to scale")

    @classmethod
    def of(cls, model_config: ModelConfig, vocab_size: int) -> ModelSpec:
        """The spec of a config's ``model`` section, for a vocabulary of ``vocab_size``."""
        mc = model_config
        return cls(mc.cell, vocab_size, mc.hidden_size, mc.layers, mc.dropout, mc.multiplicative, mc.layer_norm,
                   mc.residual)

    def describe(self) -> str:
        """``gru, 1 layer(s) of 384`` (``, multiplicative``, ``, layer norm``, ``, residual`` when it is): for
        messages."""
        return (f"{self.cell}, {self.layers} layer(s) of {self.hidden_size}"
                + (", multiplicative" if self.multiplicative else "")
                + (", layer norm" if self.layer_norm else "")
                + (", residual" if self.residual else ""))

    @property
    def module(self) -> ModuleType:
        """The cell's module in ``charrnn.cells`` (its GATES, STATE, forward and backward)."""
        return CELLS[self.cell]


def pname(base: str, layer: int) -> str:
    """Name of a layer's parameter: ``Wxh`` for layer 0, ``Wxh_1`` for layer 1, ..."""
    return base if layer == 0 else f"{base}_{layer}"


def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of ``spec``, in a fixed order."""
    G, H, V = spec.module.GATES, spec.hidden_size, spec.vocab_size
    rec = recurrent(spec.module)
    shapes = {}
    for layer in range(spec.layers):
        D = V if layer == 0 else H
        shapes[pname("Wxh", layer)] = (G * H, D)
        if rec:
            shapes[pname("Whh", layer)] = (G * H, H)
        shapes[pname("bh", layer)] = (G * H,)
        if spec.multiplicative:
            shapes[pname("Wmx", layer)] = (G * H, D)
            shapes[pname("bm", layer)] = (G * H,)
        if spec.layer_norm:
            shapes[pname("gx", layer)] = (G * H,)
            for name, k in spec.module.NORM.items():  # gh; the LSTM's gc, bc
                shapes[pname(name, layer)] = (k * H,)
    shapes["Why"] = (V, H)
    shapes["by"] = (V,)
    return shapes


def init_params(spec: ModelSpec, rng: np.random.Generator, dtype: DTypeLike = np.float32,
                std: float = 0.01) -> Arrays:
    """min-char-rnn's initialisation: weights ``N(0, 1) · std``, biases zero (but the
    multipliers' ``bm``, one: a multiplicative model starts close to the plain one), and the
    layer norm's gains ``gx``, ``gh``, ``gc`` one.

    Cells may adjust their own biases afterwards (``cell.init_bias``, e.g. the LSTM's
    forget gate), so that the same initial weights serve every cell type.
    """
    params = {}
    for name, shape in param_shapes(spec).items():
        if name.startswith(("bm", "gx", "gh", "gc")):
            params[name] = np.ones(shape, dtype=dtype)
        elif name.startswith("b"):
            params[name] = np.zeros(shape, dtype=dtype)
        else:
            params[name] = (rng.standard_normal(shape) * std).astype(dtype)
    init_bias = getattr(spec.module, "init_bias", None)
    if init_bias is not None:
        for layer in range(spec.layers):
            init_bias(params[pname("bh", layer)])
    return params


def zero_state(spec: ModelSpec, batch_size: int, dtype: DTypeLike = np.float32,
               xp: ModuleType = np) -> State:
    """The state at the start of a stream: zeros, one tuple per layer, in ``xp``'s memory."""
    H = spec.hidden_size
    return [
        tuple(xp.zeros((batch_size, H), dtype=dtype) for _ in spec.module.STATE)
        for _ in range(spec.layers)
    ]


def dropout_masks(spec: ModelSpec, shape: tuple[int, int, int], rng: np.random.Generator | CounterRNG,
                  dtype: DTypeLike, xp: ModuleType = np) -> list[Array]:
    """Inverted-dropout masks, one per layer output, each (T, B, H): 0 or 1/(1-p), in ``xp``'s memory.

    ``rng``: anything with NumPy Generator's ``random(shape, dtype=)``: a NumPy Generator
    (the host's training generator), or a ``device.CounterRNG`` that draws on the GPU.
    """
    keep = 1.0 - spec.dropout
    scale = np.dtype(dtype).type(1.0 / keep)
    # Uniforms drawn in the model's dtype: float32 ones take half the time of float64's,
    # which is otherwise several percent of a float32 training step.
    return [(xp.asarray(rng.random(shape, dtype=dtype)) < keep).astype(dtype) * scale
            for _ in range(spec.layers)]


class Cache(NamedTuple):
    X: Array  # (T, B) input indices
    layer_inputs: list[Array]  # per layer l>0: (T, B, H) input (the masked output of layer l-1)
    cell_caches: list  # per layer: the cell's cache
    masks: list[Array | None] | None  # per layer: (T, B, H) dropout mask or None
    top: Array  # (T·B, H) the (masked) top-layer output read by the softmax
    norms: list | None = None  # per layer: layernorm.Cache of the input part (only with layer_norm)


def prepare(params: Arrays, spec: ModelSpec, batch_size: int) -> dict[str, Any]:
    """What ``forward`` derives from the weights before its time loop, per layer.

    Layer 0's input table ``Wxhᵀ + bh`` (V, G·H), whose rows the inputs gather (the same
    sums as adding bh after the gather, one pass fewer), ``Wmxᵀ + bm`` likewise for a
    multiplicative model, and each cell's ``prepare(Whh, batch_size)`` (None for a cell
    without recurrent weights). With layer_norm the
    table is ``gx ⊙ N(Wxhᵀ) + bh`` (each of the V rows normalized blockwise), and
    ``xa_norm`` holds the normalization's cache for ``backward``. ``forward``
    computes it for every chunk (the
    weights change between chunks); sampling computes it once per generated text, where
    it would otherwise be most of the cost of each character.
    """
    cell = spec.module
    xa_norm = None
    if spec.layer_norm:
        xa_table, xa_norm = layernorm.forward(params["Wxh"].T, params["gx"], cell.GATES)
        xa_table += params["bh"]  # (V, G·H), row v: gx ⊙ N(Wxh x) + bh for x = v
    else:
        xa_table = params["Wxh"].T + params["bh"]  # (V, G·H), row v: Wxh x + bh for x = v
    return {
        "xa_table": xa_table,
        "xa_norm": xa_norm,
        "xm_table": params["Wmx"].T + params["bm"] if spec.multiplicative else None,  # Wmx x + bm
        "cells": [cell.prepare(params[pname("Whh", layer)], batch_size) if recurrent(cell) else None
                  for layer in range(spec.layers)],
    }


def forward(params: Arrays, spec: ModelSpec, X: Array, state0: State, masks: list[Array | None] | None = None,
            prepared: dict[str, Any] | None = None) -> tuple[Array, State, Cache]:
    """Forward pass over a chunk, up to the logits.

    Parameters
    ----------
    params : dict name -> array (see ``param_shapes``).
    spec : ModelSpec.
    X : (T, B) int input character indices (host arrays are copied to the parameters' device).
    state0 : carried state, a list of L tuples of (B, H) arrays.
    masks : None (no dropout: evaluation, sampling) or a list of L (T, B, H) dropout masks.
    prepared : ``prepare(params, spec, B)`` for these weights, or None to compute it here.

    Returns
    -------
    logits : (T·B, V), position t·B + b.
    state : the state after the last step, to carry into the next chunk.
    cache : for ``backward``.
    """
    cell = spec.module
    T, B = X.shape
    X = array_module(params["Why"]).asarray(X)
    if prepared is None:
        prepared = prepare(params, spec, B)
    state, layer_inputs, cell_caches = [], [], []
    norms = [prepared["xa_norm"]] if spec.layer_norm else None
    x = None
    rec = recurrent(cell)
    for layer in range(spec.layers):
        Wxh, bh = params[pname("Wxh", layer)], params[pname("bh", layer)]
        Whh = params[pname("Whh", layer)] if rec else None
        if layer == 0:
            # Wxh x_t for a one-hot x_t is column x_t of Wxh: gather rows of Wxhᵀ + bh
            # (a contiguous table), for all T·B positions at once.
            xa = prepared["xa_table"][X]  # (T, B, G·H)
        else:
            layer_inputs.append(x)
            xa = x.reshape(T * B, -1) @ Wxh.T  # (T·B, G·H)
            if spec.layer_norm:  # gx ⊙ N(Wxh x_t), all T·B rows at once
                xa, c = layernorm.forward(xa, params[pname("gx", layer)], cell.GATES)
                norms.append(c)
            xa = xa.reshape(T, B, -1)  # (T, B, G·H)
            xa += bh
        xm = None  # m_t = Wmx x_t + bm, (T, B, G·H), the same way as xa
        if spec.multiplicative:
            if layer == 0:
                xm = prepared["xm_table"][X]
            else:
                xm = (x.reshape(T * B, -1) @ params[pname("Wmx", layer)].T).reshape(T, B, -1)
                xm += params[pname("bm", layer)]
        norm = tuple(params[pname(n, layer)] for n in cell.NORM) if spec.layer_norm else None
        hs, s, c = cell.forward(xa, state0[layer], Whh, prepared["cells"][layer], xm=xm, norm=norm)
        state.append(s)
        cell_caches.append(c)
        if spec.residual and layer > 0:
            hs = hs + x  # y_l = h_l + x_l, before the mask (a new array: the cell's cache holds h)
        x = hs if masks is None or masks[layer] is None else hs * masks[layer]
    top = x.reshape(T * B, -1)
    logits = top @ params["Why"].T
    logits += params["by"]
    return logits, state, Cache(X, layer_inputs, cell_caches, masks, top, norms)


def target_log_probs(logits: Array, Y: Array) -> tuple[Array, Array]:
    """log p[y] at each position, and the probabilities.

    logits : (N, V); Y : (N,) targets. Computed through log-sum-exp, so no probability
    under- or overflows. Returns (log p[y] (N,), probs (N, V)).
    """
    xp = array_module(logits)
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    return z[xp.arange(len(Y)), Y] - xp.log(s[:, 0]), e / s


def softmax_cross_entropy(logits: Array, Y: Array) -> tuple[float | Array, Array]:
    """Loss ``-Σ log p[y]`` over all positions, and the probabilities.

    The loss is a Python float on the host; on a device a 0-d float64 array, left unread
    (``device.lazy_float``): reading it would wait for the GPU every step.
    """
    logp_y, probs = target_log_probs(logits, Y)
    return -lazy_float(logp_y.sum(dtype=np.float64)), probs


def backward(params: Arrays, spec: ModelSpec, Y: Array, cache: Cache, probs: Array,
             dstate: State | None = None) -> tuple[Arrays, State]:
    """Backward pass over the chunk.

    Parameters
    ----------
    Y : (T, B) target indices.
    cache : from ``forward``; probs : (T·B, V) softmax probabilities.
    dstate : gradient with respect to the final state (None: zeros, as truncated BPTT).

    Returns
    -------
    grads : dict with the same keys and shapes as ``params``.
    dstate0 : gradient with respect to ``state0``, same structure as the state.
    """
    cell = spec.module
    T, B = Y.shape
    N = T * B
    xp = array_module(probs)
    # dy = p - onehot(y): the exact gradient of softmax + cross-entropy, / B because
    # the loss is averaged over the streams.
    dy = probs.copy()
    dy[xp.arange(N), Y.reshape(-1)] -= 1
    dy /= B
    grads = {"Why": dy.T @ cache.top, "by": dy.sum(axis=0)}
    dx = (dy @ params["Why"]).reshape(T, B, -1)  # gradient at the top layer's output
    dstate0 = [None] * spec.layers
    for layer in reversed(range(spec.layers)):
        if cache.masks is not None and cache.masks[layer] is not None:
            dx *= cache.masks[layer]
        ds = (
            dstate[layer]
            if dstate is not None
            else tuple(xp.zeros_like(dx[0]) for _ in cell.STATE)
        )
        dxa, dWhh, dstate0[layer], dxm, dnorm = cell.backward(dx, ds, cache.cell_caches[layer])
        dxa2 = dxa.reshape(N, -1)  # (T·B, G·H)
        if dWhh is not None:  # None: a cell without recurrent weights
            grads[pname("Whh", layer)] = dWhh
        grads[pname("bh", layer)] = dxa2.sum(axis=0)
        if spec.layer_norm:
            for n, d in zip(cell.NORM, dnorm, strict=True):
                grads[pname(n, layer)] = d
        if spec.multiplicative:  # m_t enters like xa: the same two gradients, from dxm
            dxm2 = dxm.reshape(N, -1)
            grads[pname("bm", layer)] = dxm2.sum(axis=0)
        Wxh = params[pname("Wxh", layer)]
        if layer == 0:
            # dWxh[:, v] = Σ of dxa over the positions whose input is v. As one product with
            # a (T·B, V) one-hot: several times faster than np.add.at at these sizes.
            onehot = xp.zeros((N, spec.vocab_size), dtype=dxa.dtype)
            onehot[xp.arange(N), cache.X.reshape(-1)] = 1
            if spec.layer_norm:  # d(table) (V, G·H), then back through the normalization of its rows
                dW, grads["gx"] = layernorm.backward(onehot.T @ dxa2, cache.norms[0])
                grads["Wxh"] = xp.ascontiguousarray(dW.T)
            else:
                grads[pname("Wxh", layer)] = dxa2.T @ onehot
            if spec.multiplicative:
                grads[pname("Wmx", layer)] = dxm2.T @ onehot
        else:
            x2 = cache.layer_inputs[layer - 1].reshape(N, -1)
            if spec.layer_norm:  # the gradient at Wxh x_t, before its normalization
                dxa2, grads[pname("gx", layer)] = layernorm.backward(dxa2, cache.norms[layer])
            grads[pname("Wxh", layer)] = dxa2.T @ x2
            dout = dx  # (T, B, H) the gradient at the layer's output y_l (before its mask)
            dx = dxa2 @ Wxh
            if spec.residual:  # y_l = h_l + x_l: x_l gets dy_l as well
                dx += dout.reshape(N, -1)
            if spec.multiplicative:
                Wmx = params[pname("Wmx", layer)]
                grads[pname("Wmx", layer)] = dxm2.T @ x2
                dx += dxm2 @ Wmx
            dx = dx.reshape(T, B, -1)
    return grads, dstate0


class StepResult(NamedTuple):
    loss: float | Array  # -Σ_t log p_t[y_t], averaged over streams (per chunk, not per character); 0-d on a device
    grads: Arrays
    state: State  # state after the chunk, to carry forward
    dstate0: State  # gradient with respect to the carried-in state


def loss_and_grads(params: Arrays, spec: ModelSpec, X: Array, Y: Array, state0: State,
                   masks: list[Array | None] | None = None, dstate: State | None = None) -> StepResult:
    """min-char-rnn's ``lossFun(inputs, targets, hprev)`` for B streams and any cell stack.

    The loss is the **sum over the T steps** of ``-log p_t[y_t]``, **averaged over the B
    streams**. For B = 1 this is exactly min-char-rnn's loss (a sum over the chunk), so its
    learning rates carry over; divide by T for nats per character.

    X, Y : (T, B) int inputs and targets (host arrays are copied to the parameters' device);
    state0 : carried state; masks : dropout masks or None.
    Returns a ``StepResult(loss, grads, state, dstate0)``; the loss is a float on the host, a
    0-d array on a device (see ``softmax_cross_entropy``).
    """
    Y = array_module(params["Why"]).asarray(Y)
    logits, state, cache = forward(params, spec, X, state0, masks)
    loss, probs = softmax_cross_entropy(logits, Y.reshape(-1))
    grads, dstate0 = backward(params, spec, Y, cache, probs, dstate)
    return StepResult(loss / X.shape[1], grads, state, dstate0)


def loss_only(params: Arrays, spec: ModelSpec, X: Array, Y: Array, state0: State,
              masks: list[Array | None] | None = None) -> tuple[float | Array, State]:
    """The loss and the final state, without the backward pass (evaluation)."""
    Y = array_module(params["Why"]).asarray(Y)
    logits, state, _ = forward(params, spec, X, state0, masks)
    loss, _ = softmax_cross_entropy(logits, Y.reshape(-1))
    return loss / X.shape[1], state
