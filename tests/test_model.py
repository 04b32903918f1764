"""Tests of charrnn/model.py, in its order: ModelSpec, param_shapes, init_params, zero_state,
dropout_masks, forward (with prepare), the loss (target_log_probs, softmax_cross_entropy),
backward through loss_and_grads, and loss_only.

The gradients themselves are checked against finite differences for every cell in
test_cells.py (through gradcheck.py); here: shapes, the loss's definition and averaging, and
the carried state (two chunks of T with the state carried equal one chunk of 2T).
"""

import math

import numpy as np
import pytest
from test_cells import CELL_NAMES, H, V, assert_close, random_problem, skip_multiplicative

from charrnn import config as C
from charrnn import model as M
from charrnn.cells import CELLS, recurrent

G = {"rnn": 1, "lstm": 4, "gru": 3, "mingru": 2, "minlstm": 3}  # gate blocks


# ---------------------------------------------------------------- ModelSpec


def test_model_spec_of_a_config_and_its_description():
    cfg = C.from_dict({"data": {"path": "c.txt"}, "model": {"cell": "gru", "hidden_size": 12, "layers": 2,
                                                           "dropout": 0.25, "multiplicative": True}}, "test")
    spec = M.ModelSpec.of(cfg.model, 30)
    assert spec == M.ModelSpec("gru", 30, 12, 2, 0.25, True)
    assert spec.module is CELLS["gru"]
    assert spec.describe() == "gru, 2 layer(s) of 12, multiplicative"
    assert M.ModelSpec("rnn", 5, 8).describe() == "rnn, 1 layer(s) of 8"
    cfg = C.from_dict({"data": {"path": "c.txt"}, "model": {"cell": "minlstm", "layers": 2, "residual": True}}, "test")
    spec = M.ModelSpec.of(cfg.model, 30)
    assert spec.residual and spec.describe() == "minlstm, 2 layer(s) of 100, residual"
    cfg = C.from_dict({"data": {"path": "c.txt"}, "model": {"cell": "lstm", "layers": 2, "layer_norm": True,
                                                           "residual": True}}, "test")
    spec = M.ModelSpec.of(cfg.model, 30)
    assert spec == M.ModelSpec("lstm", 30, 100, 2, 0.0, False, True, True)  # layer_norm, then residual
    assert spec.describe() == "lstm, 2 layer(s) of 100, layer norm, residual"
    with pytest.raises(ValueError, match="mingru has no recurrent product"):
        M.ModelSpec("mingru", 30, 12, multiplicative=True)


# ---------------------------------------------------------------- param_shapes, init_params


@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_param_shapes_follow_the_module_docstring(cell, multiplicative):
    skip_multiplicative(cell, multiplicative)
    g = G[cell] * H
    shapes = M.param_shapes(M.ModelSpec(cell, V, H, 2, 0.0, multiplicative))
    expected = {"Wxh": (g, V), "Whh": (g, H), "bh": (g,), "Wxh_1": (g, H), "Whh_1": (g, H), "bh_1": (g,),
                "Why": (V, H), "by": (V,)}
    if not recurrent(CELLS[cell]):  # minGRU, minLSTM: no recurrent weights
        del expected["Whh"], expected["Whh_1"]
    if multiplicative:
        expected.update({"Wmx": (g, V), "bm": (g,), "Wmx_1": (g, H), "bm_1": (g,)})
    assert {k: tuple(v) for k, v in shapes.items()} == expected


