"""Tests of the recurrent cells (rnn, lstm, gru, mingru, minlstm) through the model that stacks them.

- numeric gradient checks (float64) for 1 and 2 layers, with and without dropout, plain
  and with multiplicative integration (not for mingru and minlstm: no recurrent product),
  with layer normalization (rnn, lstm, gru), and with residual connections at 2 layers (with
  and without layer normalization);
- cross-checks against PyTorch autograd: ``nn.RNN`` and ``nn.LSTM`` with our weights
  copied in, and our GRU (reset gate before the product, as *循环神经网络* writes it) written
  by hand with torch operations; the layer-normalized cells written with torch operations
  and ``torch.nn.functional.layer_norm`` per gate block; and so minGRU and minLSTM (Feng et
  al. 2024), in their sequential form, with and without residual connections.

Sizes are small (V=7, H=5) so the whole file runs in a few seconds. The model's own
behaviour (carried state, the loss's averaging, shapes, initialisation, dropout masks) is
tested in test_model.py.
"""

import numpy as np
import pytest

from charrnn import gradcheck
from charrnn import model as M
from charrnn.cells import CELLS, lstm, mingru, recurrent
from charrnn.gradcheck import check_gradients

V, H = 7, 5  # vocabulary, hidden units
CELL_NAMES = ["rnn", "lstm", "gru", "mingru", "minlstm"]  # every cell: a test keeps it equal to CELLS
MIN_CELLS = ["mingru", "minlstm"]  # no recurrent weights
# (cell, layer_norm): every cell plain, and with layer normalization where it has a NORM
CELL_NORMS = [(c, ln) for c in CELL_NAMES for ln in ((False, True) if CELLS[c].NORM else (False,))]
CELL_NORM_IDS = [c + ("-ln" if ln else "") for c, ln in CELL_NORMS]
NORM_CELLS = [c for c in CELL_NAMES if CELLS[c].NORM]  # the cells with layer normalization


def skip_multiplicative(cell, multiplicative):
    """The multiplicative rows skip the cells that have no recurrent product to scale."""
    if multiplicative and not recurrent(CELLS[cell]):
        pytest.skip(f"{cell} has no recurrent product: no multiplicative integration")


def test_cell_names_are_every_cell():
    assert CELL_NAMES == list(CELLS)
    assert [c for c, ln in CELL_NORMS if ln] == ["rnn", "lstm", "gru"]  # the min cells have no NORM


def random_problem(spec, T, B, seed=0, std=0.5):
    """float64 parameters with non-zero biases, inputs, targets and a non-zero state."""
    return gradcheck.random_problem(spec, T, B, np.random.default_rng(seed), std)


