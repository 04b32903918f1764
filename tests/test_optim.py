import numpy as np

from charrnn import optim


def test_adagrad_matches_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    opt = optim.Adagrad(eps=1e-8)
    state = opt.init_state(p)
    opt.update(p, g, state, lr=0.1)
    mem = np.array([0.25, 0.0625])
    expect = np.array([1.0, -2.0]) - 0.1 * np.array([0.5, 0.25]) / np.sqrt(mem + 1e-8)
    np.testing.assert_allclose(state["mem.w"], mem, rtol=0, atol=0)
    np.testing.assert_allclose(p["w"], expect, rtol=1e-15)
    opt.update(p, g, state, lr=0.1)  # memory accumulates
    np.testing.assert_allclose(state["mem.w"], 2 * mem)


def test_clip_by_value_is_elementwise():
    g = {"a": np.array([-7.0, 3.0, 9.0])}
    optim.clip_by_value(g, 5.0)
    assert list(g["a"]) == [-5.0, 3.0, 5.0]


def test_clip_by_norm_scales_all_gradients_together():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    norm = optim.clip_by_norm(g, 1.0)
    assert norm == 5.0
    assert np.isclose(optim.global_norm(g), 1.0, atol=1e-6)
    np.testing.assert_allclose(g["a"] / g["b"][0], [0.75, 0.0])
    small = {"a": np.array([0.1])}
    optim.clip_by_norm(small, 1.0)
    assert small["a"][0] == 0.1
