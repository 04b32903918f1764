"""Training features through the CLI: validation, best checkpoint, early stopping,
time budget, and exact resume for every optimizer and schedule."""

import json
import math

import numpy as np
import pytest
from conftest import CORPUS, first_chars, one_line_error, run, small_config

from charrnn import checkpoint as ckpt_io
from charrnn.corpus import open_corpus, validation_split
from charrnn.evaluate import evaluate


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_validation_is_deterministic_and_matches_charrnn_eval(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=30, eval_every=10)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "a")
    run("train", "--config", cfg, "-q", "--out", tmp_path / "b")
    va = [m["val_loss"] for m in metrics(tmp_path / "a") if "val_loss" in m]
    vb = [m["val_loss"] for m in metrics(tmp_path / "b") if "val_loss" in m]
    assert len(va) == 3 and va == vb
    assert all(math.isclose(m["val_bpc"], m["val_loss"] / math.log(2))
               for m in metrics(tmp_path / "a") if "val_loss" in m)
    r = run("eval", "--checkpoint", tmp_path / "a" / "ckpt.npz", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nats_per_char"] == va[-1]  # the same number, to the last bit
    assert out["chars"] == int(4000 * 0.1) - 1
    ck = ckpt_io.load(str(tmp_path / "a" / "ckpt.npz"))
    assert ck.run.val_loss == va[-1]


def test_best_checkpoint_is_the_one_with_the_lowest_validation_loss(tmp_path, write_config):
    # A tiny corpus and a high learning rate: validation loss goes down, then up again.
    corpus = first_chars(tmp_path, 1000)
    cfg = small_config(write_config, corpus, steps=200, eval_every=5)
    run("train", "--config", cfg, "-q", "--set", "optim.lr=0.3")
    vals = [m for m in metrics(tmp_path / "run") if "val_loss" in m]
    best = min(vals, key=lambda m: m["val_loss"])
    assert best["step"] != vals[-1]["step"], "the test needs a run whose last evaluation is not its best"
    ck = ckpt_io.load(str(tmp_path / "run" / "best.npz"))
    assert ck.run.step == best["step"] and ck.run.best_val_loss == best["val_loss"]
    val = validation_split(ck.config, ck.vocab)
    assert evaluate(ck.run.params, ck.spec, val).nats == best["val_loss"]


def test_patience_stops_early(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=1000, eval_every=5, patience=2)
    r = run("train", "--config", cfg, "-q", "--set", "optim.lr=0.3")
    assert r.exit_code == 0 and "(early stopping)" in r.stderr
    vals = [m["val_loss"] for m in metrics(tmp_path / "run") if "val_loss" in m]
    i = int(np.argmin(vals))
    assert len(vals) == i + 3  # two evaluations after the best, then stop
    assert ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step == 5 * len(vals) < 1000


@pytest.mark.slow
def test_time_budget_stops_the_run_with_a_checkpoint_and_an_evaluation(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=10**6, eval_every=0)
    r = run("train", "--config", cfg, "-q", "--set", "train.max_minutes=0.02")
    assert r.exit_code == 0 and "(time budget)" in r.stderr
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert 0 < ck.run.step < 10**6 and ck.run.elapsed_s >= 1.2
    assert metrics(tmp_path / "run")[-1]["step"] == ck.run.step and "val_loss" in metrics(tmp_path / "run")[-1]


def timeless(run_dir):
    return [{k: v for k, v in m.items() if k not in ("chars_per_s", "elapsed_s")} for m in metrics(run_dir)]


RESUME_CASES = [
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
    ["model.cell=gru", "model.layer_norm=true", "model.multiplicative=true", "model.layers=2", "optim.name=adam",
     "optim.weight_decay=0.1"],
    ["model.cell=lstm", "model.layer_norm=true", "model.layers=2", "model.dropout=0.1", "optim.name=rmsprop"],
    ["train.variable_length=true", "train.seq_length=12", "model.dropout=0.1", "optim.name=adam"],
    ["model.cell=mingru", "model.layers=2", "model.residual=true", "model.dropout=0.1", "optim.name=adam"],
    ["model.cell=minlstm", "model.layers=2", "optim.name=rmsprop"],
]
RESUME_IDS = ["adam-cosine", "rmsprop-step", "sgd-momentum-clipnorm", "adagrad-dropout", "lstm-2-layers",
              "gru-2-layers", "adam-ema", "adamw-linear", "gru-multiplicative", "gru-layer-norm-adamw",
              "lstm-layer-norm", "variable-length", "mingru-residual", "minlstm"]
FAST_RESUME = ("adam-cosine", "gru-multiplicative")  # the fast loop's two; the others run with the slow tests


def test_the_min_cells_refuse_multiplicative_in_one_line(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=2)
    r = run("train", "--config", cfg, "-q", "--set", "model.cell=mingru", "--set", "model.multiplicative=true")
    one_line_error(r, 2, "model.multiplicative: true has no recurrent product to scale in model.cell mingru")
    assert "Traceback" not in r.output


@pytest.mark.parametrize("sets", [pytest.param(c, id=i, marks=() if i in FAST_RESUME else pytest.mark.slow)
                                  for c, i in zip(RESUME_CASES, RESUME_IDS, strict=True)])
def test_exact_resume_for_every_optimizer_and_schedule(tmp_path, write_config, sets):
    corpus = first_chars(tmp_path, 600)  # wraps: epochs pass
    cfg = small_config(write_config, corpus, steps=100, checkpoint_every=9, eval_every=20)
    extra = [a for s in sets for a in ("--set", s)]
    run("train", "--config", cfg, "-q", "--out", tmp_path / "whole", *extra)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "half", "--stop-at", 47, *extra)
    run("train", "--resume", tmp_path / "half" / "ckpt.npz", "-q")
    a, b = (ckpt_io.load(str(tmp_path / d / "ckpt.npz")) for d in ("whole", "half"))
    assert a.run.step == b.run.step == 100 and a.run.epoch >= 2
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    assert a.run.opt_state.keys() == b.run.opt_state.keys()
    for k in a.run.opt_state:
        assert np.array_equal(a.run.opt_state[k], b.run.opt_state[k]), k
    assert (a.run.ema is None) == (b.run.ema is None) == ("optim.ema=0.9" not in sets)
    assert ("Wmx_1" in a.run.params) == ("model.multiplicative=true" in sets)
    assert ("gh_1" in a.run.params) == any(k.endswith(".gh_1") for k in a.run.opt_state) \
        == ("model.layer_norm=true" in sets)
    assert ("Whh" in a.run.params) == (not any(s.startswith("model.cell=min") for s in sets))
    for k in a.run.ema or {}:
        assert np.array_equal(a.run.ema[k], b.run.ema[k]), k
    assert timeless(tmp_path / "whole") == timeless(tmp_path / "half")
    lrs = {m["lr"] for m in metrics(tmp_path / "whole") if "lr" in m}
    varies = "schedule" in " ".join(sets) or "train.variable_length=true" in sets
    assert len(lrs) > 1 or not varies  # the schedules (and the lengths) do change the rate
    best_a, best_b = (ckpt_io.load(str(tmp_path / d / "best.npz")) for d in ("whole", "half"))
    assert best_a.run.step == best_b.run.step and all(np.array_equal(best_a.run.params[k], best_b.run.params[k])
                                                      for k in best_a.run.params)


