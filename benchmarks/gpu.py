"""charrnn on a GPU (CuPy) against PyTorch with cuDNN, and against charrnn on the CPU.

Rows, all float32, T = 64, the bundled corpus, the same training step on both sides: batch
copied from the host, loss summed over T and averaged over B, backward, clip to global norm
5, Adam:

1. LSTM H=512 B=32: charrnn on the GPU against ``nn.LSTM`` (cuDNN), and against charrnn's
   own CPU figure for this setting from ``benchmarks/results.md`` (target ≥ 20×);
2. GRU H=512 B=32, likewise (the GRU's candidate differs from cuDNN's, the work is the same);
3. LSTM H=1024 B=128: against ``nn.LSTM`` (target ≥ 0.5×);
4. GRU H=1024 B=128, likewise.

charrnn's step is the one users run: the body of ``charrnn train``'s loop
(``harness.CharrnnTrainer``: ``runstate.next_batch``, ``optim.learning_rate``,
``train.train_step``), on a run built from a ``charrnn.config.Config`` with ``model.device``
set to ``--device``. ``train_step`` reads the loss and one all-finite flag of the gradients
back from the device every step (the finite check and the divergence rule need them), so
each of its steps waits for the GPU once; the PyTorch step does not read its loss.

charrnn runs with its fused gate kernels (``charrnn.kernels``) and, for the breakdown,
without them. PyTorch runs at float32 too (``torch.backends.cudnn.allow_tf32 = False``;
its default lets cuDNN use TF32 tensor cores, shown in its own column), with the faster of
one-hot and embedding input and Adam's fused CUDA implementation. The sides take turns
(A B A B ...) timing blocks of steps; each block ends with a device synchronisation;
medians are reported.

Where the time goes, per charrnn row: the step's time with the same launches on tiny
arrays (H = 8, B = 1: a floor set by Python and kernel launches), the time of the step's
matrix products alone (the same shapes, cuBLAS), and the host time of one small kernel
launch, from which an estimate of launches per step. Also: a float64 gradient agreement
check CPU against GPU for every cell, sampling speed on the host and on the GPU (why
``charrnn sample`` uses the host), and memory (CuPy pool and PyTorch's peak).

Run from the repository root on a machine with a GPU (``pip install 'charrnn[gpu]'`` and
PyTorch with CUDA), under 5 minutes::

    python benchmarks/gpu.py --out gpu_results        # writes gpu_results.json and .md
    python benchmarks/gpu.py --dry-run --device cpu --out /tmp/gpu_dry   # plumbing, no GPU
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it, the references, timing)

from charrnn import device, kernels, sampling  # noqa: E402
from charrnn import model as M  # noqa: E402
from charrnn.errors import CharrnnError  # noqa: E402

ROOT, CORPUS = HN.ROOT, HN.CORPUS
RESULTS_MD = ROOT / "benchmarks" / "results.md"


def cpu_figures():
    """charrnn's CPU chars/s for LSTM and GRU at H=512 T=64 B=32 float32, from results.md."""
    out = {}
    text = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else ""
    for cell in ("LSTM", "GRU"):
        m = re.search(rf"\|\s*\d+\s*\|\s*{cell} H=512 T=64 B=32 float32\s*\|\s*([\d,]+) chars/s", text)
        if m:
            out[cell.lower()] = float(m.group(1).replace(",", ""))
    return out


def syncer(xp):
    """What to call before a clock is read: wait for CuPy's queued work and PyTorch's."""
    torch = HN.torch_module()

    def sync():
        device.synchronize(xp)
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()

    return sync


def trainer(args, data, V, cell, H, T, B):
    """charrnn's training step as ``charrnn train`` runs it (``harness.CharrnnTrainer``), at
    this benchmark's settings: float32, Adam at 2e-3, clipping to global norm 5, weights 0.05."""
    return HN.trainer(data, V, cell, H, T, B, optimizer="adam", lr=2e-3, clip_value=None, clip_norm=5.0,
                      init_std=0.05, device_name=args.device)


def torch_trainer(tdev, data, V, cell, H, T, B, onehot, tf32=False):
    """PyTorch's step at the same settings (``harness.TorchTrainer``), fused Adam on CUDA."""
    return HN.TorchTrainer(data, V, cell, H, T, B, lr=2e-3, onehot=onehot, optimizer="adam", clip_norm=5.0,
                           dev=tdev, tf32=tf32)


