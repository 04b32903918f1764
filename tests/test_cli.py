"""The command line end to end, through Click's CliRunner (and one real subprocess)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, CORPUS, ROOT, first_chars, one_line_error, run, small_config

from charrnn import checkpoint as ckpt_io

SMOKE = os.path.join(CONFIGS, "smoke.yaml")


def test_smoke_config_trains_and_samples(tmp_path):
    out = tmp_path / "smoke"
    r = run("train", "--config", SMOKE, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # progress, previews and the summary all go to stderr
    assert "sample at step 30" in r.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == list(range(10, 61, 10))
    assert [m["step"] for m in lines if "val_loss" in m] == [60]  # eval_every 1000 > steps: at the end
    for key in ("step", "loss", "smooth_loss", "lr", "chars_per_s", "elapsed_s"):
        assert key in lines[0]
    assert (out / "config.yaml").exists()
    ck = ckpt_io.load(str(out / "ckpt.npz"))
    assert ck.run.step == 60
    r = run("sample", "--checkpoint", out / "ckpt.npz", "--length", 50, "--seed", 3, "--prime", "KING")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("KING") and len(r.stdout) == 4 + 50 + 1
    again = run("sample", "--checkpoint", out / "ckpt.npz", "--length", 50, "--seed", 3, "--prime", "KING")
    assert again.stdout == r.stdout  # same seed, same text


def test_non_ascii_corpus_trains_and_samples_with_non_ascii_prime(tmp_path, write_config):
    corpus = tmp_path / "zh.txt"
    text = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。Café crème, naïve façade.\n"
    corpus.write_text(text * 30, encoding="utf-8")
    cfg = small_config(write_config, corpus)
    assert run("train", "--config", cfg, "--quiet").exit_code == 0
    r = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--prime", "春眠", "-n", 20, "--seed", 0)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("春眠")
    assert set(r.stdout.strip()) <= set(corpus.read_text(encoding="utf-8"))


def test_prime_with_unknown_characters_is_a_usage_error(tmp_path):
    run("train", "--config", SMOKE, "--out", tmp_path, "--quiet", "--steps", 5)
    r = run("sample", "--checkpoint", tmp_path / "ckpt.npz", "--prime", "Zoë ☃")
    one_line_error(r, 2, "--prime", "'ë' (U+00EB)", "'☃' (U+2603)")


def read_metrics(path):
    """Every metrics line without its timings."""
    return [{k: v for k, v in m.items() if k not in ("chars_per_s", "elapsed_s")}
            for m in map(json.loads, Path(path).read_text().splitlines())]


@pytest.mark.parametrize("extra", [[], ["--set", "model.layers=2", "--set", "model.dropout=0.3"]],
                         ids=["rnn", "rnn-2-layers-dropout"])
def test_resume_is_bitwise_exact(tmp_path, write_config, extra):
    # 1,200 characters in 2 streams of 8: the streams wrap (and the state resets) mid-run.
    corpus = first_chars(tmp_path, 1200)
    cfg = small_config(write_config, corpus, steps=120, checkpoint_every=7)
    whole, half = tmp_path / "whole", tmp_path / "half"
    assert run("train", "--config", cfg, "--out", whole, "-q", *extra).exit_code == 0
    assert run("train", "--config", cfg, "--out", half, "-q", "--stop-at", 60, *extra).exit_code == 0
    assert run("train", "--resume", half / "ckpt.npz", "-q").exit_code == 0
    a, b = ckpt_io.load(str(whole / "ckpt.npz")), ckpt_io.load(str(half / "ckpt.npz"))
    assert a.run.step == b.run.step == 120 and a.run.epoch == b.run.epoch >= 1
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    for k in a.run.opt_state:
        assert np.array_equal(a.run.opt_state[k], b.run.opt_state[k]), k
    for sa, sb in zip(a.run.state, b.run.state, strict=False):
        assert all(np.array_equal(x, y) for x, y in zip(sa, sb, strict=False))
    assert (a.run.position, a.run.smooth_loss, a.run.rng.bit_generator.state) == (
        b.run.position, b.run.smooth_loss, b.run.rng.bit_generator.state)
    assert read_metrics(whole / "metrics.jsonl") == read_metrics(half / "metrics.jsonl")


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path, write_config):
    corpus = first_chars(tmp_path, 3000)
    cfg = small_config(write_config, corpus, steps=20, checkpoint_every=5)
    out = tmp_path / "run"
    assert run("train", "--config", cfg, "-q", "--stop-at", 10).exit_code == 0
    saved = tmp_path / "saved.npz"
    shutil.copy(out / "ckpt.npz", saved)  # as if the run crashed after step 10 was logged
    assert run("train", "--config", cfg, "-q", "--stop-at", 13, "--overwrite").exit_code == 0
    os.replace(saved, out / "ckpt.npz")
    ckpt_io.save(str(out / "ckpt.npz"), ckpt_io.load(str(out / "ckpt.npz")))
    run("train", "--resume", out / "ckpt.npz", "-q", "--steps", 12)
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl") if "loss" in m] == list(range(1, 13))


def test_resume_of_a_run_directory_continues_its_ckpt_npz_not_its_best_npz(tmp_path, write_config):
    """--resume RUN means RUN/ckpt.npz, where the run last stood: a run paused past its best
    validation resumes from the pause (from best.npz it would be refused as a rewind), and
    ends as the run resumed from the file by name does; a directory without ckpt.npz is a
    usage error naming it."""
    corpus = first_chars(tmp_path, 3000)
    cfg = small_config(write_config, corpus, steps=24, eval_every=5)
    by_dir, by_file = tmp_path / "dir", tmp_path / "file"
    for out in (by_dir, by_file):
        assert run("train", "--config", cfg, "-q", "--out", out, "--stop-at", 12).exit_code == 0
    assert ckpt_io.load(str(by_dir / "best.npz")).run.step == 10  # the best is behind the pause
    r = run("train", "--resume", by_dir)
    assert r.exit_code == 0, r.output
    assert f"resuming at step 12 from {by_dir / 'ckpt.npz'}" in r.stderr
    assert run("train", "--resume", by_file / "ckpt.npz", "-q").exit_code == 0
    a, b = ckpt_io.load(str(by_dir / "ckpt.npz")), ckpt_io.load(str(by_file / "ckpt.npz"))
    assert a.run.step == b.run.step == 24
    assert all(np.array_equal(a.run.params[k], b.run.params[k]) for k in a.run.params)
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("train", "--resume", empty), 2, f"--resume {empty}: a directory without ckpt.npz")


def test_init_from_starts_a_new_run_from_the_weights(tmp_path, write_config):
    corpus = first_chars(tmp_path, 3000)
    cfg = small_config(write_config, corpus, steps=10)
    run("train", "--config", cfg, "-q", "--out", tmp_path / "a")
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "b", "--init-from", tmp_path / "a" / "ckpt.npz",
            "--steps", 3)
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(str(tmp_path / "b" / "ckpt.npz")).run.step == 3


def test_init_from_with_another_vocabulary_is_refused(tmp_path, write_config):
    run("train", "--config", SMOKE, "--out", tmp_path / "a", "-q", "--steps", 3)
    other = tmp_path / "other.txt"
    other.write_text("completely different text, with a ü and a 你 in it.\n" * 40, encoding="utf-8")
    cfg = small_config(write_config, other, steps=3)
    r = run("train", "--config", cfg, "--init-from", tmp_path / "a" / "ckpt.npz", "-q")
    one_line_error(r, 1, "vocabulary", "does not match", "'ü' (U+00FC)")
    assert not (tmp_path / "run" / "ckpt.npz").exists()


@pytest.mark.parametrize(
    "setup, code, fragments",
    [
        ("missing", 1, ["missing.txt", "corpus file not found"]),
        ("empty", 1, ["corpus is empty"]),
        ("short", 1, ["needed at least"]),
        ("latin1", 1, ["not UTF-8"]),
    ],
)
def test_corpus_errors(tmp_path, write_config, setup, code, fragments):
    corpus = tmp_path / ("missing.txt" if setup == "missing" else "c.txt")
    if setup == "empty":
        corpus.write_text("")
    elif setup == "short":
        corpus.write_text("too short")
    elif setup == "latin1":
        corpus.write_bytes("déjà vu ".encode("latin-1") * 50)
    r = run("train", "--config", small_config(write_config, corpus), "-q", "--set", "data.val_fraction=0")
    one_line_error(r, code, *fragments)


def test_too_small_validation_split_is_a_clear_error(tmp_path, write_config):
    corpus = tmp_path / "c.txt"
    corpus.write_text("twelve chars")
    r = run("train", "--config", small_config(write_config, corpus, batch_size=1), "-q")
    one_line_error(r, 1, "data.val_fraction 0.1 of 12 characters leaves 1 for validation")


@pytest.mark.parametrize(
    "yaml_extra, fragment",
    [
        ("model:\n  hiden_size: 5\n", "did you mean 'model.hidden_size'"),
        ("model:\n  hidden_size: big\n", "model.hidden_size must be an integer ≥ 1, got 'big'"),
        ("optim:\n  clip_value: -1\n", "optim.clip_value must be a number ≥ 0.0, or null, got -1"),
    ],
)
def test_config_errors_are_usage_errors(write_config, yaml_extra, fragment):
    cfg = write_config(f"data:\n  path: {CORPUS}\n" + yaml_extra)
    one_line_error(run("train", "--config", cfg), 2, fragment, "cfg.yaml")


def test_set_errors_are_one_line(tmp_path):
    r = run("train", "--config", SMOKE, "--out", tmp_path, "--set", "optim.learning_rate=0.1")
    one_line_error(r, 2, "optim.learning_rate", "did you mean 'optim.lr'")
    r = run("train", "--config", SMOKE, "--out", tmp_path, "--set", "train.steps=-3")
    one_line_error(r, 2, "train.steps must be an integer ≥ 1, got -3")


def test_bad_cli_arguments_exit_2(tmp_path):
    assert run("train").exit_code == 2
    assert run("train", "--config", SMOKE, "--steps", 0).exit_code == 2
    assert run("sample", "--checkpoint", tmp_path / "nope.npz").exit_code == 2
    assert run("sample").exit_code == 2


USAGE_ERRORS = [  # (arguments, what the one line says): Click's own usage errors, one of each kind
    (["train", "--nope"], "Error: No such option '--nope'. (charrnn train --help lists the options)"),
    (["train", "--steps"], "Error: Option '--steps' requires an argument. (charrnn train --help lists the options)"),
    (["eval", "--checkpoint", CONFIGS, "--device", "tpu"],
     "Error: Invalid value for '--device': 'tpu' is not one of 'cpu', 'gpu'."),
    (["sample"], "Error: Missing option '--checkpoint'. (charrnn sample --help lists the options)"),
    (["prepare"], "Error: Missing argument 'INPUTS...'. (charrnn prepare --help lists the options)"),
    (["nosuch"], "Error: No such command 'nosuch'. (charrnn --help lists the commands)"),
    (["--nope"], "Error: No such option '--nope'. (charrnn --help lists the commands)"),
    (["gradcheck", "extra"],
     "Error: Got unexpected extra argument (extra) (charrnn gradcheck --help lists the options)"),
    (["train", "--resume", CONFIGS + "/smoke.yaml", "--init-from", CONFIGS + "/smoke.yaml"],
     "Error: --resume and --init-from exclude each other"),  # one of the commands' own usage errors
]


@pytest.mark.parametrize("args, line", USAGE_ERRORS, ids=[" ".join(a[:2]) for a, _ in USAGE_ERRORS])
def test_a_usage_error_is_one_line_and_exit_2(args, line):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(line), r.stderr  # no Usage line, no blank line
    assert r.stdout == ""


@pytest.mark.slow
def test_usage_errors_are_one_line_from_the_program_itself():
    """Through ``main()`` as the installed ``charrnn`` runs it (not Click's test runner)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args, line in USAGE_ERRORS[:2] + USAGE_ERRORS[5:6]:
        r = subprocess.run([sys.executable, "-m", "charrnn", *args], env=env, capture_output=True, text=True,
                           timeout=60)
        assert (r.returncode, r.stderr, r.stdout) == (2, line + "\n", ""), r


def test_charrnn_alone_still_shows_its_help():
    r = run()
    assert "Usage: charrnn [OPTIONS] COMMAND" in r.output and "Error" not in r.output


@pytest.fixture
def trained(tmp_path):
    run("train", "--config", SMOKE, "--out", tmp_path / "good", "-q", "--steps", 5)
    return tmp_path / "good" / "ckpt.npz"


def damaged(kind, good, path):
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "pickle":
        z = dict(np.load(good, allow_pickle=False))
        z["vocab"] = np.array([{"evil": "object"}], dtype=object)
        np.savez(path, **z, allow_pickle=True)
    elif kind == "missing-key":
        z = dict(np.load(good, allow_pickle=False))
        del z["Whh"]
        np.savez(path, **z)
    elif kind == "wrong-shape":
        z = dict(np.load(good, allow_pickle=False))
        z["Whh"] = z["Whh"][:3]
        np.savez(path, **z)
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    return path


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("truncated", "damaged or truncated"),
        ("text", "not a charrnn checkpoint"),
        ("pickle", "pickled Python objects"),
        ("missing-key", "no 'Whh' array"),
        ("wrong-shape", "'Whh' is float32[3, 32], but the stored config needs float32[32, 32]"),
        ("npy", "not a charrnn checkpoint"),
    ],
)
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, trained, kind, fragment):
    bad = damaged(kind, trained, tmp_path / "bad.npz")
    for args in (["sample", "--checkpoint", bad], ["train", "--resume", bad],
                 ["train", "--config", SMOKE, "--init-from", bad, "--out", tmp_path / "x"]):
        one_line_error(run(*args), 1, fragment, "bad.npz")
    assert not (tmp_path / "x" / "ckpt.npz").exists()