def test_the_moving_average_of_the_weights_is_what_validation_eval_and_sample_use(tmp_path, write_config, corpus):
    from charrnn import data as D
    from charrnn import sampling

    cfg = small_config(write_config, corpus, steps=40, eval_every=20)
    run("train", "--config", cfg, "-q", "--set", "optim.name=adam", "--set", "optim.lr=0.01", "--set", "optim.ema=0.9")
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    avg = ckpt_io.weights(ck)
    np.testing.assert_array_equal(avg["Whh"], ck.run.ema["Whh"] / (1 - 0.9**40))
    val = validation_split(ck.config, ck.vocab)
    vals = [m["val_loss"] for m in metrics(tmp_path / "run") if "val_loss" in m]
    assert evaluate(avg, ck.spec, val).nats == vals[-1] == ck.run.val_loss
    assert evaluate(ck.run.params, ck.spec, val).nats != vals[-1]  # the averaged weights are another model
    r = run("eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--json")
    assert json.loads(r.stdout)["nats_per_char"] == vals[-1]

    def greedy(params):
        idx = D.encode("Th", ck.vocab)
        state = sampling.prime(params, ck.spec, idx)
        generated = sampling.generate(params, ck.spec, int(idx[-1]), state, 60, None, greedy=True)
        return "Th" + D.decode(list(generated), ck.vocab)

    r = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--greedy", "-n", 60, "--prime", "Th")
    assert greedy(avg) != greedy(ck.run.params), "the test needs the two models to write different text"
    assert r.stdout.rstrip("\n") == greedy(avg)

    # --init-from starts from the averaged weights too (one step at a negligible rate).
    run("train", "--config", cfg, "-q", "--out", tmp_path / "next", "--init-from", tmp_path / "run" / "ckpt.npz",
        "--set", "train.steps=1", "--set", "optim.lr=1e-12")
    start = ckpt_io.load(str(tmp_path / "next" / "ckpt.npz")).run.params
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


@pytest.mark.parametrize("cell", ["lstm", pytest.param("gru", marks=pytest.mark.slow),
                                  pytest.param("minlstm", marks=pytest.mark.slow)])
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
    if cell == "minlstm":  # no recurrent weights
        assert ck.spec.cell == cell and set(ck.run.params) == {"Wxh", "bh", "Wxh_1", "bh_1", "Why", "by"}
    else:
        assert ck.spec.cell == cell and set(ck.run.params) >= {"Wxh", "Whh", "bh", "Wxh_1", "Whh_1", "bh_1", "Why",
                                                              "by"}
    G = {"lstm": 4, "gru": 3, "minlstm": 3}[cell]
    assert ck.run.params["Wxh_1"].shape == (G * 32, 32)
    assert len(ck.run.state) == 2 and len(ck.run.state[0]) == (2 if cell == "lstm" else 1)
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
            "--set", "model.multiplicative=true" if cell != "minlstm" else "model.residual=true")
    other = "multiplicative" if cell != "minlstm" else "residual"  # minlstm has no multiplicative integration
    one_line_error(r, 1, f"its model ({cell}, 2 layer(s) of 32) does not match the config's "
                         f"({cell}, 2 layer(s) of 32, {other})")


# --- Divergence ------------------------------------------------------------------------------