def test_a_one_layer_vanilla_model_has_exactly_min_char_rnns_arrays():
    assert list(M.param_shapes(M.ModelSpec("rnn", V, H))) == ["Wxh", "Whh", "bh", "Why", "by"]
    assert M.pname("Whh", 0) == "Whh" and M.pname("Whh", 2) == "Whh_2"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_params_draws_weights_times_std_and_zero_biases(dtype):
    spec = M.ModelSpec("rnn", 40, 50, 2)
    params = M.init_params(spec, np.random.default_rng(0), dtype, std=0.1)
    assert set(params) == set(M.param_shapes(spec))
    for name, p in params.items():
        assert p.dtype == dtype and p.shape == tuple(M.param_shapes(spec)[name])
        if name.startswith("b"):
            assert not p.any(), name
        else:
            assert 0.08 < p.std() < 0.12 and abs(p.mean()) < 0.02, name
    again = M.init_params(spec, np.random.default_rng(0), dtype, std=0.1)
    assert all(np.array_equal(params[k], again[k]) for k in params)  # the generator alone decides


def test_multiplicative_model_starts_with_unit_multiplier_biases():
    spec = M.ModelSpec("gru", V, H, 2, 0.0, True)
    params = M.init_params(spec, np.random.default_rng(0), np.float32, std=0.05)
    for layer in range(2):
        assert np.array_equal(params[M.pname("bm", layer)], np.ones(3 * H, np.float32))
        assert params[M.pname("bh", layer)].max() == 0
        w = params[M.pname("Wmx", layer)]
        assert w.dtype == np.float32 and 0.03 < w.std() < 0.07



# ---------------------------------------------------------------- zero_state


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_zero_state_has_one_tuple_per_layer_of_the_cells_state(cell):
    state = M.zero_state(M.ModelSpec(cell, V, H, 3), 4, np.float64)
    assert len(state) == 3
    for layer in state:
        assert len(layer) == len(CELLS[cell].STATE) == (2 if cell == "lstm" else 1)
        for a in layer:
            assert a.shape == (4, H) and a.dtype == np.float64 and not a.any()


# ---------------------------------------------------------------- dropout_masks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_masks_are_inverted_dropout_in_the_model_dtype(dtype):
    p = 0.2
    spec = M.ModelSpec("gru", V, 64, layers=2, dropout=p)
    masks = M.dropout_masks(spec, (50, 40, 64), np.random.default_rng(0), dtype)
    assert len(masks) == 2 and not np.array_equal(masks[0], masks[1])
    for m in masks:
        assert m.dtype == dtype and m.shape == (50, 40, 64)
        kept = m != 0
        # kept units are scaled by 1/(1-p), so the expected activation is unchanged
        np.testing.assert_allclose(m[kept], dtype(1 / (1 - p)), rtol=1e-6)
        assert abs((~kept).mean() - p) < 0.01, f"dropped {(~kept).mean():.4f}, expected {p}"


# ---------------------------------------------------------------- forward, the loss


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forward_shapes_and_prepared_weights_give_the_same_logits(cell):
    T, B = 5, 3
    spec = M.ModelSpec(cell, V, H, 2)
    params, X, _, state0 = random_problem(spec, T, B, seed=4)
    logits, state, cache = M.forward(params, spec, X, state0)
    assert logits.shape == (T * B, V)
    assert [tuple(a.shape for a in s) for s in state] == [tuple((B, H) for _ in spec.module.STATE)] * 2
    assert cache.top.shape == (T * B, H) and len(cache.layer_inputs) == 1 and cache.layer_inputs[0].shape == (T, B, H)
    again, _, _ = M.forward(params, spec, X, state0, prepared=M.prepare(params, spec, B))
    np.testing.assert_array_equal(again, logits)


