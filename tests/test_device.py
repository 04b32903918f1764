"""Tests of charrnn.device, and of the core's device genericity without a GPU.

The core (cells, model, optim, evaluate) must take its array module from the arrays it is
given and never call NumPy on them: on a GPU those arrays are CuPy's, and NumPy on them is
an error or a silent copy to the host. The GPU itself is in tests/test_gpu.py; here a
pretend device stands in for it on the CPU:

- ``DeviceArray`` wraps a NumPy array that NumPy refuses to touch: NumPy functions and
  ufuncs called on it raise (``__array_function__`` records the call and raises,
  ``__array_ufunc__ = None``, ``__array__`` raises), its operators refuse host arrays as
  operands or indices, as CuPy's do, and every read back to the host (``float()``,
  ``bool()``, ``.item()``, ``.get()``) is recorded as a sync.
- ``DEVICE`` is its array module: NumPy's functions, unwrapping and wrapping.

Every core module's ``array_module`` is replaced by one that answers ``DEVICE`` for these
arrays; the core then runs on them end to end, and each result must equal the host's bit
for bit (the same NumPy operations run underneath, in the same order). A core line that
calls ``np.`` on its inputs, mixes in a host array, or reads a value back inside a training
step fails here. ``test_the_pretend_device_refuses_numpy`` shows the detectors work.
"""

import json
import math
import operator
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from conftest import ROOT

from charrnn import checkpoint as ckpt_io
from charrnn import device, gradcheck, kernels, optim, sampling
from charrnn import model as M
from charrnn.cells import CELLS, recurrent
from charrnn.errors import CharrnnError, UsageError
from charrnn.evaluate import evaluate

# ---------------------------------------------------------------- the pretend device


class Record:
    """What the pretend device saw: NumPy called on its arrays, reads back to the host."""

    def __init__(self):
        self.numpy_calls = []
        self.syncs = []
        self.calls = Counter()  # DEVICE functions called, by name


REC = Record()


def _unwrap(x, allow_host=False):
    if isinstance(x, DeviceArray):
        return x.a
    if isinstance(x, np.ndarray):
        if allow_host:
            return x
        raise TypeError(f"a host (NumPy) array {x.shape} mixed with device arrays")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, allow_host) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))  # reductions give 0-d device arrays, as CuPy's do
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


def _sync(what):
    REC.syncs.append(what)


def _binary(op):
    return lambda self, other: _wrap(op(self.a, _unwrap(other)))


def _reflected(op):
    return lambda self, other: _wrap(op(_unwrap(other), self.a))


def _inplace(op):
    def f(self, other):
        op(self.a, _unwrap(other))
        return self

    return f


class DeviceArray:
    """An array on the pretend device (see the module docstring)."""

    __slots__ = ("a",)
    __array_ufunc__ = None  # np.tanh(x), np.multiply(x, ...): TypeError

    def __init__(self, a):
        self.a = a

    def __array_function__(self, func, types, args, kwargs):
        REC.numpy_calls.append(func.__name__)
        raise TypeError(f"numpy.{func.__name__} called on a device array")

    def __array__(self, *args, **kwargs):
        REC.numpy_calls.append("__array__")
        raise TypeError("implicit conversion of a device array to a NumPy array")

    # the host reads
    def __float__(self):
        _sync("float")
        return float(self.a)

    def __int__(self):
        _sync("int")
        return int(self.a)

    def __bool__(self):
        _sync("bool")
        return bool(self.a)

    def item(self):
        _sync("item")
        return self.a.item()

    def get(self):
        _sync("get")
        return self.a.copy()

    # what is known without reading the data
    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)
    T = property(lambda self: DeviceArray(self.a.T))

    def __len__(self):
        return len(self.a)

    def __getitem__(self, key):
        return _wrap(self.a[_unwrap(key)])

    def __setitem__(self, key, value):
        self.a[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):  # reshape, copy, astype, sum, max, ...
        if name in ("tolist", "tobytes", "__array_interface__", "__array_struct__"):
            raise AttributeError(f"{name} would read a device array on the host")
        attr = getattr(self.a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

    __add__, __sub__, __mul__ = _binary(operator.add), _binary(operator.sub), _binary(operator.mul)
    __truediv__, __matmul__, __pow__ = _binary(operator.truediv), _binary(operator.matmul), _binary(operator.pow)
    __radd__, __rsub__, __rmul__ = _reflected(operator.add), _reflected(operator.sub), _reflected(operator.mul)
    __rtruediv__, __rmatmul__ = _reflected(operator.truediv), _reflected(operator.matmul)
    __iadd__, __isub__, __imul__ = _inplace(operator.iadd), _inplace(operator.isub), _inplace(operator.imul)
    __itruediv__ = _inplace(operator.itruediv)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)

    def __neg__(self):
        return DeviceArray(-self.a)


