"""Training and sampling throughput of charrnn against a min-char-rnn loop and PyTorch.

Rows:

1. min-char-rnn settings (vanilla, H=100, T=25, B=1, float64, Adagrad 0.1, clip ±5):
   charrnn against min-char-rnn's own per-step loop, written out below as the gist does
   it (column vectors, one-hot inputs, dicts keyed by t).
2. Vanilla RNN, H=512, T=64, B=32, float32, Adagrad, clip ±5: charrnn against PyTorch
   ``nn.RNN`` + ``nn.Linear`` + cross-entropy.
3. LSTM, same settings, against ``nn.LSTM``.
4. GRU, same settings, against ``nn.GRU`` (torch's candidate applies r after the product;
   the work is the same).
5. Sampling: characters per second generating 5,000 characters one at a time from a
   512-unit LSTM, charrnn's ``sampling.generate`` against the usual PyTorch loop.
6. Peak resident memory of a ``charrnn train`` run at row 3's settings, in a subprocess.

Training throughput is B·T characters per optimizer step, where a step is the batch,
loss, backward, clipping and update. Each side runs a few warm-up steps, then the sides
take turns (A B A B ...) timing a block of steps, ``--repeats`` times; the table shows each
side's median and the ratio of the medians. Turns make the ratio fair on a machine that
something else may also be using: both sides see the same disturbances.

FLOPs per character count the model's matrix products: forward ``2·G·H·H`` (recurrent)
``+ 2·H·V`` (output); the input is a lookup (no FLOPs); training is forward + backward
≈ 3× forward. GFLOP/s = FLOPs per character × characters per second, compared with the
machine's peak (``--peak-gflops``, about 300 for large float32 products on 2 cores here).

Run from the repository root::

    python benchmarks/throughput.py                # the full table (about 3.5 minutes)
    python benchmarks/throughput.py --quick        # a smoke run (about 1 minute)
    python benchmarks/throughput.py --rows 2,3 --json out.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # minchar_gist: min-char-rnn's lossFun, shared with its test

from minchar_gist import loss_fun as minchar_loss_fun  # noqa: E402

from charrnn import model as M  # noqa: E402
from charrnn import optim, sampling  # noqa: E402
from charrnn.data import Streams, build_vocab, encode, read_text  # noqa: E402
from charrnn.runtime import tune_allocator  # noqa: E402

CORPUS = ROOT / "data" / "shakespeare_tiny.txt"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the PyTorch rows say so in the table
    torch = None


def blas_info():
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


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_flops_per_char(cell, H, V):
    return 3 * (2 * GATES[cell] * H * H + 2 * H * V)


def sample_flops_per_char(cell, H, V):
    return 2 * GATES[cell] * H * H + 2 * H * V


def interleave(sides, repeats, warmup):
    """Median rate of each side, timed in turns. ``sides``: name -> (run(), units per run)."""
    for run, _ in sides.values():
        for _ in range(warmup):
            run()
    rates = {name: [] for name in sides}
    for _ in range(repeats):
        for name, (run, units) in sides.items():
            t0 = time.perf_counter()
            run()
            rates[name].append(units / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}, rates


def fastest(runs, warmup, turns=3):
    """The key of the fastest of ``runs`` (name -> run()), timed in turns, by median."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {k: [] for k in runs}
    for _ in range(turns):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    return min(times, key=lambda k: statistics.median(times[k]))


# ----------------------------------------------------------------------------------------
# Row 1: min-char-rnn's loop, as the gist writes it.


class MinCharLoop:
    """min-char-rnn's training loop, one step per ``step()``."""

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


# ----------------------------------------------------------------------------------------
# charrnn's training step, exactly as charrnn/train.py runs it.


