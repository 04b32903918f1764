"""charrnn/evaluate.py: streamed, bounded evaluation; and charrnn eval through the CLI."""

import json
import math
import os

import numpy as np
import pytest
from conftest import ROOT, first_chars, one_line_error, run, small_config
from test_corpus import UNICODE
from test_prepare import metrics

from charrnn import checkpoint as ckpt_io
from charrnn import model as M
from charrnn.corpus import open_corpus, validation_split
from charrnn.evaluate import evaluate


def setup(cell="rnn"):
    spec = M.ModelSpec(cell, 9, 12, 2)
    rng = np.random.default_rng(0)
    params = M.init_params(spec, rng, np.float64, std=0.3)
    data = rng.integers(0, 9, size=1001)
    return spec, params, data


def test_one_stream_equals_the_loss_of_the_whole_text_in_one_chunk():
    spec, params, data = setup()
    loss, _ = M.loss_only(params, spec, data[:-1].reshape(-1, 1), data[1:].reshape(-1, 1),
                          M.zero_state(spec, 1, np.float64))
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
        loss, _ = M.loss_only(params, spec, seg[:-1].reshape(-1, 1), seg[1:].reshape(-1, 1),
                              M.zero_state(spec, 1, np.float64))
        total += loss
    assert r.chars == 1000
    assert math.isclose(r.nats, total / 1000, rel_tol=1e-12)
    assert evaluate(params, spec, data, batch_size=3, seq_length=50) == r


def test_eval_text_dir_with_another_vocabulary_is_remapped(tmp_path, write_config):
    big = tmp_path / "big.txt"
    big.write_text(UNICODE * 10, encoding="utf-8")
    cfg = small_config(write_config, big, steps=10)
    assert run("train", "--config", cfg, "-q").exit_code == 0
    small = tmp_path / "small.txt"
    small.write_text("Ab ü 春眠不觉晓 x\n" * 20, encoding="utf-8")  # a subset of the model's characters
    assert run("prepare", small, "--out", tmp_path / "prep", "-q").exit_code == 0
    val_text = tmp_path / "val.txt"
    small_text = small.read_text(encoding="utf-8")
    val_text.write_text(small_text[-int(len(small_text) * 0.1):], encoding="utf-8")
    ck = tmp_path / "run" / "ckpt.npz"
    via_dir = run("eval", "--checkpoint", ck, "--text", tmp_path / "prep", "--json")
    via_file = run("eval", "--checkpoint", ck, "--text", val_text, "--json")
    assert via_dir.exit_code == 0, via_dir.output
    assert json.loads(via_dir.stdout)["nats_per_char"] == json.loads(via_file.stdout)["nats_per_char"]
    other = tmp_path / "other.txt"
    other.write_text("zzz qqq\n" * 30, encoding="utf-8")
    assert run("prepare", other, "--out", tmp_path / "other", "-q").exit_code == 0
    one_line_error(run("eval", "--checkpoint", ck, "--text", tmp_path / "other"), 1,
                   "not in the model's vocabulary", "--skip-unknown")
    skipped = run("eval", "--checkpoint", ck, "--text", tmp_path / "other", "--skip-unknown", "--json")
    assert json.loads(skipped.stdout)["skipped"] > 0


