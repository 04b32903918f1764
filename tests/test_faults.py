"""The fault matrix: each test injects a real fault into a real ``charrnn`` process (kill -9,
SIGTERM, SIGINT, a second process, a file-size limit that makes writes fail as on a full
disk, a corpus edited under a run) and checks that nothing was lost: the last checkpoint
loads, and a resumed run ends bitwise equal to one that was never disturbed.

docs/robustness.md has the matrix as a table. The kill -9 trials are marked ``slow``
(``pytest -m "not slow"`` skips them locally; CI runs everything).
"""

import json
import os
import random
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import ROOT, one_line_error, run

from charrnn import checkpoint as ckpt_io

# One BLAS thread: the machine is small and shared, and a run and its reference must do
# the same arithmetic to be compared bit for bit.
ENV = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TEMPORARY = re.compile(r"\..*\.tmp")


def write_config(path, corpus, hidden_size=16, **train):
    settings = dict(seq_length=8, batch_size=2, steps=30, log_every=3, sample_every=0, checkpoint_every=1,
                    eval_every=10)
    settings.update(train)
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    path.write_text(f"data:\n  path: {corpus}\nmodel:\n  hidden_size: {hidden_size}\n"
                    f"optim:\n  lr: 0.01\ntrain:\n{lines}\n", encoding="utf-8")
    return path


def as_at_a_terminal():
    """In the child, before it runs: Ctrl-C as a terminal delivers it. A shell starts background
    jobs with SIGINT ignored, which their children inherit, and Python then installs no
    KeyboardInterrupt handler: a suite run in the background would see SIGINT do nothing. SIGHUP
    too, which ``nohup`` ignores (and charrnn then leaves ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start(*args, preexec_fn=None, **kw):
    def before():  # the caller's own set-up (a file-size limit) too
        as_at_a_terminal()
        if preexec_fn is not None:
            preexec_fn()

    return subprocess.Popen([sys.executable, "-m", "charrnn", "train", *map(str, args)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=before, **kw)


def train(*args, timeout=300, **kw):
    """Run ``charrnn train ARGS`` to its end; the CompletedProcess."""
    proc = start(*args, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"charrnn train {' '.join(map(str, args))} did not end within {timeout} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition, proc, timeout=60, poll=0.002):
    """Poll ``condition()`` until true; fails if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before the moment to inject the fault: {err}")
        assert time.monotonic() < deadline, "timed out waiting for the moment to inject the fault"
        time.sleep(poll)


def holds_lock(run_dir, proc):
    """True once ``proc`` holds the run directory's lock (it writes its PID into RUN/.lock)."""
    try:
        return (run_dir / ".lock").read_text() == f"{proc.pid}\n"
    except OSError:
        return False


def temporaries(run_dir):
    return sorted(n for n in os.listdir(run_dir) if TEMPORARY.fullmatch(n))