class DeviceModule:
    """The pretend device's array module: NumPy's functions on DeviceArrays."""

    __name__ = "pretend_device"
    HOST_TO_DEVICE = ("asarray", "array", "ascontiguousarray")

    def __getattr__(self, name):
        f = getattr(np, name)
        if isinstance(f, type) or not callable(f):  # dtypes (float64, ...), constants
            return f
        allow_host = name in self.HOST_TO_DEVICE

        def call(*args, **kwargs):
            REC.calls[name] += 1
            if allow_host and args and isinstance(args[0], np.ndarray):
                return DeviceArray(np.array(f(*args, **kwargs), copy=True))  # a copy, as to a GPU
            return _wrap(f(*_unwrap(args, allow_host), **_unwrap(kwargs, allow_host)))

        return call


DEVICE = DeviceModule()


def pretend_array_module(*arrays):
    return DEVICE if any(isinstance(a, DeviceArray) for a in arrays) else np


@pytest.fixture
def pretend_device(monkeypatch):
    """Every charrnn module's ``array_module`` answers DEVICE for DeviceArrays; a fresh record."""
    global REC
    REC = Record()
    patched, real = [], device.array_module
    for name, mod in list(sys.modules.items()):
        if name.startswith("charrnn") and getattr(mod, "array_module", None) is real:
            monkeypatch.setattr(mod, "array_module", pretend_array_module)
            patched.append(name)
    assert {"charrnn.model", "charrnn.optim", "charrnn.evaluate", "charrnn.cells.lstm"} <= set(patched)
    return REC


def to_pretend(tree):
    return device.to_device(tree, DEVICE)


