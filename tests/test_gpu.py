"""GPU tests: the same core on CuPy, checked against the CPU.

Skipped, with the reason, where CuPy is not installed or no GPU runs a kernel (CI has
neither): ``tests/test_device.py`` checks on the CPU that the core would run on any array
module. Run here on a machine with an NVIDIA GPU and ``pip install 'charrnn[gpu]'``:

    python -m pytest -q tests/test_gpu.py

- float64 gradients on the GPU equal the CPU's to 1e-10 relative, for every cell, 1 and 2
  layers, multiplicative, dropout with the same mask; with the fused kernels and without;
- the fused kernels (``charrnn.kernels``) against the plain array-module lines, per cell;
- the GPU dropout generator (``device.CounterRNG``) against its NumPy definition, bit for bit;
- a 50-step float64 training loop (the library calls train.py makes) matches the CPU to 1e-9;
- ``evaluate`` gives the same loss on both to 1e-6 in float32;
- through the command line (``--device gpu``, wired into train/eval/sample by the training
  loop's owner; these skip, saying so, until ``charrnn train --help`` lists ``--device``):
  the 50-step run against the CPU, exact resume on the GPU, a GPU checkpoint evaluated,
  sampled and resumed on the CPU, ``eval`` on both.
"""

import json

import numpy as np
import pytest
from conftest import CORPUS, run, small_config

from charrnn import checkpoint as ckpt_io
from charrnn import device, gradcheck, kernels, optim
from charrnn import model as M
from charrnn.cells import CELLS, recurrent
from charrnn.data import Streams, build_vocab, encode, read_text
from charrnn.errors import CharrnnError
from charrnn.evaluate import evaluate

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'charrnn[gpu]'): no GPU tests")
try:
    xp = device.get_xp("gpu")
except CharrnnError as e:
    pytest.skip(f"CuPy is installed but no GPU is usable: {e}", allow_module_level=True)


def on_gpu(tree):
    return device.to_device(tree, cupy)


def max_rel(ours, ref):
    """max |ours - ref| / max |ref| (0 where both are all 0)."""
    ours, ref = device.to_host(ours), device.to_host(ref)
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    err = float(np.abs(ours - ref).max()) if ref.size else 0.0
    return 0.0 if err == 0 else err / max(scale, 1e-300)