def metrics(run_dir):
    """metrics.jsonl without its timings, every line parsed (a torn line fails here)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed_s")} for line in lines]


def npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_checkpoint(a, b):
    """Every array of two checkpoints equal to the bit, but the wall time and the run directory."""
    za, zb = npz(a), npz(b)
    assert sorted(za) == sorted(zb)
    for k in za:
        if k == "elapsed_s":
            continue
        x, y = za[k], zb[k]
        if k == "config":  # the same but for train.out_dir
            x, y = (json.loads(str(c)) for c in (x, y))
            x["train"].pop("out_dir"), y["train"].pop("out_dir")
        elif x.dtype.kind == "f":
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), k
            continue
        assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, k


def assert_same_run(a, b):
    """Run directory ``a`` ends exactly as ``b``: checkpoint, best model and metrics."""
    assert_same_checkpoint(a / "ckpt.npz", b / "ckpt.npz")
    assert (a / "best.npz").exists() == (b / "best.npz").exists()
    if (b / "best.npz").exists():
        assert_same_checkpoint(a / "best.npz", b / "best.npz")
    assert metrics(a) == metrics(b)


def status(run_dir):
    """RUN/status.json, parsed."""
    return json.loads((run_dir / "status.json").read_text(encoding="utf-8"))


def assert_status(run_dir, pid, **expected):
    """RUN/status.json says ``expected`` (and was written by ``pid``, unless None, with a time)."""
    got = status(run_dir)
    assert set(got) == {"status", "signal", "exit_code", "step", "checkpoint", "message", "resume", "time", "pid"}
    assert pid is None or got["pid"] == pid, got
    assert got["time"].endswith("+00:00"), got
    for k, v in expected.items():
        assert got[k] == v, (k, got)
    return got


def held_step(stderr):
    """The step the message says the checkpoint holds."""
    m = re.search(r"holds step (\d+)", stderr) or re.search(r"interrupted at step (\d+)", stderr)
    assert m, stderr
    return int(m.group(1))


# --- kill -9 at random moments -----------------------------------------------------------

KILLS = 20  # trials in which the kill landed before the run ended (at least)


def _kill_trial(i, cfg, run_dir, t_run):
    """Start the run, kill -9 it after a random delay, then finish it with --resume (or from
    the start, when it died before its first checkpoint). What the trial saw, for the report."""
    delay = random.Random(1000 + i).uniform(0, 0.9 * t_run)
    proc = start("--config", cfg, "--out", run_dir, "-q")
    wait_for(lambda: holds_lock(run_dir, proc), proc)
    time.sleep(delay)
    proc.kill()
    proc.communicate()  # waits, and closes its pipes
    seen = {"trial": i, "delay": round(delay, 3), "exit": proc.returncode, "temporaries": temporaries(run_dir)}
    ckpt = run_dir / "ckpt.npz"
    if ckpt.exists():
        seen["step"] = ckpt_io.load(str(ckpt)).run.step  # the last checkpoint loads
        done = train("--resume", ckpt, "-q")
    else:
        seen["step"] = None
        done = train("--config", cfg, "--out", run_dir, "-q")
    assert done.returncode == 0, (seen, done.stderr)
    seen["left"] = temporaries(run_dir)
    return seen


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus)
    ref = tmp_path / "ref"
    proc = start("--config", cfg, "--out", ref, "-q")
    wait_for(lambda: holds_lock(ref, proc), proc)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    t_run = time.monotonic() - t0  # from taking the lock to the end: where a kill can land
    seen = []
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: half the wall time
        # A run may end before its kill (the machine's speed varies): then more trials, up to a bound.
        while sum(s["exit"] == -signal.SIGKILL for s in seen) < KILLS and len(seen) < 2 * KILLS:
            n = len(seen)
            seen += pool.map(lambda i: _kill_trial(i, cfg, tmp_path / f"t{i}", t_run), range(n, n + 2))
    killed = [s for s in seen if s["exit"] == -signal.SIGKILL]
    assert len(killed) >= KILLS, seen
    for s in seen:
        assert s["exit"] in (0, -signal.SIGKILL), s
        assert s["left"] == [], s  # whatever a kill left behind is gone after the resumed run
        assert_same_run(tmp_path / f"t{s['trial']}", ref)
    steps = [s["step"] for s in killed]
    print(f"\n{len(killed)} kill -9 trials ({len(seen)} started) over {t_run:.2f} s runs; checkpoint step at "
          f"the kill: {steps}; temporary files left by a kill: {sum(bool(s['temporaries']) for s in killed)}")
    # The trials are worth something only if the kills landed mid-run, not all before or after it.
    assert sum(s is not None and 0 < s < 30 for s in steps) >= KILLS // 3, steps


@pytest.mark.slow
def test_a_finished_run_resumed_with_nothing_to_do_still_removes_what_a_kill_left(tmp_path, corpus):
    """A kill -9 during a finished run's last write (its status.json, a checkpoint) leaves a
    temporary; the resume that then has nothing to do must still remove it, as any resume does
    (test_kill_9_at_random_moments_loses_nothing once found one left: a kill at the last step)."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=6, eval_every=0, log_every=1)
    run_dir = tmp_path / "run"
    assert train("--config", cfg, "--out", run_dir, "-q").returncode == 0
    for name in (".status.json.897278d3.tmp", ".ckpt.npz.abcd1234.tmp"):
        (run_dir / name).write_bytes(b"half written")
    (run_dir / ".loss.png.abcd1234.tmp").write_text("a plot being written: not the run's to remove")
    done = train("--resume", run_dir / "ckpt.npz", "-q")
    assert done.returncode == 0 and "nothing to do" in done.stderr, done.stderr
    assert temporaries(run_dir) == [".loss.png.abcd1234.tmp"]


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_leaves_a_temporary_that_the_next_run_removes(tmp_path, corpus):
    # A model whose checkpoint (9 MB) takes a while to write, so the kill lands inside the write.
    cfg = write_config(tmp_path / "cfg.yaml", corpus, hidden_size=1024, steps=6, eval_every=0, log_every=1)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir, "-q")
    wait_for(lambda: (run_dir / "ckpt.npz").exists() and temporaries(run_dir), proc, poll=0.0005)
    proc.kill()
    proc.communicate()  # waits, and closes its pipes
    left = temporaries(run_dir)
    assert left and left[0].startswith(".ckpt.npz."), left  # the fault happened where meant
    step = ckpt_io.load(str(run_dir / "ckpt.npz")).run.step  # the previous checkpoint is whole
    (run_dir / ".loss.png.abcd1234.tmp").write_text("a plot being written: not the run's to remove")
    done = train("--resume", run_dir / "ckpt.npz", "-q")
    assert done.returncode == 0, done.stderr
    assert temporaries(run_dir) == [".loss.png.abcd1234.tmp"]
    ref = tmp_path / "ref"
    assert train("--config", cfg, "--out", ref, "-q").returncode == 0
    assert_same_run(run_dir, ref)
    assert step >= 1


# --- SIGTERM, SIGHUP (and Ctrl-C) --------------------------------------------------------------

STOPS = [pytest.param(signal.SIGINT, 130, "Ctrl-C", "SIGINT", id="sigint", marks=pytest.mark.slow),
         pytest.param(signal.SIGTERM, 143, "SIGTERM", "SIGTERM", id="sigterm"),
         pytest.param(signal.SIGHUP, 129, "SIGHUP", "SIGHUP", id="sighup", marks=pytest.mark.slow)]


