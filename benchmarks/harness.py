"""What the benchmarks share: charrnn's training step as users run it, the references it is
compared with, timing in turns, FLOP counts, the corpus and the machine's description.

- ``CharrnnTrainer``: one call of ``step()`` is one pass of the body of the loop in
  ``charrnn.train.train`` -- ``train.next_step`` (``runstate.next_batch``, ``optim.learning_rate``),
  ``train.train_step`` (the finite check, the divergence rule, clipping, the optimizer's
  update, the weight average) -- on a run made by ``runstate.new_run`` from a real
  ``charrnn.config.Config`` (``config``). A benchmark times the code users run.
- ``MinCharLoop``: min-char-rnn's training loop as the gist writes it, on its ``lossFun``
  (``benchmarks/minchar_gist.py``, the one copy, which ``tests/test_minchar_parity.py`` uses too).
- ``torch_module``, ``TorchModel``, ``TorchTrainer``, ``torch_sample``: the PyTorch reference,
  and ``torch_reference``, ``same_loss``: charrnn's own cells in torch operations
  (``benchmarks/torch_cells.py``) for the cells torch lacks, checked to compute charrnn's loss;
  imported only when asked for (``torch_module()`` is None where torch is not installed, and
  the benchmarks then skip its rows with a message); importing this module never imports torch.
- ``timed``, ``interleave``, ``fastest``, ``block_steps``: sides timed in turns (A B A B ...),
  with an optional ``sync`` (a GPU's) called before a clock is read.
- ``forward_flops``, ``train_flops_per_char``, ``sample_flops_per_char``: the model's matrix
  products; ``gemm_peak_gflops``: the machine's float32 GEMM rate, measured, that "% peak" divides by.
- ``read_corpus``, ``blas_info``, ``cpu_name``.

Letters: B streams, T characters per chunk, H hidden units, V vocabulary, G gates.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT,):  # this checkout's charrnn
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from minchar_gist import loss_fun as minchar_loss_fun  # noqa: E402  (benchmarks/minchar_gist.py)

from charrnn import config as C  # noqa: E402
from charrnn import data as D  # noqa: E402
from charrnn import device, distributed, optim, runstate, train  # noqa: E402
from charrnn import model as M  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402

CORPUS = ROOT / "data" / "shakespeare_tiny.txt"


# ----------------------------------------------------------------------------- the corpus, the machine


def read_corpus(path: str | Path = CORPUS) -> tuple[np.ndarray, int]:
    """The text at ``path`` encoded whole: (indices, V)."""
    text = D.read_text(str(path))
    vocab = D.build_vocab(text)
    return D.encode(text, vocab), len(vocab)


def blas_info() -> tuple[str, int]:
    """NumPy's BLAS as threadpoolctl sees it: (description, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)", os.cpu_count() or 1
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            desc = f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture')} kernels)"
            return desc, int(lib["num_threads"])
    return "unknown", os.cpu_count() or 1


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- FLOPs


def gates(cell: str) -> int:
    """G: the gate blocks of ``cell`` (rows of its input weight: G·H)."""
    return CELLS[cell].GATES


def recurrent(cell: str) -> bool:
    """Whether ``cell`` has a recurrent product (``RECURRENT``, True when absent: minGRU and
    minLSTM have none)."""
    return getattr(CELLS[cell], "RECURRENT", True)


def forward_flops(G: int, H: int, V: int, layers: int = 1, recurrent_product: bool = True,
                  multiplicative: bool = False) -> int:
    """FLOPs of the matrix products of one character's forward pass, per layer and the output:

    - the recurrent product ``W h_{t-1}``, ``2·G·H·H``, where the cell has one;
    - the input product ``Wxh x_t``: a lookup at layer 0 (a one-hot x_t selects a column: no
      FLOPs), ``2·G·H·H`` at each layer ≥ 1, whose input is the H-vector below;
    - multiplicative integration's ``Wmx x_t``: likewise a lookup at layer 0, ``2·G·H·H`` above;
      its elementwise products count nothing, nor do gates, layer norm or the residual sum;
    - the output ``Why h``, ``2·H·V``.
    """
    per = 2 * G * H * H
    products = 0
    for layer in range(layers):
        products += recurrent_product + (layer >= 1) * (1 + multiplicative)
    return products * per + 2 * H * V


def sample_flops_per_char(cell: str, H: int, V: int, layers: int = 1, multiplicative: bool = False) -> int:
    """Forward FLOPs per character of a ``cell`` model (``forward_flops``)."""
    return forward_flops(gates(cell), H, V, layers, recurrent(cell), multiplicative)


