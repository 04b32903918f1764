"""The run-directory lock (with a real second process) and the refusal to overwrite a run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, one_line_error, run

from charrnn import checkpoint as ckpt_io
from charrnn import rundir
from charrnn.errors import CharrnnError

SMOKE = os.path.join(CONFIGS, "smoke.yaml")
HOLDER = """
import sys, time
from charrnn.rundir import lock
with lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def start_holder(run_dir):
    """A real second process that takes the lock and sleeps; returns once it holds it."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line == "locked\n", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_a_second_process_is_refused_naming_the_directory_and_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        assert (run_dir / ".lock").read_text() == f"{holder.pid}\n"
        with pytest.raises(CharrnnError) as e:
            with rundir.lock(str(run_dir)):
                pytest.fail("took a lock that another process holds")
        assert str(e.value) == (f"{run_dir}: another charrnn run (PID {holder.pid}) is using this run "
                                "directory; wait for it to end or stop it, or give another --out")
    finally:
        holder.kill()
        holder.communicate()  # waits, and closes its pipes


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    os.kill(holder.pid, signal.SIGKILL)  # no finally block, no atexit: only the kernel releases it
    holder.communicate(timeout=30)  # waits, and closes its pipes
    assert holder.returncode == -signal.SIGKILL
    assert (run_dir / ".lock").read_text() == f"{holder.pid}\n"  # the stale PID is still written...
    with rundir.lock(str(run_dir)):  # ...but the lock is free
        assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"
    assert (run_dir / ".lock").read_text() == ""  # released: no PID left behind


def test_the_lock_is_released_at_the_end_of_the_block_and_not_taken_twice(tmp_path):
    run_dir = tmp_path / "a" / "b"  # created if missing
    with rundir.lock(str(run_dir)):
        with pytest.raises(CharrnnError, match=f"PID {os.getpid()}"):
            with rundir.lock(str(run_dir)):
                pass
        # A child process (not sharing the lock's open file) is refused too.
        code = subprocess.run([sys.executable, "-c", "import sys; from charrnn.rundir import lock\n"
                               "try:\n    lock(sys.argv[1]).__enter__()\nexcept Exception as e:\n"
                               "    print(e); sys.exit(3)", str(run_dir)],
                              env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
        assert code.returncode == 3 and f"PID {os.getpid()}" in code.stdout, code
    with rundir.lock(str(run_dir)):  # free again
        pass
    holder = start_holder(run_dir)  # and another process can take it
    holder.kill()
    holder.communicate()  # waits, and closes its pipes


def test_an_unusable_run_directory_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CharrnnError, match="cannot create the run directory's lock file"):
        with rundir.lock(str(blocker / "run")):
            pass


@pytest.fixture
def finished(tmp_path):
    """A real run directory: ckpt.npz at step 4, config.yaml, metrics.jsonl."""
    out = tmp_path / "run"
    assert run("train", "--config", SMOKE, "--out", out, "-q", "--stop-at", 4).exit_code == 0
    return out


def test_a_fresh_run_into_a_run_is_refused_with_the_step_and_the_ways_on(finished):
    before = {n: (finished / n).read_bytes() for n in os.listdir(finished)}
    with pytest.raises(CharrnnError) as e:
        rundir.check_fresh(str(finished), overwrite=False)
    msg = str(e.value)
    assert msg.startswith(f"{finished}: already holds a run (ckpt.npz at step 4)")
    assert f"charrnn train --resume {finished / 'ckpt.npz'}" in msg
    assert "another --out" in msg and "--overwrite" in msg and "\n" not in msg
    assert {n: (finished / n).read_bytes() for n in os.listdir(finished)} == before  # untouched


def test_a_damaged_checkpoint_still_refuses(finished):
    (finished / "ckpt.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(CharrnnError, match=r"already holds a run \(ckpt.npz, unreadable\)"):
        rundir.check_fresh(str(finished), overwrite=False)
    os.remove(finished / "ckpt.npz")
    (finished / "best.npz").write_bytes(b"")  # a best model alone is a run worth keeping too
    with pytest.raises(CharrnnError, match=r"best.npz, unreadable"):
        rundir.check_fresh(str(finished), overwrite=False)


def test_overwrite_moves_the_previous_run_aside_whole(finished):
    (finished / "notes.txt").write_text("mine")  # not a run file: left where it is
    before = {n: (finished / n).read_bytes() for n in rundir.RUN_FILES if (finished / n).exists()}
    assert set(before) == {"ckpt.npz", "config.yaml", "metrics.jsonl", "status.json"}
    folder = rundir.check_fresh(str(finished), overwrite=True)
    assert os.path.dirname(folder) == str(finished)
    assert os.path.basename(folder).startswith("replaced-")
    assert {n: Path(folder, n).read_bytes() for n in os.listdir(folder)} == before
    assert ckpt_io.load(os.path.join(folder, "ckpt.npz")).run.step == 4  # the old run is intact
    assert sorted(os.listdir(finished)) == sorted([".lock", "notes.txt", os.path.basename(folder)])  # the lock stays
    assert rundir.check_fresh(str(finished), overwrite=False) is None  # now a fresh run may start


def test_two_overwrites_in_one_second_keep_both_old_runs(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folders = []
    for i in range(3):
        (run_dir / "ckpt.npz").write_text(f"run {i}")
        folders.append(rundir.check_fresh(str(run_dir), overwrite=True))
    assert len(set(folders)) == 3
    assert sorted(Path(f, "ckpt.npz").read_text() for f in folders) == ["run 0", "run 1", "run 2"]


def test_nothing_to_replace(tmp_path):
    assert rundir.check_fresh(str(tmp_path / "missing"), overwrite=False) is None
    assert rundir.check_fresh(str(tmp_path / "missing"), overwrite=True) is None
    (tmp_path / "metrics.jsonl").write_text("{}\n")  # a run that never saved: nothing to resume
    assert rundir.check_fresh(str(tmp_path), overwrite=False) is None
    assert (tmp_path / "metrics.jsonl").exists()
    folder = rundir.check_fresh(str(tmp_path), overwrite=True)  # but --overwrite still clears it
    assert os.listdir(folder) == ["metrics.jsonl"] and not (tmp_path / "metrics.jsonl").exists()


class Inflated(BaseException):
    """Raised past held_step's own error handling, so the test sees it."""