def test_a_damaged_corpus_record_is_refused_in_one_line(tmp_path, trained):
    z = dict(np.load(trained, allow_pickle=False))
    z["corpus"] = np.array('{"bytes": "many"}')
    np.savez(tmp_path / "bad.npz", **z)
    one_line_error(run("train", "--resume", tmp_path / "bad.npz"), 1, "bad.npz: damaged checkpoint: 'corpus'")


def test_pickled_checkpoint_is_never_unpickled(tmp_path, trained, monkeypatch):
    import pickle

    def boom(*a, **k):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    bad = damaged("pickle", trained, tmp_path / "bad.npz")
    one_line_error(run("sample", "--checkpoint", bad), 1, "pickled")


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, trained, monkeypatch):
    before = trained.read_bytes()
    ck = ckpt_io.load(str(trained))

    def crash(f, **arrays):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save(str(trained), ck)
    assert trained.read_bytes() == before
    # no temporary left
    assert sorted(os.listdir(trained.parent)) == [".lock", "best.npz", "ckpt.npz", "config.yaml", "metrics.jsonl",
                                                  "status.json"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_files_are_written_with_the_mode_of_a_plainly_written_file(tmp_path, trained):
    """atomic_write's temporary files are 0600; what replaces them gets 0666 less the umask, as
    metrics.jsonl (written with open()) does."""
    old = os.umask(0o022)
    try:
        ckpt_io.save(str(tmp_path / "a.npz"), ckpt_io.load(str(trained)))
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        ckpt_io.save(str(tmp_path / "b.npz"), ckpt_io.load(str(trained)))
        assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    for name in ("ckpt.npz", "config.yaml"):
        mode = (trained.parent / name).stat().st_mode & 0o777
        assert mode == (trained.parent / "metrics.jsonl").stat().st_mode & 0o777, name


@pytest.mark.slow
def test_gradcheck_command_prints_a_line_per_model_and_fails_above_tolerance():
    r = run("gradcheck", "--cell", "rnn", "--layers", "2")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    models = ["rnn x2", "rnn x2 ln", "rnn x2 mult", "rnn x2 mult ln", "rnn x2 residual", "rnn x2 ln residual"]
    models += [m + " dropout 0.25" for m in models]
    assert [line[:32].rstrip() for line in lines[1:-1]] == models  # a header, a line per model, the verdict
    assert lines[-1].startswith("gradcheck passed")
    for cell in ("mingru", "minlstm"):  # no recurrent product: no mult rows
        r = run("gradcheck", "--cell", cell, "--dropout", "0")
        assert r.exit_code == 0, r.output
        rows = [line[:32].rstrip() for line in r.stdout.splitlines()[1:-1]]
        assert rows == [f"{cell} x1", f"{cell} x2", f"{cell} x2 residual"]
        arrays = [int(line[32:39]) for line in r.stdout.splitlines()[1:-1]]
        assert arrays == [5, 8, 8]  # Wxh, bh (per layer), Why, by, state0 (per layer): no Whh
    r = run("gradcheck", "--cell", "rnn", "--layers", "1", "--tol", "1e-30")
    assert r.exit_code == 1 and "gradcheck FAILED" in r.stdout and r.stdout.count("  FAIL") == 8


@pytest.mark.slow
def test_gradcheck_lists_the_layer_norm_models_of_the_gated_cells():
    r = run("gradcheck", "--cell", "gru", "--layers", "1", "--dropout", "0")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [line[:32].rstrip() for line in lines[1:-1]] == ["gru x1", "gru x1 ln", "gru x1 mult", "gru x1 mult ln"]
    assert [int(line[32:39]) for line in lines[1:-1]] == [6, 8, 8, 10]  # + gx, gh with layer_norm


def test_gradcheck_verbose_prints_a_row_per_array():
    r = run("gradcheck", "--cell", "rnn", "--layers", "1", "--dropout", "0", "--verbose")
    assert r.exit_code == 0, r.output
    rows = [line[33:47].rstrip() for line in r.stdout.splitlines()[1:-1]]
    assert rows == (["Wxh", "Whh", "bh", "Why", "by", "state0.0.h"] + ["Wxh", "Whh", "bh", "gx", "gh", "Why", "by",
                                                                       "state0.0.h"]
                    + ["Wxh", "Whh", "bh", "Wmx", "bm", "Why", "by", "state0.0.h"]
                    + ["Wxh", "Whh", "bh", "Wmx", "bm", "gx", "gh", "Why", "by", "state0.0.h"])


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", "--config", SMOKE, "--out", str(out), "--steps", "1000000",
         "--set", "train.checkpoint_every=0", "--set", "train.sample_every=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True,
    )
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() or (out / "metrics.jsonl").stat().st_size == 0:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted at step" in stderr and "--resume" in stderr
    ck = ckpt_io.load(str(out / "ckpt.npz"))
    assert ck.run.step >= 10
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] <= ck.run.step


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, write_config):
    corpus = first_chars(tmp_path, 5000)
    cfg = small_config(write_config, corpus, steps=50, checkpoint_every=1)
    out = tmp_path / "run"
    run("train", "--config", cfg, "-q", "--stop-at", 2)
    good = (out / "ckpt.npz").read_bytes()
    r = run("train", "--resume", out / "ckpt.npz", "-q", "--steps", 50)
    assert r.exit_code == 0  # sane settings: no divergence
    # Now a learning rate that blows the weights up, with clipping off.
    r = run("train", "--config", cfg, "-q", "--out", tmp_path / "boom", "--set", "optim.lr=1e38",
            "--set", "optim.clip_value=0", "--set", "train.checkpoint_every=1")
    line = one_line_error(r, 1, "diverged at step", "not finite")
    step = int(line.split("diverged at step ")[1].split(":")[0])
    ck = ckpt_io.load(str(tmp_path / "boom" / "ckpt.npz"))  # loads: all of its values are finite
    assert ck.run.step == step - 1
    assert all(np.isfinite(p).all() for p in ck.run.params.values())
    assert good  # the first run's checkpoint was written


