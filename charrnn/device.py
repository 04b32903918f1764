"""Where the arrays live, the host (NumPy) or a CUDA GPU (CuPy), and moving them between.

The core (cells, model, optim, evaluate) never names NumPy for the arrays it is given: it
asks ``array_module(*arrays)`` and calls that module's functions, so the same equations run
on either device: the math is written once, so the CPU and the GPU cannot drift apart and
every test of it on the CPU holds on the GPU too. CuPy is NumPy's API on CUDA, so the module
is all that changes.

CuPy is imported only when a GPU is asked for (``get_xp("gpu")``). Until then
``array_module`` answers numpy without importing anything: an array can only be CuPy's if
something imported CuPy first. charrnn therefore runs, and imports, where CuPy is absent.

Host and device meet in few places, each named here: ``to_device`` / ``to_host`` for
parameters, optimizer state and carried state (checkpoints are always host ``.npz`` files,
loadable without a GPU), ``lazy_float`` for scalars that the caller reads only now and then
(reading a device scalar waits for the GPU), and ``CounterRNG`` for the dropout masks'
random numbers on the device.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from charrnn.errors import CharrnnError, UsageError

DEVICES = ("cpu", "gpu")

# The type hints' name for the arrays the core works on: a NumPy array, or a CuPy one on a
# GPU, which has the same interface (CuPy is not imported to name its type).
Array = np.ndarray
Arrays = dict[str, Array]  # parameters, gradients or optimizer state, by name

INSTALL_HINT = (
    "pip install 'charrnn[gpu]' (CuPy for CUDA 12); for CUDA 13: pip install cupy-cuda13x"
)


def array_module(*arrays: Any) -> ModuleType:
    """The array module of ``arrays``: cupy if any of them is a CuPy array, else numpy.

    Never imports CuPy: if nothing has imported it, no array can be CuPy's. Non-array
    arguments (None, Python scalars) are ignored.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


@functools.cache
def _usable_cupy():
    """cupy, after checking that it imports and that a GPU runs a kernel; else CharrnnError."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken install (two CuPy wheels, missing CUDA libs)
        raise CharrnnError(
            f"device gpu needs CuPy, which could not be imported ({_first_line(e)}); {INSTALL_HINT}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise CharrnnError("device gpu: CUDA reports no GPU on this machine; use device cpu")
        # One tiny kernel, compiled and run: a wheel for the wrong CUDA version, a missing
        # driver or NVRTC shows up here, in one line, rather than in the first training step.
        probe = float((cupy.arange(4, dtype=cupy.float32) * 2).sum())
        if probe != 12.0:
            raise CharrnnError(f"device gpu: a test kernel on the GPU computed {probe}, not 12.0")
    except CharrnnError:
        raise
    except Exception as e:  # CUDARuntimeError, CUDADriverError, CompileException, ...
        raise CharrnnError(
            f"device gpu: no usable CUDA GPU ({_first_line(e)}); check nvidia-smi, and that the "
            "CuPy wheel suits the driver (cupy-cuda12x for CUDA 12, cupy-cuda13x for CUDA 13); "
            "or use device cpu"
        ) from None
    return cupy


def get_xp(device: str) -> ModuleType:
    """The array module for ``device``: numpy for ``"cpu"``, cupy for ``"gpu"``.

    ``"gpu"`` imports CuPy and runs one small kernel; without CuPy, or without a GPU that
    runs it, it raises CharrnnError with one line saying what to install or what was not
    found. An unknown device name is a UsageError.
    """
    if device == "cpu":
        return np
    if device == "gpu":
        return _usable_cupy()
    raise UsageError(f"device {device!r} is not one of: {', '.join(DEVICES)}")


def to_device(tree: Any, xp: ModuleType) -> Any:
    """``tree`` (dicts, lists and tuples of arrays; None and scalars pass through) with every
    array in ``xp``'s memory. Host arrays asked for on the host are returned as they are,
    uncopied; ``to_device(tree, numpy)`` is ``to_host(tree)``."""
    if xp is np:
        return to_host(tree)
    if isinstance(tree, dict):
        return {k: to_device(v, xp) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, xp) for v in tree)
    if _is_leaf_scalar(tree):
        return tree
    return xp.asarray(tree)


def _is_leaf_scalar(x):
    return x is None or isinstance(x, (np.generic, int, float, str))


def to_host(tree: Any) -> Any:
    """``tree`` with every array a NumPy array (device arrays copied with ``.get()``); host
    arrays are returned as they are, uncopied."""
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_host(v) for v in tree)
    if _is_leaf_scalar(tree) or isinstance(tree, np.ndarray):
        return tree
    return tree.get()  # cupy.ndarray -> numpy.ndarray


def lazy_float(x: Any) -> float | Array:
    """``float(x)`` for a host value; a device array (0-d) is returned as it is, unread.

    Reading a device scalar waits for everything queued on the GPU before it. Functions
    that produce a scalar every step (the loss, the gradient norm) return it this way, so
    the training loop decides when to pay for the read (every ``log_every`` steps).
    """
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return float(x)
    return x


def synchronize(xp: ModuleType) -> None:
    """Wait for the device's queued work (nothing to wait for with numpy). For timing."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------------------------------
