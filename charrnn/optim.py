"""Gradient clipping, optimizers and learning-rate schedules, on name-keyed dicts.

Parameters and gradients are dicts of arrays keyed by parameter name. An optimizer's state
is a plain dict of arrays keyed ``"<slot>.<param>"`` (e.g. ``"mem.Wxh"``), created by
``init_state`` and passed in to every ``update``, which changes parameters and state in
place. It is saved in checkpoints as it is, so a resumed run continues exactly.

Every function takes its array module from the arrays it is given (``charrnn.device``), and
none reads a device value back to the host: clipping by norm decides on the device, so a
training step on a GPU never waits for it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np

from charrnn.device import Array, Arrays, array_module, lazy_float

if TYPE_CHECKING:
    from charrnn.config import OptimConfig


def clip_by_value(grads: Arrays, limit: float) -> None:
    """min-char-rnn's clipping: every element into [-limit, limit], in place.

    As np.minimum then np.maximum: the same values (NaN stays NaN) as ``np.clip``, which
    costs several microseconds more per call, a tenth of a step at min-char-rnn's sizes.
    """
    for g in grads.values():
        xp = array_module(g)
        xp.minimum(g, limit, out=g)
        xp.maximum(g, -limit, out=g)


def _global_norm(grads: Arrays) -> Array:
    """sqrt(Σ ‖g‖²), a float64 scalar or 0-d array in the gradients' memory (not read back)."""
    xp = array_module(*grads.values())
    # Each ‖g‖² in g's dtype (BLAS's dot), the sum over arrays in float64.
    return xp.sqrt(sum(xp.vdot(g, g).astype(np.float64) for g in grads.values()))


def clip_by_norm(grads: Arrays, max_norm: float) -> float | Array:
    """Scale all gradients together so their global norm is at most ``max_norm``.

    Every gradient is multiplied by ``max_norm / (norm + 1e-6)`` if the norm exceeds
    ``max_norm``, else by 1 (which changes no value): the decision is made where the arrays
    are, so a GPU never waits for the host here. Returns the norm before clipping (a float
    on the host, a 0-d array on a device).
    """
    xp = array_module(*grads.values())
    norm = _global_norm(grads)
    scale = xp.where(norm > max_norm, max_norm / (norm + 1e-6), 1.0)
    for g in grads.values():
        g *= scale.astype(g.dtype)
    return lazy_float(norm)


class Optimizer(Protocol):
    """What every optimizer here has (none inherits from another; this only names the interface).

    ``slots``: the names of its per-parameter state arrays (``"mem"`` for Adagrad);
    ``init_state(params)``: that state, zeros, keyed ``"<slot>.<param>"``;
    ``update(params, grads, state, lr, step)``: one update of ``params`` and ``state``, in
    place; ``step`` is its number, from 1 (Adam's bias correction needs it).
    """

    slots: tuple[str, ...]

    def init_state(self, params: Arrays) -> Arrays: ...

    def update(self, params: Arrays, grads: Arrays, state: Arrays, lr: float, step: int) -> None: ...


def _zeros_state(slots: tuple[str, ...], params: Arrays) -> Arrays:
    """Zeros shaped like each parameter for every slot, in the parameters' memory."""
    return {f"{s}.{k}": array_module(p).zeros_like(p) for s in slots for k, p in params.items()}


def _scratch(bufs: dict[str, tuple], k: str, p: Array) -> tuple[Array, Array]:
    """Two work arrays shaped like parameter ``k``, kept in ``bufs`` from update to update.

    Every optimizer computes its update with the same operations in the same order as its
    formula, written into these (kept by the optimizer, not part of its state) instead of a
    fresh temporary for every operation.
    """
    u = bufs.get(k)
    if u is None or u[0].shape != p.shape or u[0].dtype != p.dtype or type(u[0]) is not type(p):
        xp = array_module(p)
        u = bufs[k] = (xp.empty_like(p), xp.empty_like(p))
    return u