def torch_device(args):
    torch = HN.torch_module()
    if torch is None:
        return None, "torch not installed"
    if args.device == "gpu":
        if not torch.cuda.is_available():
            return None, "torch has no CUDA here"
        return torch.device("cuda"), None
    return torch.device("cpu"), None


# ---------------------------------------------------------------------------------------
# Where the time goes.


def products_time(xp, cell, H, T, B, V, repeats=5):
    """Seconds per step of the step's matrix products alone: 2T recurrent products, the
    weight gradients (dWhh, dWxh through the one-hot, dWhy), the output layer both ways."""
    G = HN.gates(cell) * H
    sync = syncer(xp)
    rng = np.random.default_rng(0)

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    h, W, da, WT = arr(B, H), arr(H, G), arr(B, G), arr(G, H)
    out_fwd = xp.empty((B, G), dtype=np.float32)
    out_bwd = xp.empty((B, H), dtype=np.float32)
    big_a, big_h, onehot = arr(T * B, G), arr(T * B, H), arr(T * B, V)
    Why, dy = arr(V, H), arr(T * B, V)
    recurrent = 2 if cell == "gru" else 1  # the GRU's two products a step (2H then H columns)

    def run():
        for _ in range(T * recurrent):
            xp.dot(h, W, out=out_fwd)
            xp.dot(da, WT, out=out_bwd)
        big_a.T @ big_h  # dWhh
        big_a.T @ onehot  # dWxh
        big_h @ Why.T  # logits
        dy.T @ big_h  # dWhy
        dy @ Why  # gradient at the top layer

    run()
    sync()
    return statistics.median(HN.timed(run, sync) for _ in range(repeats))


def launch_time(xp, n=2000):
    """Host seconds per launch of a trivial elementwise kernel (one element)."""
    a, b = xp.zeros(1, dtype=np.float32), xp.ones(1, dtype=np.float32)
    sync = syncer(xp)
    for _ in range(50):
        a += b
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        a += b
    host = (time.perf_counter() - t0) / n
    sync()
    return host


def breakdown(args, xp, data, V, cell, H, T, B, step_s):
    sync = syncer(xp)
    floor = trainer(args, data, V, cell, 8, T, 1)
    n = HN.block_steps(floor.step, 0.3, sync)
    floor_s = HN.timed(lambda: floor.steps(n), sync) / n
    prod_s = products_time(xp, cell, H, T, B, V)
    per_launch = launch_time(xp)
    return {
        "step_ms": step_s * 1e3,
        "floor_ms": floor_s * 1e3,  # the same launches on tiny arrays
        "products_ms": prod_s * 1e3,
        "products_share": prod_s / step_s,
        "launch_us": per_launch * 1e6,
        "launches_per_step_est": floor_s / per_launch,
    }


# ---------------------------------------------------------------------------------------
# Checks and side measurements.


def gradient_agreement(xp):
    """max over arrays of max |GPU - CPU| / max |CPU|, float64, per cell and model shape."""
    from charrnn import gradcheck

    rows = []
    for cell in ("rnn", "lstm", "gru"):
        for layers, dropout, mult in ((1, 0.0, False), (2, 0.3, True)):
            spec = M.ModelSpec(cell, 23, 32, layers, dropout, mult)
            rng = np.random.default_rng(0)
            params, X, Y, state0 = gradcheck.random_problem(spec, 16, 8, rng, 0.3)
            masks = M.dropout_masks(spec, (16, 8, 32), rng, np.float64) if dropout else None
            ref = M.loss_and_grads(params, spec, X, Y, state0, masks)
            ours = M.loss_and_grads(device.to_device(params, xp), spec, X, Y, device.to_device(state0, xp),
                                    device.to_device(masks, xp))
            g = device.to_host(ours.grads)
            err = max(float(np.abs(g[k] - ref.grads[k]).max() / np.abs(ref.grads[k]).max()) for k in ref.grads)
            rows.append({"cell": cell, "layers": layers, "dropout": dropout, "multiplicative": mult,
                         "max_rel_err": err, "loss_rel_err": abs(float(ours.loss) - ref.loss) / abs(ref.loss)})
    return rows