def train_flops_per_char(cell: str, H: int, V: int, layers: int = 1, multiplicative: bool = False) -> int:
    """Forward + backward: 3× the forward's products, since every product ``Y = X W`` counted
    there takes two of its size backward (``dX = dY Wᵀ``, ``dW = Xᵀ dY``); the lookups, which
    count nothing forward, count nothing backward either."""
    return 3 * sample_flops_per_char(cell, H, V, layers, multiplicative)


def gemm_peak_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """The machine's float32 matrix-product rate, measured: GFLOP/s (``2·n³`` per product) of
    the fastest of ``repeats`` square ``np.matmul`` of n × n, after one untimed, on NumPy's BLAS
    with the threads it has now (those the rows run with). What "% peak" divides by."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)
    best = min(timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- charrnn's step


def config(model: dict, optim: dict | None = None, train: dict | None = None,
           data_path: str | Path = CORPUS) -> C.Config:
    """A validated ``Config`` of these sections (as a YAML file would give them)."""
    return C.from_dict({"data": {"path": str(data_path)}, "model": model, "optim": optim or {}, "train": train or {}},
                       "benchmark")


class CharrnnTrainer:
    """charrnn's training loop over ``data`` (the training indices), one step per ``step()``:
    exactly the body of the loop in ``charrnn.train.train``, on a run set up as it sets one up
    (``new_run``, ``comm.split``, ``runstate.on_device`` to ``cfg.model.device``)."""

    def __init__(self, cfg: C.Config, data: Any, V: int, comm: Any = distributed.SINGLE):
        self.cfg, self.comm = cfg, comm
        self.spec = M.ModelSpec.of(cfg.model, V)
        self.optimizer = optim.from_config(cfg.optim)
        tc = cfg.train
        self.streams = D.Streams(data, tc.batch_size, tc.seq_length,
                                 D.longest_chunk(tc.seq_length) if tc.variable_length else None)
        self.rules = train.StepRules.of(cfg)
        self.xp = device.get_xp(cfg.model.device)
        self.run = runstate.new_run(cfg, self.spec, self.optimizer)
        comm.split(self.run)
        runstate.on_device(self.run, self.xp)

    def step(self) -> float:
        """One training step; the loss of its chunk."""
        run, cfg = self.run, self.cfg
        X, Y, lr = train.next_step(run, self.streams, self.spec, cfg)
        return train.train_step(run, X, Y, self.spec, self.optimizer, lr, self.rules, self.comm)

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step()


def trainer(data, V, cell, H, T, B, *, dtype="float32", lr=0.05, optimizer="adagrad", clip_value=5.0, clip_norm=None,
            init_std=0.01, multiplicative=False, layers=1, layer_norm=False, residual=False, optim_extra=None,
            device_name="cpu", seed=0, comm=distributed.SINGLE) -> CharrnnTrainer:
    """A ``CharrnnTrainer`` of ``layers`` layers of H ``cell`` units at these settings (a constant
    learning rate; defaults: the CPU benchmarks' Adagrad at 0.05, clipping at ±5, min-char-rnn's
    initial weights). multiplicative, layer_norm, residual: the ``model.*`` keys of those names;
    optim_extra: more ``optim.*`` keys (e.g. ``{"beta2": 0.99}``)."""
    model = {"cell": cell, "hidden_size": H, "layers": layers, "dtype": np.dtype(dtype).name,
             "multiplicative": multiplicative, "init_std": init_std, "device": device_name,
             "layer_norm": layer_norm, "residual": residual}
    cfg = config(model,
                 {"name": optimizer, "lr": lr, "clip_value": clip_value, "clip_norm": clip_norm, **(optim_extra or {})},
                 {"seq_length": T, "batch_size": B, "seed": seed})
    return CharrnnTrainer(cfg, data, V, comm)


# ----------------------------------------------------------------------------- min-char-rnn


class MinCharLoop:
    """min-char-rnn's training loop (its pointer rule, ``lossFun``, Adagrad), one step per
    ``step()``."""

    def __init__(self, data, V, H, T, lr, seed=0):
        rng = np.random.default_rng(seed)
        self.data, self.T, self.H, self.lr = data, T, H, lr
        self.Wxh = rng.standard_normal((H, V)) * 0.01
        self.Whh = rng.standard_normal((H, H)) * 0.01
        self.Why = rng.standard_normal((V, H)) * 0.01
        self.bh, self.by = np.zeros((H, 1)), np.zeros((V, 1))
        self.params = [self.Wxh, self.Whh, self.Why, self.bh, self.by]
        self.mems = [np.zeros_like(p) for p in self.params]
        self.p, self.hprev = 0, np.zeros((H, 1))

    def step(self):
        if self.p + self.T + 1 >= len(self.data):
            self.p, self.hprev = 0, np.zeros((self.H, 1))
        inputs = self.data[self.p : self.p + self.T]
        targets = self.data[self.p + 1 : self.p + self.T + 1]
        loss, dWxh, dWhh, dWhy, dbh, dby, self.hprev = minchar_loss_fun(inputs, targets, self.hprev, *self.params)
        for param, dparam, mem in zip(self.params, [dWxh, dWhh, dWhy, dbh, dby], self.mems, strict=True):
            mem += dparam * dparam
            param += -self.lr * dparam / np.sqrt(mem + 1e-8)
        self.p += self.T
        return loss


# ----------------------------------------------------------------------------- PyTorch


@functools.cache
def torch_module() -> Any:
    """PyTorch, imported on first use; None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


