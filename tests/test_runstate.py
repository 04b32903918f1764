"""charrnn.runstate: the run's state, its constructors, and its round trip through a checkpoint."""

import dataclasses
import math

import numpy as np
import pytest

from charrnn import checkpoint, optim
from charrnn import config as C
from charrnn import model as M
from charrnn.data import Streams
from charrnn.runstate import RunState, new_run, next_batch

V = 11


def small_config(**optim_settings):
    return C.from_dict({"data": {"path": "corpus.txt"},
                        "model": {"cell": "lstm", "hidden_size": 6, "layers": 2, "dropout": 0.1},
                        "optim": {"name": "adam", "ema": 0.99, **optim_settings},
                        "train": {"seq_length": 5, "batch_size": 3, "steps": 100, "seed": 4}}, "test")


def test_every_field_of_the_run_state_survives_a_checkpoint(tmp_path):
    """Each field is given a value that no new run has, saved and loaded: the loaded run equals
    it in every field of the dataclass, so a field that a checkpoint forgets (and that a resumed
    run would quietly restart, as patience would) fails here, whatever the field is."""
    cfg = small_config()
    spec = M.ModelSpec.of(cfg.model, V)
    optimizer = optim.from_config(cfg.optim)
    run = new_run(cfg, spec, optimizer)
    rng = np.random.default_rng(1)
    for arrays in (run.params, run.opt_state, run.ema):
        for k, a in arrays.items():
            arrays[k] = rng.standard_normal(a.shape).astype(a.dtype)
    run.state = [tuple(rng.standard_normal(a.shape).astype(a.dtype) for a in s) for s in run.state]
    run.rng.standard_normal(7)  # the generator moved on from its seed
    defaults = {f.name: f.default for f in dataclasses.fields(RunState) if f.default is not dataclasses.MISSING}
    distinct = {"step": 17, "position": 45, "epoch": 2, "smooth_loss": 41.5, "elapsed_s": 3.25, "val_loss": 2.5,
                "best_val_loss": 2.25, "evals_since_best": 3, "first_loss": 2.375, "loss_sum": 7.5, "loss_steps": 3}
    assert set(distinct) == set(defaults), "a new RunState field: give it a distinct value here"
    for name, value in distinct.items():
        assert value != defaults[name]
        setattr(run, name, value)
    path = str(tmp_path / "ckpt.npz")
    corpus = {"kind": "text", "path": "corpus.txt", "unit": "chars", "chars": 100, "bytes": 100, "sha256": "0" * 64}
    checkpoint.save(path, checkpoint.Checkpoint(run, np.arange(65, 65 + V, dtype=np.int32), cfg, spec, corpus))
    back = checkpoint.load(path).run
    for field in dataclasses.fields(RunState):
        ours, theirs = getattr(run, field.name), getattr(back, field.name)
        if field.name == "rng":
            assert checkpoint.generator_state(theirs) == checkpoint.generator_state(ours)
        elif field.name == "state":
            assert all(np.array_equal(a, b)
                       for s, t in zip(ours, theirs, strict=True) for a, b in zip(s, t, strict=True))
            assert [len(s) for s in theirs] == [len(s) for s in ours]
        elif isinstance(ours, dict):
            assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours), field.name
        else:
            assert theirs == ours, (field.name, ours, theirs)


def test_next_batch_starts_a_new_epoch_from_a_zero_state_when_the_streams_wrap():
    cfg = small_config()
    spec = M.ModelSpec.of(cfg.model, V)
    run = new_run(cfg, spec, optim.from_config(cfg.optim))
    streams = Streams(np.arange(40) % V, batch_size=3, seq_length=5)  # 13 per stream: 2 chunks, then a wrap
    run.state = [tuple(np.ones_like(a) for a in s) for s in run.state]
    X, _ = next_batch(run, streams, spec)
    assert run.epoch == 0 and all(a.all() for s in run.state for a in s)  # not at the end: the state is carried
    run.position += 5
    next_batch(run, streams, spec)
    run.position += 5
    X, Y = next_batch(run, streams, spec)  # past the end of the streams
    assert run.epoch == 1 and run.position == 0
    assert all(not a.any() for s in run.state for a in s), "the carried state must restart at zero on a wrap"
    assert np.array_equal(X, streams.batch(0)[0]) and np.array_equal(Y, streams.batch(0)[1])


def test_a_new_run_starts_as_min_char_rnn_does():
    cfg = small_config()
    spec = M.ModelSpec.of(cfg.model, V)
    run = new_run(cfg, spec, optim.from_config(cfg.optim))
    assert run.step == run.position == run.epoch == 0
    assert run.smooth_loss == pytest.approx(-math.log(1 / V) * cfg.train.seq_length)
    assert all(not a.any() for s in run.state for a in s) and all(not a.any() for a in run.ema.values())
    weights = {k: np.full_like(v, 0.5) for k, v in run.params.items()}
    again = new_run(cfg, spec, optim.from_config(cfg.optim), weights)
    assert all(np.array_equal(again.params[k], weights[k]) for k in weights)
    # the generator is where it would be without --init-from: the run's dropout masks do not change
    assert checkpoint.generator_state(again.rng) == checkpoint.generator_state(run.rng)


def test_next_batch_with_the_steps_length_wraps_by_that_length():
    cfg = small_config()
    spec = M.ModelSpec.of(cfg.model, V)
    run = new_run(cfg, spec, optim.from_config(cfg.optim))
    data = np.arange(90) % V
    streams = Streams(data, batch_size=3, seq_length=5, longest=9)  # 30 per stream
    run.state = [tuple(np.ones_like(a) for a in s) for s in run.state]
    run.position = 20
    X, Y = next_batch(run, streams, spec, 8)  # 20 + 8 + 1 < 30: read on, although T + 20 would not fit
    assert run.epoch == 0 and run.position == 20 and X.shape == (8, 3)
    assert np.array_equal(X[:, 2], data[80:88]) and np.array_equal(Y[:, 2], data[81:89])
    assert all(a.all() for s in run.state for a in s)
    X, _ = next_batch(run, streams, spec, 9)  # 20 + 9 + 1 reaches the end: a new epoch from zero
    assert run.epoch == 1 and run.position == 0 and X.shape == (9, 3)
    assert np.array_equal(X[:, 2], data[60:69])
    assert all(not a.any() for s in run.state for a in s)
