"""min-char-rnn's ``lossFun``, as the gist writes it: column vectors, one-hot inputs, a
Python loop over time, dicts keyed by t, and its clipping at ±5.

The one copy of it in the project: the reference the benchmarks compare charrnn with
(``benchmarks/throughput.py``'s row 1, through ``benchmarks/harness.py``, times a training loop
built on it), and that ``tests/test_minchar_parity.py`` checks charrnn against step for step.
It lives with the benchmarks, which must not import the tests; the parity test reads this one
file from here (it is reference code, not a benchmark: it imports nothing of charrnn).
"""

import numpy as np


def loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    V = Wxh.shape[1]
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((V, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        ys = np.dot(Why, hs[t]) + by
        ps[t] = np.exp(ys) / np.sum(np.exp(ys))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]