TORCH_MISSING = "skipped: torch not installed"


@functools.cache
def _torch_model_class() -> type:
    torch = torch_module()
    F = torch.nn.functional

    class TorchModel(torch.nn.Module):
        """Input (one-hot or embedding) -> nn.RNN / nn.LSTM / nn.GRU -> nn.Linear."""

        def __init__(self, cell, V, H, onehot):
            super().__init__()
            rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.V, self.onehot = V, onehot
            self.embed = None if onehot else torch.nn.Embedding(V, H)
            self.rnn = rnn(V if onehot else H, H)  # time-major (T, B, ·), like charrnn
            self.out = torch.nn.Linear(H, V)

        def forward(self, x, state):
            e = F.one_hot(x, self.V).float() if self.onehot else self.embed(x)
            hs, state = self.rnn(e, state)
            return self.out(hs), state

    return TorchModel


def TorchModel(cell: str, V: int, H: int, onehot: bool) -> Any:  # noqa: N802 (a class, made on first use)
    """The PyTorch model: input (one-hot or embedding) -> nn.RNN / nn.LSTM / nn.GRU -> nn.Linear."""
    return _torch_model_class()(cell, V, H, onehot)


def torch_config(onehot: bool, mkldnn: bool) -> str:
    return f"{'one-hot' if onehot else 'embedding'} input, oneDNN {'on' if mkldnn else 'off'}"


class TorchTrainer:
    """The usual PyTorch training step, the same work as charrnn's: the batch copied from the
    host, the loss summed over T and averaged over B, backward, clipping, the update, the state
    detached and carried on (zeroed where the streams wrap).

    optimizer: "adagrad" or "adam" (fused on CUDA; betas as given, or torch's); clip_value /
    clip_norm as charrnn's; mkldnn, tf32: the backend flags set before every step (None: left
    as they are); model: a module with ``forward(X, state)`` and ``zero_state(B, dev)`` (a
    ``torch_cells.CharModel``, from ``torch_reference``), or None for ``TorchModel(cell, V, H,
    onehot)``. ``step()`` returns the loss as a tensor, unread (reading it waits for the device)."""

    def __init__(self, data, V, cell, H, T, B, *, lr, onehot=False, optimizer="adagrad", clip_value=None,
                 clip_norm=None, betas=None, dev="cpu", mkldnn=None, tf32=None, model=None, seed=0):
        torch = self.torch = torch_module()
        torch.manual_seed(seed)
        self.dev = torch.device(dev)
        self.mkldnn, self.tf32 = mkldnn, tf32
        self.model = (TorchModel(cell, V, H, onehot) if model is None else model).to(self.dev)
        params = self.model.parameters()
        if optimizer == "adam":
            extra = {"betas": betas} if betas else {}
            self.opt = torch.optim.Adam(params, lr=lr, fused=self.dev.type == "cuda", **extra)
        else:
            self.opt = torch.optim.Adagrad(params, lr=lr)
        self.streams = D.Streams(data, B, T)
        self.cell, self.H, self.T, self.B, self.V = cell, H, T, B, V
        self.clip_value, self.clip_norm = clip_value, clip_norm
        self.p, self.state = 0, self._zero()

    def _zero(self):
        if hasattr(self.model, "zero_state"):
            return self.model.zero_state(self.B, self.dev)
        h = self.torch.zeros(1, self.B, self.H, device=self.dev)
        return (h, self.torch.zeros_like(h)) if self.cell == "lstm" else h

    def step(self):
        torch = self.torch
        if self.mkldnn is not None:
            torch.backends.mkldnn.enabled = self.mkldnn  # oneDNN kernels: faster for some cells, slower for others
        if self.tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.tf32
        if self.streams.wraps(self.p):
            self.p, self.state = 0, self._zero()
        X, Y = self.streams.batch(self.p)
        x = torch.from_numpy(X.astype(np.int64)).to(self.dev)
        y = torch.from_numpy(Y.astype(np.int64)).to(self.dev)
        self.opt.zero_grad(set_to_none=True)
        logits, state = self.model(x, self.state)
        # Same loss as charrnn: summed over time, averaged over the streams.
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1), reduction="sum") / self.B
        loss.backward()
        if self.clip_value:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.clip_value)
        if self.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.opt.step()
        self.state = _detached(state)
        self.p += self.T
        return loss.detach()

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step()


