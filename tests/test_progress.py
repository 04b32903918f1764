"""What a run shows on stderr (charrnn/progress.py): plain lines when stderr is a file, the bar
on a terminal of 80 columns, the banner of a run of several processes."""

import fcntl
import json
import math
import os
import pty
import re
import struct
import sys
import termios
import types

import numpy as np
import pytest
from conftest import run, small_config

from charrnn import progress as P


def bits(nats):
    return nats / math.log(2)


def records(run_dir):
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_by_default_a_redirected_stderr_gets_a_line_every_ten_seconds_and_the_last(tmp_path, write_config, corpus):
    """A fast model logs many steps a second (configs/default.yaml: 25 steps, 66 steps a second
    here, 76 KB of lines in its 5 minutes): by default (train.log_seconds 10) a file gets the
    first log step's line, then at most one every 10 seconds, and the last."""
    cfg = small_config(write_config, corpus, steps=20, eval_every=10, log_every=5, sample_every=0)
    r = run("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("step ") and " | " in line]
    assert [line.split(" | ")[0] for line in lines] == ["step 5/20", "step 20/20"]
    assert [m["step"] for m in records(tmp_path / "run") if "loss" in m] == [5, 10, 15, 20]  # the log has all


def test_a_redirected_stderr_gets_one_plain_line_per_log_step(tmp_path, write_config, corpus):
    """click's runner gives stderr as a file, not a terminal: no bar refresh (no carriage return),
    one line per train.log_every steps and at the last, each with the validation of its step
    (train.log_seconds null: every log step's line)."""
    cfg = small_config(write_config, corpus, steps=20, eval_every=10, log_every=5, sample_every=10,
                       log_seconds="null")
    r = run("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    assert "\r" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("step ") and " | " in line]
    assert [line.split(" | ")[0] for line in lines] == ["step 5/20", "step 10/20", "step 15/20", "step 20/20"]
    log = records(tmp_path / "run")
    train = {m["step"]: m["window_loss"] for m in log if "loss" in m}
    val = {m["step"]: m["val_loss"] for m in log if "val_loss" in m}
    for line in lines:
        step = int(line.split()[1].split("/")[0])
        assert f" | train {train[step]:.3f} nats ({bits(train[step]):.3f} bits) | " in line, line
        shown = val[max(s for s in val if s <= step)] if any(s <= step for s in val) else None
        assert (shown is None) == (" | val " not in line), line
        if shown is not None:  # step 10's line has step 10's validation, which came after its log record
            assert f" | val {shown:.3f} nats ({bits(shown):.3f} bits) | " in line, line
        assert re.search(r" \| [\d,]+ chars/s \| elapsed [\dhms]+ \| eta [\dhms]+$", line), line
    assert r.stderr.index("----- sample at step 10 -----") < r.stderr.index("step 10/20 |")


def test_the_plain_line_says_the_time_left_by_the_steps_or_the_budget(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    with P.Progress(None, 1000, 400, quiet=False) as p:  # resumed at 400: 60 s for the 100 steps since
        now[0] = 160.0
        p.show(train=(1.5, "mean of the last 100 steps"), speed=6211.4)
        assert p.line(500) == ("step 500/1000 | train 1.500 nats (2.164 bits) | 6,211 chars/s | elapsed 1m00s | "
                               "eta 5m00s")
        p.show(train=(1.5, "x"), speed=6211.4, left_s=42.4)  # train.max_minutes ends it sooner
        assert p.line(500).endswith("| eta 42s")
    assert P.clock(3 * 3600 + 5 * 60 + 9) == "3h05m" and P.clock(-1) == "0s"


def fake_terminal(monkeypatch, columns):
    """stderr a real pseudo-terminal ``columns`` wide; returns the master's fd to read it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 (closed by the test)
    monkeypatch.setattr(sys, "stderr", stream)
    return master, stream


def read_all(fd):
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out.decode("utf-8")
        if not chunk:
            return out.decode("utf-8")
        out += chunk


def bar_at(monkeypatch, columns, step, total, speed):
    """The bar's last refresh on a pseudo-terminal ``columns`` wide."""
    master, stream = fake_terminal(monkeypatch, columns)
    try:
        with P.Progress(None, total, 0, quiet=False) as p:
            assert not p.plain
            p.bar.update(step)
            p.show(train=(1.5234, "mean of the last 100 steps"), speed=speed)
            p.show(val=1.6131)
            p.bar.refresh()
            stream.flush()
            return read_all(master).replace("\r\n", "\n").split("\r")[-1].rstrip("\n")
    finally:
        stream.close()
        os.close(master)


def test_the_bar_at_80_columns_shows_the_speed_and_the_validation_loss(monkeypatch):
    shown = bar_at(monkeypatch, 80, 400, 19000, 6211.4)
    assert re.fullmatch(r"400/19000 train 1\.52 \(2\.20 bits\) val 1\.61 \(2\.33 bits\) 6,211 chars/s "
                        r"eta [\d:]+ \|.*", shown), shown
    assert len(shown) <= 80, (len(shown), shown)
    # Longer figures (a GPU's speed, a 5-digit step): the time left is what goes, not the speed.
    shown = bar_at(monkeypatch, 80, 12400, 19000, 612345.6)
    assert shown.startswith("12400/19000 train 1.52 (2.20 bits) val 1.61 (2.33 bits) 612,346 chars/s"), shown
    assert len(shown) <= 80, (len(shown), shown)
    wide = bar_at(monkeypatch, 160, 400, 19000, 6211.4)
    assert len(wide) > 120 and wide.endswith("|")  # on a wide terminal the bar takes the rest


def test_no_plain_lines_when_quiet(capsys):
    with P.Progress(None, 10, 0, quiet=True) as p:
        p.bar.update(1)
        p.show(train=(1.0, "x"), speed=1.0)
        p.bar.update(1)
    assert capsys.readouterr().err == ""


def banner_of(comm, monkeypatch, write_config, corpus, sets=(), **train):
    from charrnn import config as C

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    cfg = C.load(small_config(write_config, corpus, batch_size=32, **train), list(sets))
    text = types.SimpleNamespace(train=np.zeros(90), val=np.zeros(10), vocab=list("abc"))
    spec = types.SimpleNamespace(describe=lambda: "rnn, 1 layer(s) of 16")
    run_ = types.SimpleNamespace(params={"Wxh": np.zeros((3, 16))})
    return P.banner(cfg, text, spec, run_, "RUN", "new", comm).splitlines()


def test_the_banner_says_how_many_processes_and_threads_train(monkeypatch, write_config, corpus):
    lines = banner_of(types.SimpleNamespace(rank=0, size=4), monkeypatch, write_config, corpus)
    assert lines[3] == "batches   B=32 streams × T=8 characters; 20 steps"
    assert lines[4] == ("processes 4 (MPI), 8 of the 32 streams each; BLAS threads per process 2 "
                        "(OPENBLAS_NUM_THREADS), 8 in all")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    for var in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert P.processes_line(types.SimpleNamespace(size=2), 32).startswith(
        "processes 2 (MPI), 16 of the 32 streams each; BLAS threads per process not set (the library's default")
    one = banner_of(types.SimpleNamespace(rank=0, size=1), monkeypatch, write_config, corpus)
    assert one[3] == "batches   B=32 streams × T=8 characters; 20 steps; BLAS threads 2 (OPENBLAS_NUM_THREADS)"
    assert len(one) == 5 and not any(line.startswith("processes") for line in one)


def test_the_banner_says_when_the_length_is_fitted_to_the_budget(monkeypatch, write_config, corpus):
    """Under train.fit_to_budget train.steps is only the bound: the banner says so, twice."""
    cosine = ["optim.schedule=cosine"]
    lines = banner_of(None, monkeypatch, write_config, corpus, cosine + ["train.fit_to_budget=true"], max_minutes=9.6)
    assert "cosine to " in lines[2] and " at the fitted end (step 20 at most) after " in lines[2], lines[2]
    assert lines[3] == ("batches   B=32 streams × T=8 characters; 20 steps at most, as many as fit in 9.6 minutes "
                        "(train.fit_to_budget); BLAS threads 2 (OPENBLAS_NUM_THREADS)")
    plain = banner_of(None, monkeypatch, write_config, corpus, cosine, max_minutes=9.6)
    assert "at step 20 after" in plain[2] and plain[3].endswith("; 20 steps; BLAS threads 2 (OPENBLAS_NUM_THREADS)")


@pytest.mark.parametrize("every_s, shown", [(None, list(range(4, 41, 4))), (10.0, [4, 16, 28, 40])])
def test_log_seconds_thins_the_plain_lines_and_keeps_the_last(monkeypatch, capsys, every_s, shown):
    """A step a second, a log step every 4: with train.log_seconds 10 a line is printed only when
    10 s have passed since the last printed one (step 4's at 5 s, 16's at 17 s, ...); the last
    one is always printed."""
    now = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    with P.Progress(None, 40, 0, quiet=False, every_s=every_s) as p:
        assert p.plain  # capsys's stderr is not a terminal
        for step in range(1, 41):
            now[0] += 1
            p.bar.update(1)
            if step % 4 == 0:
                p.show(train=(1.0, "x"), speed=1.0)
    lines = capsys.readouterr().err.splitlines()
    assert [int(line.split()[1].split("/")[0]) for line in lines] == shown, lines


def test_log_seconds_reaches_the_progress_of_a_run(tmp_path, write_config, corpus):
    cfg = small_config(write_config, corpus, steps=20, eval_every=0, log_every=5)
    r = run("train", "--config", cfg, "--set", "train.log_seconds=1000")
    assert r.exit_code == 0, r.output
    assert [line.split(" | ")[0] for line in r.stderr.splitlines() if " | " in line] == ["step 5/20", "step 20/20"]
    assert len([m for m in records(tmp_path / "run") if "loss" in m]) == 4  # the metrics log keeps every log step
