"""minGRU and minLSTM against the GRU: chars/s of a training step, the models measured in turn.

The step is ``charrnn train``'s (``harness.CharrnnTrainer``: Adagrad, clipping at ±5, on the
bundled corpus), float32, T = 32, B = 32. The models take turns of ``--steps`` steps, for
``--turns`` rounds, in one process, so that a machine shared with other work slows them alike;
each model's figure is the median over its turns.

    python benchmarks/min_cells.py                 # mingru 2x512 residual, minlstm 2x512, gru 1x384 mult
    python benchmarks/min_cells.py --turns 9 --steps 20
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as HN  # noqa: E402  (this folder: charrnn's step as users run it)

from charrnn.runtime import tune_allocator  # noqa: E402

MODELS = {  # name: (cell, H, layers, multiplicative, residual)
    "mingru 2x512 residual": ("mingru", 512, 2, False, True),
    "minlstm 2x512": ("minlstm", 512, 2, False, False),
    "gru 1x384 multiplicative": ("gru", 384, 1, True, False),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="steps per turn")
    ap.add_argument("--turns", type=int, default=7)
    args = ap.parse_args(argv)
    tune_allocator()
    data, V = HN.read_corpus()
    trainers = {name: HN.trainer(data, V, cell, H, args.seq, args.batch, layers=L, multiplicative=mi, residual=res)
                for name, (cell, H, L, mi, res) in MODELS.items()}
    for t in trainers.values():  # warm up: first-touch allocations, BLAS threads
        for _ in range(3):
            t.step()
    rates = {name: [] for name in trainers}
    for _ in range(args.turns):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                t.step()
            rates[name].append(args.steps * args.seq * args.batch / (time.perf_counter() - t0))
    base = statistics.median(rates["gru 1x384 multiplicative"])
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"{name:<26} {m:>10,.0f} chars/s  {m / base:5.2f}x the gru  (turns: {min(r):,.0f} .. {max(r):,.0f})")


if __name__ == "__main__":
    main()