def assert_tree_close(ours, ref, rel, what):
    if isinstance(ref, dict):
        assert ours.keys() == ref.keys()
        for k in ref:
            assert_tree_close(ours[k], ref[k], rel, f"{what}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        for i, (o, r) in enumerate(zip(ours, ref, strict=True)):
            assert_tree_close(o, r, rel, f"{what}[{i}]")
    else:
        e = max_rel(ours, ref)
        assert e <= rel, f"{what}: max |GPU - CPU| / max |CPU| = {e:.3e} > {rel:g}"


V, H, T, B = 11, 16, 12, 5
CASES = [(1, 0.0, False), (2, 0.0, False), (1, 0.0, True), (2, 0.3, True)]
CASE_IDS = ["1-layer", "2-layers", "mult", "2-layers-mult-dropout"]


def problem(spec, seed=0):
    """float64 params, (T, B) inputs and targets, a non-zero state, a carried gradient, masks."""
    rng = np.random.default_rng(seed)
    params, X, Y, state0 = gradcheck.random_problem(spec, T, B, rng, 0.5)
    dstate = [tuple(rng.standard_normal((B, H)) for _ in s) for s in state0]
    masks = M.dropout_masks(spec, (T, B, H), rng, np.float64) if spec.dropout else None
    return params, X, Y, state0, dstate, masks


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["no-ln", "ln"])
@pytest.mark.parametrize("layers,dropout,multiplicative", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_float64_gradients_on_the_gpu_equal_the_cpus(cell, layers, dropout, multiplicative, layer_norm, fused):
    if multiplicative and not recurrent(CELLS[cell]):
        pytest.skip(f"{cell} has no recurrent product: no multiplicative integration")
    if layer_norm and not CELLS[cell].NORM:
        pytest.skip(f"{cell} has no layer normalization (no NORM)")
    # the min cells (no mult rows) take residual connections at 2 layers instead
    spec = M.ModelSpec(cell, V, H, layers, dropout, multiplicative, layer_norm,
                       layers > 1 and not recurrent(CELLS[cell]))
    params, X, Y, state0, dstate, masks = problem(spec)
    for ds in (None, dstate):
        ref = M.loss_and_grads(params, spec, X, Y, state0, masks, ds)
        with kernels.enabled(fused):
            ours = M.loss_and_grads(on_gpu(params), spec, X, Y, on_gpu(state0), on_gpu(masks), on_gpu(ds))
        assert isinstance(ours.grads["Why"], cupy.ndarray)
        assert abs(float(ours.loss) - ref.loss) <= 1e-10 * abs(ref.loss)
        assert_tree_close(ours.grads, ref.grads, 1e-10, "grads")
        assert_tree_close(ours.state, ref.state, 1e-10, "state")
        assert_tree_close(ours.dstate0, ref.dstate0, 1e-10, "dstate0")


@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-12), (np.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_kernels_equal_the_plain_lines(cell, multiplicative, dtype, rel):
    """Each cell's forward and backward on the GPU, with its fused kernels and without."""
    mod, Hc, Tc, Bc = CELLS[cell], 48, 20, 7
    G = mod.GATES * Hc
    rng = np.random.default_rng(1)

    def g(*shape):
        return cupy.asarray(rng.standard_normal(shape).astype(dtype))

    xa, Whh, dhs = g(Tc, Bc, G), g(G, Hc) * 0.3, g(Tc, Bc, Hc)
    xm = (1 + 0.5 * g(Tc, Bc, G)) if multiplicative else None
    state0 = tuple(g(Bc, Hc) for _ in mod.STATE)
    dstate = tuple(g(Bc, Hc) for _ in mod.STATE)
    results = {}
    for fused in (True, False):
        with kernels.enabled(fused):
            hs, state, cache = mod.forward(xa, state0, Whh, xm=xm)
            back = mod.backward(dhs, dstate, cache)
        results[fused] = dict(hs=hs, state=state, dxa=back[0], dWhh=back[1], dstate0=back[2], dxm=back[3])
    for name, ref in results[False].items():
        if ref is not None:
            e = max_rel(results[True][name], ref)
            assert e <= rel, f"{cell} {name}: fused vs plain kernels differ by {e:.3e} (relative) > {rel:g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_dropout_generator_on_the_gpu_is_its_numpy_definition_bit_for_bit(dtype):
    gpu, cpu = device.CounterRNG(12345, xp=cupy), device.CounterRNG(12345)
    for shape in [(3, 50, 7), (1,), (64, 32, 512)]:
        u = gpu.random(shape, dtype)
        assert isinstance(u, cupy.ndarray) and u.dtype == dtype and u.shape == shape
        assert np.array_equal(u.get(), cpu.random(shape, dtype))
    assert gpu.state == cpu.state
    spec = M.ModelSpec("lstm", V, H, 2, dropout=0.4)
    d = M.dropout_masks(spec, (T, B, H), device.CounterRNG(9, xp=cupy), dtype, xp=cupy)
    h = M.dropout_masks(spec, (T, B, H), device.CounterRNG(9), dtype)
    assert all(isinstance(a, cupy.ndarray) and np.array_equal(a.get(), b) for a, b in zip(d, h, strict=True))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_evaluate_on_the_gpu_equals_the_cpu_in_float32(cell):
    text = read_text(CORPUS)[:20000]
    vocab = build_vocab(text)
    data = encode(text, vocab)
    spec = M.ModelSpec(cell, len(vocab), 64, 2, multiplicative=cell == "gru", residual=cell == "mingru")
    # Weights of a trainable size (recurrent gain below 1): with std 0.3 at H = 64 the
    # recurrence is chaotic, and one-ulp differences (another tanh) grow over the 1,250 steps.
    params = M.init_params(spec, np.random.default_rng(2), np.float32, std=0.08)
    ref = evaluate(params, spec, data, batch_size=16, seq_length=64)
    ours = evaluate(on_gpu(params), spec, data, batch_size=16, seq_length=64)
    assert ours.chars == ref.chars
    assert abs(ours.nats - ref.nats) <= 1e-6 * ref.nats, (ours.nats, ref.nats)


def train_loop(params, spec, data, steps, xp_, T_=16, B_=8):
    """The training step train.py runs (Adam, clip by norm, weight average), ``steps`` times."""
    opt = optim.Adam()
    opt_state, avg = opt.init_state(params), {k: p * 0 for k, p in params.items()}
    streams, state = Streams(data, B_, T_), M.zero_state(spec, B_, np.float64, xp_)
    losses, p = [], 0
    for step in range(1, steps + 1):
        if streams.wraps(p):
            p, state = 0, M.zero_state(spec, B_, np.float64, xp_)
        X, Y = streams.batch(p)
        loss, grads, state, _ = M.loss_and_grads(params, spec, X, Y, state)
        optim.clip_by_norm(grads, 1.0)
        opt.update(params, grads, opt_state, 2e-3, step)
        optim.ema_update(avg, params, 0.9)
        losses.append(loss)
        p += T_
    return [float(v) for v in losses], params, opt_state, avg


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_fifty_float64_training_steps_on_the_gpu_match_the_cpu(cell):
    text = read_text(CORPUS)[:6000]
    vocab = build_vocab(text)
    data = encode(text, vocab)
    spec = M.ModelSpec(cell, len(vocab), 32, 2, multiplicative=cell in ("lstm", "gru"), residual=cell == "minlstm")
    params = M.init_params(spec, np.random.default_rng(3), np.float64, std=0.1)
    ref = train_loop({k: v.copy() for k, v in params.items()}, spec, data, 50, np)
    ours = train_loop(on_gpu(params), spec, data, 50, cupy)
    assert max(abs(a - b) / abs(b) for a, b in zip(ours[0], ref[0], strict=True)) <= 1e-9
    assert_tree_close(ours[1], ref[1], 1e-9, "params after 50 steps")
    assert_tree_close(ours[3], ref[3], 1e-9, "weight average after 50 steps")


def test_weights_round_trip_between_host_and_gpu_exactly():
    spec = M.ModelSpec("lstm", V, H, 2, multiplicative=True)
    params = M.init_params(spec, np.random.default_rng(4), np.float32)
    back = device.to_host(on_gpu(params))
    assert all(type(back[k]) is np.ndarray and np.array_equal(back[k], params[k]) for k in params)


# ---------------------------------------------------------------- through the command line

def _cli_has_device():
    return "--device" in run("train", "--help").output


cli_device = pytest.mark.skipif(
    not _cli_has_device(), reason="charrnn train has no --device option yet (the GPU wiring of train/eval/sample)")


def _ckpt_arrays(path):
    z = np.load(path, allow_pickle=False)
    return {k: z[k] for k in z.files if k not in ("elapsed_s", "config")}


@cli_device
def test_cli_fifty_float64_steps_on_the_gpu_match_the_cpu(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=50, checkpoint_every=25)
    common = ["--config", cfg, "-q", "--set", "model.dtype=float64", "--set", "model.cell=lstm",
              "--set", "optim.name=adam", "--set", "optim.clip_norm=1.0"]
    assert run("train", *common, "--out", tmp_path / "cpu", "--device", "cpu").exit_code == 0
    assert run("train", *common, "--out", tmp_path / "gpu", "--device", "gpu").exit_code == 0
    cpu = [json.loads(line) for line in (tmp_path / "cpu" / "metrics.jsonl").read_text().splitlines()]
    gpu = [json.loads(line) for line in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    pairs = [(g["loss"], c["loss"]) for g, c in zip(gpu, cpu, strict=True) if "loss" in c]
    assert len(pairs) == 50 and max(abs(g - c) / abs(c) for g, c in pairs) <= 1e-9
    a, b = ckpt_io.load(str(tmp_path / "gpu" / "ckpt.npz")), ckpt_io.load(str(tmp_path / "cpu" / "ckpt.npz"))
    assert_tree_close(a.run.params, b.run.params, 1e-9, "params after 50 steps")


@cli_device
def test_cli_resume_on_the_gpu_is_bitwise_exact(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=60, checkpoint_every=7)
    extra = ["-q", "--device", "gpu", "--set", "model.cell=gru", "--set", "model.layers=2",
             "--set", "model.dropout=0.3", "--set", "optim.name=adam"]
    assert run("train", "--config", cfg, "--out", tmp_path / "whole", *extra).exit_code == 0
    assert run("train", "--config", cfg, "--out", tmp_path / "half", "--stop-at", 30, *extra).exit_code == 0
    assert run("train", "--resume", tmp_path / "half" / "ckpt.npz", "-q", "--device", "gpu").exit_code == 0
    a, b = _ckpt_arrays(tmp_path / "whole" / "ckpt.npz"), _ckpt_arrays(tmp_path / "half" / "ckpt.npz")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after resuming on the GPU"


@cli_device
def test_cli_a_gpu_checkpoint_evaluates_samples_and_resumes_on_the_cpu(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=20, checkpoint_every=10)
    out = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", out, "-q", "--device", "gpu",
               "--set", "model.cell=lstm", "--set", "model.dropout=0.2", "--set", "model.layers=2").exit_code == 0
    ck = ckpt_io.load(str(out / "ckpt.npz"))  # an ordinary host checkpoint
    assert all(type(v) is np.ndarray for v in ck.run.params.values())
    e = run("eval", "--checkpoint", out / "ckpt.npz", "--json", "--device", "cpu")
    assert e.exit_code == 0 and json.loads(e.stdout)["nats_per_char"] > 0
    s = run("sample", "--checkpoint", out / "ckpt.npz", "-n", "50", "--seed", "1")  # sampling runs on the host
    assert s.exit_code == 0 and len(s.stdout) >= 50
    r = run("train", "--resume", out / "ckpt.npz", "--steps", 30, "-q", "--device", "cpu")
    assert r.exit_code == 0 and ckpt_io.load(str(out / "ckpt.npz")).run.step == 30


@cli_device
def test_cli_eval_gives_the_same_loss_on_both_devices(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=10, checkpoint_every=10)
    out = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", out, "-q", "--set", "model.cell=gru").exit_code == 0
    def nats_on(where):
        r = run("eval", "--checkpoint", out / "ckpt.npz", "--json", "--device", where)
        return json.loads(r.stdout)["nats_per_char"]

    nats = {d: nats_on(d) for d in ("cpu", "gpu")}
    assert abs(nats["gpu"] - nats["cpu"]) <= 1e-6 * nats["cpu"], nats