@pytest.mark.parametrize("signum, code, said, name", STOPS)
def test_a_stop_signal_during_training_saves_and_resumes_exactly(tmp_path, corpus, signum, code, said, name):
    """SIGTERM (kill, a scheduler), SIGHUP (the terminal or ssh session closed), Ctrl-C: the step
    finishes, the checkpoint is saved, the exit code is 128 + the signal, RUN/status.json says so."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=10**6, checkpoint_every=0, eval_every=0, log_every=5)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir)  # not quiet: the banner and bar go to stderr too
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").stat().st_size, proc)
    assert_status(run_dir, proc.pid, status="running", exit_code=None, step=None, resume=None)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and out == ""
    step = held_step(err)
    ckpt = str(run_dir / "ckpt.npz")
    assert f"interrupted at step {step} by {said}; checkpoint saved to {ckpt}" in err
    assert f"continue with: charrnn train --resume {ckpt}" in err
    assert ckpt_io.load(ckpt).run.step == step >= 5
    assert_status(run_dir, proc.pid, status="interrupted", signal=name, exit_code=code, step=step, checkpoint=ckpt,
                  message=err.splitlines()[-1], resume=f"charrnn train --resume {ckpt}")
    done = train("--resume", run_dir / "ckpt.npz", "-q", "--steps", step + 12)
    assert done.returncode == 0, done.stderr
    assert_status(run_dir, None, status="finished", signal=None, exit_code=0, step=step + 12)
    ref = tmp_path / "ref"
    assert train("--config", cfg, "--out", ref, "-q", "--steps", step + 12).returncode == 0
    assert_same_run(run_dir, ref)


# The stop condition of the call a signal stopped: what its printed command must reproduce.
LENGTHS = [pytest.param(["--steps", 400], "finished", id="steps"),
           pytest.param(["--stop-at", 400], "paused", id="stop-at"),
           pytest.param(["--minutes", 0.04], "time budget", id="minutes")]


@pytest.mark.slow
@pytest.mark.parametrize("length, ending", LENGTHS)
def test_the_printed_command_goes_on_to_where_the_stopped_call_was_going(tmp_path, corpus, length, ending):
    """A call with --steps 400 (the run's length), --stop-at 400 (a pause) or --minutes (a time
    budget) stopped by SIGTERM: the command its last line prints, and status.json's "resume",
    run for real, stop where the call would have (step 400, finished or paused, exactly as the
    uninterrupted call; or the same time budget, reached)."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=10**6, checkpoint_every=0, eval_every=0, log_every=5)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir, "-q", *length)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").stat().st_size, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    step = held_step(err)
    assert 5 <= step < 400, err  # stopped on its way
    printed = err.strip().split("continue with: ")[1]
    assert status(run_dir)["resume"] == printed
    command = shlex.split(printed)
    assert command[:3] == ["charrnn", "train", "--resume"] and command[3] == str(run_dir / "ckpt.npz")
    # (a --minutes budget is in the checkpoint: the command leaves it out)
    assert command[4:] == ([] if length[0] == "--minutes" else list(map(str, length)))
    done = train(*command[2:], "-q")
    assert done.returncode == 0, done.stderr
    ck = ckpt_io.load(str(run_dir / "ckpt.npz"))
    assert status(run_dir)["status"] == ending
    if length[0] == "--minutes":  # the budget of the first call: the run's training time reached it, once
        assert ck.config.train.max_minutes == 0.04 and "(time budget)" in done.stderr
        assert 60 * 0.04 <= ck.run.elapsed_s < 60 * 0.04 + 10
        return
    assert ck.run.step == 400
    ref = tmp_path / "ref"
    assert train("--config", cfg, "--out", ref, "-q", *length).returncode == 0
    assert_same_run(run_dir, ref)


@pytest.mark.slow
@pytest.mark.parametrize("second", [None, signal.SIGTERM, signal.SIGINT], ids=["once", "twice", "then-ctrl-c"])
def test_sigterm_during_a_checkpoint_write(tmp_path, corpus, second):
    """SIGTERM while the temporary checkpoint file is being written: the write completes and
    the run stops there (143). A second signal a few ms later stops it at once: the write is
    abandoned or done, and either way the checkpoint is whole and the message says its step."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, hidden_size=1024, steps=10**6, eval_every=0, log_every=1)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir, "-q")
    # Not the first save: with a second signal there must be a previous checkpoint to keep.
    wait_for(lambda: (run_dir / "ckpt.npz").exists() and temporaries(run_dir), proc, poll=0.0005)
    proc.send_signal(signal.SIGTERM)
    if second is not None:
        time.sleep(0.005)
        proc.send_signal(second)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and err.count("\n") == 1, err
    step = held_step(err)
    assert ckpt_io.load(str(run_dir / "ckpt.npz")).run.step == step >= 1
    if second is not None and "stopped at once" in err:
        name = "Ctrl-C" if second == signal.SIGINT else "SIGTERM"
        assert (f"stopped at once by a second {name}; the last checkpoint, {run_dir / 'ckpt.npz'}, "
                f"holds step {step}") in err
        assert proc.returncode == (130 if second == signal.SIGINT else 143), err
    else:  # one signal, or the second came after the run had saved and stopped: then it is ignored
        assert f"interrupted at step {step} by SIGTERM; checkpoint saved" in err
        assert proc.returncode == 143, err
    assert temporaries(run_dir) == []
    done = train("--resume", run_dir / "ckpt.npz", "-q", "--steps", step + 2)
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref"
    assert train("--config", cfg, "--out", ref, "-q", "--steps", step + 2).returncode == 0
    assert_same_run(run_dir, ref)


# --- Double Ctrl-C -------------------------------------------------------------------------

@pytest.mark.parametrize("gap", [pytest.param(0.0, marks=pytest.mark.slow), 0.003,
                                 pytest.param(0.02, marks=pytest.mark.slow)])
def test_double_ctrl_c_exits_130_with_the_last_checkpoint_whole(tmp_path, corpus, gap):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=10**6, checkpoint_every=7, eval_every=0, log_every=1)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir, "-q")
    wait_for(lambda: (run_dir / "ckpt.npz").exists(), proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line: what happened, the step held, how to go on
    step = held_step(err)
    ck = ckpt_io.load(str(run_dir / "ckpt.npz"))  # intact and loadable
    assert ck.run.step == step
    assert temporaries(run_dir) == []
    assert_status(run_dir, proc.pid, status="interrupted", signal="SIGINT", exit_code=130, step=step,
                  message=lines[0])
    assert train("--resume", run_dir / "ckpt.npz", "-q", "--steps", step + 3).returncode == 0


def test_a_second_sighup_stops_at_once_with_the_last_checkpoint_whole(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=10**6, checkpoint_every=7, eval_every=0, log_every=1)
    run_dir = tmp_path / "run"
    proc = start("--config", cfg, "--out", run_dir, "-q", "--stop-at", 10**5)  # a pause: the line repeats it
    wait_for(lambda: (run_dir / "ckpt.npz").exists(), proc)
    proc.send_signal(signal.SIGHUP)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 129, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    step = held_step(err)
    assert err.startswith("stopped at once by a second SIGHUP; ") or err.startswith(
        f"interrupted at step {step} by SIGHUP; "), err  # (the second one may land after the save)
    assert ckpt_io.load(str(run_dir / "ckpt.npz")).run.step == step
    assert temporaries(run_dir) == []
    command = f"charrnn train --resume {run_dir / 'ckpt.npz'} --stop-at 100000"
    assert err.strip().endswith(f"continue with: {command}"), err
    assert_status(run_dir, proc.pid, status="interrupted", signal="SIGHUP", exit_code=129, step=step,
                  message=err.strip(), resume=command)


# --- Ctrl-C outside the training loop ---------------------------------------------------------

def fifo(tmp_path):
    """A named pipe: a process reading it blocks until we write, so that a signal reaches it
    exactly while it loads a text (deterministic, unlike sleeping for a guessed time)."""
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["train", pytest.param("eval", marks=pytest.mark.slow)])
def test_ctrl_c_while_loading_a_text_exits_130_quietly(tmp_path, corpus, command):
    pipe = fifo(tmp_path)
    if command == "train":
        args = ["train", "--config", write_config(tmp_path / "cfg.yaml", pipe), "--out", tmp_path / "run"]
    else:
        cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=3)
        assert train("--config", cfg, "--out", tmp_path / "run", "-q").returncode == 0
        args = ["eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--text", pipe]
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_at_a_terminal)
    fd = open_pipe_for_writing(pipe, proc)
    try:
        os.write(fd, b"some text, and more to come")
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == 130, err
    assert "Aborted" not in err and "Traceback" not in err and len(err.splitlines()) <= 1, err


@pytest.mark.slow
def test_ctrl_c_in_sample_exits_130_quietly(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=3)
    assert train("--config", cfg, "--out", tmp_path / "run", "-q").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample",
                             "--checkpoint", str(tmp_path / "run" / "ckpt.npz"),
                             "-n", "100000000", "--seed", "0"], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_at_a_terminal)
    assert proc.stdout.read(100)  # it is generating
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Aborted" not in err and b"Traceback" not in err and len(err.splitlines()) <= 1, err


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143),
                                          pytest.param(signal.SIGHUP, 129, marks=pytest.mark.slow)],
                         ids=["sigterm", "sighup"])
def test_a_stop_signal_in_sample_exits_quietly(tmp_path, corpus, signum, code):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=3)
    assert train("--config", cfg, "--out", tmp_path / "run", "-q").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample",
                             "--checkpoint", str(tmp_path / "run" / "ckpt.npz"),
                             "-n", "100000000", "--seed", "0"], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_at_a_terminal)
    assert proc.stdout.read(100)  # it is generating
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (code, b"")


# --- The temporary copy of a pipe ------------------------------------------------------------

def copies(tmp):
    """The pipe copies (``charrnn-XXXXXXXX.txt``) in the folder the child's TMPDIR names."""
    return sorted(n for n in os.listdir(tmp) if n.startswith("charrnn-"))