def explode(tmp_path, write_config, corpus, *sets):
    """A real `charrnn train` process (NumPy's warnings would reach its stderr, unlike
    CliRunner's, where pytest collects them) with settings that blow the weights up."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    cfg = small_config(write_config, corpus, steps=50, checkpoint_every=1, eval_every=0)
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "charrnn", "train", "--config", cfg, "--out", str(tmp_path / "run"),
                           "-q", *args], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))


def test_a_finite_explosion_stops_the_run_in_one_line(tmp_path, write_config, corpus):
    # SGD at lr 1e30 with min-char-rnn's clipping: the weights reach 1e30, the loss 1e31 nats
    # per character, and every number stays finite.
    r = explode(tmp_path, write_config, corpus, "optim.name=sgd", "optim.lr=1e30")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Warning" not in r.stderr, r.stderr
    ckpt = tmp_path / "run" / "ckpt.npz"
    assert r.stderr.startswith("Error: training diverged at step 2: the smoothed loss, ")
    assert f"exceeds train.diverge_factor 3 × {math.log(len(set(corpus.read_text(encoding='utf-8')))):.4g}" in r.stderr
    assert f"the last checkpoint, {ckpt}, holds step 1; try a lower optim.lr" in r.stderr
    ck = ckpt_io.load(str(ckpt))  # whole and loadable
    assert ck.run.step == 1 and np.abs(ck.run.params["Why"]).max() > 1e20  # (finite, but exploded)


def test_a_non_finite_loss_stops_the_run_without_numpy_warnings(tmp_path, write_config, corpus):
    r = explode(tmp_path, write_config, corpus, "optim.lr=1e38", "optim.clip_value=0")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Warning" not in r.stderr, r.stderr
    assert "training diverged at step" in r.stderr and "not finite" in r.stderr
    step = int(r.stderr.split("holds step ")[1].split(";")[0])
    assert ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step == step


def test_divergence_before_any_checkpoint_says_so(tmp_path, write_config, corpus):
    r = explode(tmp_path, write_config, corpus, "optim.name=sgd", "optim.lr=1e30", "train.checkpoint_every=0")
    assert r.returncode == 1 and "; no checkpoint was written yet; " in r.stderr, r.stderr
    assert not (tmp_path / "run" / "ckpt.npz").exists()


@pytest.mark.parametrize("sets", [["train.seed=10"], ["train.seed=10", "optim.lr=0.5"]],
                         ids=["minchar", "minchar-lr-0.5"])
def test_a_healthy_adagrad_start_is_not_divergence(tmp_path, sets):
    """min-char-rnn's Adagrad start has single steps far above log V (3.5 times at its own
    settings with this seed, 9 times at lr 0.5): char-rnn's 3x-the-first-loss rule would
    stop these runs, which then train normally. The smoothed loss stays below 1.3 x."""
    from conftest import CONFIGS

    extra = [a for s in sets + ["train.log_every=1", "train.sample_every=0"] for a in ("--set", s)]
    r = run("train", "--config", f"{CONFIGS}/minchar.yaml", "--out", tmp_path / "run", "-q", "--steps", 300, *extra)
    assert r.exit_code == 0, r.output
    losses = [m["loss"] for m in metrics(tmp_path / "run")]
    log_v = math.log(len(ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).vocab))
    assert max(losses[1:]) > 3 * losses[0] and abs(losses[0] - log_v) < 1e-3  # the spike happened
    if sets == ["train.seed=10"]:
        assert np.mean(losses[-50:]) < log_v - 0.5  # and the run learns


@pytest.mark.slow
def test_a_warm_up_start_is_not_divergence(tmp_path):
    from conftest import CONFIGS

    r = run("train", "--config", f"{CONFIGS}/shakespeare.yaml", "--out", tmp_path / "run", "-q", "--steps", 150,
            "--set", "model.hidden_size=32", "--set", "train.batch_size=4", "--set", "optim.warmup_steps=100",
            "--set", "train.log_every=1", "--set", "data.val_fraction=0", "--set", f"data.path={CORPUS}")
    assert r.exit_code == 0, r.output
    assert len(metrics(tmp_path / "run")) == 150


def test_the_divergence_threshold_is_diverge_factor_times_the_reference(write_config, corpus):
    """Both sides of the rule, to the last digit: a step whose smoothed loss lands just above
    diverge_factor × max(log V, first step's loss) stops (changing nothing), just below does not."""
    from charrnn import config as C
    from charrnn import data as D
    from charrnn import model as M
    from charrnn import optim
    from charrnn.runstate import new_run, next_batch
    from charrnn.train import Diverged, StepRules, divergence_reference, train_step

    for factor in (1.5, 3.0):
        cfg = C.load(small_config(write_config, corpus), [f"train.diverge_factor={factor}"])
        c = open_corpus(cfg.data.path, cfg.data.val_fraction)
        spec, opt = M.ModelSpec.of(cfg.model, len(c.vocab)), optim.from_config(cfg.optim)
        streams, T = D.Streams(c.train, cfg.train.batch_size, cfg.train.seq_length), cfg.train.seq_length
        for side in (-1, 1):
            run_ = new_run(cfg, spec, opt)
            train_step(run_, *next_batch(run_, streams, spec), spec, opt, cfg.optim.lr, StepRules.of(cfg))
            X, Y = next_batch(run_, streams, spec)
            loss = M.loss_and_grads(run_.params, spec, X, Y, run_.state).loss
            limit = factor * divergence_reference(run_.first_loss, spec.vocab_size) * T
            run_.smooth_loss = (limit * (1 + side * 1e-9) - loss * 0.001) / 0.999  # the next smoothed loss
            before = {k: v.copy() for k, v in run_.params.items()}
            if side > 0:
                with pytest.raises(Diverged, match=f"exceeds train.diverge_factor {factor:g} ×"):
                    train_step(run_, X, Y, spec, opt, cfg.optim.lr, StepRules.of(cfg))
                assert run_.step == 1 and all(np.array_equal(before[k], run_.params[k]) for k in before)
            else:
                train_step(run_, X, Y, spec, opt, cfg.optim.lr, StepRules.of(cfg))
                assert run_.step == 2
    assert divergence_reference(float("nan"), 100) == math.log(100)  # checkpoints from before first_loss
    assert divergence_reference(9.0, 100) == 9.0  # a large init_std starts above log V


# --- What the run shows ------------------------------------------------------------------------

def test_window_loss_is_the_mean_of_the_steps_since_the_last_line(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=23, eval_every=0)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "every")
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "five", "--set", "train.log_every=5")
    every, five = ([m for m in metrics(tmp_path / d) if "loss" in m] for d in ("every", "five"))
    assert [m["step"] for m in five] == [5, 10, 15, 20, 23]
    losses = {m["step"]: m["loss"] for m in every}
    assert all(m["window_loss"] == m["loss"] for m in every)  # a window of one step
    for prev, m in zip([0] + [m["step"] for m in five[:-1]], five, strict=True):
        steps = range(prev + 1, m["step"] + 1)
        assert m["window_loss"] == pytest.approx(sum(losses[s] for s in steps) / len(steps), rel=1e-12)
        assert m["loss"] == losses[m["step"]] and "smooth_loss" in m
    last = five[-1]["window_loss"]
    assert (f"step 23: training loss {last:.4f} nats/char ({last / math.log(2):.4f} bits/char), "
            "mean of the last 3 steps; ") in r.stderr


def test_the_summary_shows_min_char_rnns_smoothed_loss_when_asked(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=20, eval_every=0)
    r = run("train", "--config", cfg, "-q", "--set", "train.progress_loss=smooth")
    smooth = [m for m in metrics(tmp_path / "run") if "loss" in m][-1]["smooth_loss"]
    assert (f"training loss {smooth:.4f} nats/char ({smooth / math.log(2):.4f} bits/char), "
            "min-char-rnn's smoothed loss (0.999)") in r.stderr


def test_a_pause_between_log_lines_resumes_the_window_exactly(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=60, eval_every=25, log_every=10)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "whole")
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "half", "--stop-at", 47)
    assert "mean of the last 7 steps" in r.stderr
    ck = ckpt_io.load(str(tmp_path / "half" / "ckpt.npz"))
    assert ck.run.loss_steps == 7 and ck.run.loss_sum > 0  # the window in progress is saved
    run("train", "--resume", tmp_path / "half" / "ckpt.npz", "-q")
    assert timeless(tmp_path / "whole") == timeless(tmp_path / "half")


