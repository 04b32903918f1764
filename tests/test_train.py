"""Training features through the CLI: validation, best checkpoint, early stopping,
time budget, and exact resume for every optimizer and schedule."""

import json
import math

import numpy as np
import pytest

from charrnn import checkpoint as ckpt_io
from charrnn.evaluate import evaluate
from charrnn.train import load_corpus
from conftest import CORPUS, one_line_error, run, small_config


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(open(CORPUS, encoding="utf-8").read(4000), encoding="utf-8")
    return path


def metrics(run_dir):
    return [json.loads(l) for l in open(run_dir / "metrics.jsonl")]


def test_validation_is_deterministic_and_matches_charrnn_eval(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=30, eval_every=10)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "a")
    run("train", "--config", cfg, "-q", "--out", tmp_path / "b")
    va = [m["val_loss"] for m in metrics(tmp_path / "a") if "val_loss" in m]
    vb = [m["val_loss"] for m in metrics(tmp_path / "b") if "val_loss" in m]
    assert len(va) == 3 and va == vb
    assert all(math.isclose(m["val_bpc"], m["val_loss"] / math.log(2)) for m in metrics(tmp_path / "a") if "val_loss" in m)
    r = run("eval", "--checkpoint", tmp_path / "a" / "ckpt.npz", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nats_per_char"] == va[-1]  # the same number, to the last bit
    assert out["chars"] == int(4000 * 0.1) - 1
    ck = ckpt_io.load(str(tmp_path / "a" / "ckpt.npz"))
    assert ck.val_loss == va[-1]


def test_best_checkpoint_is_the_one_with_the_lowest_validation_loss(tmp_path, write_config):
    # A tiny corpus and a high learning rate: validation loss goes down, then up again.
    corpus = tmp_path / "c.txt"
    corpus.write_text(open(CORPUS, encoding="utf-8").read(1000), encoding="utf-8")
    cfg = small_config(write_config, corpus, steps=200, eval_every=5)
    run("train", "--config", cfg, "-q", "--set", "optim.lr=0.3")
    vals = [m for m in metrics(tmp_path / "run") if "val_loss" in m]
    best = min(vals, key=lambda m: m["val_loss"])
    assert best["step"] != vals[-1]["step"], "the test needs a run whose last evaluation is not its best"
    ck = ckpt_io.load(str(tmp_path / "run" / "best.npz"))
    assert ck.step == best["step"] and ck.best_val_loss == best["val_loss"]
    val = load_corpus(ck.config, ck.vocab).val
    assert evaluate(ck.params, ck.spec, val).nats == best["val_loss"]


def test_patience_stops_early(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=1000, eval_every=5, patience=2)
    r = run("train", "--config", cfg, "-q", "--set", "optim.lr=0.3")
    assert r.exit_code == 0 and "(early stopping)" in r.stderr
    vals = [m["val_loss"] for m in metrics(tmp_path / "run") if "val_loss" in m]
    i = int(np.argmin(vals))
    assert len(vals) == i + 3  # two evaluations after the best, then stop
    assert ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).step == 5 * len(vals) < 1000


def test_time_budget_stops_the_run_with_a_checkpoint_and_an_evaluation(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=10**6, eval_every=0)
    r = run("train", "--config", cfg, "-q", "--set", "train.max_minutes=0.02")
    assert r.exit_code == 0 and "(time budget)" in r.stderr
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert 0 < ck.step < 10**6 and ck.elapsed_s >= 1.2
    assert metrics(tmp_path / "run")[-1]["step"] == ck.step and "val_loss" in metrics(tmp_path / "run")[-1]


def timeless(run_dir):
    return [{k: v for k, v in m.items() if k not in ("chars_per_s", "elapsed_s")} for m in metrics(run_dir)]