def assert_close(ours, ref, what, rel=1e-6):
    """``max |ours - ref| ≤ rel · max |ref|``, with a message that shows both."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape}, reference {ref.shape}"
    err, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    assert err <= rel * scale, (
        f"{what}: max |ours - reference| = {err:.3e} > {rel:g} · max |reference| "
        f"= {rel * scale:.3e}\nours:\n{ours}\nreference:\n{ref}"
    )


# ---------------------------------------------------------------- gradient checks


# layer norm with multiplicative integration: the slowest single-layer rows, run with the slow tests
CELL_NORM_MULT = [pytest.param(c, ln, m, id=f"{i}-{'mult' if m else 'plain'}",
                               marks=pytest.mark.slow if ln and m else ())
                  for (c, ln), i in zip(CELL_NORMS, CELL_NORM_IDS, strict=True)
                  for m in ((False, True) if recurrent(CELLS[c]) else (False,))]  # min cells: nothing to scale


@pytest.mark.parametrize("dropout", [0.0, 0.3])
# 2 layers: the slow part of the suite's math, run with the slow tests
@pytest.mark.parametrize("layers", [1, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell, layer_norm, multiplicative", CELL_NORM_MULT)
def test_gradients_match_finite_differences(cell, layer_norm, layers, dropout, multiplicative):
    skip_multiplicative(cell, multiplicative)
    _check(M.ModelSpec(cell, V, H, layers, dropout, multiplicative, layer_norm))


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("cell, layer_norm", CELL_NORMS, ids=CELL_NORM_IDS)
def test_residual_gradients_match_finite_differences(cell, layer_norm, dropout):
    """Residual connections for every cell, and together with layer normalization (rnn, lstm, gru)."""
    _check(M.ModelSpec(cell, V, H, 2, dropout, layer_norm=layer_norm, residual=True))


def _check(spec):
    cell, layers, multiplicative, layer_norm = spec.cell, spec.layers, spec.multiplicative, spec.layer_norm
    rows = check_gradients(spec)
    expected = {*M.param_shapes(M.ModelSpec(cell, V, H, layers, 0.0, multiplicative, layer_norm))}
    assert multiplicative == ("Wmx" in expected)
    assert layer_norm == ("gx" in expected) == ("gh" in expected)
    assert recurrent(CELLS[cell]) == ("Whh" in expected)
    expected |= {f"state0.{layer}.{s}" for layer in range(layers) for s in CELLS[cell].STATE}
    assert {r.name for r in rows} == expected
    bad = [r for r in rows if not r.max_rel_error <= 1e-6]
    assert not bad, "max relative error above 1e-6:\n" + "\n".join(
        f"  {r.name} {r.shape}: {r.max_rel_error:.3e}" for r in bad
    )


# ---------------------------------------------------------------- multiplicative integration


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_multiplicative_with_unit_multipliers_is_the_plain_cell(cell, layers):
    """With Wmx = 0 and bm = 1 every m_t is 1: the same loss, gradients and state as the
    plain model with the same other weights; and dbm is then Σ_t dxa ⊙ (W h_{t-1}),
    which is not zero, so the multipliers do learn."""
    skip_multiplicative(cell, True)
    plain = M.ModelSpec(cell, V, H, layers)
    mult = M.ModelSpec(cell, V, H, layers, 0.0, True)
    params, X, Y, state0 = random_problem(plain, 5, 3, seed=6)
    pm = dict(params)
    for layer in range(layers):
        G_H = params[M.pname("bh", layer)].shape[0]
        D = params[M.pname("Wxh", layer)].shape[1]
        pm[M.pname("Wmx", layer)] = np.zeros((G_H, D))
        pm[M.pname("bm", layer)] = np.ones(G_H)
    a = M.loss_and_grads(params, plain, X, Y, state0)
    b = M.loss_and_grads(pm, mult, X, Y, state0)
    assert a.loss == b.loss
    for name, g in a.grads.items():
        assert np.array_equal(g, b.grads[name]), name
    for sa, sb in zip(a.state + a.dstate0, b.state + b.dstate0, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(sa, sb, strict=True))
    for layer in range(layers):
        assert np.abs(b.grads[M.pname("bm", layer)]).max() > 1e-3
        assert np.abs(b.grads[M.pname("Wmx", layer)]).max() > 1e-3


# ---------------------------------------------------------------- dtype and numerics


@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_float32_stays_float32_and_saturation_raises_no_warning(cell, multiplicative):
    skip_multiplicative(cell, multiplicative)
    spec = M.ModelSpec(cell, V, H, 2, 0.0, multiplicative)
    rng = np.random.default_rng(3)
    # std=50: pre-activations in the hundreds saturate every gate; the sigmoid must not
    # overflow (1 / (1 + exp(-x)) would, in float32, from x < -88).
    params = M.init_params(spec, rng, dtype=np.float32, std=50.0)
    X = rng.integers(0, V, size=(6, 2))
    state0 = M.zero_state(spec, 2, np.float32)
    # Underflow is allowed: exp of a very negative logit is rightly 0 in the softmax.
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        result = M.loss_and_grads(params, spec, X, X, state0)
    for name, g in result.grads.items():
        assert g.dtype == np.float32, f"grad {name} is {g.dtype}, expected float32"
    for layer, (s, ds) in enumerate(zip(result.state, result.dstate0, strict=True)):
        for a in s + ds:
            assert a.dtype == np.float32, f"layer {layer} state is {a.dtype}"
        assert all(np.isfinite(a).all() for a in s + ds)


def test_lstm_forget_bias_starts_at_one():
    spec = M.ModelSpec("lstm", V, H, layers=2)
    params = M.init_params(spec, np.random.default_rng(0))
    for name in ("bh", "bh_1"):
        i, f, g, o = params[name].reshape(4, H)
        assert (f == 1).all(), f"{name} forget block {f}, expected ones"
        assert not i.any() and not g.any() and not o.any(), f"{name}: other blocks not zero"


# ---------------------------------------------------------------- PyTorch cross-checks



@pytest.fixture
def torch():
    # Per test, not at import: without torch only these tests are skipped.
    return pytest.importorskip(
        "torch", reason="PyTorch is not installed: the autograd cross-checks are skipped"
    )


def _torch_loss(torch, logits, Y):
    """Our loss in torch: Σ over time of cross-entropy, averaged over the B streams."""
    T, B = Y.shape
    targets = torch.from_numpy(Y).reshape(-1)
    ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), targets, reduction="sum")
    return ce / B


def _compare(spec, ours, loss, grads, dstate0):
    assert_close(ours.loss, loss, "loss")
    assert set(grads) == set(ours.grads)
    for name, ref in grads.items():
        assert_close(ours.grads[name], ref, f"grad {name}")
    for layer in range(spec.layers):
        for name, a, ref in zip(spec.module.STATE, ours.dstate0[layer], dstate0[layer], strict=True):
            assert_close(a, ref, f"dstate0 layer {layer} {name}")


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_matches_torch_nn_module(torch, cell, layers):
    """Our weights copied into nn.RNN (tanh) / nn.LSTM (gate order i, f, g, o): same loss,
    same gradients, including those of the initial state."""
    T, B = 6, 3
    spec = M.ModelSpec(cell, V, H, layers=layers)
    params, X, Y, state0 = random_problem(spec, T, B, seed=4)
    ours = M.loss_and_grads(params, spec, X, Y, state0)

    if cell == "rnn":
        net = torch.nn.RNN(V, H, num_layers=layers, nonlinearity="tanh")
    else:
        net = torch.nn.LSTM(V, H, num_layers=layers)
    net = net.double()
    out = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        for layer in range(layers):
            getattr(net, f"weight_ih_l{layer}").copy_(torch.from_numpy(params[M.pname("Wxh", layer)]))
            getattr(net, f"weight_hh_l{layer}").copy_(torch.from_numpy(params[M.pname("Whh", layer)]))
            getattr(net, f"bias_ih_l{layer}").copy_(torch.from_numpy(params[M.pname("bh", layer)]))
            getattr(net, f"bias_hh_l{layer}").zero_()  # we have one bias; torch's two add up
        out.weight.copy_(torch.from_numpy(params["Why"]))
        out.bias.copy_(torch.from_numpy(params["by"]))
    # (L, B, H) per state array, as torch takes them.
    s0 = [
        torch.from_numpy(np.stack([s[k] for s in state0])).requires_grad_()
        for k in range(len(spec.module.STATE))
    ]
    x = torch.nn.functional.one_hot(torch.from_numpy(X), V).double()  # (T, B, V)
    hs, _ = net(x, s0[0] if cell == "rnn" else tuple(s0))
    loss = _torch_loss(torch, out(hs), Y)
    loss.backward()

    grads = {"Why": out.weight.grad.numpy(), "by": out.bias.grad.numpy()}
    for layer in range(layers):
        grads[M.pname("Wxh", layer)] = getattr(net, f"weight_ih_l{layer}").grad.numpy()
        grads[M.pname("Whh", layer)] = getattr(net, f"weight_hh_l{layer}").grad.numpy()
        grads[M.pname("bh", layer)] = getattr(net, f"bias_ih_l{layer}").grad.numpy()
    dstate0 = [tuple(s.grad[layer].numpy() for s in s0) for layer in range(layers)]
    _compare(spec, ours, loss.item(), grads, dstate0)


@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gru_matches_torch_autograd_of_its_equations(torch, layers, multiplicative):
    """torch.nn.GRU computes a different cell (reset after the product), so this cell's
    equations are written out with torch operations and differentiated by autograd; with
    multiplicative integration, each recurrent product times m_t = Wmx x_t + bm."""
    T, B = 6, 3
    spec = M.ModelSpec("gru", V, H, layers, 0.0, multiplicative)
    params, X, Y, state0 = random_problem(spec, T, B, seed=5)
    ours = M.loss_and_grads(params, spec, X, Y, state0)

    P = {name: torch.from_numpy(p.copy()).requires_grad_() for name, p in params.items()}
    h0 = [torch.from_numpy(s[0].copy()).requires_grad_() for s in state0]
    inputs = torch.nn.functional.one_hot(torch.from_numpy(X), V).double()  # (T, B, V)
    for layer in range(layers):
        U, W, b = (P[M.pname(n, layer)] for n in ("Wxh", "Whh", "bh"))
        U_r, U_z, U_h = U[:H], U[H : 2 * H], U[2 * H :]
        W_r, W_z, W_h = W[:H], W[H : 2 * H], W[2 * H :]
        b_r, b_z, b_h = b[:H], b[H : 2 * H], b[2 * H :]
        h, hs = h0[layer], []
        for t in range(T):
            x = inputs[t]
            if multiplicative:
                m = x @ P[M.pname("Wmx", layer)].T + P[M.pname("bm", layer)]
                m_r, m_z, m_h = m[:, :H], m[:, H : 2 * H], m[:, 2 * H :]
            else:
                m_r = m_z = m_h = 1.0
            r = torch.sigmoid(m_r * (h @ W_r.T) + x @ U_r.T + b_r)
            z = torch.sigmoid(m_z * (h @ W_z.T) + x @ U_z.T + b_z)
            h_cand = torch.tanh(m_h * ((r * h) @ W_h.T) + x @ U_h.T + b_h)
            h = z * h + (1 - z) * h_cand
            hs.append(h)
        inputs = torch.stack(hs)
    loss = _torch_loss(torch, inputs @ P["Why"].T + P["by"], Y)
    loss.backward()

    grads = {name: p.grad.numpy() for name, p in P.items()}
    dstate0 = [(h.grad.numpy(),) for h in h0]
    _compare(spec, ours, loss.item(), grads, dstate0)


def _torch_g(torch, a):
    """The paper's g: a + 0.5 for a ≥ 0, σ(a) below."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