class CharrnnTrainer:
    def __init__(self, data, V, cell, H, T, B, dtype, lr, clip=5.0, seed=0, multiplicative=False):
        self.spec = M.ModelSpec(cell, V, H, multiplicative=multiplicative)
        self.params = M.init_params(self.spec, np.random.default_rng(seed), dtype)
        self.opt = optim.Adagrad()
        self.opt_state = self.opt.init_state(self.params)
        self.streams = Streams(data, B, T)
        self.T, self.B, self.dtype, self.lr, self.clip = T, B, dtype, lr, clip
        self.p, self.n = 0, 0
        self.state = M.zero_state(self.spec, B, dtype)

    def step(self):
        if self.streams.wraps(self.p):
            self.p, self.state = 0, M.zero_state(self.spec, self.B, self.dtype)
        X, Y = self.streams.batch(self.p)
        loss, grads, self.state, _ = M.loss_and_grads(self.params, self.spec, X, Y, self.state)
        optim.clip_by_value(grads, self.clip)
        self.n += 1
        self.opt.update(self.params, grads, self.opt_state, self.lr, self.n)
        self.p += self.T
        return loss


# ----------------------------------------------------------------------------------------
# PyTorch.


class TorchModel(torch.nn.Module if torch else object):
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


def _detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def torch_config(onehot, mkldnn):
    return f"{'one-hot' if onehot else 'embedding'} input, oneDNN {'on' if mkldnn else 'off'}"


class TorchTrainer:
    def __init__(self, data, V, cell, H, T, B, lr, onehot, mkldnn=True, clip=5.0, seed=0):
        self.mkldnn = mkldnn  # oneDNN kernels: faster for some cells, slower for others
        torch.manual_seed(seed)
        self.model = TorchModel(cell, V, H, onehot)
        self.opt = torch.optim.Adagrad(self.model.parameters(), lr=lr)
        self.streams = Streams(data, B, T)
        self.cell, self.H, self.T, self.B, self.V, self.clip = cell, H, T, B, V, clip
        self.p = 0
        self.state = self._zero()

    def _zero(self):
        h = torch.zeros(1, self.B, self.H)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def step(self):
        if self.streams.wraps(self.p):
            self.p, self.state = 0, self._zero()
        torch.backends.mkldnn.enabled = self.mkldnn
        X, Y = self.streams.batch(self.p)
        x = torch.from_numpy(X.astype(np.int64))
        y = torch.from_numpy(Y.astype(np.int64))
        self.opt.zero_grad(set_to_none=True)
        logits, state = self.model(x, self.state)
        # Same loss as charrnn: summed over time, averaged over the streams.
        loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1), reduction="sum") / self.B
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.model.parameters(), self.clip)
        self.opt.step()
        self.state = _detach(state)
        self.p += self.T
        return loss.item()


def torch_sample(model, first, length, gen, mkldnn, temperature=1.0):
    """The usual PyTorch sampling loop: one character per call, multinomial draw."""
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


# ----------------------------------------------------------------------------------------
# The rows.


def row_minchar(args, data, V):
    H, T = 100, 25
    mc = MinCharLoop(data.tolist(), V, H, T, lr=0.1)
    cr = CharrnnTrainer(data, V, "rnn", H, T, 1, np.float64, lr=0.1)
    n = args.steps * 20  # a step here is ~1 ms: time blocks of the same length as rows 2-4

    def run_mc():
        for _ in range(n):
            mc.step()

    def run_cr():
        for _ in range(n):
            cr.step()

    med, _ = interleave({"charrnn": (run_cr, n * T), "ref": (run_mc, n * T)}, args.repeats, 1)
    return dict(row=1, name="min-char-rnn settings: vanilla H=100 T=25 B=1 float64",
                reference="min-char-rnn loop", unit="chars/s", charrnn=med["charrnn"], ref=med["ref"],
                target=5.0, flops_per_char=train_flops_per_char("rnn", H, V))