@pytest.mark.parametrize(
    "sets",
    [
        ["optim.name=adam", "optim.schedule=cosine", "optim.warmup_steps=10"],
        ["optim.name=rmsprop", "optim.schedule=step", "optim.decay_after=1", "optim.decay_rate=0.5"],
        ["optim.name=sgd", "optim.momentum=0.5", "optim.clip_norm=1.0"],
        ["optim.name=adagrad", "model.dropout=0.2", "model.layers=2"],
        ["model.cell=lstm", "model.layers=2", "model.dropout=0.1", "optim.name=adam"],
        ["model.cell=gru", "model.layers=2", "optim.name=rmsprop"],
        ["optim.name=adam", "optim.ema=0.9"],
        ["optim.name=adam", "optim.weight_decay=0.1", "optim.schedule=linear", "optim.warmup_steps=10",
         "optim.min_lr=0"],
        ["model.cell=gru", "model.multiplicative=true", "model.layers=2", "optim.name=adam", "optim.ema=0.9"],
    ],
    ids=["adam-cosine", "rmsprop-step", "sgd-momentum-clipnorm", "adagrad-dropout", "lstm-2-layers", "gru-2-layers",
         "adam-ema", "adamw-linear", "gru-multiplicative"],
)
def test_exact_resume_for_every_optimizer_and_schedule(tmp_path, write_config, sets):
    corpus = tmp_path / "c.txt"
    corpus.write_text(open(CORPUS, encoding="utf-8").read(600), encoding="utf-8")  # wraps: epochs pass
    cfg = small_config(write_config, corpus, steps=100, checkpoint_every=9, eval_every=20)
    extra = [a for s in sets for a in ("--set", s)]
    run("train", "--config", cfg, "-q", "--out", tmp_path / "whole", *extra)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "half", "--steps", 47, *extra)
    run("train", "--resume", tmp_path / "half" / "ckpt.npz", "-q")
    a, b = (ckpt_io.load(str(tmp_path / d / "ckpt.npz")) for d in ("whole", "half"))
    assert a.step == b.step == 100 and a.epoch >= 2
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    assert a.optim_state.keys() == b.optim_state.keys()
    for k in a.optim_state:
        assert np.array_equal(a.optim_state[k], b.optim_state[k]), k
    assert (a.ema is None) == (b.ema is None) == ("optim.ema=0.9" not in sets)
    assert ("Wmx_1" in a.params) == ("model.multiplicative=true" in sets)
    for k in a.ema or {}:
        assert np.array_equal(a.ema[k], b.ema[k]), k
    assert timeless(tmp_path / "whole") == timeless(tmp_path / "half")
    lrs = {m["lr"] for m in metrics(tmp_path / "whole") if "lr" in m}
    assert len(lrs) > 1 or "schedule" not in " ".join(sets)  # the schedules do change the rate
    best_a, best_b = (ckpt_io.load(str(tmp_path / d / "best.npz")) for d in ("whole", "half"))
    assert best_a.step == best_b.step and all(np.array_equal(best_a.params[k], best_b.params[k]) for k in best_a.params)


def test_the_moving_average_of_the_weights_is_what_validation_eval_and_sample_use(tmp_path, write_config, corpus):
    from charrnn import data as D
    from charrnn import sampling

    cfg = small_config(write_config, corpus, steps=40, eval_every=20)
    run("train", "--config", cfg, "-q", "--set", "optim.name=adam", "--set", "optim.lr=0.01", "--set", "optim.ema=0.9")
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    avg = ckpt_io.weights(ck)
    np.testing.assert_array_equal(avg["Whh"], ck.ema["Whh"] / (1 - 0.9**40))
    val = load_corpus(ck.config, ck.vocab).val
    vals = [m["val_loss"] for m in metrics(tmp_path / "run") if "val_loss" in m]
    assert evaluate(avg, ck.spec, val).nats == vals[-1] == ck.val_loss
    assert evaluate(ck.params, ck.spec, val).nats != vals[-1]  # the averaged weights are another model
    r = run("eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--json")
    assert json.loads(r.stdout)["nats_per_char"] == vals[-1]

    def greedy(params):
        idx = D.encode("Th", ck.vocab)
        state = sampling.prime(params, ck.spec, idx)
        return "Th" + D.decode(list(sampling.generate(params, ck.spec, int(idx[-1]), state, 60, None, greedy=True)), ck.vocab)

    r = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--greedy", "-n", 60, "--prime", "Th")
    assert greedy(avg) != greedy(ck.params), "the test needs the two models to write different text"
    assert r.stdout.rstrip("\n") == greedy(avg)

    # --init-from starts from the averaged weights too (one step at a negligible rate).
    run("train", "--config", cfg, "-q", "--out", tmp_path / "next", "--init-from", tmp_path / "run" / "ckpt.npz",
        "--set", "train.steps=1", "--set", "optim.lr=1e-12")
    start = ckpt_io.load(str(tmp_path / "next" / "ckpt.npz")).params
    for k in avg:
        np.testing.assert_allclose(start[k], avg[k], rtol=0, atol=1e-6, err_msg=k)