def host(tree):
    """A DeviceArray tree's NumPy arrays, without recording a read (the test looks, not the core)."""
    if isinstance(tree, dict):
        return {k: host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(host(v) for v in tree)
    return tree.a if isinstance(tree, DeviceArray) else tree


def assert_bitwise(ours, ref, what):
    if isinstance(ref, dict):
        assert ours.keys() == ref.keys(), what
        for k in ref:
            assert_bitwise(ours[k], ref[k], f"{what}[{k!r}]")
    elif isinstance(ref, (list, tuple)):
        assert len(ours) == len(ref), what
        for i, (o, r) in enumerate(zip(ours, ref, strict=True)):
            assert_bitwise(o, r, f"{what}[{i}]")
    else:
        o = host(ours)
        assert isinstance(ours, DeviceArray) or ref is None or isinstance(ref, float), f"{what}: not on the device"
        assert np.array_equal(np.asarray(o), np.asarray(ref), equal_nan=True), (
            f"{what}: the pretend device's result differs from the host's: max |diff| = "
            f"{np.abs(np.asarray(o, dtype=float) - np.asarray(ref, dtype=float)).max()}"
        )


def test_the_pretend_device_refuses_numpy(pretend_device):
    """The detectors the other tests rely on: each of these core mistakes is caught."""
    d = to_pretend(np.arange(6.0).reshape(2, 3))
    for mistake in (
        lambda: np.tanh(d),  # a ufunc from NumPy
        lambda: np.dot(d, d.T),  # a NumPy function
        lambda: np.zeros_like(d),
        lambda: d + np.zeros(3),  # a host array mixed in
        lambda: d[np.arange(2)],  # a host index array
        lambda: np.asarray(d),  # an implicit copy to the host
    ):
        with pytest.raises(TypeError):
            mistake()
    assert pretend_device.numpy_calls == ["dot", "zeros_like", "__array__"]
    float(d.sum())
    assert pretend_device.syncs == ["float"]
    # what is allowed: the module's functions, scalars, NumPy scalars and dtypes
    out = DEVICE.tanh(d * np.float64(2.0) + 1, out=DEVICE.empty_like(d))
    assert isinstance(out, DeviceArray) and out.dtype == np.float64
    assert isinstance(d.sum(dtype=np.float64), DeviceArray)  # reductions stay on the device
    assert kernels.fused(DEVICE) is None  # the cells run their array-module lines here


# ---------------------------------------------------------------- the core on the pretend device

V, H, T, B = 7, 5, 6, 3


# Every cell at 1 layer, at 2 with dropout and mult (the min cells, which have no recurrent product: residual
# instead), with layer norm too (the cells with a NORM), and the GRU with layer norm and residual.
DEVICE_MODELS = ([(c, 1, 0.0, False, False, False) for c in sorted(CELLS)]
                 + [(c, 2, 0.3, recurrent(CELLS[c]), False, not recurrent(CELLS[c])) for c in sorted(CELLS)]
                 + [(c, 2, 0.3, True, True, False) for c in sorted(CELLS) if CELLS[c].NORM]
                 + [("gru", 2, 0.3, False, True, True)])


@pytest.mark.parametrize("cell,layers,dropout,multiplicative,layer_norm,residual", DEVICE_MODELS,
                         ids=[f"{c}-{n}-layers" + "-dropout" * bool(d) + "-mult" * mi + "-ln" * ln + "-residual" * r
                              for c, n, d, mi, ln, r in DEVICE_MODELS])
def test_forward_and_backward_run_on_the_device_module_alone(pretend_device, cell, layers, dropout, multiplicative,
                                                             layer_norm, residual):
    spec = M.ModelSpec(cell, V, H, layers, dropout, multiplicative, layer_norm, residual)
    rng = np.random.default_rng(0)
    params, X, Y, state0 = gradcheck.random_problem(spec, T, B, rng, 0.5)
    dstate = [tuple(rng.standard_normal((B, H)) for _ in s) for s in state0]  # a carried gradient
    masks = M.dropout_masks(spec, (T, B, H), np.random.default_rng(1), np.float64) if dropout else None
    d_masks = (M.dropout_masks(spec, (T, B, H), np.random.default_rng(1), np.float64, xp=DEVICE)
               if dropout else None)
    if masks is not None:
        assert_bitwise(d_masks, masks, "masks")
    # truncated BPTT as training runs it (no gradient after the chunk), then with one
    for ds in (None, dstate):
        ref = M.loss_and_grads(params, spec, X, Y, state0, masks, ds)
        ours = M.loss_and_grads(to_pretend(params), spec, X, Y, to_pretend(state0), d_masks, to_pretend(ds))
        assert pretend_device.numpy_calls == []
        assert pretend_device.syncs == [], "a training step read a device value back to the host"
        assert isinstance(ours.loss, DeviceArray), "the loss must stay on the device (device.lazy_float)"
        assert float(host(ours.loss)) == ref.loss
        assert_bitwise(ours.grads, ref.grads, "grads")
        assert_bitwise(ours.state, ref.state, "state")
        assert_bitwise(ours.dstate0, ref.dstate0, "dstate0")
    # the loss without the backward pass, and the zero state, on the device too
    loss, state = M.loss_only(to_pretend(params), spec, X, Y, M.zero_state(spec, B, np.float64, DEVICE))
    ref_loss, ref_state = M.loss_only(params, spec, X, Y, M.zero_state(spec, B, np.float64))
    assert float(host(loss)) == ref_loss
    assert_bitwise(state, ref_state, "loss_only state")
    assert pretend_device.numpy_calls == [] and pretend_device.syncs == []


OPTIMIZERS = {
    "adagrad": optim.Adagrad,
    "rmsprop": optim.RMSProp,
    "adam": lambda: optim.Adam(weight_decay=0.1),
    "sgd": optim.SGD,
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_clipping_updates_and_weight_average_run_on_the_device_module_alone(pretend_device, name):
    spec = M.ModelSpec("lstm", V, H, 2)
    rng = np.random.default_rng(3)
    params = M.init_params(spec, rng, np.float32, std=0.5)
    steps = [{k: rng.standard_normal(p.shape).astype(np.float32) * s for k, p in params.items()}
             for s in (10.0, 0.01, 3.0)]  # the first and last steps clip, the second does not

    def run(params, to):
        opt = OPTIMIZERS[name]()
        state = opt.init_state(params)
        avg = {k: p * 0 for k, p in params.items()}
        norms = []
        for n, g in enumerate(steps, 1):
            g = to({k: v.copy() for k, v in g.items()})
            optim.clip_by_value(g, 4.0)
            norms.append(optim.clip_by_norm(g, 2.0))
            opt.update(params, g, state, optim.learning_rate(_constant(0.01), n, 0, 3), n)
            optim.ema_update(avg, params, 0.9)
        return params, state, avg, norms, optim.eval_weights(params, avg, 0.9, len(steps))

    ref = run({k: v.copy() for k, v in params.items()}, lambda t: t)
    ours = run(to_pretend(params), to_pretend)
    assert pretend_device.numpy_calls == []
    assert pretend_device.syncs == [], "clipping or an update read a device value back to the host"
    for what, o, r in zip(("params", "optimizer state", "weight average"), ours[:3], ref[:3], strict=True):
        assert_bitwise(o, r, what)
    assert [float(host(n)) for n in ours[3]] == ref[3]
    assert ref[3][1] < 2.0 < min(ref[3][0], ref[3][2])  # both branches of clip_by_norm ran
    assert_bitwise(ours[4], ref[4], "eval_weights")


def _constant(lr):
    from charrnn.config import OptimConfig

    return OptimConfig(lr=lr, schedule="constant")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_evaluate_runs_on_the_device_and_reads_back_once(pretend_device, cell):
    spec = M.ModelSpec(cell, V, H, 2, multiplicative=recurrent(CELLS[cell]))  # the min cells have no mult
    params = M.init_params(spec, np.random.default_rng(4), np.float64, std=0.5)
    data = np.random.default_rng(5).integers(0, V, size=203)  # 202 pairs: the last stream is short
    ref = evaluate(params, spec, data, batch_size=4, seq_length=16)
    ours = evaluate(to_pretend(params), spec, data, batch_size=4, seq_length=16)
    assert pretend_device.numpy_calls == []
    assert pretend_device.syncs == ["float"], "evaluate should read the device once, at the end"
    assert ours == ref


def test_sampling_takes_device_weights_to_the_host(pretend_device):
    spec = M.ModelSpec("gru", V, H, 2)
    params = M.init_params(spec, np.random.default_rng(6), np.float32, std=0.5)
    state = sampling.prime(params, spec, [1, 2, 3])
    ref = list(sampling.generate(params, spec, 3, state, 40, np.random.default_rng(7)))
    d_state = sampling.prime(to_pretend(params), spec, [1, 2, 3])
    # primed on the host, whatever the weights' device
    assert all(type(a) is np.ndarray and np.array_equal(a, b)
               for s, r in zip(d_state, state, strict=True) for a, b in zip(s, r, strict=True))
    ours = list(sampling.generate(to_pretend(params), spec, 3, to_pretend(state), 40, np.random.default_rng(7)))
    assert ours == ref
    assert pretend_device.numpy_calls == []
    assert set(pretend_device.syncs) == {"get"}  # the weights and the state, copied once


# ---------------------------------------------------------------- device.py itself


def test_importing_charrnn_does_not_import_cupy_and_answers_numpy():
    code = (
        "import sys, numpy as np\n"
        "import charrnn.cli, charrnn.train, charrnn.kernels, charrnn.device as d\n"
        "assert 'cupy' not in sys.modules, 'charrnn imported cupy'\n"
        "assert d.array_module(np.zeros(2), None, 1.0) is np and d.get_xp('cpu') is np\n"
        "assert 'cupy' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr


def test_an_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError, match="'tpu' is not one of: cpu, gpu"):
        device.get_xp("tpu")


@pytest.fixture
def fresh_gpu_probe():
    device._usable_cupy.cache_clear()
    yield
    device._usable_cupy.cache_clear()


def test_gpu_without_cupy_is_one_line_saying_what_to_install(monkeypatch, fresh_gpu_probe):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    with pytest.raises(CharrnnError) as e:
        device.get_xp("gpu")
    msg = str(e.value)
    assert "\n" not in msg and type(e.value) is CharrnnError
    assert "needs CuPy" in msg and "pip install 'charrnn[gpu]'" in msg and "cupy-cuda13x" in msg


def test_gpu_where_cuda_fails_is_one_line_saying_what_was_not_found(monkeypatch, fresh_gpu_probe):
    """A CuPy whose CUDA runtime reports an error (as on a machine without a driver)."""
    import types

    class CUDARuntimeError(RuntimeError):
        pass

    def no_device():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected\n(more detail)")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(CharrnnError) as e:
        device.get_xp("gpu")
    msg = str(e.value)
    assert "\n" not in msg
    assert "no usable CUDA GPU (CUDARuntimeError: cudaErrorNoDevice" in msg and "use device cpu" in msg


def test_gpu_with_cupy_but_no_gpu_is_one_line(fresh_gpu_probe):
    """The real thing, where CuPy is installed on a machine without a usable GPU."""
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy is not installed: the no-GPU error with a real CuPy cannot be checked here")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        n = 0
    if n > 0:
        pytest.skip("a GPU is present: tests/test_gpu.py checks it")
    with pytest.raises(CharrnnError) as e:
        device.get_xp("gpu")
    assert "\n" not in str(e.value) and "no usable CUDA GPU" in str(e.value)


def test_to_device_and_to_host_keep_the_structure(pretend_device):
    tree = {"p": np.arange(3.0), "s": [(np.ones(2), np.zeros(2))], "n": None, "k": 3}
    d = to_pretend(tree)
    assert isinstance(d["p"], DeviceArray) and isinstance(d["s"][0], tuple) and d["n"] is None and d["k"] == 3
    d["p"] += 1  # a copy: the host array does not change
    assert tree["p"].tolist() == [0.0, 1.0, 2.0]
    back = device.to_host(d)
    assert back["p"].tolist() == [1.0, 2.0, 3.0] and isinstance(back["s"][0][1], np.ndarray)
    assert device.to_host(tree)["p"] is tree["p"]  # host arrays are not copied
    assert device.to_device(tree, np)["p"] is tree["p"]
    assert device.lazy_float(np.float64(2.5)) == 2.5 and type(device.lazy_float(np.float32(1))) is float
    z = d["p"].sum()
    assert device.lazy_float(z) is z  # a device scalar stays unread


# ---------------------------------------------------------------- the dropout generator


def splitmix64_sequential(seed, n):
    """Vigna's splitmix64.c, one output after another: the reference for the parallel form."""
    out, x, mask = [], seed, 2**64 - 1
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def test_counter_rng_is_splitmix64_from_a_seeded_key():
    assert list(map(int, device.splitmix64(1234567, 5))) == splitmix64_sequential(1234567, 5) == [
        6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
        16408922859458223821]
    rng = device.CounterRNG(42)
    u = rng.random((4, 3), np.float64)
    words = splitmix64_sequential(rng.key(0), 12)
    assert u.ravel().tolist() == [(w >> 11) * 2.0**-53 for w in words]
    u32 = device.CounterRNG(42).random((12,), np.float32)
    assert u32.dtype == np.float32 and u32.tolist() == [(w >> 40) * 2.0**-24 for w in words]


def test_counter_rng_resumes_exactly_from_its_state():
    rng = device.CounterRNG(7)
    for _ in range(3):
        rng.random((5, 2), np.float32)
    saved = dict(rng.state)
    ahead = [rng.random((5, 2), np.float32) for _ in range(2)]
    resumed = device.CounterRNG(0)
    resumed.state = saved
    assert all(np.array_equal(a, resumed.random((5, 2), np.float32)) for a in ahead)
    assert saved == {"bit_generator": "charrnn.CounterRNG", "seed": 7, "draws": 3}
    with pytest.raises(ValueError):
        resumed.state = np.random.default_rng(0).bit_generator.state  # a NumPy state is not one


def test_counter_rng_draws_are_uniform_and_distinct():
    rng = device.CounterRNG(1)
    a = rng.random(200_000, np.float32)
    b = rng.random(200_000, np.float32)
    for u in (a, b):
        assert 0.0 <= u.min() and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 3e-3 and abs(u.var() - 1 / 12) < 2e-3
    assert abs(np.corrcoef(a, b)[0, 1]) < 1e-2  # successive draws are not the same numbers
    assert not np.array_equal(device.CounterRNG(1).random(10), device.CounterRNG(2).random(10))


def test_dropout_masks_take_a_counter_rng():
    spec = M.ModelSpec("lstm", V, H, 2, dropout=0.25)
    masks = M.dropout_masks(spec, (400, 8, 16), device.CounterRNG(3), np.float32)
    for m in masks:
        assert m.dtype == np.float32 and set(np.unique(m)) == {0.0, np.float32(1 / 0.75)}
        assert abs((m == 0).mean() - 0.25) < 0.01
    assert not np.array_equal(masks[0], masks[1])
    assert math.isclose(float(masks[0].mean()), 1.0, rel_tol=0.02)


# ---------------------------------------------------------------- the training loop's device wiring


def test_train_and_eval_on_gpu_without_cupy_are_one_line_before_anything_is_written(tmp_path, monkeypatch,
                                                                                        fresh_gpu_probe):
    from conftest import CONFIGS, one_line_error, run

    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    r = run("train", "--config", os.path.join(CONFIGS, "smoke.yaml"), "--out", tmp_path / "run",
            "--device", "gpu", "-q")
    one_line_error(r, 1, "pip install 'charrnn[gpu]'")
    assert not (tmp_path / "run").exists()
    assert run("train", "--config", os.path.join(CONFIGS, "smoke.yaml"), "--out", tmp_path / "ok", "-q",
               "--steps", 3).exit_code == 0
    r = run("eval", "--checkpoint", tmp_path / "ok" / "ckpt.npz", "--device", "gpu")
    one_line_error(r, 1, "pip install 'charrnn[gpu]'")


@pytest.mark.slow
def test_a_gpu_runs_checkpoint_resumes_exactly_on_the_cpu_with_its_counter_generator(tmp_path):
    """A GPU run keeps a CounterRNG's state (seed, draws) in its checkpoint; on the CPU the same
    generator draws the same masks on the host, so the resumed run is exact there too."""
    from conftest import CONFIGS, run

    args = ["--config", os.path.join(CONFIGS, "smoke.yaml"), "-q", "--set", "model.dropout=0.3",
            "--set", "model.layers=2", "--set", "train.checkpoint_every=10"]
    assert run("train", *args, "--out", tmp_path / "a", "--steps", 10).exit_code == 0
    path = tmp_path / "a" / "ckpt.npz"
    with np.load(path, allow_pickle=False) as z:  # as a GPU run writes it: the masks' generator is a CounterRNG
        arrays = {k: z[k] for k in z.files}
    arrays["rng"] = np.array(json.dumps(device.CounterRNG(1234, draws=10).state))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    ck = ckpt_io.load(str(path))
    assert isinstance(ck.run.rng, device.CounterRNG) and ck.run.rng.state["draws"] == 10
    b = tmp_path / "b"
    b.mkdir()
    shutil.copy(path, b / "ckpt.npz")
    for d in (tmp_path / "a", b):  # twice from the same checkpoint, one in two halves
        steps = [20, 30] if d == b else [30]
        for n in steps:
            assert run("train", "--resume", d / "ckpt.npz", "-q", "--steps", n, "--device", "cpu").exit_code == 0
    one, two = ckpt_io.load(str(tmp_path / "a" / "ckpt.npz")), ckpt_io.load(str(b / "ckpt.npz"))
    assert one.run.rng.state == two.run.rng.state == {"bit_generator": "charrnn.CounterRNG", "seed": 1234,
                                                       "draws": 10 + 20 * 2}  # a draw per layer and step
    for k in one.run.params:
        assert np.array_equal(one.run.params[k], two.run.params[k]), k


def test_a_run_goes_to_its_device_and_its_checkpoint_comes_back_to_the_host(pretend_device):
    """runstate.on_device / on_host with the pretend device: every array of the run moves, the
    carried state keeps its structure, a fresh run gets a CounterRNG seeded from its generator,
    and the host copy is plain NumPy, equal bit for bit."""
    from charrnn import runstate
    from charrnn.model import ModelSpec, init_params, zero_state

    spec = ModelSpec("lstm", 7, 5, 2, 0.2, True)
    params = init_params(spec, np.random.default_rng(0))
    run_ = runstate.RunState(params=params, opt_state={f"m.{k}": v * 0 for k, v in params.items()},
                             ema={k: v.copy() for k, v in params.items()}, state=zero_state(spec, 3),
                             rng=np.random.default_rng(5))
    expected_seed = int(np.random.default_rng(5).integers(2**63))
    runstate.on_device(run_, DEVICE)
    assert all(type(a) is DeviceArray for t in (run_.params, run_.opt_state, run_.ema) for a in t.values())
    assert [len(s) for s in run_.state] == [2, 2] and all(type(a) is DeviceArray for s in run_.state for a in s)
    assert isinstance(run_.rng, device.CounterRNG) and run_.rng.seed == expected_seed and run_.rng.xp is DEVICE
    back = runstate.on_host(run_)
    assert all(type(a) is np.ndarray for t in (back.params, back.opt_state, back.ema) for a in t.values())
    assert all(np.array_equal(back.params[k], params[k]) for k in params)
    assert type(run_.params["Why"]) is DeviceArray  # the run itself stays on its device
