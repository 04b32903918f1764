"""What layer normalization (``model.layer_norm``) costs per training step.

Times charrnn's training step as users run it (``harness.CharrnnTrainer``, as
``benchmarks/multiplicative.py`` does) without and with layer normalization, at the same sizes,
taking turns in one process (A B A B ...), and prints each side's median rate and their ratio.
The default model is ``configs/shakespeare.yaml``'s (a multiplicative GRU of 384)::

    python benchmarks/layer_norm.py                           # GRU 384, multiplicative, T=32, B=32
    python benchmarks/layer_norm.py --cell lstm --hidden 512 --plain
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it, timing in turns)

from charrnn.runtime import tune_allocator  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", choices=("lstm", "gru"), default="gru")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--plain", action="store_true", help="without multiplicative integration")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--steps", type=int, default=10, help="steps per turn")
    ap.add_argument("--repeats", type=int, default=15, help="turns per side")
    args = ap.parse_args(argv)
    tune_allocator()  # as the CLI does
    data, V = HN.read_corpus()
    chars = args.steps * args.seq * args.batch
    sides = {}
    for name, ln in (("off", False), ("layer_norm", True)):
        trainer = HN.trainer(data, V, args.cell, args.hidden, args.seq, args.batch, dtype=args.dtype, lr=0.05,
                             multiplicative=not args.plain, layer_norm=ln)
        sides[name] = lambda trainer=trainer: trainer.steps(args.steps)
    medians = HN.median_rates(HN.interleave(sides, args.repeats, warmup=1), dict.fromkeys(sides, chars))
    off, on = medians["off"], medians["layer_norm"]
    print(f"{args.cell} H={args.hidden} T={args.seq} B={args.batch} {args.dtype}"
          f"{'' if args.plain else ' multiplicative'}: without {off:,.0f} chars/s "
          f"({off / (args.seq * args.batch):.1f} steps/s), with layer_norm {on:,.0f} chars/s "
          f"({on / (args.seq * args.batch):.1f} steps/s); a layer-norm step takes {off / on:.2f}× as long")


if __name__ == "__main__":
    main()
