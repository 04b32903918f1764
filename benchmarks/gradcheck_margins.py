"""How far below its tolerance ``charrnn gradcheck`` passes, over many models and seeds.

Runs ``charrnn.gradcheck.check_gradients`` (what the command runs) for every cell, depth,
option (plain and multiplicative, without and with dropout 0.25) and seed, and prints the
largest relative error per cell and depth, the model and array where it occurs, and the
margin to the tolerance. The figures in docs/commands.md come from::

    python benchmarks/gradcheck_margins.py                     # cells x depths 1-4 x 4 options x seeds 0-20
    python benchmarks/gradcheck_margins.py --eps 2e-3          # the step before: deep LSTMs failed
    python benchmarks/gradcheck_margins.py --cells lstm --depths 3 4 --seeds 8

About 15 minutes on one core for the default 1,008 checks (the 4-layer LSTMs are the most).
"""

import argparse
import itertools
import time

from charrnn.cells import CELLS, recurrent
from charrnn.gradcheck import DEFAULT_EPS, check_gradients
from charrnn.model import ModelSpec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    ap.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4])
    ap.add_argument("--seeds", type=int, default=21, help="seeds 0 .. N-1")
    ap.add_argument("--eps", type=float, default=DEFAULT_EPS)
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    overall, checks = 0.0, 0
    print(f"{'cell':<7} {'depth':>5} {'checks':>6} {'largest error':>14} {'margin':>7}  where")
    for cell, depth in itertools.product(args.cells, args.depths):
        worst, where, n = 0.0, "", 0
        # mingru and minlstm have no recurrent product (no mult), so residual (depth ≥ 2) instead
        options = [(False, False), (True, False) if recurrent(CELLS[cell]) else (False, True)]
        if depth == 1:
            options = options[:1] + [o for o in options[1:] if o[0]]
        for (mult, res), drop, seed in itertools.product(options, (0.0, 0.25), range(args.seeds)):
            rows = check_gradients(ModelSpec(cell, 7, 5, depth, drop, mult, residual=res), seed=seed, eps=args.eps)
            top = max(rows, key=lambda r: r.max_rel_error)
            n += 1
            if top.max_rel_error > worst:
                label = ("mult " if mult else "") + ("residual " if res else "") + (f"dropout {drop:g} " * bool(drop))
                worst, where = top.max_rel_error, f"{label}seed {seed}, {top.name}"
        checks += n
        overall = max(overall, worst)
        print(f"{cell:<7} {depth:>5} {n:>6} {worst:>14.2e} {args.tol / worst:>6.0f}x  {where}", flush=True)
    verdict = "all pass" if overall <= args.tol else "SOME FAIL"
    print(f"{checks} checks at eps {args.eps:g}: largest error {overall:.2e}, {verdict} "
          f"(tolerance {args.tol:g}, margin {args.tol / overall:.1f}x); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