@pytest.mark.parametrize(("layers", "residual", "dropout"), [(1, False, 0.0), (2, False, 0.0), (2, True, 0.0),
                                                             (2, True, 0.3)])
@pytest.mark.parametrize("cell", MIN_CELLS)
def test_min_cells_match_torch_autograd_of_the_papers_equations(torch, cell, layers, residual, dropout):
    """minGRU and minLSTM as Feng et al. 2024 write them, sequentially, with torch operations
    (minLSTM's f / (f + i) directly, not our log-space form); residual: layer l ≥ 1 outputs
    h + its input, then the dropout mask. Same loss and every gradient, by autograd."""
    T, B = 6, 3
    spec = M.ModelSpec(cell, V, H, layers, dropout, residual=residual)
    params, X, Y, state0 = random_problem(spec, T, B, seed=7)
    masks = M.dropout_masks(spec, (T, B, H), np.random.default_rng(8), np.float64) if dropout else None
    ours = M.loss_and_grads(params, spec, X, Y, state0, masks)

    P = {name: torch.from_numpy(p.copy()).requires_grad_() for name, p in params.items()}
    h0 = [torch.from_numpy(s[0].copy()).requires_grad_() for s in state0]
    inputs = torch.nn.functional.one_hot(torch.from_numpy(X), V).double()  # (T, B, V)
    for layer in range(layers):
        U, b = P[M.pname("Wxh", layer)], P[M.pname("bh", layer)]
        h, hs = h0[layer], []
        for t in range(T):
            a = inputs[t] @ U.T + b
            if cell == "mingru":
                z, h_cand = torch.sigmoid(a[:, :H]), _torch_g(torch, a[:, H:])
                h = (1 - z) * h + z * h_cand
            else:
                f, i = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])
                h_cand = _torch_g(torch, a[:, 2 * H :])
                h = f / (f + i) * h + i / (f + i) * h_cand
            hs.append(h)
        out = torch.stack(hs)
        if residual and layer > 0:
            out = out + inputs
        inputs = out if masks is None else out * torch.from_numpy(masks[layer])
    loss = _torch_loss(torch, inputs @ P["Why"].T + P["by"], Y)
    loss.backward()

    grads = {name: p.grad.numpy() for name, p in P.items()}
    assert "Whh" not in grads
    dstate0 = [(h.grad.numpy(),) for h in h0]
    _compare(spec, ours, loss.item(), grads, dstate0)


