"""The fused CUDA kernels of charrnn/kernels.py, checked on the CPU.

A CuPy ElementwiseKernel body is C++: per element ``i``, its non-raw arguments are
references to element ``i``, its raw arguments arrays indexed by flat position. Here each
kernel's own source (``kernels._SOURCES`` and the preamble, not a copy) is wrapped that way
in a C++ function, compiled with the system's C++ compiler, and put in the place of the
CuPy kernel (``kernels._kernel``). The cells then run their fused path on NumPy arrays,
through the same wrapper functions as on a GPU, and must agree with their NumPy step
functions; the dropout generator's kernel must equal its NumPy definition bit for bit.

This checks the kernels' equations, index arithmetic, argument order and in-place use
without a GPU; what it cannot check (CuPy's launch, strided arguments, CUDA's own tanh)
is in tests/test_gpu.py. Skipped, with the reason, where no C++ compiler is found.
"""

import contextlib
import ctypes
import inspect
import re
import shutil
import subprocess

import numpy as np
import pytest

from charrnn import device, gradcheck, kernels
from charrnn import model as M
from charrnn.cells import CELLS

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")

HEADER = r"""
#include <cmath>
#include <cstddef>
#define __device__
#define __forceinline__ inline
using std::tanh;
"""

CTYPES = {"int32": ("int", ctypes.c_int32), "uint64": ("unsigned long long", ctypes.c_uint64)}
SUFFIX = {np.dtype(np.float32): ("float", "f32"), np.dtype(np.float64): ("double", "f64")}


def parse(params):
    """'raw T xa, T c_prev, int32 H' -> [(raw, type, name), ...]."""
    out = []
    for p in params.split(","):
        words = p.split()
        out.append((words[0] == "raw", words[-2], words[-1]))
    return out


def cxx_source(name, in_params, out_params, body):
    """A C++ function per float type that runs ``body`` for i in [0, n), as CuPy's loop does."""
    args, refs = [], []
    for is_out, params in ((False, in_params), (True, out_params)):
        for raw, typ, pname in parse(params):
            const = "" if is_out else "const "
            if typ in CTYPES:
                args.append(f"{CTYPES[typ][0]} {pname}")
            elif raw:
                args.append(f"{const}T* {pname}")
            else:
                args.append(f"{const}T* _raw_{pname}")
                refs.append(f"{const}T &{pname} = _raw_{pname}[i];")
    sig = ", ".join(["ptrdiff_t _n"] + args)
    names = ", ".join(["_n"] + [re.split(r"[ *]", a)[-1] for a in args])
    code = [f"template <typename T> void {name}_impl({sig}) {{",
            "  for (ptrdiff_t i = 0; i < _n; ++i) {", *refs, body, "  }", "}"]
    for ctype, suffix in SUFFIX.values():
        typed = sig.replace("T*", f"{ctype}*")
        code.append(f'extern "C" void {name}_{suffix}({typed}) {{ {name}_impl<{ctype}>({names}); }}')
    return "\n".join(code)