def row_train(args, data, V, cell, row, target):
    H, T, B = 512, 64, 32
    name = f"{'vanilla RNN' if cell == 'rnn' else cell.upper()} H=512 T=64 B=32 float32"
    res = dict(row=row, name=name, reference=f"PyTorch nn.{ {'rnn': 'RNN', 'lstm': 'LSTM', 'gru': 'GRU'}[cell]}",
               unit="chars/s", target=target, flops_per_char=train_flops_per_char(cell, H, V))
    cr = CharrnnTrainer(data, V, cell, H, T, B, np.float32, lr=args.lr)
    sides = {"charrnn": (lambda: [cr.step() for _ in range(args.steps)], args.steps * T * B)}
    if torch is not None:
        # PyTorch's fastest configuration, decided here by timing: one-hot or embedding
        # input, oneDNN kernels on or off.
        configs = [(oh, mk) for oh in (True, False) for mk in (True, False)]
        cands = {c: TorchTrainer(data, V, cell, H, T, B, args.lr, onehot=c[0], mkldnn=c[1]) for c in configs}
        steps = max(2, args.steps // 2)
        best = fastest({c: (lambda tr=tr: [tr.step() for _ in range(steps)]) for c, tr in cands.items()}, args.warmup)
        tt = cands[best]
        cands.clear()
        res["reference"] += f" ({torch_config(*best)})"
        sides["ref"] = (lambda: [tt.step() for _ in range(args.steps)], args.steps * T * B)
    med, _ = interleave(sides, args.repeats, args.warmup)
    res["charrnn"] = med["charrnn"]
    res["ref"] = med.get("ref")
    if torch is None:
        res["skipped"] = "skipped: torch not installed"
    return res


def row_sample(args, data, V):
    H, n = 512, args.sample_chars
    res = dict(row=5, name=f"sampling {n} chars, LSTM H=512 float32", reference="PyTorch nn.LSTM loop",
               unit="chars/s", target=4.0, flops_per_char=sample_flops_per_char("lstm", H, V))
    spec = M.ModelSpec("lstm", V, H)
    params = M.init_params(spec, np.random.default_rng(0), np.float32, std=0.05)
    rng = np.random.default_rng(0)

    def run_cr():
        state = M.zero_state(spec, 1, np.float32)
        for _ in sampling.generate(params, spec, int(data[0]), state, n, rng):
            pass

    sides = {"charrnn": (run_cr, n)}
    if torch is not None:
        torch.manual_seed(0)
        model = TorchModel("lstm", V, H, onehot=False).eval()
        gen = torch.Generator().manual_seed(0)
        first, probe = int(data[0]), min(n, 500)
        mk = fastest({m: (lambda m=m: torch_sample(model, first, probe, gen, m)) for m in (True, False)}, 1)
        res["reference"] += f" (oneDNN {'on' if mk else 'off'})"
        sides["ref"] = (lambda: torch_sample(model, int(data[0]), n, gen, mk), n)
    med, _ = interleave(sides, args.repeats, 1)
    res["charrnn"] = med["charrnn"]
    res["ref"] = med.get("ref")
    if torch is None:
        res["skipped"] = "skipped: torch not installed"
    return res


def row_memory(args):
    """Peak RSS of ``charrnn train`` at row 3's settings, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "lstm512.yaml"
        cfg.write_text(
            f"data:\n  path: {CORPUS}\n"
            "model:\n  cell: lstm\n  hidden_size: 512\n  dtype: float32\n"
            f"optim:\n  name: adagrad\n  lr: {args.lr}\n  clip_value: 5.0\n"
            f"train:\n  seq_length: 64\n  batch_size: 32\n  steps: {args.rss_steps}\n"
            f"  out_dir: {tmp}/run\n  log_every: 10\n  sample_every: 0\n  checkpoint_every: 0\n"
            "  eval_every: 0\n"
        )
        # A wrapper process, so RUSAGE_CHILDREN sees the training process and nothing else.
        wrapper = (
            "import resource, subprocess, sys\n"
            "subprocess.run(sys.argv[1:], check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "charrnn", "train",
               "--config", str(cfg), "--quiet"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        secs = time.perf_counter() - t0
    mb = int(out.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    return dict(row=6, name=f"peak RSS, `charrnn train` LSTM H=512 T=64 B=32, {args.rss_steps} steps "
                f"(incl. final eval + checkpoint)", reference="", unit="MB", charrnn=mb, ref=None,
                target=300.0, seconds=round(secs, 1))


# ----------------------------------------------------------------------------------------
# Output.


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def render(header, rows, peak):
    lines = ["# charrnn throughput benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "| # | setting | charrnn | reference | ratio | target | met | MFLOP/char | "
              "charrnn GFLOP/s (% peak) | ref GFLOP/s (% peak) |",
              "|---|---|---:|---|---:|---:|:-:|---:|---:|---:|"]
    for r in rows:
        if r["unit"] == "MB":
            met = r["charrnn"] < r["target"]
            lines.append(f"| {r['row']} | {r['name']} | {r['charrnn']:.0f} MB | — | — | < {r['target']:.0f} MB | "
                         f"{'yes' if met else 'NO'} | — | — | — |")
            continue
        fpc = r["flops_per_char"]
        g_cr = fpc * r["charrnn"] / 1e9
        cr_cell = f"{fmt_rate(r['charrnn'])} chars/s"
        gc = f"{g_cr:.1f} ({100 * g_cr / peak:.0f}%)"
        if r.get("ref") is None:
            ref_cell = f"{r['reference']}: {r.get('skipped', 'skipped')}"
            lines.append(f"| {r['row']} | {r['name']} | {cr_cell} | {ref_cell} | — | ≥ {r['target']:g}× | — | "
                         f"{fpc / 1e6:.2f} | {gc} | — |")
            continue
        ratio = r["charrnn"] / r["ref"]
        g_ref = fpc * r["ref"] / 1e9
        lines.append(
            f"| {r['row']} | {r['name']} | {cr_cell} | {r['reference']}: {fmt_rate(r['ref'])} chars/s | "
            f"{ratio:.2f}× | ≥ {r['target']:g}× | {'yes' if ratio >= r['target'] else 'NO'} | {fpc / 1e6:.2f} | "
            f"{gc} | {g_ref:.1f} ({100 * g_ref / peak:.0f}%) |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,2,3,4,5,6", help="comma-separated rows to run (default: all)")
    ap.add_argument("--repeats", type=int, default=7, help="timed turns per side (median reported)")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per timed turn, rows 2-4 (row 1: 20×)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    ap.add_argument("--sample-chars", type=int, default=5000, help="characters per sampling turn (row 5)")
    ap.add_argument("--rss-steps", type=int, default=50, help="training steps of the memory run (row 6)")
    ap.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate of rows 2-4 and 6")
    ap.add_argument("--peak-gflops", type=float, default=300.0, help="the machine's float32 peak")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 repeats, few steps, 1,000 sampled chars")
    ap.add_argument("--json", dest="json_path", help="also write the table as JSON to this file")
    ap.add_argument("--default-allocator", action="store_true",
                    help="leave glibc's malloc settings alone (the CLI tunes them; see charrnn/runtime.py)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.warmup, args.sample_chars, args.rss_steps = 3, 3, 1, 1000, 10
    rows_wanted = {int(r) for r in args.rows.split(",")}

    # As the charrnn CLI does. It is process-wide, so the PyTorch side gets it too.
    tuned = False if args.default_allocator else tune_allocator()
    blas, threads = blas_info()
    if torch is not None:
        torch.set_num_threads(threads)  # the same cores for both sides
    header = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else "not installed (PyTorch rows skipped)",
        "BLAS": f"{blas}, {threads} threads; torch.set_num_threads({threads})",
        "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE": " / ".join(
            os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")),
        "command": " ".join(["python", "benchmarks/throughput.py"] + (argv if argv is not None else sys.argv[1:])),
        "allocator": "glibc heap kept mapped (charrnn.runtime.tune_allocator), both sides"
        if tuned else "system default",
        "method": f"{args.repeats} interleaved turns per side, median; {args.warmup} warm-up steps",
    }
    text = read_text(CORPUS)
    vocab = build_vocab(text)
    data = encode(text, vocab)
    V = len(vocab)

    rows = []
    plan = [
        (1, lambda: row_minchar(args, data, V)),
        (2, lambda: row_train(args, data, V, "rnn", 2, 1.3)),
        (3, lambda: row_train(args, data, V, "lstm", 3, 1.2)),
        (4, lambda: row_train(args, data, V, "gru", 4, 1.2)),
        (5, lambda: row_sample(args, data, V)),
        (6, lambda: row_memory(args)),
    ]
    for num, fn in plan:
        if num in rows_wanted:
            print(f"row {num} ...", file=sys.stderr, flush=True)
            rows.append(fn())
    if torch is None:
        print("skipped: torch not installed (rows 2-5 show charrnn only)", file=sys.stderr)
    print(render(header, rows, args.peak_gflops))
    if args.json_path:
        for r in rows:
            if r.get("ref"):
                r["ratio"] = r["charrnn"] / r["ref"]
            if r["unit"] == "chars/s":
                r["charrnn_gflops"] = r["flops_per_char"] * r["charrnn"] / 1e9
        Path(args.json_path).write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