def test_shell_completion_uses_clicks_mechanism():
    env = dict(os.environ, _CHARRNN_COMPLETE="bash_complete", COMP_WORDS="charrnn sample --to", COMP_CWORD="2")
    out = subprocess.run([sys.executable, "-c", "from charrnn.cli import main; main()"], env=env,
                         capture_output=True, text=True, cwd=ROOT).stdout
    assert out.split() == ["plain,--top-k", "plain,--top-p"]
    env["_CHARRNN_COMPLETE"] = "bash_source"
    script = subprocess.run([sys.executable, "-c", "from charrnn.cli import main; main()"], env=env,
                            capture_output=True, text=True, cwd=ROOT).stdout
    assert "_charrnn_completion" in script


def test_an_unwritable_run_directory_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run("train", "--config", SMOKE, "--out", blocker / "run", "-q")
    # the path that could not be made, and why ("run" alone is in every path: it proved nothing)
    line = one_line_error(r, 1, "cannot create the run directory", "Not a directory")
    assert line.startswith(f"Error: {blocker / 'run'}: "), line


def test_a_model_too_big_for_memory_is_a_one_line_error(tmp_path):
    r = run("train", "--config", SMOKE, "--out", tmp_path / "run", "-q", "--set", "model.hidden_size=1000000000000")
    one_line_error(r, 1, "out of memory", "Unable to allocate")