def start_on_a_pipe(tmp_path, corpus, command, preexec_fn=None):
    """``charrnn train`` (or ``eval``) reading its text from a named pipe, with TMPDIR a folder of
    the test's own, so that the check for a copy left behind is exact. (proc, pipe, TMPDIR)."""
    pipe, tmp = fifo(tmp_path), tmp_path / "tmp"
    tmp.mkdir()
    if command == "train":
        args = ["train", "--config", write_config(tmp_path / "cfg.yaml", pipe), "--out", tmp_path / "run", "-q"]
    else:
        cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=3)
        assert train("--config", cfg, "--out", tmp_path / "run", "-q").returncode == 0
        args = ["eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--text", pipe]

    def before():
        as_at_a_terminal()
        if preexec_fn is not None:
            preexec_fn()

    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], env=dict(ENV, TMPDIR=str(tmp)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=before)
    return proc, pipe, tmp


@pytest.mark.parametrize("command", ["train", pytest.param("eval", marks=pytest.mark.slow)])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["sigint", "sigterm", "sighup"])
def test_a_signal_while_a_pipe_is_copied_ends_quietly_and_removes_the_copy(tmp_path, corpus, command, signum, code):
    """The writer keeps the pipe open and has written a line: the signal lands while the text is
    being copied into the temporary file (SIGTERM's default action would end the process there
    and leave the copy behind)."""
    proc, pipe, tmp = start_on_a_pipe(tmp_path, corpus, command)
    fd = open_pipe_for_writing(pipe, proc)
    try:
        os.write(fd, b"some text, and more to come\n")
        # Copying now, and blocked in the read of its next chunk: a signal that landed just before
        # that read began would wait for the read to return (as in any Python program).
        wait_for(lambda: copies(tmp) and reading_a_pipe(proc.pid), proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert (proc.returncode, err) == (code, ""), err
    assert copies(tmp) == []
    if command == "train":  # the run directory it had made (holding nothing but its lock) went too
        assert not (tmp_path / "run").exists()


def reading_a_pipe(pid):
    """Whether process ``pid`` sleeps in a read of a pipe (Linux: /proc/PID/wchan, e.g.
    ``pipe_read`` or ``anon_pipe_read``)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "pipe_read" in f.read()
    except OSError:
        return False


def write_all(pipe, data, proc):
    """Feed ``data`` into the pipe and close it; the reader may stop reading first (it failed)."""
    fd = open_pipe_for_writing(pipe, proc)
    try:
        os.write(fd, data)
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("fault", ["full-disk", "invalid-utf8", "cannot-open"])
def test_a_failure_while_a_pipe_is_copied_is_one_line_and_removes_the_copy(tmp_path, corpus, fault):
    """The other ways out of the copy: a full disk (RLIMIT_FSIZE of 100 kB, 300 kB through the
    pipe), a text that is not UTF-8 (refused once copied), a device that cannot be opened
    (/dev/tty in a process with no terminal: ENXIO, after the copy's file was made)."""
    limit = file_size_limit(100_000) if fault == "full-disk" else None
    if fault == "cannot-open":
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        cfg = write_config(tmp_path / "cfg.yaml", "/dev/tty")
        proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", "--config", str(cfg), "--out",
                                 str(tmp_path / "run"), "-q"], env=dict(ENV, TMPDIR=str(tmp)), cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # no controlling terminal
    else:
        proc, pipe, tmp = start_on_a_pipe(tmp_path, corpus, "train", preexec_fn=limit)
        text = corpus.read_bytes()
        write_all(pipe, text * 75 if fault == "full-disk" else b"\xff" + text, proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.count("\n") == 1 and err.startswith("Error: "), err
    expected = {"full-disk": rf"Error: {re.escape(str(tmp))}/charrnn-\w+\.txt: cannot write the temporary copy of "
                             rf"{re.escape(str(tmp_path / 'pipe.txt'))} \(File too large\); set TMPDIR",
                "invalid-utf8": rf"Error: {re.escape(str(tmp_path / 'pipe.txt'))}: .*UTF-8",
                "cannot-open": r"Error: /dev/tty: cannot read corpus: No such device or address"}[fault]
    assert re.match(expected, err), err
    assert copies(tmp) == []
    assert not (tmp_path / "run").exists()


# --- Disk full -----------------------------------------------------------------------------

def file_size_limit(limit):
    """A preexec_fn: writes that would make a file larger than ``limit`` bytes fail with EFBIG
    ('File too large'), as writes to a full disk fail with ENOSPC; SIGXFSZ, which would kill
    the process instead, is ignored (Python ignores it too, but not before it starts)."""

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def snapshot(run_dir):
    return {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir) if n != ".lock"}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["ckpt.npz", "best.npz", "metrics.jsonl"])