def test_settings_of_another_optimizer_are_refused(write_config, corpus):
    cfg = small_config(write_config, corpus)
    r = run("train", "--config", cfg, "--set", "optim.momentum=0.5")
    one_line_error(r, 2, "optim.momentum applies to sgd only, not to optim.name adagrad")


def test_eval_command(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=5)
    run("train", "--config", cfg, "-q")
    ckpt = tmp_path / "run" / "ckpt.npz"
    other = tmp_path / "other.txt"
    other.write_text("The quick brown fox. Ünïcödé ☃!\n", encoding="utf-8")
    r = run("eval", "--checkpoint", ckpt, "--text", other)
    one_line_error(r, 1, "other.txt", "not in the model's vocabulary", "'☃' (U+2603)", "--skip-unknown")
    r = run("eval", "--checkpoint", ckpt, "--text", other, "--skip-unknown", "--json")
    out = json.loads(r.stdout)
    assert out["skipped"] > 0 and out["chars"] == len("The quick brown fox. Ünïcödé ☃!\n") - out["skipped"] - 1
    assert math.isclose(out["perplexity"], math.exp(out["nats_per_char"]))
    r = run("eval", "--checkpoint", ckpt)
    assert r.exit_code == 0 and "bits/char" in r.stdout and "perplexity" in r.stdout


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_two_layer_gated_models_learn_and_sample(tmp_path, write_config, corpus, cell):
    cfg = small_config(write_config, corpus, steps=150, eval_every=150, log_every=1)
    r = run("train", "--config", cfg, "-q", "--set", f"model.cell={cell}", "--set", "model.layers=2",
            "--set", "model.hidden_size=32", "--set", "optim.name=adam", "--set", "optim.lr=0.01")
    assert r.exit_code == 0, r.output
    losses = [m["loss"] for m in metrics(tmp_path / "run") if "loss" in m]
    start = math.log(len(set(corpus.read_text(encoding="utf-8"))))  # a uniform guess
    late = float(np.mean(losses[-10:]))
    assert abs(losses[0] - start) < 0.05 and late < start - 0.8, (losses[0], late)
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert ck.spec.cell == cell and set(ck.params) >= {"Wxh", "Whh", "bh", "Wxh_1", "Whh_1", "bh_1", "Why", "by"}
    G = {"lstm": 4, "gru": 3}[cell]
    assert ck.params["Whh_1"].shape == (G * 32, 32)
    assert len(ck.state) == 2 and len(ck.state[0]) == (2 if cell == "lstm" else 1)
    s = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "-n", 100, "--seed", 0, "--prime", "The ")
    assert s.exit_code == 0 and s.stdout.startswith("The ") and len(s.stdout) == 4 + 100 + 1
    # and a new run can start from these weights
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "next", "--init-from", tmp_path / "run" / "ckpt.npz",
            "--set", f"model.cell={cell}", "--set", "model.layers=2", "--set", "model.hidden_size=32", "--steps", 2)
    assert r.exit_code == 0, r.output
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "bad", "--init-from", tmp_path / "run" / "ckpt.npz")
    one_line_error(r, 1, "does not match the config's (rnn, 1 layer(s) of 16)")
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "bad", "--init-from", tmp_path / "run" / "ckpt.npz",
            "--set", f"model.cell={cell}", "--set", "model.layers=2", "--set", "model.hidden_size=32",
            "--set", "model.multiplicative=true")
    one_line_error(r, 1, f"its model ({cell}, 2 layer(s) of 32) does not match the config's "
                         f"({cell}, 2 layer(s) of 32, multiplicative)")