def test_train_data_without_a_config_uses_the_built_in_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = first_chars(tmp_path, 30000, "mytext.txt")
    assert run("prepare", corpus, "--out", tmp_path / "prepared", "-q").exit_code == 0
    for data, name in ((corpus, "mytext"), (tmp_path / "prepared", "prepared"),
                       (tmp_path / "prepared" / "meta.json", "prepared")):
        r = run("train", "--data", data, "--steps", 2, "-q", "--set", "model.hidden_size=16", "--overwrite")
        assert r.exit_code == 0, r.output
        ck = ckpt_io.load(str(tmp_path / "runs" / name / "ckpt.npz"))  # runs/<corpus name>
        assert ck.config.data.path == str(data) and ck.config.model.hidden_size == 16
        assert (ck.config.model.cell, ck.config.train.batch_size, ck.config.optim.name) == ("rnn", 32, "adam")


def test_train_data_overrides_the_config_path(tmp_path, write_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("aaaa bbbb " * 100, encoding="utf-8")
    b.write_text("cccc dddd " * 100, encoding="utf-8")
    cfg = small_config(write_config, a, steps=3)
    assert run("train", "--config", cfg, "--data", "b.txt", "-q").exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "runs" / "b-cfg" / "ckpt.npz"))  # named for the corpus and the config
    assert ck.config.data.path == str(b) and "".join(map(chr, ck.vocab)) == " cd"
    no_path = write_config("model:\n  hidden_size: 8\ntrain:\n  steps: 2\n  batch_size: 2\n  seq_length: 4\n",
                           name="nopath.yaml")
    assert run("train", "--config", no_path, "--data", b, "-q").exit_code == 0  # --data supplies data.path
    r = run("train", "--resume", tmp_path / "runs" / "b-cfg" / "ckpt.npz", "--data", "a.txt", "--steps", 6)
    one_line_error(r, 1, f"{a}: does not match the vocabulary of")
    one_line_error(run("train"), 2, "--data PATH", "--config NAME or FILE")


