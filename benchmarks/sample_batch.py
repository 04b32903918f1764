"""Sampling speed: ``--num-samples N`` as one batch against N single samples, a long prime.

    python benchmarks/sample_batch.py [--checkpoint CKPT] [--n 32] [--length 500] [--cli]

Without --checkpoint, a random 1-layer LSTM of 256 units on a 76-symbol vocabulary (float32,
as training keeps it) and the smoke run's RNN of 32 units are timed. Each side is timed in
turns, the fastest of 3 kept. With --cli, the same two ways are timed through the command
line: one ``charrnn sample --num-samples N`` against N ``charrnn sample --sample-index i``
processes (the same N texts). The prime is timed in chunks (``sampling.prime``) and, for
comparison, one character per ``sampling.step`` (10,000 characters, scaled to 100,000).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import model as M  # noqa: E402
from charrnn import sampling  # noqa: E402


def fastest(fn, turns=3):
    best = float("inf")
    for _ in range(turns):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def library(params, spec, vocab, n, length):
    def batch():
        "".join(sampling.samples(params, spec, vocab, "chars", "The ", length, None, n, seed=1))

    def singles():
        for i in range(n):
            "".join(sampling.samples(params, spec, vocab, "chars", "The ", length, None, 1, seed=1, first_index=i))

    b, s = fastest(batch), fastest(singles)
    print(f"  library: batch of {n} {b:.3f} s, {n} single samples {s:.3f} s: {s / b:.1f}x "
          f"({n * length / b:,.0f} vs {n * length / s:,.0f} chars/s)")
    ind = np.random.default_rng(0).integers(0, len(vocab), 100_000)
    p = fastest(lambda: sampling.prime(params, spec, ind))
    def by_char():
        state, prepared = M.zero_state(spec, 1, params["Why"].dtype), M.prepare(params, spec, 1)
        for i in ind[:10_000]:
            _, state = sampling.step(params, spec, int(i), state, prepared)

    c = fastest(by_char, 1) * 10
    print(f"  a 100,000-character prime: {p:.3f} s ({100_000 / p:,.0f} chars/s); one character at a time "
          f"{c:.2f} s")


def cli(ckpt, n, length):
    env = {**os.environ, "PYTHONPATH": ROOT}
    base = [sys.executable, "-m", "charrnn", "sample", "--checkpoint", ckpt, "-n", str(length), "--seed", "1"]
    b = fastest(lambda: subprocess.run(base + ["--num-samples", str(n)], env=env, check=True, capture_output=True), 1)
    s = fastest(lambda: [subprocess.run(base + ["--sample-index", str(i)], env=env, check=True, capture_output=True)
                         for i in range(n)], 1)
    print(f"  CLI: one `charrnn sample --num-samples {n}` {b:.2f} s, {n} processes with --sample-index {s:.2f} s: "
          f"{s / b:.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--length", type=int, default=500)
    ap.add_argument("--cli", action="store_true")
    a = ap.parse_args()
    if a.checkpoint:
        from charrnn import checkpoint
        ck = checkpoint.load(a.checkpoint)
        print(f"{a.checkpoint}: {ck.spec.describe()}")
        library(checkpoint.weights(ck), ck.spec, ck.vocab, a.n, a.length)
        if a.cli:
            cli(a.checkpoint, a.n, a.length)
        return
    vocab = np.arange(32, 32 + 76, dtype=np.int32)
    for cell, H in (("lstm", 256), ("rnn", 32)):
        spec = M.ModelSpec(cell, 76, H)
        params = M.init_params(spec, np.random.default_rng(0), np.float32)
        print(spec.describe())
        library(params, spec, vocab, a.n, a.length)
    if a.cli:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, "-m", "charrnn", "train", "--config", f"{ROOT}/configs/smoke.yaml", "--out",
                            d, "-q"], env={**os.environ, "PYTHONPATH": ROOT}, check=True, capture_output=True)
            print("the smoke run's checkpoint")
            cli(f"{d}/ckpt.npz", a.n, a.length)


if __name__ == "__main__":
    main()
