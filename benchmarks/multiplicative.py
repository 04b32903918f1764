"""What multiplicative integration (``model.multiplicative``) costs per training step.

Times charrnn's training step (``throughput.py``'s ``CharrnnTrainer``: batch, loss and
gradients, clipping at ±5, Adagrad) for the plain cell and the multiplicative one, at the
same sizes, taking turns in one process (A B A B ...), and prints each side's median rate
and their ratio. The default sizes are ``configs/shakespeare.yaml``'s model::

    python benchmarks/multiplicative.py                       # GRU 384, T=32, B=32
    python benchmarks/multiplicative.py --cell lstm --hidden 512 --seq 64
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CORPUS, CharrnnTrainer, interleave  # noqa: E402  (this folder)

from charrnn.data import build_vocab, encode, read_text  # noqa: E402
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
    text = read_text(CORPUS)
    vocab = build_vocab(text)
    data = encode(text, vocab)
    chars = args.steps * args.seq * args.batch
    sides = {}
    for name, mult in (("plain", False), ("multiplicative", True)):
        trainer = CharrnnTrainer(data, len(vocab), args.cell, args.hidden, args.seq, args.batch,
                                 np.dtype(args.dtype), lr=0.05, multiplicative=mult)

        def run(step=trainer.step):
            for _ in range(args.steps):
                step()

        sides[name] = (run, chars)
    medians, _ = interleave(sides, args.repeats, warmup=1)
    plain, mult = medians["plain"], medians["multiplicative"]
    print(f"{args.cell} H={args.hidden} T={args.seq} B={args.batch} {args.dtype}: "
          f"plain {plain:,.0f} chars/s, multiplicative {mult:,.0f} chars/s; "
          f"a multiplicative step takes {plain / mult:.2f}× as long")


if __name__ == "__main__":
    main()