def test_a_full_disk_is_a_one_line_error_and_the_previous_checkpoint_stays(tmp_path, corpus, target):
    # The first part of the run writes freely; the rest runs with a file-size limit that the
    # first write it makes of `target` exceeds, and nothing before that write does.
    if target == "ckpt.npz":  # a checkpoint at every step, no evaluation
        cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=100, checkpoint_every=1, eval_every=0, log_every=50)
    elif target == "best.npz":  # saves only at evaluations, where best.npz comes first
        cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=100, checkpoint_every=0, eval_every=5, log_every=50)
    else:  # a long log (larger than a checkpoint) that the next line would grow
        cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=400, checkpoint_every=0, eval_every=0, log_every=1,
                           hidden_size=4)
    run_dir = tmp_path / "run"
    first = 10 if target != "metrics.jsonl" else 200
    assert train("--config", cfg, "--out", run_dir, "-q", "--stop-at", first).returncode == 0
    before = snapshot(run_dir)
    sizes = {n: len(b) for n, b in before.items()}
    limit = sizes["metrics.jsonl"] + 20 if target == "metrics.jsonl" else sizes["ckpt.npz"] - 1000
    assert sizes["config.yaml"] < limit and (target != "metrics.jsonl" or sizes["ckpt.npz"] < limit), sizes
    if target != "metrics.jsonl":
        assert sizes["metrics.jsonl"] < limit, sizes
    full = train("--resume", run_dir / "ckpt.npz", "-q", "--steps", first + 20, preexec_fn=file_size_limit(limit))
    assert full.returncode == 1, full.stderr
    assert full.stderr.count("\n") == 1 and full.stderr.startswith("Error: "), full.stderr
    assert f"{run_dir / target}: cannot" in full.stderr and "File too large" in full.stderr
    if target != "metrics.jsonl":
        assert f"the last checkpoint, {run_dir / 'ckpt.npz'}, holds step {first}" in full.stderr
    assert_status(run_dir, None, status="failed", exit_code=1, step=first, message=full.stderr.strip()[7:],
                  resume=f"charrnn train --resume {run_dir / 'ckpt.npz'} --steps {first + 20}")  # the call's length
    after = snapshot(run_dir)
    assert temporaries(run_dir) == []
    for name in ("ckpt.npz", "best.npz"):
        assert after.get(name) == before.get(name), name  # the previous checkpoints, byte for byte
    assert ckpt_io.load(str(run_dir / "ckpt.npz")).run.step == first
    # With room again, the run resumes and ends as if the disk had never been full.
    assert train("--resume", run_dir / "ckpt.npz", "-q", "--steps", first + 20).returncode == 0
    ref = tmp_path / "ref"
    assert train("--config", cfg, "--out", ref, "-q", "--steps", first + 20).returncode == 0
    assert_same_run(run_dir, ref)


STARTS = {  # the file a new run's start-up fails on, and the settings that make it the first to outgrow the limit
    ".lock": dict(checkpoint_every=1),
    "config.yaml": dict(checkpoint_every=1),
    "metrics.jsonl": dict(steps=100, checkpoint_every=0, eval_every=0, log_every=1),
    "ckpt.npz": dict(checkpoint_every=1, log_every=100),
}


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "existing-dir"])
@pytest.mark.parametrize("target", list(STARTS))
def test_a_full_disk_at_the_start_names_the_file_and_leaves_no_directory(tmp_path, corpus, target, existing):
    """RLIMIT_FSIZE just below what the new run's first write of ``target`` needs (0 for its lock's PID,
    its config, its first checkpoint; for the log, a few lines): one line naming that file, exit 1;
    a directory the run made is gone again (but one whose log holds the steps it took); an
    existing one keeps what it held."""
    ref = tmp_path / "ref"  # the sizes of what a run writes, with these paths' lengths
    assert train("--config", write_config(tmp_path / "ref.yaml", corpus), "--out", ref, "-q",
                 "--stop-at", 1).returncode == 0
    config_size, status_size = (ref / "config.yaml").stat().st_size, (ref / "status.json").stat().st_size
    assert status_size < config_size  # so the "running" record fits under a limit that config.yaml exceeds
    limit = {".lock": 0, "config.yaml": status_size, "metrics.jsonl": config_size + 10,
             "ckpt.npz": config_size + 10}[target]
    cfg = write_config(tmp_path / "cfg.yaml", corpus, **STARTS[target])
    run_dir = tmp_path / "run"
    if existing:
        run_dir.mkdir()
        (run_dir / "notes.txt").write_text("the user's own file\n")
    r = train("--config", cfg, "--out", run_dir, "-q", preexec_fn=file_size_limit(limit))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"Error: {run_dir / target}: cannot "), r.stderr
    assert "(File too large)" in r.stderr, r.stderr
    if target == "metrics.jsonl":  # its first lines fit: a run that logged steps keeps them, and says how it ended
        assert (run_dir / "metrics.jsonl").stat().st_size > 0 and not (run_dir / "ckpt.npz").exists()
        assert_status(run_dir, None, status="failed", exit_code=1, message=r.stderr.strip()[len("Error: "):])
    elif not existing:
        assert not run_dir.exists()
    else:
        assert (run_dir / "notes.txt").read_text() == "the user's own file\n" and temporaries(run_dir) == []
        assert not (run_dir / "ckpt.npz").exists()
        if target != ".lock":  # (refused before the directory was the run's: nothing of it written)
            assert_status(run_dir, None, status="failed", exit_code=1, message=r.stderr.strip()[len("Error: "):])


