import numpy as np

from charrnn import config, optim


def test_adagrad_matches_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    opt = optim.Adagrad(eps=1e-8)
    state = opt.init_state(p)
    opt.update(p, g, state, lr=0.1, step=1)
    mem = np.array([0.25, 0.0625])
    expect = np.array([1.0, -2.0]) - 0.1 * np.array([0.5, 0.25]) / np.sqrt(mem + 1e-8)
    np.testing.assert_allclose(state["mem.w"], mem, rtol=0, atol=0)
    np.testing.assert_allclose(p["w"], expect, rtol=1e-15)
    opt.update(p, g, state, lr=0.1, step=1)  # memory accumulates
    np.testing.assert_allclose(state["mem.w"], 2 * mem)


def test_clip_by_value_is_elementwise():
    g = {"a": np.array([-7.0, 3.0, 9.0])}
    optim.clip_by_value(g, 5.0)
    assert list(g["a"]) == [-5.0, 3.0, 5.0]
    # the same as np.clip, in the gradient's own dtype, NaN included
    x = np.random.default_rng(0).standard_normal((4, 50)).astype(np.float32) * 10
    x[0, 0] = np.nan
    g = {"x": x.copy()}
    optim.clip_by_value(g, 5.0)
    assert g["x"].dtype == np.float32
    np.testing.assert_array_equal(g["x"], np.clip(x, -5.0, 5.0))


def test_clip_by_norm_scales_all_gradients_together():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    norm = optim.clip_by_norm(g, 1.0)
    assert norm == 5.0
    assert np.isclose(np.sqrt(sum(np.sum(v**2) for v in g.values())), 1.0, atol=1e-6)
    np.testing.assert_allclose(g["a"] / g["b"][0], [0.75, 0.0])
    small = {"a": np.array([0.1])}
    optim.clip_by_norm(small, 1.0)
    assert small["a"][0] == 0.1


def one_update(opt, p0, g, steps=1, lr=0.01):
    p = {"w": np.array(p0, dtype=np.float64)}
    grads = {"w": np.array(g, dtype=np.float64)}
    state = opt.init_state(p)
    for t in range(1, steps + 1):
        opt.update(p, {"w": grads["w"].copy()}, state, lr, t)
    return p["w"], state


def test_rmsprop_matches_hand_computation():
    w, state = one_update(optim.RMSProp(decay=0.95, eps=1e-8), [1.0, 2.0], [0.5, -1.0], steps=2)
    g = np.array([0.5, -1.0])
    ms1 = 0.05 * g**2
    w1 = np.array([1.0, 2.0]) - 0.01 * g / (np.sqrt(ms1) + 1e-8)
    ms2 = 0.95 * ms1 + 0.05 * g**2
    w2 = w1 - 0.01 * g / (np.sqrt(ms2) + 1e-8)
    np.testing.assert_allclose(state["ms.w"], ms2, rtol=1e-15)
    np.testing.assert_allclose(w, w2, rtol=1e-15)


def test_adam_matches_hand_computation_with_bias_correction():
    w, state = one_update(optim.Adam(beta1=0.9, beta2=0.999, eps=1e-8), [1.0, 2.0], [0.5, -1.0], steps=2)
    g = np.array([0.5, -1.0])
    p = np.array([1.0, 2.0])
    m = v = np.zeros(2)
    for t in (1, 2):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        p = p - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(w, p, rtol=1e-14)
    np.testing.assert_allclose(state["m.w"], m, rtol=1e-15)
    # the first step of Adam moves every weight by about lr, whatever the gradient's size
    w1, _ = one_update(optim.Adam(), [0.0], [1e-3])
    assert np.isclose(w1[0], -0.01, rtol=1e-4)