class Adagrad:
    """min-char-rnn's update, exactly::

        mem   += g²
        param -= lr · g / sqrt(mem + eps)
    """

    slots = ("mem",)

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps
        self._bufs = {}  # scratch arrays per parameter, not optimizer state

    def init_state(self, params: Arrays) -> Arrays:
        return _zeros_state(self.slots, params)

    def update(self, params: Arrays, grads: Arrays, state: Arrays, lr: float, step: int) -> None:
        xp = array_module(*params.values())
        for k, p in params.items():
            g, mem = grads[k], state[f"mem.{k}"]
            u, r = _scratch(self._bufs, k, p)
            mem += xp.multiply(g, g, out=u)  # mem += g²
            xp.sqrt(xp.add(mem, self.eps, out=r), out=r)  # sqrt(mem + eps)
            xp.multiply(g, -lr, out=u)  # -lr · g
            u /= r
            p += u


class RMSProp:
    """char-rnn's RMSProp (Tieleman & Hinton)::

        ms    = decay · ms + (1 - decay) · g²
        param -= lr · g / (sqrt(ms) + eps)
    """

    slots = ("ms",)

    def __init__(self, decay: float = 0.95, eps: float = 1e-8) -> None:
        self.decay, self.eps = decay, eps
        self._bufs = {}  # scratch arrays per parameter, not optimizer state

    def init_state(self, params: Arrays) -> Arrays:
        return _zeros_state(self.slots, params)

    def update(self, params: Arrays, grads: Arrays, state: Arrays, lr: float, step: int) -> None:
        d = self.decay
        xp = array_module(*params.values())
        for k, p in params.items():
            g, ms = grads[k], state[f"ms.{k}"]
            u, r = _scratch(self._bufs, k, p)
            ms *= d
            xp.multiply(g, 1 - d, out=u)
            u *= g
            ms += u  # + (1 - decay) · g²
            xp.sqrt(ms, out=r)
            r += self.eps
            xp.multiply(g, -lr, out=u)
            u /= r
            p += u


class Adam:
    """Adam with bias correction (Kingma & Ba; torch-rnn, nanoGPT)::

        m = β1 m + (1 - β1) g;   v = β2 v + (1 - β2) g²
        param -= lr · (m / (1 - β1ᵗ)) / (sqrt(v / (1 - β2ᵗ)) + eps)

    ``step`` is t, the number of this update, counted from 1. With ``weight_decay`` wd > 0
    it is AdamW (Loshchilov & Hutter; nanoGPT): each weight matrix first shrinks by
    ``param -= lr · wd · param``, outside the adaptive scaling; biases (1-D parameters) do
    not decay, as in nanoGPT.
    """

    slots = ("m", "v")

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self._bufs = {}  # scratch arrays per parameter, not optimizer state

    def init_state(self, params: Arrays) -> Arrays:
        return _zeros_state(self.slots, params)

    def update(self, params: Arrays, grads: Arrays, state: Arrays, lr: float, step: int) -> None:
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1 - b1**step, 1 - b2**step
        xp = array_module(*params.values())
        for k, p in params.items():
            g, m, v = grads[k], state[f"m.{k}"], state[f"v.{k}"]
            u, r = _scratch(self._bufs, k, p)
            if self.weight_decay and p.ndim >= 2:
                p *= p.dtype.type(1 - lr * self.weight_decay)  # AdamW's decoupled decay
            m *= b1
            m += xp.multiply(g, 1 - b1, out=u)
            v *= b2
            xp.multiply(g, 1 - b2, out=u)
            u *= g
            v += u  # + (1 - β2) · g²
            xp.divide(v, c2, out=r)
            xp.sqrt(r, out=r)
            r += self.eps
            xp.multiply(m, -(lr / c1), out=u)
            u /= r
            p += u


