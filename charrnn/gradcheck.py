"""Numerical gradient check: analytic gradients against centred finite differences.

A library function that returns figures; the ``gradcheck`` command prints them and the
tests assert on them. Everything runs in float64 on a small random model with B > 1,
T > 1 and a non-zero initial state, so the carried state and ``dhnext`` are checked too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from charrnn import model as M
from charrnn.device import Array, Arrays

DEFAULT_EPS = 1e-3  # the finite-difference step (see numerical_gradient)
# With layer normalization: N divides by a block's standard deviation, and a block of H = 5
# random values can have σ ≈ 0.1, so the loss's higher derivatives (and the ε⁶ truncation
# error) grow by powers of 1/σ: at ε = 1e-3 single elements of Wxh reached 5e-4, at 1e-4 all
# stay under 1e-7 (rounding, ~1e-16 · |loss| / ε, is still far below the floor).
LAYER_NORM_EPS = 1e-4
# A cell with a kink (``kink_distance``: minGRU's and minLSTM's g) is checked with a step ε
# that keeps KINK_MARGIN·ε·X below the distance of the nearest pre-activation to the kink, X the
# largest input of any layer (at least 1, layer 0's one-hot): the stencil moves a parameter by
# 3ε, a pre-activation by 3ε times an input, and more through the layers below, so 10ε·X keeps
# every difference on one side. The step shrinks at most MAX_SHRINK-fold (1e-4: rounding,
# 1e-16·|loss|/ε, still two orders below the tolerance); a problem that needs more is drawn again.
KINK_MARGIN = 10
MAX_SHRINK = 10
MAX_DRAWS = 1000


class Row(NamedTuple):
    name: str  # parameter name, or "state0.<layer>.<h|c>" for the initial state
    shape: tuple[int, ...]
    max_rel_error: float  # see max_relative_error


def numerical_gradient(f: Callable[[], float], x: Array, eps: float) -> Array:
    """Centred differences for every element of ``x``, with the sixth-order stencil

        f'(x) ≈ (45 (f(x+ε) - f(x-ε)) - 9 (f(x+2ε) - f(x-2ε)) + (f(x+3ε) - f(x-3ε))) / 60ε

    whose truncation error is O(ε⁶) instead of the two-point formula's O(ε²). The two errors
    pull ε apart: the truncation error grows as ε⁶ (the multiplicative RNN's higher derivatives
    are the largest: at ε = 2e-3 it reached 6.6e-7 of a gradient, 3 layers deep), the rounding
    error as 1/ε (about 1e-16 · |loss| / ε, the same for every element). ε = 1e-3 keeps both
    near 1e-7 of the model's largest gradient (``DEFAULT_EPS``; the measurements are in
    docs/commands.md). (The fourth-order stencil was not enough once the multiplicative cells
    came in: its O(ε⁴) error reached 4e-6.)
    Differences are taken before scaling, so an element the loss does not depend on gets
    exactly 0.

    ``x`` is perturbed in place and restored; ``f()`` returns the loss as a float.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views
    for i in range(flat.size):
        old = flat[i]
        f3p, f2p, f1p, f1m, f2m, f3m = [_at(f, flat, i, old + k * eps) for k in (3, 2, 1, -1, -2, -3)]
        flat[i] = old
        gflat[i] = (45 * (f1p - f1m) - 9 * (f2p - f2m) + (f3p - f3m)) / (60 * eps)
    return grad


def _at(f, flat, i, value):
    flat[i] = value
    return f()


def max_relative_error(analytic: Array, numeric: Array, scale: float | None = None) -> float:
    """max over elements of ``|a - n| / max(|a|, |n|, 1e-4 · scale)`` (0 where all are 0).

    scale : the model's largest gradient, over all its arrays (default: this array's largest).

    The floor: a finite difference's rounding error is absolute (about 1e-16 · |loss| / ε) and
    the same for every element of every array, so an element ten thousand times smaller than
    the model's largest gradient cannot be checked to 1e-6 of itself; its error is measured
    against 1e-4 of the largest instead. The floor is the model's, not the array's: the first
    layer of a 4-layer LSTM has gradients 100 times smaller than the output layer's (they
    fade on their way down), and against a floor of its own largest element its rounding
    error looked like a relative error of up to 1e-5 (``charrnn gradcheck`` said FAILED for
    gradients that are right to 1e-12).
    """
    diff = np.abs(analytic - numeric)
    if scale is None:
        scale = float(np.abs(analytic).max()) if analytic.size else 0.0
    floor = 1e-4 * scale
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return float(rel.max()) if rel.size else 0.0