def test_a_full_tmpfs_at_the_first_checkpoint_names_the_file_and_leaves_no_directory(tmp_path, corpus):
    """A real full disk: a 64 kB tmpfs (mounting needs root; skipped otherwise), the first
    checkpoint of a run with 64 hidden units larger than the room left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        cfg = write_config(tmp_path / "cfg.yaml", corpus, hidden_size=64, checkpoint_every=1)
        r = train("--config", cfg, "--out", disk / "run", "-q")
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"Error: {disk / 'run' / 'ckpt.npz'}: cannot write (No space left on device); "
                                   "no checkpoint was written yet"), r.stderr
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- One run per directory -------------------------------------------------------------------

def open_pipe_for_writing(pipe, proc):
    """The write end of named pipe ``pipe``, once ``proc`` has opened it to read (fails if
    ``proc`` ends first, instead of blocking forever)."""
    fd = None

    def reader_is_there():  # opening the write end without blocking fails until a reader has it open
        nonlocal fd
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            return True
        except OSError:
            return False

    wait_for(reader_is_there, proc)
    os.set_blocking(fd, True)
    return fd


def feed(pipe, data, proc):
    """Give ``proc``, reading the named pipe ``pipe``, the bytes ``data`` and the end of file."""
    fd = open_pipe_for_writing(pipe, proc)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_is_refused_at_once(tmp_path, corpus):
    """The first run reads its corpus from a named pipe: holding the lock, it waits there
    until the test feeds it, and later it is paused (SIGSTOP) mid-training; so each second run
    meets it for certain, however fast or slow the machine is."""
    pipe = fifo(tmp_path)
    cfg = write_config(tmp_path / "cfg.yaml", pipe, steps=200, checkpoint_every=10, eval_every=50, log_every=10)
    other = tmp_path / "other"  # a checkpoint of another run, to --resume into the first one's directory
    assert run("train", "--config", write_config(tmp_path / "o.yaml", corpus), "--out", other, "-q",
               "--stop-at", 2).exit_code == 0
    run_dir = tmp_path / "run"
    first = start("--config", cfg, "--out", run_dir, "-q")
    wait_for(lambda: holds_lock(run_dir, first), first)
    refusal = (f"Error: {run_dir}: another charrnn run (PID {first.pid}) is using this run "
               "directory; wait for it to end or stop it, or give another --out\n")
    for args in (["--config", cfg, "--out", run_dir], ["--config", cfg, "--out", run_dir, "--overwrite"],
                 ["--config", cfg, "--out", run_dir, "--seed", "3"],
                 ["--resume", other / "ckpt.npz", "--out", run_dir]):
        second = train(*args, "-q", timeout=60)  # at once: before it would read the corpus (and block)
        assert (second.returncode, second.stderr) == (1, refusal)
        assert first.poll() is None
        assert_status(run_dir, first.pid, status="running")  # the first run's record, not the refused one's
    feed(pipe, corpus.read_bytes(), first)
    wait_for(lambda: (run_dir / "ckpt.npz").exists(), first)  # training now
    first.send_signal(signal.SIGSTOP)
    try:
        second = train("--resume", run_dir / "ckpt.npz", "-q", timeout=60)
        assert (second.returncode, second.stderr) == (1, refusal)
        assert_status(run_dir, first.pid, status="running")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    solo_dir = tmp_path / "solo"  # the same run alone, from the same pipe
    solo = start("--config", cfg, "--out", solo_dir, "-q")
    feed(pipe, corpus.read_bytes(), solo)
    _, err = solo.communicate(timeout=300)
    assert solo.returncode == 0, err
    assert_same_run(run_dir, solo_dir)  # the first run never noticed


@pytest.mark.slow
def test_a_finished_run_is_not_replaced_unless_asked(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=12)
    run_dir = tmp_path / "run"
    assert train("--config", cfg, "--out", run_dir, "-q").returncode == 0
    before = snapshot(run_dir)
    again = train("--config", cfg, "--out", run_dir, "-q", "--seed", "7")
    assert again.returncode == 1
    assert again.stderr == (
        f"Error: {run_dir}: already holds a run (ckpt.npz at step 12); it is finished: train it further with "
        f"charrnn train --resume {run_dir / 'ckpt.npz'} --steps 24 (its new length), give another --out, or add "
        f"--overwrite to replace it (its files are then moved into {run_dir / 'replaced-<time>'}/)\n")
    assert snapshot(run_dir) == before  # untouched
    r = train("--resume", run_dir / "ckpt.npz", "--overwrite")
    assert r.returncode == 2 and "--overwrite replaces the run" in r.stderr and snapshot(run_dir) == before
    replaced = train("--config", cfg, "--out", run_dir, "-q", "--seed", "7", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    old = [n for n in os.listdir(run_dir) if n.startswith("replaced-")]
    assert len(old) == 1
    assert snapshot(run_dir / old[0]) == before  # the old run, whole, moved aside
    solo = tmp_path / "solo"
    assert train("--config", cfg, "--out", solo, "-q", "--seed", "7").returncode == 0
    assert_same_run(run_dir, solo)  # and a new run where it was


def test_resuming_into_another_directory_does_not_replace_a_run_there(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=12)
    for d in ("a", "b"):
        assert run("train", "--config", cfg, "--out", tmp_path / d, "-q", "--stop-at", 6).exit_code == 0
    r = run("train", "--resume", tmp_path / "a" / "ckpt.npz", "--out", tmp_path / "b", "-q")
    one_line_error(r, 1, f"{tmp_path / 'b'}: already holds a run (ckpt.npz at step 6)")
    r = run("train", "--resume", tmp_path / "a" / "ckpt.npz", "--out", tmp_path / "b", "-q", "--overwrite")
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(str(tmp_path / "b" / "ckpt.npz")).run.step == 12


def test_resuming_best_npz_in_its_own_directory_behind_ckpt_npz_is_refused(tmp_path, corpus):
    """RUN/best.npz continued in RUN would overwrite RUN/ckpt.npz with a run rewound to the best
    step and cut its log: refused in one line naming both steps and the three commands that
    work, which then do: --resume RUN/ckpt.npz, a branch into --out, and --overwrite, which
    rewinds RUN to the best step with the run as it went on moved whole into RUN/replaced-<time>/."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=30, eval_every=5)
    run_dir = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", run_dir, "-q", "--stop-at", 12).exit_code == 0  # no final eval
    best, ckpt = run_dir / "best.npz", run_dir / "ckpt.npz"
    best_step = ckpt_io.load(str(best)).run.step
    assert best_step in (5, 10) and ckpt_io.load(str(ckpt)).run.step == 12
    before = snapshot(run_dir)
    r = run("train", "--resume", best, "-q")
    one_line_error(r, 2, f"{best} holds step {best_step}, {ckpt} step 12: resuming from best.npz here would rewind "
                         f"the run; continue the run with --resume {ckpt}, branch from step {best_step} with "
                         f"--resume {best} --out NEWDIR, or rewind this run to it with --resume {best} --overwrite "
                         f"(the run as it went on is moved into {run_dir / 'replaced-<time>'}/)")
    assert snapshot(run_dir) == before
    branch = tmp_path / "branch"
    assert run("train", "--resume", best, "--out", branch, "-q").exit_code == 0
    assert ckpt_io.load(str(branch / "ckpt.npz")).run.step == 30 and snapshot(run_dir) == before

    # The rewind: the same run as the branch, in RUN; the run as it went on kept whole aside.
    r = run("train", "--resume", best, "--overwrite", "-q")
    assert r.exit_code == 0, r.output
    (aside,) = [p for p in run_dir.iterdir() if p.name.startswith("replaced-")]
    assert snapshot(aside) == {name: data for name, data in before.items() if name in snapshot(aside)}
    assert {"ckpt.npz", "best.npz", "metrics.jsonl", "config.yaml"} <= set(snapshot(aside))
    rewound, branched = ckpt_io.load(str(ckpt)).run, ckpt_io.load(str(branch / "ckpt.npz")).run
    assert rewound.step == 30
    for name in rewound.params:
        np.testing.assert_array_equal(rewound.params[name], branched.params[name])
    def logged(path):
        return [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()]

    old = logged(aside / "metrics.jsonl")
    assert max(old) == 12  # the run as it went on logged past the best step
    # The log was cut back to the best step, then the rewound run logged what the branch logged.
    assert logged(run_dir / "metrics.jsonl") == [s for s in old if s <= best_step] + logged(branch / "metrics.jsonl")
    assert run("train", "--resume", aside / "ckpt.npz", "--out", tmp_path / "went-on", "-q").exit_code == 0
    assert ckpt_io.load(str(tmp_path / "went-on" / "ckpt.npz")).run.step == 30