def test_min_cells_g_is_the_papers():
    """g(a) = a + 0.5 for a ≥ 0, σ(a) below: continuous at 0, positive everywhere."""
    a = np.array([-10.0, -2.0, -1e-9, 0.0, 1e-9, 3.0])
    val, _, pos = mingru.g(a)
    np.testing.assert_allclose(val, np.where(a >= 0, a + 0.5, 1 / (1 + np.exp(-a))), rtol=1e-10)
    assert (val > 0).all() and abs(val[2] - val[3]) < 1e-9 and pos.tolist() == [False] * 3 + [True] * 3
    assert val[3] == 0.5 and val[5] == 3.5  # exactly a + 0.5 above 0
    np.testing.assert_allclose(mingru.log_sigmoid(np.array([-800.0, -3.0, 0.0, 3.0, 800.0])),
                               [-800.0, -np.log1p(np.exp(3.0)), -np.log(2), -np.log1p(np.exp(-3.0)), 0.0], rtol=1e-14)


def test_lstm_init_bias_is_torch_forget_block(torch):
    """The block init_bias sets is the one torch's nn.LSTM uses as its forget gate: with
    every weight zero, that block's bias at +30 and the others at -30, f ≈ 1 and i ≈ 0,
    so torch's cell keeps c_t = c_{t-1}."""
    net = torch.nn.LSTM(V, H).double()
    bh = np.zeros(4 * H)
    lstm.init_bias(bh)  # 1 on the forget block, 0 elsewhere
    bh = 60 * bh - 30
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.bias_ih_l0.copy_(torch.from_numpy(bh))
    c0 = torch.randn(1, 2, H, dtype=torch.float64)
    _, (_, c1) = net(torch.zeros(1, 2, V, dtype=torch.float64), (torch.zeros_like(c0), c0))
    assert torch.allclose(c1, c0, atol=1e-12), "init_bias's block is not torch's forget gate"