def evaluate_before_streaming(params, spec, data, batch_size=32, seq_length=128):
    """charrnn.evaluate.evaluate as it was before it streamed: (L, B) index arrays of the
    whole text built first. The reference for the shipped configs' numbers."""
    from charrnn import model as M

    pairs = len(data) - 1
    B = min(batch_size, pairs)
    L = -(-pairs // B)
    idx = np.arange(L)[:, None] + L * np.arange(B)[None, :]
    valid = idx < pairs
    safe = np.where(valid, idx, 0)
    X, Y = data[safe], data[safe + 1]
    state = M.zero_state(spec, B, params["Why"].dtype)
    prepared = M.prepare(params, spec, B)
    total = 0.0
    for t0 in range(0, L, seq_length):
        x, y, v = X[t0:t0 + seq_length], Y[t0:t0 + seq_length], valid[t0:t0 + seq_length]
        logits, state, _ = M.forward(params, spec, x, state, prepared=prepared)
        logp_y, _ = M.target_log_probs(logits, y.reshape(-1))
        total -= float(logp_y[v.reshape(-1)].sum(dtype=np.float64))
    return total / pairs


def test_bounded_evaluation_reads_the_first_eval_chars_of_the_split(tmp_path, write_config):
    corpus = first_chars(tmp_path, 8000)
    cfg = small_config(write_config, corpus, steps=20, eval_every=10)
    assert run("train", "--config", cfg, "-q", "--set", "train.eval_chars=300", "--out", tmp_path / "a").exit_code == 0
    assert run("train", "--config", cfg, "-q", "--set", "train.eval_chars=null", "--out", tmp_path / "b").exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "a" / "ckpt.npz"))
    val = validation_split(ck.config, ck.vocab)
    assert len(val) == 800
    first = evaluate(ck.run.params, ck.spec, val[:300]).nats
    assert ck.run.val_loss == first == metrics(tmp_path / "a")[-1]["val_loss"]
    assert ck.run.val_loss != evaluate(ck.run.params, ck.spec, val).nats
    whole = ckpt_io.load(str(tmp_path / "b" / "ckpt.npz"))
    assert whole.run.val_loss == evaluate(whole.run.params, whole.spec, val).nats
    # `charrnn eval` reads all of it whatever eval_chars says.
    r = run("eval", "--checkpoint", tmp_path / "a" / "ckpt.npz", "--json")
    assert json.loads(r.stdout)["chars"] == 799


@pytest.mark.slow
def test_shipped_configs_validation_numbers_are_unchanged():
    """Every shipped config validates on all of its split (the default eval_chars covers it),
    and the streamed evaluation gives the old one's numbers to the last bit."""
    from charrnn import config as C
    from charrnn import model as M

    configs = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml"))
    seen = set()
    for name in configs:
        cfg = C.load(os.path.join(ROOT, "configs", name))
        c = open_corpus(cfg.data.path, cfg.data.val_fraction)
        if cfg.data.val_fraction == 0:
            assert len(c.val) == 0
            continue
        assert cfg.train.eval_chars is None or len(c.val) <= cfg.train.eval_chars, name
        key = (cfg.data.path, cfg.model.cell, cfg.model.layers, cfg.model.multiplicative, cfg.model.dtype)
        if key in seen:
            continue
        seen.add(key)
        # The config's cell and depth at a small width: the evaluation's arithmetic is the same.
        spec = M.ModelSpec(cfg.model.cell, len(c.vocab), 24, cfg.model.layers, 0.0, cfg.model.multiplicative)
        params = M.init_params(spec, np.random.default_rng(0), np.dtype(cfg.model.dtype), 0.3)
        assert evaluate(params, spec, c.val).nats == evaluate_before_streaming(params, spec, c.val), name


def test_eval_of_a_long_text_shows_a_progress_bar(tmp_path, write_config, monkeypatch):
    from charrnn import cli

    corpus = first_chars(tmp_path, 20000)
    assert run("train", "--config", small_config(write_config, corpus, steps=2), "-q").exit_code == 0
    ck = tmp_path / "run" / "ckpt.npz"
    monkeypatch.setattr(cli, "EVAL_BAR_CHARS", 10_000)  # "long", scaled down with the text
    short = run("eval", "--checkpoint", ck)  # the validation split: 2,000 characters
    long = run("eval", "--checkpoint", ck, "--text", corpus, "--json")
    assert long.exit_code == 0, long.output
    assert "evaluating" in long.stderr and "char/s" in long.stderr and "evaluating" not in short.stderr
    assert json.loads(long.stdout)["chars"] == 20000 - 1


def test_eval_without_a_validation_split_is_a_clear_error(tmp_path, write_config):
    corpus = first_chars(tmp_path, 3000)
    cfg = small_config(write_config, corpus, steps=2)
    assert run("train", "--config", cfg, "-q", "--set", "data.val_fraction=0").exit_code == 0
    ck = tmp_path / "run" / "ckpt.npz"
    one_line_error(run("eval", "--checkpoint", ck), 2, "no validation split", "--text FILE")
    assert run("prepare", corpus, "--out", tmp_path / "all", "--val-fraction", 0, "-q").exit_code == 0
    one_line_error(run("eval", "--checkpoint", ck, "--text", tmp_path / "all"), 1, "has no validation split")