# Random numbers on the device.
#
# The dropout masks of a GPU run are drawn on the GPU (copying (L, T, B, H) uniforms from
# the host every step would cost more than the step at large B and H), and a run must
# resume exactly, so the generator's state has to be saved in the checkpoint. CuPy's
# generators keep their state in device memory (cuRAND's per-thread XORWOW states) with no
# call to save and restore it, so they are not used. Instead the numbers are a pure function
# of a counter: draw number n of a run with seed s is the first ``size`` outputs of
# SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators";
# the constants of Vigna's splitmix64.c) started from a 64-bit key derived from (s, n) by
# NumPy's SeedSequence. Output i is mix(key + (i+1)·γ): every element is computed
# independently, in one elementwise kernel, and the state to save is just (s, n).
# The NumPy version below is the definition; the CUDA kernel must equal it bit for bit
# (tests/test_gpu.py), so a mask drawn on the GPU can be recomputed on the host.

_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def splitmix64(key: int, size: int) -> np.ndarray:
    """The first ``size`` outputs of SplitMix64 from state ``key``, (size,) uint64, on the host."""
    u64 = np.uint64
    # uint64 array arithmetic wraps modulo 2⁶⁴, as the algorithm requires (no warning for arrays)
    z = np.arange(1, size + 1, dtype=u64) * u64(_GAMMA) + u64(key)
    z = (z ^ (z >> u64(30))) * u64(_MIX1)
    z = (z ^ (z >> u64(27))) * u64(_MIX2)
    return z ^ (z >> u64(31))


def bits_to_uniform(z: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """uint64 words -> uniforms in [0, 1): the top 24 bits for float32, 53 for float64, so
    every value is exact in the dtype and 1 is never reached."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    if dtype == np.float64:
        return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    raise ValueError(f"uniforms in float32 or float64, not {dtype}")


_UNIFORM_KERNEL = r"""
unsigned long long z = key + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ull;
z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
z ^= z >> 31;
u = sizeof(T) == 4 ? (T)(z >> 40) * (T)5.9604644775390625e-08   /* 2^-24 */
                   : (T)(z >> 11) * (T)1.1102230246251565e-16;  /* 2^-53 */
"""


@functools.cache
def _uniform_kernel(cupy):
    return cupy.ElementwiseKernel("uint64 key", "T u", _UNIFORM_KERNEL, "charrnn_splitmix64_uniform")


class CounterRNG:
    """Uniform random numbers from (seed, draws), on the host or the device: see above.

    Has NumPy Generator's ``random(shape, dtype)``, so ``model.dropout_masks`` takes either.
    ``state`` is a small JSON-able dict; assigning a saved one resumes the sequence exactly.
    """

    def __init__(self, seed: int, draws: int = 0, xp: ModuleType = np) -> None:
        self.seed, self.draws, self.xp = int(seed), int(draws), xp

    @property
    def state(self) -> dict:
        return {"bit_generator": "charrnn.CounterRNG", "seed": self.seed, "draws": self.draws}

    @state.setter
    def state(self, value: dict) -> None:
        if value.get("bit_generator") != "charrnn.CounterRNG":
            raise ValueError(f"not a CounterRNG state: {value.get('bit_generator')!r}")
        seed, draws = int(value["seed"]), int(value["draws"])
        if seed < 0 or draws < 0:
            raise ValueError(f"a CounterRNG's seed and draws are counts >= 0, got {seed} and {draws}")
        self.seed, self.draws = seed, draws

    def key(self, draw: int) -> int:
        """The 64-bit SplitMix64 state that draw number ``draw`` starts from."""
        return int(np.random.SeedSequence([self.seed, draw]).generate_state(1, np.uint64)[0])

    def random(self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float64) -> Array:
        """Uniforms in [0, 1), ``shape``, ``dtype`` (float32 or float64), in ``xp``'s memory."""
        shape = tuple(shape) if np.ndim(shape) else (int(shape),)
        size = int(np.prod(shape))
        key = self.key(self.draws)
        self.draws += 1
        if self.xp is np:
            return bits_to_uniform(splitmix64(key, size), dtype).reshape(shape)
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"uniforms in float32 or float64, not {np.dtype(dtype)}")
        out = self.xp.empty(shape, dtype=dtype)
        _uniform_kernel(self.xp)(np.uint64(key), out)
        return out