# ---------------------------------------------------------------- layer normalization


@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", NORM_CELLS)
def test_layer_norm_cells_match_torch_autograd_of_their_equations(torch, cell, layers, multiplicative):
    """Ba, Kiros & Hinton's layer-normalized cells written with torch operations,
    ``torch.nn.functional.layer_norm`` on each gate block with weight = its gain (no bias),
    eps 1e-5: the same loss and every gradient (gains included) as ours."""
    T, B = 6, 3
    F = torch.nn.functional
    spec = M.ModelSpec(cell, V, H, layers, 0.0, multiplicative, True)
    params, X, Y, state0 = random_problem(spec, T, B, seed=7)
    ours = M.loss_and_grads(params, spec, X, Y, state0)
    G = spec.module.GATES

    def N(a, gain, blocks):  # each H-block of a's last axis normalized on its own
        return torch.cat([F.layer_norm(a[:, k * H : (k + 1) * H], (H,), gain[k * H : (k + 1) * H], None, 1e-5)
                          for k in range(blocks)], dim=1)

    P = {name: torch.from_numpy(p.copy()).requires_grad_() for name, p in params.items()}
    s0 = [tuple(torch.from_numpy(a.copy()).requires_grad_() for a in s) for s in state0]
    inputs = torch.nn.functional.one_hot(torch.from_numpy(X), V).double()  # (T, B, V)
    for layer in range(layers):
        U, W, b, gx, gh = (P[M.pname(n, layer)] for n in ("Wxh", "Whh", "bh", "gx", "gh"))
        h, hs = s0[layer][0], []
        c = s0[layer][1] if cell == "lstm" else None
        for t in range(T):
            x = inputs[t]
            m = x @ P[M.pname("Wmx", layer)].T + P[M.pname("bm", layer)] if multiplicative else 1.0
            xa = N(x @ U.T, gx, G) + b
            if cell == "rnn":
                h = torch.tanh(N(m * (h @ W.T), gh, 1) + xa)
            elif cell == "gru":
                mrz, mh = (m[:, : 2 * H], m[:, 2 * H :]) if multiplicative else (1.0, 1.0)
                rz = torch.sigmoid(N(mrz * (h @ W[: 2 * H].T), gh[: 2 * H], 2) + xa[:, : 2 * H])
                r, z = rz[:, :H], rz[:, H:]
                h_cand = torch.tanh(N(mh * ((r * h) @ W[2 * H :].T), gh[2 * H :], 1) + xa[:, 2 * H :])
                h = z * h + (1 - z) * h_cand
            else:
                a = N(m * (h @ W.T), gh, 4) + xa
                i, f, g, o = (torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H]),
                              torch.tanh(a[:, 2 * H : 3 * H]), torch.sigmoid(a[:, 3 * H :]))
                c = f * c + i * g
                h = o * torch.tanh(F.layer_norm(c, (H,), P[M.pname("gc", layer)], P[M.pname("bc", layer)], 1e-5))
            hs.append(h)
        inputs = torch.stack(hs)
    loss = _torch_loss(torch, inputs @ P["Why"].T + P["by"], Y)
    loss.backward()

    grads = {name: p.grad.numpy() for name, p in P.items()}
    dstate0 = [tuple(a.grad.numpy() for a in s) for s in s0]
    _compare(spec, ours, loss.item(), grads, dstate0)


