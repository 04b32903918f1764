"""Where a training step's time goes: line_profiler over charrnn's training step.

The step is the one ``benchmarks/throughput.py`` times, the body of ``charrnn train``'s loop
(``harness.CharrnnTrainer``: ``runstate.next_batch``, ``optim.learning_rate``,
``train.train_step``), at its settings: Adagrad, clipping at ±5, on the bundled corpus. It is
timed first without the profiler, then profiled line by line in ``train.train_step`` itself
(the finite check, the divergence rule, clipping, the update), ``runstate.next_batch``, the
cell's forward and backward, the model's forward and backward, the softmax, clipping and the
update. Times are printed per training step, in milliseconds (microseconds for steps under
5 ms).

    python benchmarks/profile_step.py lstm --hidden 512 --seq 64 --batch 32      # row 3
    python benchmarks/profile_step.py gru --hidden 512 --seq 64 --batch 32       # row 4
    python benchmarks/profile_step.py rnn --hidden 100 --seq 25 --batch 1 --dtype float64 --steps 3000   # row 1

Needs ``pip install -e ".[bench]"`` (line_profiler).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it)

from charrnn import model as M  # noqa: E402
from charrnn import optim, runstate, train  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402
from charrnn.runtime import tune_allocator  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", choices=list(CELLS))
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--steps", type=int, default=30, help="profiled steps (and timed steps before)")
    args = ap.parse_args(argv)
    try:
        from line_profiler import LineProfiler
    except ImportError:
        sys.exit('profile_step.py needs line_profiler: pip install -e ".[bench]"')

    tune_allocator()  # as the CLI and the benchmark do
    data, V = HN.read_corpus()
    # The learning rates of the benchmark: row 1's 0.1 for one stream, rows 2-4's 0.05 else.
    trainer = HN.trainer(data, V, args.cell, args.hidden, args.seq, args.batch, dtype=args.dtype,
                         lr=0.1 if args.batch == 1 else 0.05)
    step = trainer.step

    def steps():
        for _ in range(args.steps):
            step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    steps()
    per_step = (time.perf_counter() - t0) / args.steps
    print(f"{args.cell} H={args.hidden} T={args.seq} B={args.batch} {args.dtype}: "
          f"{per_step * 1e3:.3f} ms per step without the profiler "
          f"({args.seq * args.batch / per_step:,.0f} chars/s)")

    lp = LineProfiler()
    cell = trainer.spec.module
    for f in (trainer.step, train.train_step, runstate.next_batch, cell.forward, cell.backward, M.forward,
              M.backward, M.target_log_probs, optim.clip_by_value, trainer.optimizer.update):
        lp.add_function(f)
    lp.runcall(steps)
    # The "Time" column per training step (the profiled total / steps): in milliseconds, or
    # in microseconds for steps shorter than 5 ms, where milliseconds would round to 0.
    unit = 1e-3 if per_step >= 5e-3 else 1e-6
    print(f"Time below: {'ms' if unit == 1e-3 else 'µs'} per training step, with the profiler's own overhead")
    lp.print_stats(output_unit=unit * args.steps, stripzeros=True)


if __name__ == "__main__":
    main()