def test_the_loss_is_summed_over_the_steps_and_averaged_over_the_streams():
    """What loss_and_grads's docstring says: Σ_t -log p_t[y_t], averaged over the B streams
    (for B = 1 min-char-rnn's loss); B copies of one stream give that stream's loss."""
    T, B = 6, 4
    spec = M.ModelSpec("lstm", V, H, 2)
    params, X, Y, state0 = random_problem(spec, T, B, seed=5)
    logits, _, _ = M.forward(params, spec, X, state0)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(T * B), Y.reshape(-1)].reshape(T, B)  # position (t, b)
    result = M.loss_and_grads(params, spec, X, Y, state0)
    assert math.isclose(result.loss, nll.sum() / B, rel_tol=1e-12)
    assert math.isclose(M.loss_only(params, spec, X, Y, state0)[0], result.loss, rel_tol=1e-14)
    # one stream alone (B = 1): the sum over its T steps, as min-char-rnn's lossFun
    for b in range(B):
        one = [tuple(a[b:b + 1] for a in s) for s in state0]
        loss_b = M.loss_and_grads(params, spec, X[:, b:b + 1], Y[:, b:b + 1], one).loss
        assert math.isclose(loss_b, nll[:, b].sum(), rel_tol=1e-12)
    # and the mean of the per-stream losses, so B copies of stream 0 give stream 0's loss
    copies = [tuple(np.repeat(a[:1], B, axis=0) for a in s) for s in state0]
    loss_copies = M.loss_and_grads(params, spec, np.repeat(X[:, :1], B, 1), np.repeat(Y[:, :1], B, 1), copies).loss
    assert math.isclose(loss_copies, nll[:, 0].sum(), rel_tol=1e-12)


def test_the_softmax_loss_neither_overflows_nor_underflows():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    with np.errstate(all="raise", under="ignore"):
        logp_y, probs = M.target_log_probs(logits, np.array([2, 1]))
        loss, _ = M.softmax_cross_entropy(logits, np.array([0, 1]))
    np.testing.assert_allclose(logp_y, [-2000.0, -math.log(3)])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert math.isclose(loss, math.log(3), rel_tol=1e-12)  # -log 1 - log(1/3)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("cell", ["gru", "mingru"])
def test_a_residual_layer_outputs_its_h_plus_its_input_then_the_mask(cell, dropout):
    """y_l = h_l + x_l for l ≥ 1, and dropout's mask applies to the sum; layer 0 has none."""
    T, B = 5, 3
    spec = M.ModelSpec(cell, V, H, 3, dropout, residual=True)
    params, X, _, state0 = random_problem(spec, T, B, seed=4)
    masks = M.dropout_masks(spec, (T, B, H), np.random.default_rng(5), np.float64) if dropout else [None] * 3
    _, _, cache = M.forward(params, spec, X, state0, masks if dropout else None)
    h = [c.hs[1:] for c in cache.cell_caches]
    outputs = cache.layer_inputs + [cache.top.reshape(T, B, H)]
    mask = [np.ones((T, B, H)) if m is None else m for m in masks]
    np.testing.assert_array_equal(outputs[0], h[0] * mask[0])
    for layer in (1, 2):
        np.testing.assert_array_equal(outputs[layer], (h[layer] + outputs[layer - 1]) * mask[layer])
    plain, _, _ = M.forward(params, M.ModelSpec(cell, V, H, 3, dropout), X, state0, masks if dropout else None)
    assert not np.allclose(plain, M.forward(params, spec, X, state0, masks if dropout else None)[0])


# ---------------------------------------------------------------- backward (loss_and_grads)


@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_loss_and_grads_returns_a_gradient_of_each_parameters_shape_and_the_state(cell, multiplicative):
    skip_multiplicative(cell, multiplicative)
    T, B = 4, 3
    spec = M.ModelSpec(cell, V, H, 2, 0.0, multiplicative)
    params, X, Y, state0 = random_problem(spec, T, B, seed=6)
    result = M.loss_and_grads(params, spec, X, Y, state0)
    assert set(result.grads) == set(params)
    for name, g in result.grads.items():
        assert g.shape == params[name].shape and g.dtype == np.float64 and np.abs(g).max() > 0, name
    _, state, _ = M.forward(params, spec, X, state0)
    for ours, ref in zip(result.state, state, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(ours, ref, strict=True))
    assert [tuple(a.shape for a in s) for s in result.dstate0] == [tuple(a.shape for a in s) for s in state0]