# --- Corpus changed under --resume -----------------------------------------------------------

@pytest.mark.parametrize("change, reason", [
    ("appended", "its size went from 4,000 to 4,500 bytes"),
    ("truncated", "its size went from 4,000 to 1,500 bytes"),
    ("same-size", "same size (4,000 bytes), different content"),
])
def test_resume_refuses_a_changed_corpus(tmp_path, corpus, change, reason):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=20)
    run_dir = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", run_dir, "-q", "--stop-at", 10).exit_code == 0
    ckpt = (run_dir / "ckpt.npz").read_bytes()
    text = corpus.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) == 4000
    corpus.write_text({"appended": text + text[:500], "truncated": text[:1500],
                       "same-size": text[::-1]}[change], encoding="utf-8")  # the same characters
    r = run("train", "--resume", run_dir / "ckpt.npz", "-q")
    line = one_line_error(r, 1, f"{corpus}: the corpus changed since the checkpoint was written", reason, "--init-from")
    assert (run_dir / "ckpt.npz").read_bytes() == ckpt
    assert line
    if change != "truncated":  # (which loses characters: --init-from needs the same vocabulary)
        # A new run from these weights on the changed text is allowed: it is a new run.
        r = run("train", "--config", cfg, "--out", tmp_path / "new", "-q", "--init-from", run_dir / "ckpt.npz")
        assert r.exit_code == 0, r.output