def test_the_banner_and_the_bar(tmp_path, write_config, corpus, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    cfg = small_config(write_config, corpus, steps=20, eval_every=10, log_every=5)
    r = run("train", "--config", cfg, "--stop-at", 10, "--set", "optim.name=adam", "--set", "optim.schedule=cosine",
            "--set", "optim.warmup_steps=4")
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    n = sum(p.size for p in ck.run.params.values())
    lines = r.stderr.splitlines()
    assert lines[0] == (f"corpus    {corpus}: 4,000 characters, vocabulary {len(ck.vocab)}; "
                        "3,600 for training, 400 for validation")
    assert lines[1] == f"model     rnn, 1 layer(s) of 16: {n:,} parameters, float32"
    assert lines[2] == "optimizer adam, lr 0.002, cosine to 0.0002 at step 20 after 4 steps of warm-up; clip_value 5"
    assert lines[3] == "batches   B=2 streams × T=8 characters; 20 steps; BLAS threads 2 (OMP_NUM_THREADS)"
    assert lines[4] == f"run       {tmp_path / 'run'} (new; pausing at step 10)"
    window, val = metrics(tmp_path / "run")[-2]["window_loss"], ck.run.val_loss
    last = r.stderr.splitlines()[-2]  # stderr is not a terminal: plain lines, the last before the summary
    assert last.startswith(f"step 10/10 | train {window:.3f} nats ({window / math.log(2):.3f} bits) | "
                           f"val {val:.3f} nats ({val / math.log(2):.3f} bits) | "), last
    r = run("train", "--resume", tmp_path / "run" / "ckpt.npz")
    assert f"run       {tmp_path / 'run'} (resuming at step 10 from {tmp_path / 'run' / 'ckpt.npz'})" in r.stderr
    r = run("train", "--resume", tmp_path / "run" / "ckpt.npz", "-q", "--steps", 30)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("step 30: training loss")  # quiet: the summary only


def test_each_step_uses_the_schedules_rate_for_that_step(tmp_path, write_config, corpus):
    """The rate of step s is the schedule's at s (counted from 1), as docs/config.md defines it:
    the logged rate, which is the one the update used, during warm-up and after it."""
    from charrnn import optim

    cfg_path = small_config(write_config, corpus, steps=12, log_every=1, eval_every=0)
    sets = ["optim.name=adam", "optim.schedule=cosine", "optim.warmup_steps=4", "optim.lr=0.01"]
    assert run("train", "--config", cfg_path, "-q", "--out", tmp_path / "r", *sum((["--set", s] for s in sets), [])
               ).exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "r" / "ckpt.npz"))
    lines = [m for m in metrics(tmp_path / "r") if "lr" in m]
    assert [m["step"] for m in lines] == list(range(1, 13))
    for m in lines:
        assert m["lr"] == optim.learning_rate(ck.config.optim, m["step"], m["epoch"], ck.config.train.steps), m
    assert lines[0]["lr"] == pytest.approx(0.01 / 4)  # warm-up: step 1 of 4


def test_the_weight_average_takes_the_weights_after_the_update(write_config, corpus):
    """optim.ema averages the weights each step has produced: avg = ema·avg + (1 − ema)·p with p
    the weights after that step's update (the average of step s then ends with step s's weights)."""
    from charrnn import config as C
    from charrnn import data as D
    from charrnn import model as M
    from charrnn import optim
    from charrnn.runstate import new_run, next_batch
    from charrnn.train import StepRules, train_step

    cfg = C.load(small_config(write_config, corpus), ["optim.ema=0.9", "optim.name=adam", "optim.lr=0.05"])
    c = open_corpus(cfg.data.path, cfg.data.val_fraction)
    spec, opt = M.ModelSpec.of(cfg.model, len(c.vocab)), optim.from_config(cfg.optim)
    run_ = new_run(cfg, spec, opt)
    streams = D.Streams(c.train, cfg.train.batch_size, cfg.train.seq_length)
    for _ in range(3):
        avg, weights = {k: v.copy() for k, v in run_.ema.items()}, {k: v.copy() for k, v in run_.params.items()}
        train_step(run_, *next_batch(run_, streams, spec), spec, opt, cfg.optim.lr, StepRules.of(cfg))
        for k in avg:
            assert not np.array_equal(run_.params[k], weights[k])  # the step moved the weights
            np.testing.assert_allclose(run_.ema[k], 0.9 * avg[k] + 0.1 * run_.params[k], rtol=1e-6, atol=1e-7,
                                       err_msg=f"ema.{k}: not the average of the updated weights")


# --- How the run ended: RUN/status.json ------------------------------------------------------

def status(run_dir):
    return json.loads((run_dir / "status.json").read_text(encoding="utf-8"))


def test_status_json_of_a_finished_and_of_a_paused_run(tmp_path, write_config, corpus):
    import os

    cfg = small_config(write_config, corpus, steps=12, eval_every=5)
    run_dir, ckpt = tmp_path / "run", str(tmp_path / "run" / "ckpt.npz")
    r = run("train", "--config", cfg, "-q", "--stop-at", 6)
    assert r.exit_code == 0, r.output
    s = status(run_dir)
    assert s == {"status": "paused", "signal": None, "exit_code": 0, "step": 6, "checkpoint": ckpt,
                 "message": r.stderr.strip(), "resume": f"charrnn train --resume {ckpt}", "time": s["time"],
                 "pid": os.getpid()}
    r = run("train", "--resume", ckpt, "-q")
    assert r.exit_code == 0, r.output
    s = status(run_dir)
    assert (s["status"], s["exit_code"], s["step"], s["resume"], s["message"]) == (
        "finished", 0, 12, None, r.stderr.strip())
    assert s["message"].startswith("step 12: ")


def test_status_json_of_a_time_budget_and_of_early_stopping(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=10**6, eval_every=0)
    assert run("train", "--config", cfg, "-q", "--set", "train.max_minutes=0.0002").exit_code == 0
    s = status(tmp_path / "run")
    assert (s["status"], s["exit_code"], s["resume"]) == ("time budget", 0, None)
    assert s["step"] == ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step
    cfg = small_config(write_config, corpus, steps=1000, eval_every=5, patience=2)
    r = run("train", "--config", cfg, "-q", "--set", "optim.lr=0.3", "--out", tmp_path / "es")
    assert r.exit_code == 0 and "(early stopping)" in r.stderr
    s = status(tmp_path / "es")
    assert (s["status"], s["exit_code"], s["resume"]) == ("early stopping", 0, None)
    assert s["step"] < 1000 and "(early stopping)" in s["message"]


def test_status_json_of_a_diverged_run(tmp_path, write_config, corpus):
    r = explode(tmp_path, write_config, corpus, "optim.name=sgd", "optim.lr=1e30")
    assert r.returncode == 1, r.stderr
    s = status(tmp_path / "run")
    assert (s["status"], s["signal"], s["exit_code"], s["step"], s["resume"]) == ("diverged", None, 1, 1, None)
    assert "Error: " + s["message"] == r.stderr.strip()


def test_status_json_of_a_run_that_failed_after_it_claimed_its_directory(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=12)
    run_dir, ckpt = tmp_path / "run", str(tmp_path / "run" / "ckpt.npz")
    assert run("train", "--config", cfg, "-q", "--stop-at", 6).exit_code == 0
    corpus.write_text(corpus.read_text(encoding="utf-8") + "more", encoding="utf-8")
    r = run("train", "--resume", ckpt, "-q")
    line = one_line_error(r, 1, "the corpus changed since the checkpoint was written")
    s = status(run_dir)
    assert (s["status"], s["exit_code"], s["step"], s["checkpoint"], s["resume"]) == (
        "failed", 1, 6, ckpt, f"charrnn train --resume {ckpt}")
    assert "Error: " + s["message"] == line


