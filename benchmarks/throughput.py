"""Training and sampling throughput of charrnn against a min-char-rnn loop and PyTorch.

Rows:

1. min-char-rnn settings (vanilla, H=100, T=25, B=1, float64, Adagrad 0.1, clip ±5):
   charrnn against min-char-rnn's own per-step loop, on the gist's ``lossFun`` as it writes
   it (column vectors, one-hot inputs, dicts keyed by t; ``benchmarks/minchar_gist.py``).
2. Vanilla RNN, H=512, T=64, B=32, float32, Adagrad, clip ±5: charrnn against PyTorch
   ``nn.RNN`` + ``nn.Linear`` + cross-entropy.
3. LSTM, same settings, against ``nn.LSTM``.
4. GRU, same settings, against ``nn.GRU`` (torch's candidate applies r after the product;
   the work is the same).
5. Sampling: characters per second generating 5,000 characters one at a time from a
   512-unit LSTM, charrnn's ``sampling.generate`` against the usual PyTorch loop.
6. Peak resident memory of a ``charrnn train`` run at row 3's settings, in a subprocess.
7. GRU 448 multiplicative, T=32, B=32, Adam (lr 0.005, β₂ 0.99; configs/shakespeare.yaml's
   model, init_std 0.05), clip ±5: against the same cell written with torch operations
   (``benchmarks/torch_cells.py``: charrnn's GRU applies r before the product, and torch has
   no multiplicative integration).
8. LN-GRU and 9. LN-LSTM, H=512 (``model.layer_norm``), at row 2's settings: against the
   same cells in torch operations (``torch.nn.functional.layer_norm`` per gate block).
10. minGRU and 11. minLSTM, 2 layers of 512, residual, at row 2's settings: against the
   same cells in torch operations, all gates from one product, the recurrence either a loop
   over T or the log-space parallel scan (Heinsen 2023, as Feng et al.'s code), whichever
   is faster here, decided by timing as rows 2-4 pick torch's configuration.

Rows 7-11 start both sides from the same weights, and check before timing that the torch
reference gives charrnn's loss on one chunk to 1e-4 (``harness.same_loss``; the references'
gradients are checked in tests/test_benchmarks.py). A row whose cell or option this checkout
lacks says so in its cell of the table instead of failing.

Training throughput is B·T characters per optimizer step. charrnn's step is the one users
run, the body of ``charrnn train``'s loop (``harness.CharrnnTrainer``: ``runstate.next_batch``,
``optim.learning_rate``, ``train.train_step`` with its finite check, divergence rule,
clipping, update and weight average), on a run built from a ``charrnn.config.Config``; the
references' step is the batch, loss, backward, clipping and update. Each side runs a few
warm-up steps, then the sides
take turns (A B A B ...) timing a block of steps, ``--repeats`` times; the table shows each
side's median and the ratio of the medians. Turns make the ratio fair on a machine that
something else may also be using: both sides see the same disturbances.

FLOPs per character count the model's matrix products (``harness.forward_flops``): forward,
per layer, ``2·G·H·H`` for the recurrent product (none for minGRU and minLSTM), ``2·G·H·H``
for the input product of each layer ≥ 1 and as much again for its ``Wmx`` (multiplicative),
and ``2·H·V`` for the output; layer 0's input and multipliers are lookups (no FLOPs), layer
norm, gates and residual sums are not products. Training is forward + backward = 3× forward
(each product takes two of its size backward). GFLOP/s = FLOPs per character × characters
per second = FLOPs per step ÷ step time; "% peak" divides it by the machine's float32 GEMM
peak, measured in the same process before and after the rows (``harness.gemm_peak_gflops``:
the fastest of five 2048 × 2048 ``np.matmul``, on the BLAS threads the rows use; the higher
of the two; ``--peak-gflops`` overrides it). Row 1 runs in float64 and is divided by the
float32 peak all the same.

Run from the repository root::

    python benchmarks/throughput.py                # the full table (rows 1-6: about 3.5 minutes idle)
    python benchmarks/throughput.py --quick        # a smoke run (about 1 minute)
    python benchmarks/throughput.py --rows 2,3 --json out.json
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it, the references, timing)

from charrnn import model as M  # noqa: E402
from charrnn import sampling  # noqa: E402
from charrnn.runtime import tune_allocator  # noqa: E402

ROOT, CORPUS = HN.ROOT, HN.CORPUS


# ----------------------------------------------------------------------------------------
# The rows.


def row_minchar(args, data, V):
    H, T = 100, 25
    mc = HN.MinCharLoop(data.tolist(), V, H, T, lr=0.1)
    cr = HN.trainer(data, V, "rnn", H, T, 1, dtype="float64", lr=0.1)
    n = args.steps * 20  # a step here is ~1 ms: time blocks of the same length as rows 2-4

    def run_mc():
        for _ in range(n):
            mc.step()

    times = HN.interleave({"charrnn": lambda: cr.steps(n), "ref": run_mc}, args.repeats, 1)
    med = HN.median_rates(times, {"charrnn": n * T, "ref": n * T})
    return dict(row=1, name="min-char-rnn settings: vanilla H=100 T=25 B=1 float64",
                reference="min-char-rnn loop", unit="chars/s", charrnn=med["charrnn"], ref=med["ref"],
                target=5.0, flops_per_char=HN.train_flops_per_char("rnn", H, V))


def row_train(args, data, V, cell, row, target):
    H, T, B = 512, 64, 32
    name = f"{'vanilla RNN' if cell == 'rnn' else cell.upper()} H=512 T=64 B=32 float32"
    res = dict(row=row, name=name, reference=f"PyTorch nn.{ {'rnn': 'RNN', 'lstm': 'LSTM', 'gru': 'GRU'}[cell]}",
               unit="chars/s", target=target, flops_per_char=HN.train_flops_per_char(cell, H, V))
    cr = HN.trainer(data, V, cell, H, T, B, lr=args.lr)
    sides = {"charrnn": lambda: cr.steps(args.steps)}
    if HN.torch_module() is not None:
        # PyTorch's fastest configuration, decided here by timing: one-hot or embedding
        # input, oneDNN kernels on or off.
        configs = [(oh, mk) for oh in (True, False) for mk in (True, False)]
        cands = {c: HN.TorchTrainer(data, V, cell, H, T, B, lr=args.lr, onehot=c[0], mkldnn=c[1], clip_value=5.0)
                 for c in configs}
        best = HN.fastest({c: (lambda tr=tr: tr.steps(max(2, args.steps // 2))) for c, tr in cands.items()},
                          args.warmup)
        tt = cands[best]
        cands.clear()
        res["reference"] += f" ({HN.torch_config(*best)})"
        sides["ref"] = lambda: tt.steps(args.steps)
    return timed_row(res, sides, args, args.steps * T * B)


def timed_row(res, sides, args, chars):
    """``res`` with the medians of the sides' turns (``chars`` characters per turn), taken in
    turns; the reference's rate None, and the row marked skipped, when there is no torch side."""
    times = HN.interleave(sides, args.repeats, args.warmup)
    med = HN.median_rates(times, dict.fromkeys(sides, chars))
    res["charrnn"] = med["charrnn"]
    res["ref"] = med.get("ref")
    if "ref" not in sides:
        res["skipped"] = HN.TORCH_MISSING
    return res