def sampling_speed(xp, V, n):
    """chars/s generating ``n`` characters from an LSTM H=512: on the host (sampling.generate,
    what ``charrnn sample`` does), and a loop with the weights on the device (each character
    a forward pass there and its logits read back for the draw)."""
    spec = M.ModelSpec("lstm", V, 512)
    params = M.init_params(spec, np.random.default_rng(0), np.float32, 0.05)
    t0 = time.perf_counter()
    for _ in sampling.generate(params, spec, 0, M.zero_state(spec, 1, np.float32), n, np.random.default_rng(1)):
        pass
    host = n / (time.perf_counter() - t0)
    dparams = device.to_device(params, xp)
    prepared = M.prepare(dparams, spec, 1)
    state, index, rng = M.zero_state(spec, 1, np.float32, xp), 0, np.random.default_rng(1)
    syncer(xp)()
    t0 = time.perf_counter()
    for _ in range(n):
        logits, state, _ = M.forward(dparams, spec, np.array([[index]]), state, prepared=prepared)
        index = sampling.next_index(device.to_host(logits[0]), rng)
    dev = n / (time.perf_counter() - t0)
    return {"host_chars_s": host, "device_loop_chars_s": dev}


def memory_mb(xp):
    if xp is np:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS
    return xp.get_default_memory_pool().total_bytes() / 2**20


# ---------------------------------------------------------------------------------------