# --- The shipped configs, by name ------------------------------------------------------------

def test_configs_lists_the_shipped_configs_and_train_by_name_uses_one(tmp_path, monkeypatch):
    r = run("configs")
    assert r.exit_code == 0, r.output
    names = sorted(n[:-5] for n in os.listdir(CONFIGS))
    rows = r.stdout.splitlines()
    assert [row.split()[0] for row in rows] == names
    for name, row in zip(names, rows, strict=True):
        with open(os.path.join(CONFIGS, f"{name}.yaml"), encoding="utf-8") as f:
            assert row.endswith("  " + f.readline()[1:].strip()), row  # the file's first comment line
    assert f"(in {CONFIGS}; train one with: charrnn train --config NAME)" in r.stderr
    assert ", ".join(names) in " ".join(run("train", "--help").stdout.split())  # --help names them too
    hint = one_line_error(run("train"), 2, "--config NAME or FILE (e.g. --config default")
    assert "configs/default.yaml" not in hint
    monkeypatch.chdir(tmp_path)
    r = run("train", "--config", "smoke", "--steps", 3, "-q")
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(str(tmp_path / "runs" / "smoke" / "ckpt.npz")).run.step == 3
    one_line_error(run("train", "--config", "smok", "-q"), 2, "--config smok: no such file, nor a shipped config",
                   "did you mean 'smoke'?")