def test_a_refused_run_leaves_the_other_runs_status_json_alone(tmp_path, write_config, corpus):
    """Refused because the directory holds a run, and because another run holds its lock (here
    this process, through rundir.lock: a second lock of it is refused even in one process)."""
    from charrnn import rundir

    cfg = small_config(write_config, corpus, steps=6)
    run_dir = tmp_path / "run"
    assert run("train", "--config", cfg, "-q", "--steps", 3).exit_code == 0
    before = (run_dir / "status.json").read_bytes()
    one_line_error(run("train", "--config", cfg, "-q"), 1, "already holds a run")
    assert (run_dir / "status.json").read_bytes() == before
    with rundir.lock(str(run_dir)):
        one_line_error(run("train", "--resume", run_dir / "ckpt.npz", "-q"), 1, "is using this run directory")
        one_line_error(run("train", "--config", cfg, "-q", "--overwrite"), 1, "is using this run directory")
    assert (run_dir / "status.json").read_bytes() == before
    # --overwrite that fails before the old run is moved aside (a missing corpus) leaves it too
    one_line_error(run("train", "--config", cfg, "-q", "--overwrite", "--data", tmp_path / "missing.txt"), 1)
    assert (run_dir / "status.json").read_bytes() == before


# --- A run's length: --steps, --stop-at, --minutes; what the summary says ----------------------

def test_steps_on_a_new_run_makes_a_finished_run_of_that_length(tmp_path, write_config, corpus):
    """--steps 12 below train.steps (1,000) is the run's length: a final validation, best.npz, the
    banner, status.json "finished"; a --resume then has nothing to do (exit 0, one line, nothing
    written) and names the --steps that trains it further, which does."""
    cfg = small_config(write_config, corpus, steps=1000, eval_every=100, log_every=5)
    run_dir, ckpt = tmp_path / "run", tmp_path / "run" / "ckpt.npz"
    r = run("train", "--config", cfg, "--steps", 12)
    assert r.exit_code == 0, r.output
    assert "B=2 streams × T=8 characters; 12 steps;" in r.stderr
    ck = ckpt_io.load(str(ckpt))
    assert ck.run.step == 12 and ck.config.train.steps == 12 and "steps: 12" in (run_dir / "config.yaml").read_text()
    assert [m["step"] for m in metrics(run_dir) if "val_loss" in m] == [12]  # the final validation
    best = ckpt_io.load(str(run_dir / "best.npz"))
    assert best.run.step == 12 and best.run.val_loss == ck.run.best_val_loss
    assert status(run_dir)["status"] == "finished"
    b = ck.run.best_val_loss
    assert (f"best validation {b:.4f} nats/char ({b / math.log(2):.4f} bits/char) at step 12, in "
            f"{run_dir / 'best.npz'}") in r.stderr.splitlines()[-1]
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    r = run("train", "--resume", ckpt)
    assert r.exit_code == 0 and r.stderr.count("\n") == 1, r.output
    assert r.stderr.startswith(f"{ckpt}: the run is finished (step 12 of train.steps 12); nothing to do."), r.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # status.json too
    command = r.stderr.split("To train it further, give its new length: ")[1].split()
    assert command[:2] == ["charrnn", "train"] and command[-2:] == ["--steps", "24"]
    r = run(*command[1:], "-q")
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(str(ckpt)).run.step == 24 and status(run_dir)["status"] == "finished"
    one_line_error(run("train", "--resume", ckpt, "--steps", 20), 2,
                   "--steps 20:", "already holds step 24", "--steps 48")


def test_stop_at_beyond_the_length_or_behind_the_checkpoint_is_refused(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=12, eval_every=0)
    one_line_error(run("train", "--config", cfg, "--stop-at", 13), 2,
                   "--stop-at 13 is past the run's length, train.steps 12: give --steps 13")
    assert not (tmp_path / "run").exists()
    assert run("train", "--config", cfg, "-q", "--stop-at", 6).exit_code == 0
    one_line_error(run("train", "--resume", tmp_path / "run" / "ckpt.npz", "--stop-at", 6), 2,
                   "--stop-at 6:", "already holds step 6")
    r = run("train", "--resume", tmp_path / "run" / "ckpt.npz", "-q", "--steps", 20, "--stop-at", 15)
    assert r.exit_code == 0, r.output
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert (ck.run.step, ck.config.train.steps, status(tmp_path / "run")["status"]) == (15, 20, "paused")


def test_steps_on_resume_stretches_the_schedule_to_the_new_length(tmp_path, write_config, corpus):
    """A finished cosine run of 12 steps extended to 30: its first resumed step (13) takes the
    schedule's rate for step 13 of 30 (which is higher than the rate of step 12 of 12: the rate
    goes back up at the resume point), and every later step the rate of a 30-step schedule."""
    from charrnn import optim

    cfg = small_config(write_config, corpus, steps=12, log_every=1, eval_every=0)
    sets = sum((["--set", s] for s in ("optim.name=adam", "optim.schedule=cosine", "optim.warmup_steps=4",
                                       "optim.lr=0.01", "optim.min_lr=0.001")), [])
    assert run("train", "--config", cfg, "-q", *sets).exit_code == 0
    assert run("train", "--resume", tmp_path / "run" / "ckpt.npz", "-q", "--steps", 30).exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert ck.run.step == 30 and ck.config.train.steps == 30
    lines = {m["step"]: m for m in metrics(tmp_path / "run") if "lr" in m}
    assert sorted(lines) == list(range(1, 31))
    o = ck.config.optim
    assert lines[12]["lr"] == optim.learning_rate(o, 12, lines[12]["epoch"], 12) == 0.001  # the end of 12 steps
    lr13 = optim.learning_rate(o, 13, lines[13]["epoch"], 30)
    assert lines[13]["lr"] == lr13 == pytest.approx(0.001 + 0.5 * (0.01 - 0.001) * (1 + math.cos(math.pi * 9 / 26)))
    assert lr13 > 0.007  # back up, from 0.001
    for s in range(13, 31):
        assert lines[s]["lr"] == optim.learning_rate(o, s, lines[s]["epoch"], 30), s


