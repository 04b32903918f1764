"""The gradient checker itself (charrnn/gradcheck.py): its figures (the finite differences, the
relative error, the random problem), that it passes the real gradients and that it catches
broken ones. The cells' gradients are checked with it in test_cells.py."""

import numpy as np
import pytest

from charrnn import model as M
from charrnn.cells import rnn
from charrnn.gradcheck import check_gradients, max_relative_error, numerical_gradient, random_problem

SPEC = M.ModelSpec("rnn", vocab_size=7, hidden_size=5, layers=1)


def worst(rows):
    return max(r.max_rel_error for r in rows)


def test_vanilla_gradients_pass_and_cover_every_parameter_and_the_initial_state():
    rows = check_gradients(SPEC)
    names = [r.name for r in rows]
    assert names == ["Wxh", "Whh", "bh", "Why", "by", "state0.0.h"]
    assert worst(rows) <= 1e-6, rows


def test_a_slightly_wrong_gradient_fails():
    def broken(params, spec, X, Y, state0, masks=None):
        res = M.loss_and_grads(params, spec, X, Y, state0, masks)
        res.grads["Whh"] *= 1.001  # a 0.1% error
        return res

    rows = {r.name: r.max_rel_error for r in check_gradients(SPEC, loss_and_grads=broken)}
    assert rows["Whh"] > 1e-4
    assert rows["Wxh"] <= 1e-6


def test_dropping_dhnext_fails(monkeypatch):
    """Forgetting to carry dhnext back through time breaks Whh, Wxh and the state gradient."""
    real_backward = rnn.backward

    def no_carry(dhs, dstate, cache):
        dxa = np.empty_like(dhs)
        hs, Whh = cache[:2]
        for t in range(dhs.shape[0]):
            dxa[t] = (1 - hs[t + 1] ** 2) * dhs[t]  # no dhnext
        _, dWhh, dstate0, dxm, dnorm = real_backward(dhs, dstate, cache)
        TB = dxa.shape[0] * dxa.shape[1]
        return dxa, dxa.reshape(TB, -1).T @ hs[:-1].reshape(TB, -1), dstate0, dxm, dnorm

    monkeypatch.setattr(rnn, "backward", no_carry)
    rows = {r.name: r.max_rel_error for r in check_gradients(SPEC)}
    assert rows["Whh"] > 1e-3 and rows["Wxh"] > 1e-3


def test_relative_error_is_zero_where_both_are_zero():
    assert max_relative_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert max_relative_error(np.array([0.0]), np.array([1e-3])) == 1.0


def test_relative_error_of_a_tiny_element_is_measured_against_1e_4_of_the_largest():
    analytic, numeric = np.array([1.0, 1e-6]), np.array([1.0, 2e-6])
    assert max_relative_error(analytic, numeric) == pytest.approx(1e-6 / 1e-4)  # not 0.5
    assert max_relative_error(np.array([2.0, -1.0]), np.array([2.0, -1.5])) == pytest.approx(0.5 / 1.5)
    assert max_relative_error(np.zeros(0), np.zeros(0)) == 0.0


def test_numerical_gradient_is_sixth_order_exact_and_restores_x():
    """The stencil differentiates a polynomial of degree 6 exactly (to rounding), even with a
    large step; an element that the function ignores gets exactly 0; x comes back unchanged."""
    x = np.array([0.3, -1.2, 0.7, 2.0])
    before = x.copy()

    def f():
        return float(np.sum(x[:3] ** 6 - 2 * x[:3] ** 3))  # ignores x[3]

    grad = numerical_gradient(f, x, eps=0.1)
    np.testing.assert_allclose(grad[:3], 6 * before[:3] ** 5 - 6 * before[:3] ** 2, rtol=1e-10)
    assert grad[3] == 0.0
    np.testing.assert_array_equal(x, before)
    # a two-point difference with this step would be far off: the check is not vacuous
    two_point = (np.sum((before[:3] + 0.1) ** 6) - np.sum((before[:3] - 0.1) ** 6)) / 0.2
    assert abs(two_point - np.sum(6 * before[:3] ** 5)) > 1e-2


def test_random_problem_has_nonzero_biases_and_state_in_float64():
    spec = M.ModelSpec("lstm", 7, 5, 2)
    params, X, Y, state0 = random_problem(spec, 4, 3, np.random.default_rng(0))
    assert all(p.dtype == np.float64 for p in params.values())
    assert all(np.abs(params[b]).min() > 0 for b in ("bh", "bh_1", "by"))
    assert X.shape == Y.shape == (4, 3) and X.max() < 7 and Y.max() < 7
    assert [len(s) for s in state0] == [2, 2] and all(np.abs(a).min() > 0 for s in state0 for a in s)


def test_the_floor_is_the_models_largest_gradient_when_given():
    """An array whose gradients are all small (a deep network's first layer) is measured against
    1e-4 of the model's largest gradient, not of its own largest: rounding is absolute."""
    analytic, numeric = np.array([1e-3, 1e-7]), np.array([1e-3, 1e-7 + 1e-12])
    assert max_relative_error(analytic, numeric) == pytest.approx(1e-12 / (1e-7 + 1e-12))  # 1e-5: "FAILED"
    assert max_relative_error(analytic, numeric, scale=1.0) == pytest.approx(1e-12 / 1e-4)


@pytest.mark.slow  # 4-layer LSTMs: a few seconds each
@pytest.mark.parametrize("layers, seed", [(3, 5), (4, 9)])
def test_deep_multiplicative_lstms_pass_with_a_margin(layers, seed):
    """charrnn gradcheck --cell lstm --layers 3 --seed 5 said FAILED (1.46e-6) with the floor of
    each array's own largest gradient and eps 2e-3; 4 layers, seed 9 was the worst of seeds 0-20
    (see benchmarks/gradcheck_margins.py). The gradients are right to about 1e-12 absolute."""
    rows = check_gradients(M.ModelSpec("lstm", 7, 5, layers, 0.0, True), seed=seed)
    assert worst(rows) <= 2.5e-7, max(rows, key=lambda r: r.max_rel_error)


@pytest.mark.slow
def test_a_wrong_gradient_in_the_first_layer_of_a_deep_lstm_still_fails():
    """The model's floor does not hide an error in an array of small gradients: 0.01% too much in
    the first layer's input weights of a 4-layer LSTM (gradients about 100 times smaller than
    the output layer's) is caught, and the other arrays still pass."""
    spec = M.ModelSpec("lstm", 7, 5, 4)

    def broken(params, spec, X, Y, state0, masks=None):
        res = M.loss_and_grads(params, spec, X, Y, state0, masks)
        res.grads["Wxh"] *= 1.0001
        return res

    rows = {r.name: r.max_rel_error for r in check_gradients(spec, seed=5, loss_and_grads=broken)}
    assert rows["Wxh"] > 1e-5
    assert max(e for name, e in rows.items() if name != "Wxh") <= 1e-6