def test_adamw_decays_weight_matrices_not_biases_outside_the_adaptive_step():
    W0, b0, g = np.array([[1.0, -2.0]]), np.array([3.0]), np.array([[0.5, -1.0]])
    params = {"W": W0.copy(), "b": b0.copy()}
    grads = {"W": g.copy(), "b": np.array([0.25])}
    opt = optim.Adam(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    state = opt.init_state(params)
    lr = 0.01
    W, b, m, v = W0.copy(), b0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    mb, vb = np.zeros(1), np.zeros(1)
    for t in (1, 2):
        opt.update(params, grads, state, lr, t)
        W = W * (1 - lr * 0.1)  # decoupled: the decay is not divided by sqrt(v)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        W = W - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        mb, vb = 0.9 * mb + 0.1 * 0.25, 0.999 * vb + 0.001 * 0.25**2
        b = b - lr * (mb / (1 - 0.9**t)) / (np.sqrt(vb / (1 - 0.999**t)) + 1e-8)  # no decay
    np.testing.assert_allclose(params["W"], W, rtol=1e-14)
    np.testing.assert_allclose(params["b"], b, rtol=1e-14)
    # with a zero gradient only the decay moves a matrix
    p0 = {"W": np.array([[2.0]])}
    opt0 = optim.Adam(weight_decay=0.5)
    opt0.update(p0, {"W": np.array([[0.0]])}, opt0.init_state(p0), 0.1, 1)
    assert p0["W"][0, 0] == 2.0 * (1 - 0.1 * 0.5)


def test_weight_decay_reaches_adam_from_the_config():
    cfg = config.from_dict({"optim": {"name": "adam", "weight_decay": 0.1}}, "cfg.yaml")
    assert optim.from_config(cfg.optim).weight_decay == 0.1
    assert optim.from_config(config.from_dict({"optim": {"name": "adam"}}, "cfg.yaml").optim).weight_decay == 0.0


def test_sgd_momentum_matches_hand_computation():
    w, state = one_update(optim.SGD(momentum=0.9), [1.0], [2.0], steps=3)
    buf, p = 0.0, 1.0
    for _ in range(3):
        buf = 0.9 * buf + 2.0
        p -= 0.01 * buf
    assert np.isclose(w[0], p, rtol=1e-15) and np.isclose(state["buf.w"][0], buf)


class Section:
    """A stand-in optim config section."""

    def __init__(self, **kw):
        self.__dict__.update(dict(lr=0.1, schedule="constant", decay_rate=0.5, decay_after=2, warmup_steps=10,
                                  min_lr=0.01))
        self.__dict__.update(kw)


def test_constant_schedule():
    assert optim.learning_rate(Section(), 1, 0, 100) == 0.1 == optim.learning_rate(Section(), 100, 7, 100)


def test_step_schedule_decays_at_the_end_of_each_epoch_from_decay_after_on():
    o = Section(schedule="step")
    # epochs completed: 0, 1 -> no decay; at the end of epoch 2 (decay_after) the first; then one per epoch
    assert [optim.learning_rate(o, 1, e, 100) for e in range(5)] == [0.1, 0.1, 0.05, 0.025, 0.0125]


def test_cosine_schedule_warms_up_linearly_then_decays_to_min_lr():
    o = Section(schedule="cosine")
    assert optim.learning_rate(o, 1, 0, 110) == 0.01
    assert optim.learning_rate(o, 5, 0, 110) == 0.05
    assert optim.learning_rate(o, 10, 0, 110) == 0.1
    assert np.isclose(optim.learning_rate(o, 60, 0, 110), (0.1 + 0.01) / 2)
    assert np.isclose(optim.learning_rate(o, 110, 0, 110), 0.01)
    assert np.isclose(optim.learning_rate(o, 500, 0, 110), 0.01)  # past the end: stays at min_lr


def test_linear_schedule_warms_up_then_falls_in_a_straight_line_to_min_lr():
    o = Section(schedule="linear")
    assert optim.learning_rate(o, 5, 0, 110) == 0.05 and optim.learning_rate(o, 10, 0, 110) == 0.1
    # after warm-up (step 10), 100 steps from 0.1 to 0.01: 0.0009 less per step
    for s in (20, 35, 60, 85, 110):
        assert np.isclose(optim.learning_rate(o, s, 0, 110), 0.1 - (s - 10) * 0.0009), s
    assert np.isclose(optim.learning_rate(o, 500, 0, 110), 0.01)


def test_ema_is_the_bias_corrected_weighted_mean_of_the_iterates():
    # Three updates with decay 0.9, from zeros: avg = 0.1 (0.81 p1 + 0.9 p2 + p3), and the
    # average is that over 1 - 0.9³ = 0.271, i.e. weights 0.081, 0.09, 0.1 over 0.271.
    iterates = [np.array([1.0, -2.0]), np.array([3.0, 0.0]), np.array([-1.0, 4.0])]
    avg = {"w": np.zeros(2)}
    for p in iterates:
        optim.ema_update(avg, {"w": p}, 0.9)
    np.testing.assert_allclose(avg["w"], 0.081 * iterates[0] + 0.09 * iterates[1] + 0.1 * iterates[2], rtol=1e-14)
    got = optim.averaged_weights(avg, 0.9, 3)["w"]
    expect = (0.081 * iterates[0] + 0.09 * iterates[1] + 0.1 * iterates[2]) / 0.271
    np.testing.assert_allclose(got, expect, rtol=1e-14)
    np.testing.assert_allclose(optim.averaged_weights({"w": 0.1 * iterates[0]}, 0.9, 1)["w"], iterates[0], rtol=1e-15)
    assert avg["w"] is not got  # the accumulator itself is left as it is
    f32 = {"w": np.zeros(3, np.float32)}
    optim.ema_update(f32, {"w": np.ones(3, np.float32)}, 0.999)
    assert f32["w"].dtype == np.float32 and optim.averaged_weights(f32, 0.999, 1)["w"].dtype == np.float32


def test_eval_weights_are_the_average_only_when_one_is_kept_and_a_step_was_taken():
    params, avg = {"w": np.array([2.0])}, {"w": np.array([0.1])}
    assert optim.eval_weights(params, None, 0.9, 5) is params
    assert optim.eval_weights(params, avg, 0.9, 0) is params  # nothing averaged yet
    np.testing.assert_allclose(optim.eval_weights(params, avg, 0.9, 1)["w"], [1.0])