def test_minutes_continues_a_run_that_stopped_on_its_time_budget(tmp_path, write_config, corpus):
    """A run out of its time budget: --resume, and --steps more, have nothing to do (exit 0, one
    line naming --minutes, nothing written); --minutes M trains M more minutes of it."""
    cfg = small_config(write_config, corpus, steps=10**6, eval_every=0)
    run_dir, ckpt = tmp_path / "run", tmp_path / "run" / "ckpt.npz"
    assert run("train", "--config", cfg, "-q", "--set", "train.max_minutes=0.002").exit_code == 0
    first = ckpt_io.load(str(ckpt)).run
    assert status(run_dir)["status"] == "time budget"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    for more in ([], ["--steps", 10**7]):
        r = run("train", "--resume", ckpt, "-q", *more)
        assert r.exit_code == 0 and r.stderr.count("\n") == 1, r.output
        assert "stopped on its time budget (train.max_minutes 0.002" in r.stderr
        assert f"nothing to do. To train it further: charrnn train --resume {ckpt} --minutes 1" in r.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    r = run("train", "--resume", ckpt, "-q", "--minutes", 0.002)
    assert r.exit_code == 0 and "(time budget)" in r.stderr, r.output
    ck = ckpt_io.load(str(ckpt))
    assert ck.run.step > first.step and status(run_dir)["status"] == "time budget"
    assert ck.config.train.max_minutes == pytest.approx(first.elapsed_s / 60 + 0.002, rel=1e-12)
    assert ck.run.elapsed_s >= 60 * ck.config.train.max_minutes


@pytest.mark.slow
def test_the_summary_speed_leaves_out_the_final_validation(tmp_path, write_config, corpus, monkeypatch):
    """A run stopped by its time budget between two log lines, its final validation made to take
    two seconds: the summary's speed is that of the call's steps (here all between two log lines),
    far above what it would be with those seconds in."""
    import time

    from charrnn import train as T

    pause = 2.0

    def slow(*a, **k):
        time.sleep(pause)
        return evaluate(*a, **k)

    monkeypatch.setattr(T, "evaluate", slow)
    cfg = small_config(write_config, corpus, steps=10**6, log_every=10**6, eval_every=0)
    r = run("train", "--config", cfg, "-q", "--set", "train.max_minutes=0.003")
    assert r.exit_code == 0, r.output
    line = r.stderr.splitlines()[-1]
    steps = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step
    assert f"mean of the last {steps} steps" in line and "(time budget)" in line, line
    speed = float(line.split(" chars/s")[0].rsplit("; ", 1)[1].replace(",", ""))
    # B·T = 16 characters a step. With the pause in, the speed is under steps·16/pause; without
    # it, about steps·16/0.18 s (the budget), whatever the machine: the bound sits between the
    # two with room on both sides (at 1 s and 5× the margin had been 11%, and a slow machine failed it).
    assert speed > 3 * steps * 16 / pause, line


@pytest.mark.slow
def test_the_summary_speed_is_the_mean_over_the_call_not_the_last_window(tmp_path, write_config, corpus,
                                                                          monkeypatch):
    """Steps 1-10 fast, 11-20 each made to take 40 ms more: the last log window's speed (steps
    11-20) is about half the call's, and the summary gives the call's (20 steps over their time),
    not that of its last few steps (which made a 5-minute run's summary say 5,511 chars/s where
    its log lines said 100,000)."""
    import time

    from charrnn import train as T

    real = T.train_step

    def step(run, *a, **k):
        if run.step >= 10:
            time.sleep(0.04)
        return real(run, *a, **k)

    monkeypatch.setattr(T, "train_step", step)
    cfg = small_config(write_config, corpus, steps=20, log_every=10, eval_every=0)
    r = run("train", "--config", cfg, "-q")
    assert r.exit_code == 0, r.output
    line = r.stderr.splitlines()[-1]
    speed = float(line.split(" chars/s")[0].rsplit("; ", 1)[1].replace(",", ""))
    with open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8") as f:
        last_window = [json.loads(x) for x in f if '"chars_per_s"' in x][-1]["chars_per_s"]
    assert 1.6 * last_window < speed < 2.4 * last_window, (speed, last_window)


# ----------------------------------------------------------------------------- variable-length BPTT


def test_variable_lengths_move_the_position_by_each_drawn_length_through_the_wraps(tmp_path, write_config):
    from charrnn import data as D

    corpus = first_chars(tmp_path, 600)
    cfg = small_config(write_config, corpus, steps=60, seq_length=12, checkpoint_every=0, eval_every=0)
    run("train", "--config", cfg, "-q", "--set", "train.variable_length=true")
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    tc = ck.config.train
    L = len(open_corpus(ck.config.data.path, ck.config.data.val_fraction).train) // tc.batch_size
    position = epoch = 0
    lengths = [D.chunk_length(tc.seed, k, tc.seq_length) for k in range(1, 61)]
    for n in lengths:  # the streams' rule (runstate.next_batch), with each step's own length
        if position + n + 1 >= L:
            position, epoch = 0, epoch + 1
        position += n
    assert len(set(lengths)) > 5 and epoch >= 2, "the test needs lengths that differ and streams that wrap"
    assert (ck.run.position, ck.run.epoch) == (position, epoch)
    assert [m["epoch"] for m in metrics(tmp_path / "run") if "loss" in m][-1] == epoch


@pytest.mark.parametrize("name, scaled", [("sgd", False), ("adam", True)])
def test_a_steps_rate_is_scaled_by_its_length_for_adam_not_sgd_and_its_loss_is_per_character_of_it(
        tmp_path, write_config, name, scaled):
    """One step on a chunk of the drawn length: Adam's rate is the schedule's times length / T
    (its update's size is set by the rate); SGD's is not scaled, since the gradient of the
    chunk's summed loss already is about length / T as large. The weights move by the
    optimizer's update at that rate, and the logged loss is per character of the length."""
    from charrnn import data as D
    from charrnn import model as M
    from charrnn import optim
    from charrnn.progress import SMOOTHING
    from charrnn.runstate import new_run, next_batch

    corpus = first_chars(tmp_path, 600)
    sets = ["train.variable_length=true", "train.seq_length=40", "train.seed=37", f"optim.name={name}",
            "optim.clip_value=null", "optim.lr=0.5", "model.dtype=float64"]
    sets += ["optim.momentum=0"] if name == "sgd" else []
    cfg = small_config(write_config, corpus, steps=1, checkpoint_every=0, eval_every=0)
    assert run("train", "--config", cfg, "-q", *[a for s in sets for a in ("--set", s)]).exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    n, T = D.chunk_length(37, 1, 40), 40  # seed 37: a half-length draw
    assert n < T - 10, f"the test needs a first chunk well short of T, not {n}"
    lr = 0.5 * n / T if scaled else 0.5
    optimizer = optim.from_config(ck.config.optim)
    start = new_run(ck.config, ck.spec, optimizer)
    train = open_corpus(ck.config.data.path, ck.config.data.val_fraction).train
    X, Y = next_batch(start, D.Streams(train, 2, T, D.longest_chunk(T)), ck.spec, n)
    assert X.shape == (n, 2)
    loss, grads, _, _ = M.loss_and_grads(start.params, ck.spec, X, Y, start.state)
    expected = {k: v.copy() for k, v in start.params.items()}
    optimizer.update(expected, grads, start.opt_state, lr, 1)
    if name == "sgd":  # the update written out, as the docstring says it
        for k, g in grads.items():
            np.testing.assert_allclose(expected[k], start.params[k] - lr * g, rtol=0, atol=1e-12, err_msg=k)
    for k in grads:
        np.testing.assert_allclose(ck.run.params[k], expected[k], rtol=0, atol=1e-12, err_msg=k)
    (m,) = [m for m in metrics(tmp_path / "run") if "loss" in m]
    assert m["lr"] == lr and ck.run.position == n
    assert math.isclose(m["loss"], loss / n, rel_tol=1e-12)
    assert math.isclose(m["window_loss"], loss / n, rel_tol=1e-12)
    # The smoothed loss counts the chunk as if it were T long.
    expected = (start.smooth_loss * SMOOTHING + loss / n * T * (1 - SMOOTHING)) / T
    assert math.isclose(m["smooth_loss"], expected, rel_tol=1e-12)


