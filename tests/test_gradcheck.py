"""The gradient checker itself: it passes the real gradients and catches broken ones."""

import numpy as np
import pytest

from charrnn import model as M
from charrnn.cells import rnn
from charrnn.gradcheck import check_gradients, max_relative_error

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
        _, dWhh, dstate0, dxm = real_backward(dhs, dstate, cache)
        TB = dxa.shape[0] * dxa.shape[1]
        return dxa, dxa.reshape(TB, -1).T @ hs[:-1].reshape(TB, -1), dstate0, dxm

    monkeypatch.setattr(rnn, "backward", no_carry)
    rows = {r.name: r.max_rel_error for r in check_gradients(SPEC)}
    assert rows["Whh"] > 1e-3 and rows["Wxh"] > 1e-3


def test_relative_error_is_zero_where_both_are_zero():
    assert max_relative_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert max_relative_error(np.array([0.0]), np.array([1e-3])) == 1.0


@pytest.mark.parametrize("layers", [1, 2])
def test_two_chunks_with_carried_state_equal_one_chunk_of_twice_the_length(layers):
    spec = M.ModelSpec("rnn", 6, 8, layers)
    rng = np.random.default_rng(3)
    params = M.init_params(spec, rng, np.float64, std=0.3)
    T, B = 5, 3
    X = rng.integers(0, 6, size=(2 * T, B))
    Y = rng.integers(0, 6, size=(2 * T, B))
    s0 = M.zero_state(spec, B, np.float64)
    loss_full, state_full = M.loss_only(params, spec, X, Y, s0)
    l1, s1 = M.loss_only(params, spec, X[:T], Y[:T], s0)
    l2, s2 = M.loss_only(params, spec, X[T:], Y[T:], s1)
    assert abs((l1 + l2) - loss_full) <= 1e-12 * abs(loss_full)
    for a, b in zip(state_full, s2):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-13, atol=1e-15)
    # and the hidden states of the second half are the same, step by step
    logits_full, _, _ = M.forward(params, spec, X, s0)
    logits_2, _, _ = M.forward(params, spec, X[T:], s1)
    np.testing.assert_allclose(logits_full[T * B:], logits_2, rtol=1e-12, atol=1e-14)
