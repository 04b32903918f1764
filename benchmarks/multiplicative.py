"""What multiplicative integration (``model.multiplicative``) costs per training step.

Times charrnn's training step as users run it (``harness.CharrnnTrainer``, the body of
``charrnn train``'s loop: ``runstate.next_batch``, ``optim.learning_rate``, ``train.train_step``;
at the throughput benchmark's settings, Adagrad and clipping at ±5) for the plain cell and
the multiplicative one, at the same sizes, taking turns in one process (A B A B ...), and
prints each side's median rate and their ratio. The default sizes are ``configs/shakespeare.yaml``'s model::

    python benchmarks/multiplicative.py                       # GRU 384, T=32, B=32
    python benchmarks/multiplicative.py --cell lstm --hidden 512 --seq 64
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it, timing in turns)

from charrnn.runtime import tune_allocator  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="gru")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--steps", type=int, default=10, help="steps per turn")
    ap.add_argument("--repeats", type=int, default=15, help="turns per side")
    args = ap.parse_args(argv)
    tune_allocator()  # as the CLI does
    data, V = HN.read_corpus()
    chars = args.steps * args.seq * args.batch
    sides = {}
    for name, mult in (("plain", False), ("multiplicative", True)):
        trainer = HN.trainer(data, V, args.cell, args.hidden, args.seq, args.batch, dtype=args.dtype, lr=0.05,
                             multiplicative=mult)
        sides[name] = lambda trainer=trainer: trainer.steps(args.steps)
    medians = HN.median_rates(HN.interleave(sides, args.repeats, warmup=1), dict.fromkeys(sides, chars))
    plain, mult = medians["plain"], medians["multiplicative"]
    print(f"{args.cell} H={args.hidden} T={args.seq} B={args.batch} {args.dtype}: "
          f"plain {plain:,.0f} chars/s, multiplicative {mult:,.0f} chars/s; "
          f"a multiplicative step takes {plain / mult:.2f}× as long")


if __name__ == "__main__":
    main()