def row_cell(args, data, V, row, name, cell, H, T, B, *, layers=1, multiplicative=False, layer_norm=False,
             residual=False, optimizer="adagrad", lr=None, betas=None, init_std=0.01, scans=("loop",)):
    """charrnn's step against its own cell written with torch operations (``torch_cells``), from
    the same initial weights, checked to give the same loss on one chunk before anything is
    timed. ``scans``: the minimal cells' recurrences to try on the torch side (a loop over T,
    Heinsen's log-space scan); the faster, by timing, is the one compared."""
    res = dict(row=row, name=name, reference="PyTorch ops, charrnn's cell", unit="chars/s", target=None,
               flops_per_char=HN.train_flops_per_char(cell, H, V, layers, multiplicative))
    lr = args.lr if lr is None else lr
    cr = HN.trainer(data, V, cell, H, T, B, lr=lr, optimizer=optimizer, init_std=init_std, layers=layers,
                    multiplicative=multiplicative, layer_norm=layer_norm, residual=residual,
                    optim_extra={"beta2": betas[1]} if betas else None)
    sides = {"charrnn": lambda: cr.steps(args.steps)}
    if HN.torch_module() is not None:
        cands = {}
        for scan in scans:
            model = HN.torch_reference(cr, scan)
            ours, theirs = HN.same_loss(cr, model)
            cands[scan] = HN.TorchTrainer(data, V, cell, H, T, B, lr=lr, optimizer=optimizer, clip_value=5.0,
                                          betas=betas, model=model)
        res["loss_check"] = {"charrnn": ours, "torch": theirs}
        best = scans[0]
        if len(cands) > 1:
            best = HN.fastest({c: (lambda tr=tr: tr.steps(max(2, args.steps // 2))) for c, tr in cands.items()},
                              args.warmup)
            res["reference"] += f" ({'log-space parallel scan' if best == 'log' else 'loop over T'})"
        tt = cands[best]
        cands.clear()
        sides["ref"] = lambda: tt.steps(args.steps)
    return timed_row(res, sides, args, args.steps * T * B)


def row_sample(args, data, V):
    H, n = 512, args.sample_chars
    res = dict(row=5, name=f"sampling {n} chars, LSTM H=512 float32", reference="PyTorch nn.LSTM loop",
               unit="chars/s", target=4.0, flops_per_char=HN.sample_flops_per_char("lstm", H, V))
    spec = M.ModelSpec("lstm", V, H)
    params = M.init_params(spec, np.random.default_rng(0), np.float32, std=0.05)
    rng = np.random.default_rng(0)

    def run_cr():
        state = M.zero_state(spec, 1, np.float32)
        for _ in sampling.generate(params, spec, int(data[0]), state, n, rng):
            pass

    sides = {"charrnn": run_cr}
    torch = HN.torch_module()
    if torch is not None:
        torch.manual_seed(0)
        model = HN.TorchModel("lstm", V, H, onehot=False).eval()
        gen = torch.Generator().manual_seed(0)
        mk = HN.fastest({m: (lambda m=m: HN.torch_sample(model, int(data[0]), min(n, 500), gen, m))
                         for m in (True, False)}, 1)
        res["reference"] += f" (oneDNN {'on' if mk else 'off'})"
        sides["ref"] = lambda: HN.torch_sample(model, int(data[0]), n, gen, mk)
    times = HN.interleave(sides, args.repeats, 1)
    med = HN.median_rates(times, dict.fromkeys(sides, n))
    res["charrnn"] = med["charrnn"]
    res["ref"] = med.get("ref")
    if "ref" not in sides:
        res["skipped"] = HN.TORCH_MISSING
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


def share(flops_per_char, rate, peak):
    """``GFLOP/s (% peak)`` of a side: FLOPs per character × characters per second (= FLOPs per
    step ÷ step time), and that as a share of the measured GEMM peak (GFLOP/s)."""
    g = flops_per_char * rate / 1e9
    return f"{g:.1f} ({100 * g / peak:.0f}%)"


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
        target = "—" if r["target"] is None else f"≥ {r['target']:g}×"
        fpc = r["flops_per_char"]
        cr_cell = f"{fmt_rate(r['charrnn'])} chars/s"
        if r.get("ref") is None:
            ref_cell = f"{r['reference']}: {r.get('skipped', 'skipped')}"
            lines.append(f"| {r['row']} | {r['name']} | {cr_cell} | {ref_cell} | — | {target} | — | "
                         f"{fpc / 1e6:.2f} | {share(fpc, r['charrnn'], peak)} | — |")
            continue
        ratio = r["charrnn"] / r["ref"]
        met = "—" if r["target"] is None else "yes" if ratio >= r["target"] else "NO"
        lines.append(
            f"| {r['row']} | {r['name']} | {cr_cell} | {r['reference']}: {fmt_rate(r['ref'])} chars/s | "
            f"{ratio:.2f}× | {target} | {met} | {fpc / 1e6:.2f} | "
            f"{share(fpc, r['charrnn'], peak)} | {share(fpc, r['ref'], peak)} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,2,3,4,5,6,7,8,9,10,11", help="comma-separated rows to run (default: all)")
    ap.add_argument("--repeats", type=int, default=7, help="timed turns per side (median reported)")
    ap.add_argument("--steps", type=int, default=10,
                    help="optimizer steps per timed turn, rows 2-4 and 7-11 (row 1: 20×)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    ap.add_argument("--sample-chars", type=int, default=5000, help="characters per sampling turn (row 5)")
    ap.add_argument("--rss-steps", type=int, default=50, help="training steps of the memory run (row 6)")
    ap.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate of rows 2-4, 6 and 8-11")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="the float32 peak that %% peak divides by (default: measured, harness.gemm_peak_gflops)")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n × n float32 product the peak is timed on")
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
    blas, threads = HN.blas_info()
    torch = HN.torch_module()
    if torch is not None:
        torch.set_num_threads(threads)  # the same cores for both sides
    header = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{HN.cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
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
    data, V = HN.read_corpus(CORPUS)
    peaks = [] if args.peak_gflops else [HN.gemm_peak_gflops(args.peak_size)]

    rows = []
    plan = [
        (1, lambda: row_minchar(args, data, V)),
        (2, lambda: row_train(args, data, V, "rnn", 2, 1.3)),
        (3, lambda: row_train(args, data, V, "lstm", 3, 1.2)),
        (4, lambda: row_train(args, data, V, "gru", 4, 1.2)),
        (5, lambda: row_sample(args, data, V)),
        (6, lambda: row_memory(args)),
        (7, lambda: row_cell(args, data, V, 7, "GRU 448 multiplicative T=32 B=32 float32 Adam "
                             "(configs/shakespeare.yaml's model)", "gru", 448, 32, 32, multiplicative=True,
                             optimizer="adam", lr=0.005, betas=(0.9, 0.99), init_std=0.05)),
        (8, lambda: row_cell(args, data, V, 8, "LN-GRU H=512 T=64 B=32 float32", "gru", 512, 64, 32,
                             layer_norm=True)),
        (9, lambda: row_cell(args, data, V, 9, "LN-LSTM H=512 T=64 B=32 float32", "lstm", 512, 64, 32,
                             layer_norm=True)),
        (10, lambda: row_cell(args, data, V, 10, "minGRU 2×512 residual T=64 B=32 float32", "mingru", 512, 64, 32,
                              layers=2, residual=True, scans=("loop", "log"))),
        (11, lambda: row_cell(args, data, V, 11, "minLSTM 2×512 residual T=64 B=32 float32", "minlstm", 512, 64,
                              32, layers=2, residual=True, scans=("loop", "log"))),
    ]
    for num, fn in plan:
        if num in rows_wanted:
            print(f"row {num} ...", file=sys.stderr, flush=True)
            rows.append(fn())
    if torch is None:
        print(f"{HN.TORCH_MISSING} (rows 2-5 and 7-11 show charrnn only)", file=sys.stderr)
    if args.peak_gflops:
        peak = args.peak_gflops
        header["float32 GEMM peak"] = f"{peak:.1f} GFLOP/s (given: --peak-gflops)"
    else:
        # Timed again after the rows: the higher of the two is the peak (a machine that was
        # busy for one of them shows it in the other).
        peaks.append(HN.gemm_peak_gflops(args.peak_size))
        peak = max(peaks)
        header["float32 GEMM peak"] = (
            f"{peak:.1f} GFLOP/s, measured: the fastest of 5 np.matmul {args.peak_size}×{args.peak_size} float32, "
            f"{threads} BLAS threads, before and after the rows ({peaks[0]:.1f}, {peaks[1]:.1f}); "
            "% peak = FLOPs per step ÷ step time ÷ this")
    print(render(header, rows, peak))
    if args.json_path:
        for r in rows:
            if r.get("ref"):
                r["ratio"] = r["charrnn"] / r["ref"]
            if r["unit"] == "chars/s" and r["charrnn"] is not None:
                for side in ("charrnn", "ref"):
                    if r.get(side) is not None:
                        r[f"{side}_gflops"] = r["flops_per_char"] * r[side] / 1e9
                        r[f"{side}_peak_share"] = r[f"{side}_gflops"] / peak
        Path(args.json_path).write_text(json.dumps({"header": header, "peak_gflops": peak, "rows": rows}, indent=2)
                                        + "\n")


if __name__ == "__main__":
    main()