def test_a_moved_corpus_resumes_with_data_and_another_text_is_refused(tmp_path, corpus):
    """A corpus moved after the checkpoint: --resume alone says to give --data NEWPATH; --data
    with the same bytes continues the run exactly (its stored config then names the new path);
    --data with other text of the same size is refused, naming both paths."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=20)
    run_dir, whole = tmp_path / "run", tmp_path / "whole"
    assert run("train", "--config", cfg, "--out", whole, "-q").exit_code == 0
    assert run("train", "--config", cfg, "--out", run_dir, "-q", "--stop-at", 10).exit_code == 0
    moved = tmp_path / "elsewhere" / "moved.txt"
    moved.parent.mkdir()
    text = corpus.read_text(encoding="utf-8")
    corpus.rename(moved)
    ckpt = (run_dir / "ckpt.npz").read_bytes()
    r = run("train", "--resume", run_dir / "ckpt.npz", "-q")
    one_line_error(r, 1, f"{corpus}: corpus file not found", "--data NEWPATH")
    other = tmp_path / "other.txt"
    other.write_text(text[::-1], encoding="utf-8")  # same size, same characters
    r = run("train", "--resume", run_dir / "ckpt.npz", "--data", other, "-q")
    one_line_error(r, 1, f"{other}: not the text the run was trained on ({corpus})", "different content")
    assert (run_dir / "ckpt.npz").read_bytes() == ckpt
    r = run("train", "--resume", run_dir / "ckpt.npz", "--data", moved, "-q")
    assert r.exit_code == 0, r.output
    assert f"path: {moved}" in (run_dir / "config.yaml").read_text(encoding="utf-8")
    a, b = ckpt_io.load(str(run_dir / "ckpt.npz")), ckpt_io.load(str(whole / "ckpt.npz"))
    assert a.run.step == b.run.step == 20
    assert all(np.array_equal(a.run.params[k], b.run.params[k]) for k in b.run.params)


def test_a_checkpoint_from_before_corpus_identity_resumes_with_a_warning(tmp_path, corpus):
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=20)
    run_dir = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", run_dir, "-q", "--stop-at", 10).exit_code == 0
    z = npz(run_dir / "ckpt.npz")
    for key in ("corpus", "first_loss", "loss_sum", "loss_steps"):  # what layout 2 did not write
        del z[key]
    z["format_version"] = np.int64(2)
    np.savez(run_dir / "ckpt.npz", **z)
    r = run("train", "--resume", run_dir / "ckpt.npz", "-q")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("does not record its corpus") == 1
    ck = ckpt_io.load(str(run_dir / "ckpt.npz"))
    assert ck.run.step == 20 and ck.corpus["bytes"] == 4000  # and from now on it does


@pytest.mark.slow
def test_overwrite_moves_the_old_run_only_once_the_new_one_is_ready(tmp_path, corpus):
    """--overwrite with --init-from the run's own best.npz starts the new run from those weights;
    an --overwrite that fails (a missing corpus, a batch that does not fit) keeps the old run."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=12)
    run_dir = tmp_path / "run"
    assert train("--config", cfg, "--out", run_dir, "-q").returncode == 0
    before = snapshot(run_dir)
    for bad in (["--data", str(tmp_path / "missing.txt")], ["--set", "train.batch_size=100000"]):
        r = train("--config", cfg, "--out", run_dir, "-q", "--overwrite", *bad)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert snapshot(run_dir) == before and not [n for n in os.listdir(run_dir) if n.startswith("replaced-")]
    r = train("--config", cfg, "--out", run_dir, "-q", "--overwrite", "--init-from", str(run_dir / "best.npz"),
              "--steps", "3")
    assert r.returncode == 0, r.stderr
    old = [n for n in os.listdir(run_dir) if n.startswith("replaced-")]
    assert len(old) == 1 and snapshot(run_dir / old[0]) == before
    assert ckpt_io.load(str(run_dir / "ckpt.npz")).run.step == 3


# --- Links planted in the run directory --------------------------------------------------------

LINKED = [".lock", "ckpt.npz", "best.npz", "metrics.jsonl", "metrics.jsonl.old", "config.yaml", "status.json"]


# The fast loop keeps the two names a run opens in place (.lock, metrics.jsonl); the rest run with the slow tests.
LINK_CASES = [(n, "symlink") for n in LINKED] + [(".lock", "hard"), ("metrics.jsonl", "hard")]


@pytest.mark.parametrize("name, kind", [c if c in ((".lock", "symlink"), ("metrics.jsonl", "symlink"),
                                                    ("status.json", "symlink"))
                                        else pytest.param(*c, marks=pytest.mark.slow) for c in LINK_CASES])
def test_a_link_planted_in_the_run_directory_never_writes_outside_it(tmp_path, corpus, name, kind):
    """A link at a name the run writes, to a file outside the run directory: the file is left
    byte for byte; the run either replaces the link with a file of its own or refuses in one
    line naming it. (atomic_write's temporaries have random names, created with O_EXCL.)"""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=12, eval_every=5, log_every=2)
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    run_dir.mkdir()
    outside.mkdir()
    target = outside / name.lstrip(".")
    content = b"someone else's file\n" * 50
    target.write_bytes(content)
    if kind == "symlink":
        os.symlink(target, run_dir / name)
    else:
        os.link(target, run_dir / name)
    if name == "metrics.jsonl.old":  # moved over only when there is a log to keep
        (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    r = train("--config", cfg, "--out", run_dir, "-q")
    assert target.read_bytes() == content  # nothing written through the link
    assert "Traceback" not in r.stderr
    if r.returncode == 0:
        assert not (run_dir / name).is_symlink() and os.stat(run_dir / name).st_nlink == 1, name
        assert ckpt_io.load(str(run_dir / "ckpt.npz")).run.step == 12
    else:
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: "), r.stderr
        assert str(run_dir / name) in r.stderr or name in ("ckpt.npz", "best.npz"), r.stderr


@pytest.mark.parametrize("kind", ["symlink", pytest.param("hard", marks=pytest.mark.slow)])
def test_a_resumed_run_never_appends_to_a_linked_metrics_log(tmp_path, corpus, kind):
    """The log a resumed run keeps (nothing to cut back) is appended to where it is: a link there
    to a file outside the run directory is refused in one line, the file untouched."""
    cfg = write_config(tmp_path / "cfg.yaml", corpus, steps=12, eval_every=5, log_every=2)
    run_dir = tmp_path / "run"
    assert train("--config", cfg, "--out", run_dir, "-q", "--stop-at", 6).returncode == 0
    target = tmp_path / "elsewhere.jsonl"
    os.replace(run_dir / "metrics.jsonl", target)
    content = target.read_bytes()
    (os.symlink if kind == "symlink" else os.link)(target, run_dir / "metrics.jsonl")
    r = train("--resume", run_dir / "ckpt.npz", "-q")
    assert target.read_bytes() == content
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"Error: {run_dir / 'metrics.jsonl'}: is "), r.stderr