@pytest.mark.parametrize("sets, source", [
    (["train.seq_length=9", "train.variable_length=true"], "(from --set train.seq_length=9)"),
    (["train.variable_length=true"], "cfg.yaml)"),  # seq_length 8 in the file
])
def test_variable_lengths_below_seq_length_10_are_refused_in_one_line(write_config, corpus, sets, source):
    cfg = small_config(write_config, corpus)
    r = run("train", "--config", cfg, *[a for s in sets for a in ("--set", s)])
    one_line_error(r, 2, "--set train.variable_length=true: train.variable_length needs train.seq_length ≥ 10",
                   "got 9" if "train.seq_length=9" in sets else "got 8", source)


# ----------------------------------------------------------------------------- train.fit_to_budget


def test_fitted_length_fills_the_time_left_within_the_cap_and_keeps_still_for_noise():
    from charrnn.train import fitted_length

    step_s = 1 / 128  # a power of two: the arithmetic below is exact
    assert fitted_length(250, 1000, 64 * step_s, step_s, 1000) == 314  # the budget ends first
    assert fitted_length(250, 1000, 100.0, step_s, 1000) == 1000  # never past the length the call was given
    assert fitted_length(250, 1000, 0.0, step_s, 1000) == 251  # out of time: the next step is the last
    assert fitted_length(250, 1000, -1.0, step_s, 1000) == 251
    # A fit within 2% of the steps left keeps the length (64 steps left: within 1)...
    assert fitted_length(250, 1000, 65 * step_s, step_s, 314) == 314
    assert fitted_length(250, 1000, 66 * step_s, step_s, 314) == 316  # ...one 2 steps further moves it
    # With 5,000 steps left, 100 either way is noise; more than that moves the length, either way.
    assert fitted_length(10_000, 20_000, 5_100 * step_s, step_s, 15_000) == 15_000
    assert fitted_length(10_000, 20_000, 4_900 * step_s, step_s, 15_000) == 15_000
    assert fitted_length(10_000, 20_000, 5_101 * step_s, step_s, 15_000) == 15_101
    assert fitted_length(10_000, 20_000, 4_899 * step_s, step_s, 15_000) == 14_899
    # 100 s left: 12,800 steps, less the validations among them (one a second, every 1,000 steps):
    # 11,392 steps and the 11 validations at 1,000 to 11,000 take the 100 s.
    assert fitted_length(0, 100_000, 100.0, step_s, 100_000, 1000, 1.0) == 11_392
    assert fitted_length(500, 100_000, 100.0, step_s, 100_000, 1000, 1.0) == 500 + 11_392
    assert fitted_length(0, 100_000, 100.0, step_s, 100_000, 1000, 0.0) == 12_800  # none measured yet


def fake_clock(monkeypatch, step_s):
    """Every training step takes exactly ``step_s(step)`` seconds (of the step it is about to
    take, counted from 1) of the clock the run reads, and nothing else takes any: what the
    budget and its projections see is then exact."""
    import time as _time

    from charrnn import train as T

    now = [0.0]
    real = T.train_step

    def step(run, *a, **k):
        now[0] += step_s(run.step + 1)
        return real(run, *a, **k)

    monkeypatch.setattr(T, "train_step", step)
    monkeypatch.setattr(_time, "perf_counter", lambda: now[0])
    return now


# A budget of 1/128 minute (0.46875 s, of which 98% is 0.459375 s) and a warm-up of 600 steps:
# powers of two, so that the projections below are exact.
FIT = ["--set", "train.max_minutes=0.0078125", "--set", "optim.name=adam", "--set", "optim.schedule=cosine",
       "--set", "optim.warmup_steps=600", "--set", "optim.lr=0.01", "--set", "optim.min_lr=0.0005"]


def test_fit_to_budget_ends_the_schedule_where_the_budget_ends(tmp_path, write_config, monkeypatch):
    """Steps of 1/2048 s and a budget of 0.46875 s (960 steps): without the fit the budget cuts a
    2,000-step cosine at step 960 with the rate far from min_lr; with it the first projection,
    at step 550 once 500 steps are measured, makes the 940 steps that fill 98% of the budget
    the run's length, the later ones keep it, and the run ends there, finished, at min_lr, its
    checkpoint and config.yaml saying 940. Fitted during the warm-up (whose rate does not depend
    on the length), it is the very run that --steps 940 trains."""
    fake_clock(monkeypatch, lambda step: 1 / 2048)
    corpus = first_chars(tmp_path, 4000)
    cfg = small_config(write_config, corpus, steps=2000, log_every=1, eval_every=0, checkpoint_every=0)
    cut, fitted, given = tmp_path / "cut", tmp_path / "fitted", tmp_path / "given"
    assert run("train", "--config", cfg, "-q", *FIT, "--out", cut).exit_code == 0
    r = run("train", "--config", cfg, *FIT, "--set", "train.fit_to_budget=true", "--out", fitted)
    assert r.exit_code == 0, r.output
    assert "train.fit_to_budget: at 32,768 chars/s, 940 steps fit in the budget (train.max_minutes 0.0078125); " \
           "the run's length is now 940 (was 2,000)" in r.stderr
    assert run("train", "--config", cfg, "-q", *FIT, "--steps", 940, "--out", given).exit_code == 0

    lines = [m for m in metrics(cut) if "loss" in m]
    assert lines[-1]["step"] == 960 and lines[-1]["lr"] > 0.008  # cut off high on the cosine
    assert json.loads((cut / "status.json").read_text())["status"] == "time budget"
    lines = [m for m in metrics(fitted) if "loss" in m]
    assert lines[-1]["step"] == 940 and lines[-1]["lr"] == 0.0005
    assert [m for m in metrics(fitted) if "was" in m] == [
        {"step": 550, "steps": 940, "was": 2000, "fitted_chars_per_s": 32768.0, "elapsed_s": 0.269}]
    assert json.loads((fitted / "status.json").read_text())["status"] == "finished"
    a, b = ckpt_io.load(str(fitted / "ckpt.npz")), ckpt_io.load(str(given / "ckpt.npz"))
    assert a.config.train.steps == 940 and "steps: 940" in (fitted / "config.yaml").read_text()
    assert a.run.step == b.run.step == 940 and a.run.val_loss == b.run.val_loss
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k