@pytest.mark.slow  # builds a wheel
def test_a_wheel_trains_a_shipped_config_by_name_outside_the_checkout(tmp_path):
    """From the files of a wheel alone (unpacked, as pip installs them, away from this
    checkout): `charrnn configs` lists the configs, and `--config smoke` trains on the bundled
    corpus, which the wheel carries beside them, into runs/smoke of the working directory."""
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ("charrnn", "configs", "data"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("charrnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "installed")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "installed"))
    r = subprocess.run([sys.executable, "-m", "charrnn", "configs"], cwd=work, capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [row.split()[0] for row in r.stdout.splitlines()] == sorted(n[:-5] for n in os.listdir(CONFIGS))
    assert str(tmp_path / "installed" / "charrnn" / "shipped" / "configs") in r.stderr
    r = subprocess.run([sys.executable, "-m", "charrnn", "train", "--config", "smoke", "--steps", "3", "-q"],
                       cwd=work, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    ck = ckpt_io.load(str(work / "runs" / "smoke" / "ckpt.npz"))
    assert ck.run.step == 3
    assert ck.config.data.path == str(tmp_path / "installed" / "charrnn" / "shipped" / "data" / "shakespeare_tiny.txt")
    shipped = tmp_path / "installed" / "charrnn" / "shipped"
    assert os.listdir(work) == ["runs"] and sorted(os.listdir(shipped)) == ["configs", "data"]
    assert sorted(os.listdir(shipped / "configs")) == sorted(os.listdir(CONFIGS))  # nothing written beside them


def test_a_run_on_data_is_named_for_the_corpus_and_the_config(tmp_path, write_config, monkeypatch):
    """--data PATH without --out: runs/<corpus> with the built-in config, runs/<corpus>-<config>
    with --config (whose own train.out_dir names the run of its own corpus), so that one config
    on two corpora, or one corpus under two configs, never meet in one directory; --out and
    --set train.out_dir=DIR still choose."""
    monkeypatch.chdir(tmp_path)
    book, other = first_chars(tmp_path, 3000, "book.txt"), first_chars(tmp_path, 3000, "other.txt")
    lstm = write_config(f"data:\n  path: {other}\nmodel:\n  cell: lstm\n  hidden_size: 8\ntrain:\n"
                        "  steps: 2\n  batch_size: 2\n  seq_length: 4\n  out_dir: shared\n", name="lstm.yaml")
    small = ["--set", "model.hidden_size=8", "--set", "train.batch_size=2", "--set", "train.seq_length=4"]
    for args, where in ((["--data", book, *small], "runs/book"),
                        (["--config", lstm, "--data", book], "runs/book-lstm"),
                        (["--config", lstm, "--data", other], "runs/other-lstm"),
                        (["--config", lstm], "shared"),  # no --data: the config's own directory
                        (["--config", lstm, "--data", book, "--set", f"train.out_dir={tmp_path / 'mine'}"], "mine"),
                        (["--config", lstm, "--data", book, "--out", tmp_path / "out"], "out")):
        r = run("train", *args, "-q", "--steps", 2)
        assert r.exit_code == 0, (args, r.output)
        assert f"checkpoint {tmp_path / where / 'ckpt.npz'}" in r.stderr, (args, r.stderr)
        assert ckpt_io.load(str(tmp_path / where / "ckpt.npz")).config.train.out_dir == str(tmp_path / where)


def test_set_on_resume_is_refused_naming_steps_and_minutes(tmp_path):
    """--set train.max_minutes=... (or train.steps) on --resume: refused, naming the options that do it."""
    run("train", "--config", SMOKE, "--out", tmp_path, "-q", "--stop-at", 2)
    r = run("train", "--resume", tmp_path / "ckpt.npz", "--set", "train.max_minutes=30")
    one_line_error(r, 2, "--steps N makes it N steps long, --minutes M gives it M more minutes")