def _detached(state):
    """The carried state cut from the graph: a tensor, or tuples and lists of them."""
    if isinstance(state, tuple | list):
        return type(state)(_detached(s) for s in state)
    return state.detach()


def torch_reference(cr: CharrnnTrainer, scan: str = "loop") -> Any:
    """The model of ``cr`` written with torch operations (``torch_cells.CharModel``: charrnn's
    own cells, for the rows whose cell torch does not ship), on a copy of cr's weights now.
    scan: the minimal cells' recurrence, "loop" or "log" (Heinsen's parallel scan)."""
    import torch_cells  # this folder; imports torch

    spec, run = cr.spec, cr.run
    params = {k: device.to_host(v) for k, v in run.params.items()}
    return torch_cells.CharModel(params, spec.cell, spec.layers, spec.multiplicative,
                                 getattr(spec, "layer_norm", False), getattr(spec, "residual", False), scan)


def same_loss(cr: CharrnnTrainer, model: Any, rtol: float = 1e-4) -> tuple[float, float]:
    """charrnn's loss and ``model``'s (a ``torch_reference``) on the first chunk of cr's
    streams from the zero state, on the weights they hold now: (charrnn's, torch's). Raises
    AssertionError when they differ by more than ``rtol`` of charrnn's: a reference that
    computes another function must not be timed."""
    torch = torch_module()
    X, Y = cr.streams.batch(0)
    B = X.shape[1]
    params = {k: device.to_host(v) for k, v in cr.run.params.items()}
    ours = float(M.loss_only(params, cr.spec, X, Y, M.zero_state(cr.spec, B, np.dtype(cr.cfg.model.dtype)))[0])
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(X.astype(np.int64)), model.zero_state(B))
        y = torch.from_numpy(Y.astype(np.int64)).reshape(-1)
        theirs = float(torch.nn.functional.cross_entropy(logits.reshape(len(y), -1), y, reduction="sum")) / B
    if not abs(ours - theirs) <= rtol * abs(ours):
        raise AssertionError(f"{cr.spec.describe()}: charrnn's loss {ours!r}, the torch reference's {theirs!r}")
    return ours, theirs


def torch_sample(model, first, length, gen, mkldnn, temperature=1.0):
    """The usual PyTorch sampling loop: one character per call, multinomial draw."""
    torch = torch_module()
    out = []
    torch.backends.mkldnn.enabled = mkldnn  # off: ~5× faster here for one character per call
    with torch.inference_mode():
        x = torch.tensor([[first]])
        state = None
        for _ in range(length):
            logits, state = model(x, state)
            p = torch.softmax(logits[0, 0] / temperature, dim=0)
            i = int(torch.multinomial(p, 1, generator=gen))
            out.append(i)
            x = torch.tensor([[i]])
    return out


# ----------------------------------------------------------------------------- timing in turns


def timed(run: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    """Seconds of ``run()``; with ``sync`` (a device's), until the work it queued is done."""
    t0 = time.perf_counter()
    run()
    if sync is not None:
        sync()
    return time.perf_counter() - t0


def interleave(sides: dict, repeats: int, warmup: int = 0, sync: Callable[[], None] | None = None) -> dict:
    """Seconds of every turn of each side (name -> run()), timed in turns (A B A B ...) after
    ``warmup`` untimed runs of each: name -> list of ``repeats`` seconds. Turns make a ratio
    fair on a machine that something else may also be using: both sides see the same
    disturbances."""
    for run in sides.values():
        for _ in range(warmup):
            run()
    if sync is not None:
        sync()
    times = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            times[name].append(timed(run, sync))
    return times


def median_rates(times: dict, units: dict) -> dict:
    """name -> units per second of the median turn (``times`` from ``interleave``)."""
    return {name: units[name] / statistics.median(t) for name, t in times.items()}


def fastest(runs: dict, warmup: int, turns: int = 3, sync: Callable[[], None] | None = None) -> Any:
    """The key of the fastest of ``runs`` (key -> run()), timed in turns, by median."""
    times = interleave(runs, turns, warmup, sync)
    return min(times, key=lambda k: statistics.median(times[k]))


def block_steps(step: Callable[[], Any], target_s: float, sync: Callable[[], None] | None = None,
                lo: int = 3, hi: int = 400) -> int:
    """How many calls of ``step`` make a timed block of about ``target_s`` seconds."""
    t = timed(lambda: [step() for _ in range(3)], sync) / 3
    return int(min(hi, max(lo, target_s / max(t, 1e-6))))