class SGD:
    """SGD with (heavy-ball) momentum, as PyTorch's ``optim.SGD``::

        buf = momentum · buf + g;   param -= lr · buf
    """

    slots = ("buf",)

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum = momentum
        self._bufs = {}  # scratch arrays per parameter, not optimizer state

    def init_state(self, params: Arrays) -> Arrays:
        return _zeros_state(self.slots, params)

    def update(self, params: Arrays, grads: Arrays, state: Arrays, lr: float, step: int) -> None:
        xp = array_module(*params.values())
        for k, p in params.items():
            buf = state[f"buf.{k}"]
            buf *= self.momentum
            buf += grads[k]
            u, _ = _scratch(self._bufs, k, p)
            p += xp.multiply(buf, -lr, out=u)


def ema_update(avg: Arrays, params: Arrays, decay: float) -> None:
    """One step of the exponential moving average of the weights (Polyak averaging), in place::

        avg = decay · avg + (1 - decay) · param

    ``avg`` starts at zeros, like Adam's moments; ``averaged_weights`` removes the bias
    toward zero that this leaves, as Adam's bias correction does.
    """
    for k, p in params.items():
        a = avg[k]
        a *= decay
        a += (1 - decay) * p


def averaged_weights(avg: Arrays, decay: float, steps: int) -> Arrays:
    """The average after ``steps`` updates: ``avg / (1 - decay^steps)``.

    That is the mean of the weights after each update s = 1..steps, weighted by
    ``decay^(steps - s)``: recent weights count most, and weights older than about
    ``1 / (1 - decay)`` steps hardly at all. A new dict; ``avg`` is not changed.
    """
    norm = 1 - decay**steps
    return {k: a / norm for k, a in avg.items()}


def eval_weights(params: Arrays, avg: Arrays | None, decay: float, steps: int) -> Arrays:
    """The weights to evaluate and sample with: the average (``averaged_weights``) when one
    is kept (``avg`` not None) and a step has been taken, otherwise ``params`` themselves."""
    if avg is None or steps == 0:
        return params
    return averaged_weights(avg, decay, steps)


def from_config(o: OptimConfig) -> Optimizer:
    """The optimizer named by an ``optim`` config section (any object with its attributes)."""
    if o.name == "adagrad":
        return Adagrad(eps=o.eps)
    if o.name == "rmsprop":
        return RMSProp(decay=o.decay, eps=o.eps)
    if o.name == "adam":
        return Adam(beta1=o.beta1, beta2=o.beta2, eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return SGD(momentum=o.momentum)
    raise ValueError(f"unknown optimizer {o.name!r}")


# The schedules that warm up and then decay to ``min_lr`` at the last step.
DECAYING = ("cosine", "linear")

# The optimizers whose update size the rate sets, whatever the gradient's scale (each divides
# by a running root mean square): under ``train.variable_length`` their rate is scaled by
# length / T. SGD's update is the rate times the gradient, which for the chunk's summed loss
# is already about length / T as large, so it is not scaled again.
SCALE_FREE = ("adagrad", "rmsprop", "adam")


def learning_rate(o: OptimConfig, step: int, epoch: int, total_steps: int) -> float:
    """The learning rate for update number ``step`` (from 1) of ``total_steps``.

    constant: ``lr``.
    step (char-rnn): ``lr · decay^k`` where k counts the completed epochs from ``decay_after`` on
        (char-rnn multiplies by ``learning_rate_decay`` at the end of every epoch ≥ decay_after).
    cosine (nanoGPT): linear warm-up from 0 over ``warmup_steps``, then a half cosine from
        ``lr`` down to ``min_lr`` at ``total_steps``.
    linear: the same warm-up, then a straight line from ``lr`` down to ``min_lr`` at
        ``total_steps`` (with min_lr near 0, the "decay to zero" of Bergsma et al., 2025).
    """
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "step":
        first = max(1, o.decay_after)  # the first epoch at whose end the rate decays
        return o.lr * o.decay_rate ** max(0, epoch - first + 1)
    if o.schedule in DECAYING:
        if step <= o.warmup_steps:
            return o.lr * step / o.warmup_steps
        span = max(1, total_steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        left = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1 - progress
        return o.min_lr + left * (o.lr - o.min_lr)
    raise ValueError(f"unknown schedule {o.schedule!r}")
