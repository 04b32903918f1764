"""Data-parallel training under MPI: measured on this machine, projected past it.

1. **Two ranks against one process.** Training chars/s of rnn, lstm and gru at H=512, T=64,
   B=32, float32, Adam: one process with 2 BLAS threads against ``mpiexec -n 2`` with 1 BLAS
   thread per rank (``OPENBLAS_NUM_THREADS``), on the same 2 cores; and, as a second
   reference, one process with 1 thread (what each rank has). The sides take turns
   (A B C A B C ...), ``--repeats`` times, and the table shows medians and ratios. Each run
   is a fresh worker process (``--worker``) that runs the training loop's body as
   ``charrnn train`` does (``harness.CharrnnTrainer``: ``runstate.next_batch``,
   ``optim.learning_rate``, ``train.train_step``; with ``comm.agreed`` for the stop flag
   every step), times its steps after a warm-up, and reports the time spent in the collective calls (``comm.sum`` and
   ``comm.agreed``: moving the data plus waiting for the slower rank) and each rank's peak RSS.
2. **Compute per step**, measured in one process for each shipped config
   (``configs/*.yaml``) and for LSTMs of 2×512 and 3×1024 units at B=32, T=64, with 2 and
   with 1 BLAS thread (the projection takes the faster: on a loaded machine two OpenBLAS
   threads can lose badly to one): the whole step, and the part of it that is the same work
   on every rank whatever N is (clipping, the optimizer's update, the weight average), which
   data parallelism does not divide.
3. **On paper.** Bytes all-reduced per step: the gradients, P parameters × 4 bytes (8 in a
   float64 config), once per step. A ring allreduce moves ``2(N-1)/N · P · 4`` bytes in and
   out of every node, so on a link of ``bw`` bytes/s it takes about::

       t_comm(N) = 2 (N - 1) / N · P · 4 / bw        (+ 2 (N - 1) · latency, ignored here)

   charrnn does not overlap the allreduce with computation, so with ``t_step`` the step
   time on one node, of which ``t_same`` is replicated on every rank:

   - same per-node batch (raise B with N, weak scaling): each node does one node's step,
     ``E = t_step / (t_step + t_comm)``;
   - same global batch B (strong scaling, N dividing B): each node computes B/N streams,
     ``t_N = (t_step - t_same) / N + t_same + t_comm``, ``E = t_step / (N · t_N)``; this
     assumes the per-stream work scales down linearly, which part 1 shows is optimistic.

Run from the repository root (about 6 minutes on two idle cores; ``--quick``: about 2)::

    python benchmarks/mpi_scaling.py --markdown out.md --json out.json

The machine is shared: absolute rates vary from run to run, which is why the sides of part
1 alternate and the table shows every turn; part 2's step times are single timings, and the
load average is recorded before and after.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "data" / "shakespeare_tiny.txt"
NODES = (4, 16, 64)
LINKS_GBPS = (10, 100)


# ----------------------------------------------------------------------------- the worker


def worker(spec_json):
    """Time training steps as the loop does; rank 0 prints one JSON line."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import harness as HN  # this folder: charrnn's step as users run it

    from charrnn import config as C
    from charrnn import distributed, optim
    from charrnn import model as M
    from charrnn.runtime import tune_allocator

    tune_allocator()
    job = json.loads(spec_json)
    comm = distributed.world()
    if job.get("config"):
        cfg = C.load(job["config"])
    else:
        cfg = HN.config(job["model"], {"name": "adam"}, job["train"])
    data, V = HN.read_corpus(cfg.data.path)
    tc = cfg.train
    trainer = HN.CharrnnTrainer(cfg, data, V, comm)  # new_run, comm.split: as train.train sets a run up
    spec = trainer.spec

    clock = {"comm": 0.0, "same": 0.0}

    def timed(f, key):
        def g(*a, **k):
            t = time.perf_counter()
            r = f(*a, **k)
            clock[key] += time.perf_counter() - t
            return r
        return g

    # train.train_step calls these through the objects it is given (comm, the optimizer) and
    # through the optim module (clipping, the weight average): wrapped here, it runs unchanged.
    comm.sum, comm.agreed = timed(comm.sum, "comm"), timed(comm.agreed, "comm")
    trainer.optimizer.update = timed(trainer.optimizer.update, "same")
    for name in ("clip_by_value", "clip_by_norm", "ema_update"):
        setattr(optim, name, timed(getattr(optim, name), "same"))

    def steps(n):
        for _ in range(n):
            comm.agreed(False)  # the loop's stop flag
            trainer.step()  # next_batch, learning_rate, train.train_step

    steps(job["warmup"])
    comm.agreed(False)  # start the clock together
    clock.update(comm=0.0, same=0.0)
    t = time.perf_counter()
    if job.get("seconds") and comm.size == 1:  # as many steps as fit in the time (at least 2)
        n = 0
        while n < 2 or time.perf_counter() - t < job["seconds"]:
            steps(1)
            n += 1
        job["steps"] = n
    else:
        steps(job["steps"])
    wall = time.perf_counter() - t
    P = sum(int(np.prod(s)) for s in M.param_shapes(spec).values())
    mine = {"comm_s": clock["comm"], "same_s": clock["same"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    ranks = comm.comm.allgather(mine) if comm.size > 1 else [mine]
    if comm.rank == 0:
        n = job["steps"]
        print(json.dumps({
            "ranks": comm.size, "steps": n, "step_ms": 1e3 * wall / n,
            "chars_per_s": n * tc.batch_size * tc.seq_length / wall,
            "comm_ms": [1e3 * r["comm_s"] / n for r in ranks],
            "same_ms": 1e3 * ranks[0]["same_s"] / n,
            "peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in ranks],
            "params": P, "dtype": cfg.model.dtype, "B": tc.batch_size, "T": tc.seq_length,
            "describe": spec.describe(),
        }), flush=True)


# ----------------------------------------------------------------------------- the driver


def launch(job, ranks, threads):
    """Run a worker: one plain process, or ``mpiexec -n ranks``; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK")}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), HYDRA_LAUNCHER="fork")
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(cmd[:4])} ...): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SIDES = {"one": (1, 2), "one1": (1, 1), "two": (2, 1)}  # (ranks, BLAS threads per rank)


def part1(cells, H, T, B, repeats, steps):
    rows = []
    for cell in cells:
        job = {"model": {"cell": cell, "hidden_size": H}, "train": {"seq_length": T, "batch_size": B},
               "warmup": 3, "steps": steps[cell]}
        runs = {side: [] for side in SIDES}
        for _ in range(repeats):  # turns: every side sees the same disturbances
            for side, (ranks, threads) in SIDES.items():
                runs[side].append(launch(job, ranks, threads))
        row = {"cell": cell, "params": runs["one"][0]["params"]}
        for side, rs in runs.items():
            row[f"{side}_chars_per_s"] = statistics.median(r["chars_per_s"] for r in rs)
            row[f"{side}_step_ms"] = statistics.median(r["step_ms"] for r in rs)
            row[f"{side}_rss_mb"] = max(max(r["peak_rss_mb"]) for r in rs)
            row[f"{side}_turns"] = [round(r["chars_per_s"]) for r in rs]
        row["two_comm_ms"] = [statistics.median(r["comm_ms"][i] for r in runs["two"]) for i in range(2)]
        row["ratio"] = row["two_chars_per_s"] / row["one_chars_per_s"]
        row["ratio1"] = row["two_chars_per_s"] / row["one1_chars_per_s"]
        rows.append(row)
        print(f"  {cell}: " + ", ".join(f"{side} {row[side + '_turns']}" for side in SIDES), file=sys.stderr)
    return rows


SHAPES = {  # two larger LSTMs (docstring, part 2), at the shipped configs' B and T
    "lstm 2×512": {"model": {"cell": "lstm", "hidden_size": 512, "layers": 2},
                   "train": {"seq_length": 64, "batch_size": 32}},
    "lstm 3×1024": {"model": {"cell": "lstm", "hidden_size": 1024, "layers": 3},
                    "train": {"seq_length": 64, "batch_size": 32}},
}


def part2(quick):
    rows = []
    jobs = [(p.name, {"config": str(p)}) for p in sorted((ROOT / "configs").glob("*.yaml"))]
    jobs += list(SHAPES.items())
    for name, job in jobs:
        timed = {t: launch(dict(job, warmup=1, seconds=0.5 if quick else 2.0), 1, t) for t in (2, 1)}
        r = min(timed.values(), key=lambda x: x["step_ms"])  # the projection uses the faster
        itemsize = 8 if r["dtype"] == "float64" else 4
        rows.append(dict(r, name=name, bytes=r["params"] * itemsize, step2_ms=timed[2]["step_ms"],
                         step1_ms=timed[1]["step_ms"]))
        print(f"  {name}: {r['describe']}, B={r['B']} T={r['T']}: {timed[2]['step_ms']:.1f} ms/step with 2 "
              f"threads, {timed[1]['step_ms']:.1f} with 1 ({r['same_ms']:.1f} replicated), P={r['params']:,}",
              file=sys.stderr)
    return rows


def projection(row, N, gbps):
    """(weak-scaling E, strong-scaling E or None) for a part-2 row on N nodes at gbps Gb/s."""
    t_step, t_same = row["step_ms"] / 1e3, row["same_ms"] / 1e3
    t_comm = 2 * (N - 1) / N * row["bytes"] / (gbps * 1e9 / 8)
    weak = t_step / (t_step + t_comm)
    if row["B"] % N:
        return weak, None
    t_n = (t_step - t_same) / N + t_same + t_comm
    return weak, t_step / (N * t_n)


def markdown(meta, p1, p2):
    out = ["# MPI scaling: latest results", "",
           "Produced by `benchmarks/mpi_scaling.py`; see its docstring for the method.", ""]
    out += [f"- {k}: {v}" for k, v in meta.items()]
    out += ["", "## 1. Two ranks (1 BLAS thread each) against one process (2 BLAS threads), 2 cores", "",
            "H=512 T=64 B=32 float32 Adam. chars/s: medians of the turns, every turn's rate in brackets. "
            "The one-process, one-thread side is a second reference: on two free cores, two ranks "
            "can at best double it.", "",
            "| cell | 1 process, 2 threads | 1 process, 1 thread | 2 ranks, 1 thread each "
            "| 2 ranks / 1 process (2 threads) | 2 ranks / 1 process (1 thread) | step: 1 proc 2 thr / 2 ranks "
            "| in collectives, rank 0 / 1 | "
            "peak RSS: 1 proc / per rank |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in p1:
        out.append(f"| {r['cell']} | {r['one_chars_per_s']:,.0f} {r['one_turns']} | "
                   f"{r['one1_chars_per_s']:,.0f} {r['one1_turns']} | {r['two_chars_per_s']:,.0f} {r['two_turns']} | "
                   f"{r['ratio']:.2f}× | {r['ratio1']:.2f}× | {r['one_step_ms']:.1f} / {r['two_step_ms']:.1f} ms | "
                   f"{r['two_comm_ms'][0]:.1f} / {r['two_comm_ms'][1]:.1f} ms | "
                   f"{r['one_rss_mb']:.0f} / {r['two_rss_mb']:.0f} MB |")
    out += ["", "## 2. Compute per step (one process) and bytes all-reduced per step", "",
            "Step times with 2 and with 1 BLAS thread; the projection uses the faster (on a loaded machine "
            "two OpenBLAS threads can be much slower than one). 'Replicated': clipping, the optimizer's "
            "update and the weight average, which every rank does whole.", "",
            "| model | B | T | parameters P | all-reduced per step | step, 2 threads | step, 1 thread "
            "| of which replicated |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in p2:
        out.append(f"| {r['name']}: {r['describe']}, {r['dtype']} | {r['B']} | {r['T']} | {r['params']:,} | "
                   f"{r['bytes'] / 2**20:.2f} MiB | {r['step2_ms']:.1f} ms | {r['step1_ms']:.1f} ms | "
                   f"{r['same_ms']:.1f} ms |")
    out += ["", "## 3. Projected scaling efficiency (ring allreduce, no overlap, latency ignored)", "",
            "E = speed-up / N. 'same B per node': each node keeps the config's B (the global batch grows to N·B); "
            "'same global B': the config's B split over N nodes (— where N does not divide B).", ""]
    head = "| model | " + " | ".join(f"{N} nodes, {g} Gb/s" for N in NODES for g in LINKS_GBPS) + " |"
    out += [head, "|---|" + "---:|" * (len(NODES) * len(LINKS_GBPS))]
    for r in p2:
        cells = []
        for N in NODES:
            for g in LINKS_GBPS:
                weak, strong = projection(r, N, g)
                cells.append(f"{weak:.0%} / " + ("—" if strong is None else f"{strong:.0%}"))
        out.append(f"| {r['name']} (same B per node / same global B) | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="one turn per side, short runs (a smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="turns per side in part 1 (default 3)")
    ap.add_argument("--parts", default="1,2", help="which measured parts to run (default 1,2; part 3 needs 2)")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--markdown", help="write the tables here")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    repeats = 1 if args.quick else args.repeats
    steps = {"rnn": 15, "lstm": 5, "gru": 5} if args.quick else {"rnn": 60, "lstm": 20, "gru": 20}
    t0 = time.time()
    parts = {int(p) for p in args.parts.split(",")}
    p1 = p2 = []
    if 1 in parts:
        print("part 1: one process against 2 ranks", file=sys.stderr)
        p1 = part1(["rnn", "lstm", "gru"], 512, 64, 32, repeats, steps)
    if 2 in parts:
        print("part 2: compute per step", file=sys.stderr)
        p2 = part2(args.quick)
    import numpy as np

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.system()} {platform.release()}",
        "python / numpy": f"{platform.python_version()} / {np.__version__}",
        "load average before / after": f"{LOAD0} / {loadavg()} (2 cores)",
        "command": "python " + " ".join(sys.argv),
        "duration": f"{time.time() - t0:.0f} s",
    }
    text = markdown(meta, p1, p2)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "part1": p1, "part2": p2}, indent=1), encoding="utf-8")


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


LOAD0 = loadavg()

if __name__ == "__main__":
    main()