def random_problem(spec: M.ModelSpec, T: int, B: int, rng: np.random.Generator,
                   std: float = 0.5) -> tuple[Arrays, Array, Array, M.State]:
    """A float64 model and a chunk to check it on: (params, X, Y, state0).

    Weights N(0, 1) · std, non-zero biases and gains other than 1 (so their paths matter), random (T, B)
    inputs and targets, and a random non-zero carried state (h, and c for the LSTM).
    """
    params = M.init_params(spec, rng, dtype=np.float64, std=std)
    for name, p in params.items():
        if name.startswith(("b", "gx", "gh", "gc")):
            p += rng.standard_normal(p.shape) * std
    X = rng.integers(0, spec.vocab_size, size=(T, B))
    Y = rng.integers(0, spec.vocab_size, size=(T, B))
    state0 = [
        tuple(rng.standard_normal((B, spec.hidden_size)) * 0.5 for _ in s)
        for s in M.zero_state(spec, B, np.float64)
    ]
    return params, X, Y, state0


def check_gradients(
    spec: M.ModelSpec,
    *,
    T: int = 4,
    B: int = 3,
    seed: int = 0,
    std: float = 0.5,
    eps: float | None = None,
    loss_and_grads: Callable[..., M.StepResult] = M.loss_and_grads,
) -> list[Row]:
    """Check every parameter's gradient and the gradient of the initial state.

    Parameters
    ----------
    spec : ModelSpec (small: e.g. V=7, H=5). ``spec.dropout > 0`` draws one fixed set of
        masks, used for every evaluation, so the check is exact with dropout too. For a cell
        with a ``kink_distance`` (minGRU, minLSTM) ``eps`` shrinks to keep the differences on
        one side of the kink, and the problem is drawn again (from the same generator) where
        that would take it below ``eps / MAX_SHRINK`` (see ``KINK_MARGIN``).
    T, B : chunk length and number of streams (both > 1 to exercise the recurrence).
    std : scale of the random weights (large enough for non-trivial gradients).
    eps : the finite-difference step; None: ``DEFAULT_EPS``, or ``LAYER_NORM_EPS`` for a
        model with ``layer_norm``.
    loss_and_grads : the function under test (replaceable, so the checker can be tested
        against a deliberately broken gradient).

    Returns a list of ``Row`` (one per parameter, then one per initial-state array); every
    error is measured with the floor of the model's largest gradient (``max_relative_error``).
    """
    if eps is None:
        eps = LAYER_NORM_EPS if spec.layer_norm else DEFAULT_EPS
    rng = np.random.default_rng(seed)
    kink_distance = getattr(spec.module, "kink_distance", None)
    for _ in range(MAX_DRAWS):
        params, X, Y, state0 = random_problem(spec, T, B, rng, std)
        masks = (
            M.dropout_masks(spec, (T, B, spec.hidden_size), rng, np.float64)
            if spec.dropout > 0
            else None
        )
        if kink_distance is None:
            break
        # A cell whose nonlinearity has a kink (minGRU's and minLSTM's g, at 0) is smooth only
        # away from it: the step shrinks to keep the stencil's reach on one side of the nearest
        # kink, down to eps / MAX_SHRINK; closer than that, the problem is drawn again.
        cache = M.forward(params, spec, X, state0, masks)[2]
        reach = KINK_MARGIN * max([1.0] + [float(np.abs(x).max()) for x in cache.layer_inputs])
        step = min(kink_distance(c) for c in cache.cell_caches) / reach
        if step >= eps / MAX_SHRINK:
            eps = min(eps, step)
            break
    else:
        raise ValueError(f"no random problem for {spec.describe()} kept its pre-activations away from a kink "
                         f"in {MAX_DRAWS} draws")
    result = loss_and_grads(params, spec, X, Y, state0, masks)

    def f():
        return M.loss_only(params, spec, X, Y, state0, masks)[0]

    checked = [(name, result.grads[name], numerical_gradient(f, p, eps)) for name, p in params.items()]
    # One entry per layer, each with the cell's STATE arrays, on both sides (strict=False: as
    # zip always behaved here).
    for layer, (s, ds) in enumerate(zip(state0, result.dstate0, strict=False)):
        for sname, arr, darr in zip(spec.module.STATE, s, ds, strict=False):
            checked.append((f"state0.{layer}.{sname}", darr, numerical_gradient(f, arr, eps)))
    scale = max(float(np.abs(a).max()) for _, a, _ in checked)
    return [Row(name, a.shape, max_relative_error(a, num, scale)) for name, a, num in checked]