def test_a_machine_that_speeds_up_lengthens_the_fitted_run_again(tmp_path, write_config, monkeypatch):
    """Slow steps (1/2048 s) up to step 700, then four times faster: the projection at 550 cuts
    the 4,000 steps to 940, and as the faster steps fill the window the length grows again; the
    run ends at its last length, finished, inside the budget (not paused at the 940 it was once
    given)."""
    fake_clock(monkeypatch, lambda step: 1 / 2048 if step <= 700 else 1 / 8192)
    corpus = first_chars(tmp_path, 4000)
    cfg = small_config(write_config, corpus, steps=4000, log_every=50, eval_every=0, checkpoint_every=0)
    assert run("train", "--config", cfg, "-q", *FIT, "--set", "train.fit_to_budget=true").exit_code == 0
    changes = [(m["step"], m["steps"]) for m in metrics(tmp_path / "run") if "was" in m]
    assert changes[0] == (550, 940) and len(changes) > 3, changes
    lengths = [n for _, n in changes]
    assert lengths == sorted(lengths), changes  # it only grew after the first cut
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert ck.run.step == ck.config.train.steps == lengths[-1] > 1500
    assert ck.run.elapsed_s < 0.46875
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"
    assert [m for m in metrics(tmp_path / "run") if "loss" in m][-1]["lr"] == 0.0005


def test_the_fit_counts_the_validations_apart_from_the_steps(tmp_path, write_config, monkeypatch):
    """Steps of 1/2048 s and a validation every 300 steps that takes 1/64 s: the speed is that
    of the steps alone (the validation at 300 inside the first window does not slow it), and
    the validation still to come (at 600) is taken out of the time left, so that the run ends
    at the 876 steps that fill 98% of the budget with both validations in it."""
    from charrnn import train as T

    now = fake_clock(monkeypatch, lambda step: 1 / 2048)
    real = T.evaluate

    def evaluate(*a, **k):
        now[0] += 1 / 64
        return real(*a, **k)

    monkeypatch.setattr(T, "evaluate", evaluate)
    corpus = first_chars(tmp_path, 4000)
    cfg = small_config(write_config, corpus, steps=2000, log_every=50, eval_every=300, checkpoint_every=0)
    assert run("train", "--config", cfg, "-q", *FIT, "--set", "train.fit_to_budget=true").exit_code == 0
    changes = [(m["step"], m["steps"], m["fitted_chars_per_s"]) for m in metrics(tmp_path / "run") if "was" in m]
    assert changes == [(550, 876, 32768.0)]
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    # Its steps and the validations at 300 and 600 took 0.45898 s of the 0.46875; the final one came after.
    assert ck.run.step == 876 and ck.run.elapsed_s == 876 / 2048 + 3 / 64
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"


def test_a_budget_that_is_not_reached_changes_nothing(tmp_path, write_config, monkeypatch):
    """Steps of 1/8192 s, 2,000 of them in a 0.46875-s budget: the fit never moves the length,
    and the run is bit for bit the run without it."""
    fake_clock(monkeypatch, lambda step: 1 / 8192)
    corpus = first_chars(tmp_path, 4000)
    cfg = small_config(write_config, corpus, steps=2000, log_every=100, eval_every=0, checkpoint_every=0)
    on, off = tmp_path / "on", tmp_path / "off"
    assert run("train", "--config", cfg, "-q", *FIT, "--set", "train.fit_to_budget=true", "--out", on).exit_code == 0
    assert run("train", "--config", cfg, "-q", *FIT, "--out", off).exit_code == 0
    assert not [m for m in metrics(on) if "was" in m]
    a, b = ckpt_io.load(str(on / "ckpt.npz")), ckpt_io.load(str(off / "ckpt.npz"))
    assert a.run.step == b.run.step == 2000
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k


def test_a_fitted_run_paused_and_resumed_keeps_its_length(tmp_path, write_config, monkeypatch):
    """A pause after the fit (--stop-at 800) saves the fitted length in the checkpoint; a plain
    --resume goes on to step 940, not 2,000, and ends as the uninterrupted fitted run."""
    fake_clock(monkeypatch, lambda step: 1 / 2048)
    corpus = first_chars(tmp_path, 4000)
    cfg = small_config(write_config, corpus, steps=2000, log_every=10, eval_every=0, checkpoint_every=0)
    whole, half = tmp_path / "whole", tmp_path / "half"
    fit = [*FIT, "--set", "train.fit_to_budget=true"]
    assert run("train", "--config", cfg, "-q", *fit, "--out", whole).exit_code == 0
    assert run("train", "--config", cfg, "-q", *fit, "--out", half, "--stop-at", 800).exit_code == 0
    ck = ckpt_io.load(str(half / "ckpt.npz"))
    assert (ck.run.step, ck.config.train.steps) == (800, 940)
    assert json.loads((half / "status.json").read_text())["status"] == "paused"
    assert run("train", "--resume", half, "-q").exit_code == 0
    a, b = ckpt_io.load(str(whole / "ckpt.npz")), ckpt_io.load(str(half / "ckpt.npz"))
    assert a.run.step == b.run.step == 940
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k


@pytest.mark.parametrize("sets, message", [
    (["train.fit_to_budget=true"],
     "--set train.fit_to_budget=true: train.fit_to_budget fits the run's length to train.max_minutes, which is "
     "null (from {cfg}): give a budget, or train.fit_to_budget: false"),
    (["train.max_minutes=1", "optim.schedule=constant", "train.fit_to_budget=true"],
     "train.fit_to_budget ends a cosine or linear schedule within train.max_minutes; optim.schedule is constant "
     "(from --set optim.schedule=constant), which the budget alone stops in time"),
])
def test_fit_to_budget_without_a_budget_or_a_decaying_schedule_is_refused(write_config, corpus, sets, message):
    cfg = small_config(write_config, corpus)
    r = run("train", "--config", cfg, *[a for s in sets for a in ("--set", s)])
    one_line_error(r, 2, message.format(cfg=cfg))