SOURCES = dict(kernels._SOURCES, uniform=("uint64 key", "T u", device._UNIFORM_KERNEL))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler (g++, c++, clang++): the kernels' source cannot be compiled here")
    d = tmp_path_factory.mktemp("kernels")
    src = d / "kernels.cpp"
    src.write_text(HEADER + kernels._PREAMBLE + "\n".join(
        cxx_source(n, *SOURCES[n]) for n in SOURCES), encoding="ascii")
    lib = d / "kernels.so"
    r = subprocess.run([CXX, "-O1", "-shared", "-fPIC", "-std=c++17", "-o", str(lib), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"the kernels' source does not compile as C++:\n{r.stderr}"
    return ctypes.CDLL(str(lib))


class CpuKernel:
    """Called like the CuPy ElementwiseKernel (inputs, then outputs, positionally)."""

    def __init__(self, lib, name):
        self.lib, self.name = lib, name
        self.params = parse(SOURCES[name][0]) + parse(SOURCES[name][1])

    def __call__(self, *args):
        assert len(args) == len(self.params), f"{self.name}: {len(args)} arguments, {len(self.params)} expected"
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        dtype = arrays[0].dtype
        n, cargs = None, []
        for (raw, typ, pname), a in zip(self.params, args, strict=True):
            if typ in CTYPES:
                cargs.append(CTYPES[typ][1](int(a)))
                continue
            assert isinstance(a, np.ndarray) and a.dtype == dtype, f"{self.name}: {pname} is not a {dtype} array"
            assert a.flags.c_contiguous, f"{self.name}: {pname} is not contiguous"
            if not raw:
                assert n in (None, a.size), f"{self.name}: {pname} has {a.size} elements, not {n}"
                n = a.size
            cargs.append(a.ctypes.data_as(ctypes.c_void_p))
        getattr(self.lib, f"{self.name}_{SUFFIX[dtype][1]}")(ctypes.c_ssize_t(n), *cargs)


@contextlib.contextmanager
def fused_on_the_cpu(monkeypatch, compiled):
    """Within it, the cells take the fused path on NumPy arrays, with the kernels compiled for the CPU."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "_kernel", lambda name: CpuKernel(compiled, name))
        m.setattr(kernels, "fused", lambda xp: kernels)
        yield


def test_every_kernel_is_named_after_the_function_that_launches_it():
    """No compiler needed: each ``_SOURCES`` entry is launched by the function of its name,
    and by no other, so a kernel's name in a profile or an error leads to its wrapper."""
    launched = {}
    for name, fn in inspect.getmembers(kernels, inspect.isfunction):
        for used in re.findall(r'_kernel\("(\w+)"\)', inspect.getsource(fn)):
            launched.setdefault(used, []).append(name)
    assert launched == {name: [name] for name in kernels._SOURCES}


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-13), (np.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("multiplicative", [False, True], ids=["plain", "mult"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_kernels_compiled_for_the_cpu_equal_the_numpy_steps(compiled, monkeypatch, cell, multiplicative, dtype,
                                                                  rel):
    mod, H, T, B = CELLS[cell], 6, 7, 3
    G = mod.GATES * H
    rng = np.random.default_rng(0)

    def g(*shape):
        return rng.standard_normal(shape).astype(dtype)

    xa, Whh, dhs = g(T, B, G), g(G, H) * 0.5, g(T, B, H)
    xm = (1 + 0.5 * g(T, B, G)) if multiplicative else None
    state0 = tuple(g(B, H) for _ in mod.STATE)
    dstate = tuple(g(B, H) for _ in mod.STATE)
    plain = mod.forward(xa, state0, Whh, xm=xm)
    plain_back = mod.backward(dhs, dstate, plain[2])
    with fused_on_the_cpu(monkeypatch, compiled):
        fused = mod.forward(xa, state0, Whh, xm=xm)
        fused_back = mod.backward(dhs, dstate, fused[2])
    checks = {"hs": (fused[0], plain[0]), "dxa": (fused_back[0], plain_back[0]),
              "dWhh": (fused_back[1], plain_back[1])}
    for i, name in enumerate(mod.STATE):
        checks[f"state {name}"] = (fused[1][i], plain[1][i])
        checks[f"dstate0 {name}"] = (fused_back[2][i], plain_back[2][i])
    if multiplicative:
        checks["dxm"] = (fused_back[3], plain_back[3])
    for name, (ours, ref) in checks.items():
        assert ours.dtype == dtype
        e = rel_err(ours, ref)
        assert e <= rel, f"{cell} {name}: the fused kernels differ from the NumPy steps by {e:.2e} (relative)"


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "ln"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_model_with_the_fused_kernels_has_the_numpy_gradients(compiled, monkeypatch, cell, layer_norm):
    """Through model.loss_and_grads: 2 layers, dropout, multiplicative, a carried gradient;
    with layer normalization, which the cells apply before the kernels (and around the LSTM's)."""
    spec = M.ModelSpec(cell, 9, 8, 2, 0.25, True, layer_norm)
    rng = np.random.default_rng(1)
    params, X, Y, state0 = gradcheck.random_problem(spec, 6, 4, rng, 0.5)
    masks = M.dropout_masks(spec, (6, 4, 8), rng, np.float64)
    dstate = [tuple(rng.standard_normal((4, 8)) for _ in s) for s in state0]
    ref = M.loss_and_grads(params, spec, X, Y, state0, masks, dstate)
    with fused_on_the_cpu(monkeypatch, compiled):
        ours = M.loss_and_grads(params, spec, X, Y, state0, masks, dstate)
    assert abs(ours.loss - ref.loss) <= 1e-13 * abs(ref.loss)
    for k in ref.grads:
        assert rel_err(ours.grads[k], ref.grads[k]) <= 1e-12, k
    for s, r in zip(ours.dstate0, ref.dstate0, strict=True):
        assert all(rel_err(a, b) <= 1e-12 for a, b in zip(s, r, strict=True))


def test_the_dropout_kernel_equals_its_numpy_definition_bit_for_bit(compiled):
    k = CpuKernel(compiled, "uniform")
    for dtype in (np.float32, np.float64):
        rng = device.CounterRNG(2024)
        key = rng.key(0)
        out = np.empty((5, 37), dtype=dtype)
        k(np.uint64(key), out)
        assert np.array_equal(out, device.CounterRNG(2024).random((5, 37), dtype)), dtype
