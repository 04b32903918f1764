"""charrnn's core against min-char-rnn itself.

The reference (``minchar_gist.loss_fun`` and the loop below) is min-char-rnn written out
as the gist does it: column vectors, one-hot inputs, a Python loop over time, float64, its
pointer rule and its exact clipping and Adagrad update. charrnn (batched, time-major, gathers instead of
one-hot products) must reproduce it step for step, through the very functions its training loop
calls: ``runstate.next_batch`` (which resets the carried state when the stream wraps, as
min-char-rnn resets ``hprev``), ``optim.learning_rate`` and ``train.train_step``.
"""

import sys

import numpy as np
from conftest import CORPUS, ROOT

from charrnn import config as C
from charrnn import model as M
from charrnn import optim
from charrnn.data import Streams, build_vocab, encode
from charrnn.runstate import new_run, next_batch
from charrnn.train import StepRules, train_step

sys.path.insert(0, f"{ROOT}/benchmarks")  # benchmarks/minchar_gist.py, the one copy: the benchmarks' reference
from minchar_gist import loss_fun  # noqa: E402

STEPS = 150
H, T, LR = 24, 25, 0.1
# Initial weight scale. At min-char-rnn's own 0.01 the run is chaotic in the last bits:
# Adagrad's first updates are lr·g/sqrt(g² + 1e-8), which multiplies rounding differences
# in gradients below 1e-4 by up to lr/1e-4 = 1000 per step, so min-char-rnn against itself
# with weights perturbed by 1e-15 already differs by 0.2% after 10 steps. Any two correct
# implementations that sum in different orders (a BLAS product against a Python loop) do
# the same. At 0.05 the run is well-conditioned and the comparison is a real one.
INIT_STD = 0.05


def reference_training(data, weights, steps):
    Wxh, Whh, Why = (weights[k].copy() for k in ("Wxh", "Whh", "Why"))
    bh, by = weights["bh"].reshape(-1, 1).copy(), weights["by"].reshape(-1, 1).copy()
    mems = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
    losses = []
    n, p = 0, 0
    hprev = None
    while n < steps:
        if p + T + 1 >= len(data) or n == 0:
            hprev = np.zeros((H, 1))
            p = 0
        inputs = [int(c) for c in data[p:p + T]]
        targets = [int(c) for c in data[p + 1:p + T + 1]]
        loss, dWxh, dWhh, dWhy, dbh, dby, hprev = loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by)
        losses.append(loss)
        for param, dparam, mem in zip([Wxh, Whh, Why, bh, by], [dWxh, dWhh, dWhy, dbh, dby], mems,
                                      strict=True):
            mem += dparam * dparam
            param += -LR * dparam / np.sqrt(mem + 1e-8)
        p += T
        n += 1
    return losses, {"Wxh": Wxh, "Whh": Whh, "Why": Why, "bh": bh[:, 0], "by": by[:, 0]}


def charrnn_training(data, weights, steps, spec):
    """The training loop's own step on min-char-rnn's settings: B=1, T=25, float64, Adagrad
    0.1 with min-char-rnn's eps, every gradient clipped into [-5, 5]."""
    cfg = C.from_dict({"data": {"path": "unused.txt", "val_fraction": 0.0},
                       "model": {"cell": "rnn", "hidden_size": H, "dtype": "float64"},
                       "optim": {"name": "adagrad", "lr": LR, "eps": 1e-8, "clip_value": 5.0},
                       "train": {"seq_length": T, "batch_size": 1, "steps": steps}}, "parity")
    optimizer = optim.from_config(cfg.optim)
    run = new_run(cfg, spec, optimizer, weights)
    streams, rules = Streams(data, batch_size=1, seq_length=T), StepRules.of(cfg)
    losses = []
    for _ in range(steps):
        X, Y = next_batch(run, streams, spec)
        lr = optim.learning_rate(cfg.optim, run.step + 1, run.epoch, cfg.train.steps)
        losses.append(train_step(run, X, Y, spec, optimizer, lr, rules))
    return losses, run.params


def test_charrnn_matches_min_char_rnn_step_for_step():
    with open(CORPUS, encoding="utf-8") as f:
        text = f.read(1200)  # short, so the pointer wraps (and the state resets) several times
    vocab = build_vocab(text)
    data = encode(text, vocab)
    spec = M.ModelSpec("rnn", len(vocab), H)
    weights = M.init_params(spec, np.random.default_rng(0), np.float64, std=INIT_STD)
    assert set(weights) == {"Wxh", "Whh", "Why", "bh", "by"}  # min-char-rnn's names and shapes
    assert weights["Wxh"].shape == (H, len(vocab)) and weights["Why"].shape == (len(vocab), H)

    ref_losses, ref_params = reference_training(data, weights, STEPS)
    assert len(data) // T < STEPS  # the pointer wraps and the state resets within the run
    our_losses, our_params = charrnn_training(data, weights, STEPS, spec)

    assert len(our_losses) == STEPS
    np.testing.assert_allclose(our_losses, ref_losses, rtol=1e-9, atol=0,
                               err_msg="loss per step: charrnn vs min-char-rnn")
    for k in ref_params:
        np.testing.assert_allclose(our_params[k], ref_params[k], rtol=1e-9, atol=1e-12,
                                   err_msg=f"final {k}: charrnn vs min-char-rnn")
    assert ref_losses[-1] < ref_losses[0]  # it learned something, so the comparison is not of constants