# ---------------------------------------------------------------- carried state


def _hidden_states(cache, T, B):
    """Every layer's output as (T, B, H) arrays, from the model's cache."""
    return [x for x in cache.layer_inputs] + [cache.top.reshape(T, B, -1)]


# the combinations a model can have: residual needs 2 layers, multiplicative a recurrent product
CARRIED = [pytest.param(c, L, m, r, id=f"{c}-{L}-{'mult' if m else 'plain'}{'-residual' if r else ''}")
           for c in CELL_NAMES for L in (1, 2) for m in (False, True) for r in (False, True)
           if (L == 2 or not r) and (not m or recurrent(CELLS[c]))]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("cell, layers, multiplicative, residual", CARRIED)
def test_two_chunks_with_carried_state_equal_one_long_chunk(cell, layers, dropout, multiplicative, residual):
    T, B = 4, 3
    spec = M.ModelSpec(cell, V, H, layers, dropout, multiplicative, residual=residual)
    params, X, Y, state0 = random_problem(spec, 2 * T, B, seed=1)
    masks = (
        M.dropout_masks(spec, (2 * T, B, H), np.random.default_rng(2), np.float64)
        if dropout
        else None
    )

    def chunk(masks, part):
        return None if masks is None else [m[part] for m in masks]

    first, second = slice(0, T), slice(T, 2 * T)

    # Forward: hidden states of every layer, final state, loss.
    logits, state_full, cache_full = M.forward(params, spec, X, state0, masks)
    _, state_mid, cache_a = M.forward(params, spec, X[first], state0, chunk(masks, first))
    _, state_end, cache_b = M.forward(params, spec, X[second], state_mid, chunk(masks, second))
    for layer, (full, a, b) in enumerate(
        zip(
            _hidden_states(cache_full, 2 * T, B),
            _hidden_states(cache_a, T, B),
            _hidden_states(cache_b, T, B), strict=False,
        )
    ):
        assert_close(np.concatenate([a, b]), full, f"layer {layer} hidden states", 1e-12)
    for layer in range(layers):
        for name, ours, ref in zip(spec.module.STATE, state_end[layer], state_full[layer], strict=False):
            assert_close(ours, ref, f"final state layer {layer} {name}", 1e-12)

    # Loss and gradients: with the second chunk's dstate0 fed into the first chunk's
    # backward, the sum of the chunks' gradients is the full 2T gradient.
    full = M.loss_and_grads(params, spec, X, Y, state0, masks)
    b = M.loss_and_grads(params, spec, X[second], Y[second], state_mid, chunk(masks, second))
    a = M.loss_and_grads(
        params, spec, X[first], Y[first], state0, chunk(masks, first), dstate=b.dstate0
    )
    assert abs(a.loss + b.loss - full.loss) <= 1e-12 * abs(full.loss), (
        f"loss: chunks {a.loss} + {b.loss} = {a.loss + b.loss}, one chunk {full.loss}"
    )
    for name, g in full.grads.items():
        assert_close(a.grads[name] + b.grads[name], g, f"grad {name}", 1e-10)
    for layer in range(layers):
        for name, ours, ref in zip(spec.module.STATE, a.dstate0[layer], full.dstate0[layer], strict=False):
            assert_close(ours, ref, f"dstate0 layer {layer} {name}", 1e-10)

    # loss_only (evaluation) carries the state the same way, and gives the same loss and state.
    l1, s1 = M.loss_only(params, spec, X[first], Y[first], state0, chunk(masks, first))
    l2, s2 = M.loss_only(params, spec, X[second], Y[second], s1, chunk(masks, second))
    assert abs(l1 + l2 - full.loss) <= 1e-12 * abs(full.loss)
    for layer in range(layers):
        for ours, ref in zip(s2[layer], full.state[layer], strict=True):
            assert_close(ours, ref, f"loss_only final state layer {layer}", 1e-12)