def run_row(args, xp, tdev, data, V, cell, H, B, T, cpu_fig):
    name = f"{cell.upper()} H={H} B={B} T={T} float32"
    print(f"== {name}", file=sys.stderr, flush=True)
    sync = syncer(xp)
    if xp is not np:
        xp.get_default_memory_pool().free_all_blocks()
    fused = trainer(args, data, V, cell, H, T, B)
    plain = trainer(args, data, V, cell, H, T, B)

    def plain_steps(k):
        with kernels.enabled(False):
            plain.steps(k)

    fused.steps(args.warmup)  # the warm-up includes compiling the kernels (cached on disk after)
    plain_steps(args.warmup)
    n = HN.block_steps(fused.step, args.block_s, sync)
    sides = {"charrnn": lambda: fused.steps(n), "charrnn_plain": lambda: plain_steps(n)}
    res = {"row": name, "cell": cell, "H": H, "B": B, "T": T, "steps_per_block": n}
    torch_note = None
    if tdev is not None:
        torch = HN.torch_module()
        if tdev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        cands = {oh: torch_trainer(tdev, data, V, cell, H, T, B, onehot=oh) for oh in (True, False)}
        for tr in cands.values():
            tr.steps(args.warmup)
        best = HN.fastest({oh: (lambda tr=tr: tr.steps(max(3, n // 3))) for oh, tr in cands.items()}, 0, 1, sync)
        tt = cands[best]
        tt32 = torch_trainer(tdev, data, V, cell, H, T, B, onehot=best, tf32=True)
        tt32.steps(args.warmup)
        sides["torch"] = lambda: tt.steps(n)
        sides["torch_tf32"] = lambda: tt32.steps(n)
        res["torch_input"] = "one-hot" if best else "embedding"
    else:
        torch_note = "torch skipped: " + args.torch_missing
    times = HN.interleave(sides, args.repeats, 0, sync)
    med = {side: statistics.median(t) for side, t in times.items()}
    chars = n * T * B
    for side, s in med.items():
        res[f"{side}_chars_s"] = chars / s
    res["fused_gain"] = med["charrnn_plain"] / med["charrnn"]
    if "torch" in med:
        res["vs_torch"] = med["torch"] / med["charrnn"]
        res["vs_torch_tf32"] = med["torch_tf32"] / med["charrnn"]
        res["torch_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20 if tdev.type == "cuda" else None
    if torch_note:
        res["note"] = torch_note
    if H == 512 and B == 32 and cell in cpu_fig:
        res["cpu_chars_s"] = cpu_fig[cell]
        res["vs_cpu"] = res["charrnn_chars_s"] / cpu_fig[cell]
    res["charrnn_mem_mb"] = memory_mb(xp)
    res["breakdown"] = breakdown(args, xp, data, V, cell, H, T, B, med["charrnn"] / n)
    with kernels.enabled(False):
        res["breakdown_plain"] = breakdown(args, xp, data, V, cell, H, T, B, med["charrnn_plain"] / n)
    return res  # the trainers go with the frame: the next row starts with their memory free


def markdown(meta, rows, grads, samp):
    L = ["# GPU benchmark: charrnn on CuPy against PyTorch cuDNN", ""]
    L += [f"- {k}: {v}" for k, v in meta.items()]
    L += ["", "| setting | charrnn GPU (fused) | charrnn GPU (plain) | PyTorch cuDNN fp32 | PyTorch cuDNN TF32 "
          "| vs PyTorch fp32 | target | charrnn CPU (results.md) | vs CPU | target |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt="{:,.0f}"):
        return "—" if v is None else fmt.format(v)

    for r in rows:
        big = r["H"] == 1024
        t_torch = "≥ 0.5×" if big else ""
        t_cpu = "≥ 20×" if not big else ""
        L.append(f"| {r['row']} | {f(r['charrnn_chars_s'])} | {f(r['charrnn_plain_chars_s'])} | "
                 f"{f(r.get('torch_chars_s'))} | {f(r.get('torch_tf32_chars_s'))} | "
                 f"{f(r.get('vs_torch'), '{:.2f}×')} | "
                 f"{t_torch} | {f(r.get('cpu_chars_s'))} | {f(r.get('vs_cpu'), '{:.1f}×')} | {t_cpu} |")
    L += ["", "chars/s, median of interleaved blocks. Where the time goes (per training step):", "",
          "| setting | kernels | step ms | same launches, tiny arrays ms | products alone ms (share) "
          "| µs per launch (host) | ≈ launches/step |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for label, b in (("fused", r["breakdown"]), ("plain", r["breakdown_plain"])):
            L.append(f"| {r['row']} | {label} | {b['step_ms']:.2f} | {b['floor_ms']:.2f} | "
                     f"{b['products_ms']:.2f} ({b['products_share']:.0%}) | {b['launch_us']:.1f} | "
                     f"{b['launches_per_step_est']:.0f} |")
    L += ["", "Memory: " + "; ".join(
        f"{r['row']}: charrnn {r['charrnn_mem_mb']:.0f} MB" + (f", PyTorch peak {r['torch_peak_mb']:.0f} MB"
                                                              if r.get("torch_peak_mb") else "") for r in rows)]
    L += ["", "float64 gradients, GPU against CPU (max over arrays of max |GPU − CPU| / max |CPU|):", "",
          "| cell | layers | dropout | multiplicative | gradients | loss |", "|---|---:|---:|:-:|---:|---:|"]
    for g in grads:
        L.append(f"| {g['cell']} | {g['layers']} | {g['dropout']} | {'yes' if g['multiplicative'] else 'no'} | "
                 f"{g['max_rel_err']:.1e} | {g['loss_rel_err']:.1e} |")
    if samp:
        L += ["", f"Sampling (LSTM H=512, one character at a time): on the host {samp['host_chars_s']:,.0f} chars/s; "
                  f"with the weights on the device {samp['device_loop_chars_s']:,.0f} chars/s."]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="write OUT.json and OUT.md")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="cpu: only to check the script")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes and few steps: checks the plumbing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--block-s", type=float, default=0.4, help="seconds per timed block")
    ap.add_argument("--sample-chars", type=int, default=500)
    args = ap.parse_args()
    t_start = time.perf_counter()
    try:
        xp = device.get_xp(args.device)
    except CharrnnError as e:
        sys.exit(f"benchmarks/gpu.py: {e}")
    tdev, args.torch_missing = torch_device(args)
    data, V = HN.read_corpus(CORPUS)
    if args.dry_run:
        settings, T = [("lstm", 32, 4), ("gru", 32, 4)], 16
        args.repeats, args.warmup, args.block_s, args.sample_chars = 2, 1, 0.05, 20
    else:
        settings, T = [("lstm", 512, 32), ("gru", 512, 32), ("lstm", 1024, 128), ("gru", 1024, 128)], 64
    cpu_fig = cpu_figures()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "python": platform.python_version(), "numpy": np.__version__,
        "device": args.device + (" (dry run)" if args.dry_run else ""),
    }
    if xp is not np:
        props = xp.cuda.runtime.getDeviceProperties(0)
        meta["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        meta["cupy"] = xp.__version__
        meta["cuda runtime"] = xp.cuda.runtime.runtimeGetVersion()
    torch = HN.torch_module()
    if torch is not None:
        meta["torch"] = torch.__version__
        meta["cudnn"] = torch.backends.cudnn.version() if tdev is not None and tdev.type == "cuda" else None
    meta["cpu figures (results.md, Adagrad + clip ±5)"] = cpu_fig
    rows = [run_row(args, xp, tdev, data, V, cell, H, B, T, cpu_fig) for cell, H, B in settings]
    print("== gradients, sampling", file=sys.stderr, flush=True)
    grads = gradient_agreement(xp)
    samp = sampling_speed(xp, V, args.sample_chars)
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    result = {"meta": meta, "rows": rows, "gradients_float64": grads, "sampling": samp}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(meta, rows, grads, samp)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