def test_layer_norm_is_refused_for_a_cell_without_norm(monkeypatch):
    monkeypatch.setattr(CELLS["rnn"], "NORM", {})  # as a cell that declares no layer normalization
    with pytest.raises(ValueError, match=r"model.layer_norm needs a cell with layer normalization \(a NORM\), "
                                         r"not rnn"):
        M.ModelSpec("rnn", V, H, 1, 0.0, False, True)
    monkeypatch.undo()
    assert M.ModelSpec("gru", V, H, 1, 0.0, True, True).describe() == "gru, 1 layer(s) of 5, multiplicative, layer norm"
    shapes = M.param_shapes(M.ModelSpec("lstm", V, H, 2, 0.0, False, True))
    assert [(n, shapes[n]) for n in ("gx_1", "gh_1", "gc_1", "bc_1")] == \
        [("gx_1", (4 * H,)), ("gh_1", (4 * H,)), ("gc_1", (H,)), ("bc_1", (H,))]


@pytest.mark.parametrize("cell", NORM_CELLS)
def test_layer_norm_model_is_invariant_to_rescaling_the_weights(cell):
    """What the normalization is for: scaling Wxh and Whh of every layer by 7 changes no
    output (each pre-activation block is normalized), up to ε's share in the variance."""
    spec = M.ModelSpec(cell, V, H, 2, 0.0, False, True)
    params, X, Y, state0 = random_problem(spec, 5, 3, seed=2)
    scaled = {n: p * 7 if n.startswith(("Wxh", "Whh")) else p for n, p in params.items()}
    a, _ = M.loss_only(params, spec, X, Y, state0)
    b, _ = M.loss_only(scaled, spec, X, Y, state0)
    assert abs(a - b) < 1e-4 * abs(a), (a, b)
    plain = M.ModelSpec(cell, V, H, 2)
    pp = {n: p for n, p in params.items() if n in M.param_shapes(plain)}
    c, _ = M.loss_only(pp, plain, X, Y, state0)
    d, _ = M.loss_only({n: p * 7 if n.startswith(("Wxh", "Whh")) else p for n, p in pp.items()}, plain, X, Y, state0)
    assert abs(c - d) > 1e-2 * abs(c), "the plain model should change: the test would not detect a no-op"


@pytest.mark.parametrize("cell", [c for c in CELL_NAMES if not recurrent(CELLS[c])])
@pytest.mark.parametrize("given", ["Whh", "xm", "norm"])
def test_a_min_cell_refuses_the_recurrent_arguments_it_has_no_use_for(cell, given):
    mod = CELLS[cell]
    xa = np.zeros((2, 1, mod.GATES * 3))
    extra = {"Whh": np.zeros((3, 3)), "xm": np.ones_like(xa), "norm": (np.ones(3),)}[given]
    with pytest.raises(ValueError, match=f"{cell} has no recurrent weights"):
        mod.forward(xa, (np.zeros((1, 3)),), **{given: extra})
    mod.forward(xa, (np.zeros((1, 3)),))  # without them: runs