def test_the_step_of_a_bomb_is_never_inflated(tmp_path, monkeypatch):
    """Only the step is read for the message, and only if its entry is scalar-sized: a
    checkpoint whose 'step' entry would inflate to anything large is called unreadable."""
    with zipfile.ZipFile(tmp_path / "ckpt.npz", "w") as z:
        z.writestr("step.npy", b"\0" * 4096, compress_type=zipfile.ZIP_DEFLATED)

    def load(*a, **k):
        raise Inflated

    monkeypatch.setattr(np, "load", load)
    with pytest.raises(CharrnnError, match=r"\(ckpt.npz, unreadable\)"):
        rundir.check_fresh(str(tmp_path), overwrite=False)


# ----------------------------------------------------------------------------- a damaged metrics log

def _timeless(lines):
    """Metrics lines (bytes) as records without their timings, which differ run to run."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed_s")} for line in lines]


@pytest.fixture
def stopped(tmp_path, write_config):
    """A run stopped at its checkpoint of step 10 (logging every step), and its config."""
    from conftest import first_chars, small_config

    cfg = small_config(write_config, first_chars(tmp_path, 3000), steps=16, checkpoint_every=5)
    out = tmp_path / "run"
    assert run("train", "--config", cfg, "--out", out, "-q", "--stop-at", 10).exit_code == 0
    return out


def test_a_damaged_log_never_blocks_a_resume(stopped, tmp_path):
    """Real damage in metrics.jsonl (bytes that are not UTF-8 in the middle of a line, a line of
    NULs, a JSON array, a record without a step, a line logged after the checkpoint, a torn
    last line): --resume warns once, rewrites the log with exactly the good lines, and ends
    with the checkpoint an undamaged resume ends with."""
    clean = tmp_path / "clean"
    shutil.copytree(stopped, clean)
    assert run("train", "--resume", clean / "ckpt.npz", "-q", "--steps", 16).exit_code == 0

    lines = (stopped / "metrics.jsonl").read_bytes().splitlines()
    assert len(lines) == 10
    broken = lines[3][:5] + b"\xff\xfe\x80" + lines[3][5:]  # line 4 (step 4), no longer UTF-8
    damaged = (lines[:3] + [broken, b"\0" * 300, b"[1, 2, 3]", b'{"loss": 1.5}', b"\xc3"] + lines[4:]
               + [lines[9].replace(b'"step": 10', b'"step": 11'), b'{"step": 12, "loss": 2.0'])
    (stopped / "metrics.jsonl").write_bytes(b"\n".join(damaged))  # the torn last line has no newline
    r = run("train", "--resume", stopped / "ckpt.npz", "-q", "--steps", 16)
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if "metrics.jsonl" in line]
    assert warnings == [f"warning: {stopped / 'metrics.jsonl'}: dropped 6 damaged lines (lines 4, 5, 6, 7, 8 and "
                        "1 more: not a UTF-8 JSON record with a step)"], r.stderr
    assert r.stderr.count("warning") == 1

    good = lines[:3] + lines[4:]  # the line made unreadable is lost; step 11 was past the checkpoint
    after = (stopped / "metrics.jsonl").read_bytes().splitlines()
    assert after[:9] == good  # the good lines kept as they were, byte for byte
    want = (clean / "metrics.jsonl").read_bytes().splitlines()
    assert _timeless(after) == _timeless(want[:3] + want[4:])
    a, b = ckpt_io.load(str(clean / "ckpt.npz")), ckpt_io.load(str(stopped / "ckpt.npz"))
    assert a.run.step == b.run.step == 16
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    assert a.run.rng.bit_generator.state == b.run.rng.bit_generator.state


def test_start_log_rewrites_only_what_needs_it(tmp_path):
    """An intact log at or before the checkpoint is left as it is (not even rewritten); one
    whose last line lost only its newline gets it back, so the next line is not glued to it."""
    files = rundir.RunDir(str(tmp_path))
    intact = b'{"step": 1, "loss": 2.0}\n{"step": 2, "val_loss": 1.9}\n'
    (tmp_path / "metrics.jsonl").write_bytes(intact)
    before = os.stat(files.metrics)
    files.start_log(2)
    assert (tmp_path / "metrics.jsonl").read_bytes() == intact
    assert os.stat(files.metrics).st_ino == before.st_ino  # the same file: nothing rewritten
    (tmp_path / "metrics.jsonl").write_bytes(intact[:-1])
    files.start_log(2)
    assert (tmp_path / "metrics.jsonl").read_bytes() == intact
    files.start_log(1)
    assert (tmp_path / "metrics.jsonl").read_bytes() == intact.splitlines(keepends=True)[0]


@pytest.mark.parametrize("fault", ["directory", "link loop"])
def test_an_unreadable_log_is_one_line_on_resume(stopped, fault):
    """A metrics.jsonl that cannot be read at all (a directory in its place; a link to itself,
    which open() cannot follow) stops the resume with one line, before any step."""
    log = stopped / "metrics.jsonl"
    log.unlink()
    if fault == "directory":
        log.mkdir()
    else:
        log.symlink_to(log.name)
    r = run("train", "--resume", stopped / "ckpt.npz", "-q", "--steps", 12)
    one_line_error(r, 1, str(log), "cannot read the metrics log", "move it aside")
    assert ckpt_io.load(str(stopped / "ckpt.npz")).run.step == 10


def test_checkpoint_in_a_run_directory(tmp_path):
    assert rundir.checkpoint_in(str(tmp_path / "x.npz")) == str(tmp_path / "x.npz")  # a file: itself
    with pytest.raises(CharrnnError, match=r"without best\.npz or ckpt\.npz"):
        rundir.checkpoint_in(str(tmp_path))
    (tmp_path / "ckpt.npz").write_bytes(b"")
    assert rundir.checkpoint_in(str(tmp_path)) == str(tmp_path / "ckpt.npz")
    (tmp_path / "best.npz").mkdir()  # not a file: not a checkpoint
    assert rundir.checkpoint_in(str(tmp_path)) == str(tmp_path / "ckpt.npz")
    (tmp_path / "best.npz").rmdir()
    (tmp_path / "best.npz").write_bytes(b"")
    assert rundir.checkpoint_in(str(tmp_path)) == str(tmp_path / "best.npz")


def test_the_refusal_of_a_finished_or_time_budgeted_run_suggests_a_command_that_works(tmp_path):
    """A finished run's directory is refused with --resume ... --steps N (a plain --resume would
    have nothing to do), one out of its time budget with --minutes; each command, run, trains on."""
    done, budget = tmp_path / "done", tmp_path / "budget"
    assert run("train", "--config", SMOKE, "--out", done, "-q", "--steps", 4).exit_code == 0
    assert run("train", "--config", SMOKE, "--out", budget, "-q", "--steps", 10**6,
               "--set", "train.max_minutes=0.001").exit_code == 0
    for d, option, value in ((done, "--steps", "8"), (budget, "--minutes", "1")):
        with pytest.raises(CharrnnError) as e:
            rundir.check_fresh(str(d), overwrite=False)
        command = f"charrnn train --resume {d / 'ckpt.npz'} {option} {value}"
        assert command in str(e.value) and "continue it with" not in str(e.value), str(e.value)
    r = run("train", "--resume", done / "ckpt.npz", "--steps", 8, "-q")
    assert r.exit_code == 0 and ckpt_io.load(str(done / "ckpt.npz")).run.step == 8, r.output
    # (--minutes 1 would train a minute: that it trains on is test_train's --minutes test)
