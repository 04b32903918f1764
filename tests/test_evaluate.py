import math

import numpy as np

from charrnn import model as M
from charrnn.evaluate import evaluate


def setup(cell="rnn"):
    spec = M.ModelSpec(cell, 9, 12, 2)
    rng = np.random.default_rng(0)
    params = M.init_params(spec, rng, np.float64, std=0.3)
    data = rng.integers(0, 9, size=1001)
    return spec, params, data


def test_one_stream_equals_the_loss_of_the_whole_text_in_one_chunk():
    spec, params, data = setup()
    loss, _ = M.loss_only(params, spec, data[:-1].reshape(-1, 1), data[1:].reshape(-1, 1), M.zero_state(spec, 1, np.float64))
    r = evaluate(params, spec, data, batch_size=1, seq_length=37)  # chunks do not change the result
    assert r.chars == 1000
    assert math.isclose(r.nats, loss / 1000, rel_tol=1e-12)
    assert math.isclose(r.bits, r.nats / math.log(2)) and math.isclose(r.perplexity, math.exp(r.nats))


def test_streams_cover_every_character_once_and_are_deterministic():
    spec, params, data = setup()
    r = evaluate(params, spec, data, batch_size=3, seq_length=50)
    # by hand: 1000 pairs in 3 streams of 334, 334 and 332, each from a zero state
    total = 0.0
    for start, n in ((0, 334), (334, 334), (668, 332)):
        seg = data[start:start + n + 1]
        loss, _ = M.loss_only(params, spec, seg[:-1].reshape(-1, 1), seg[1:].reshape(-1, 1), M.zero_state(spec, 1, np.float64))
        total += loss
    assert r.chars == 1000
    assert math.isclose(r.nats, total / 1000, rel_tol=1e-12)
    assert evaluate(params, spec, data, batch_size=3, seq_length=50) == r
