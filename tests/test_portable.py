"""charrnn.portable: the Windows code paths, run for real on Linux.

A wrapped interpreter (``WINDOWS``) makes this process look like Windows to charrnn before it
imports anything of it: no ``fcntl`` (``sys.modules['fcntl'] = None``: an ImportError), no
``os.pread``/``os.pwrite``/``os.fchmod``/``O_NOFOLLOW``/``O_NONBLOCK``/``O_CLOEXEC``, no
``signal.SIGHUP`` or ``signal.pthread_sigmask``, and a ``msvcrt`` whose ``locking`` has
msvcrt's semantics (a byte range from the file's current position; ``LK_NBLCK`` fails at once
with EACCES) on top of ``fcntl.lockf`` on that range, taken before ``fcntl`` is hidden, so that
the emulated lock holds across processes as Windows' does. What it cannot show: Windows'
mandatory locking, its file sharing rules, TerminateProcess; none of this ran on Windows.
"""

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, first_chars, small_config

from charrnn import checkpoint as ckpt_io
from charrnn import portable

SMOKE = os.path.join(CONFIGS, "smoke.yaml")

WINDOWS = r"""
import errno, os, signal, sys, types
import fcntl as _fcntl
import subprocess  # before the fake msvcrt: subprocess takes its presence for Windows (and wants _winapi)

def locking(fd, mode, nbytes):
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    with open(os.environ["FAKE_MSVCRT_LOG"], "a") as log:
        log.write(f"{mode} {pos} {nbytes}\n")
    if mode == 0:  # LK_UNLCK
        _fcntl.lockf(fd, _fcntl.LOCK_UN, nbytes, pos, os.SEEK_SET)
        return
    try:
        _fcntl.lockf(fd, _fcntl.LOCK_EX | (_fcntl.LOCK_NB if mode in (2, 4) else 0), nbytes, pos, os.SEEK_SET)
    except OSError:
        raise OSError(errno.EACCES, "Permission denied") from None

msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_UNLCK, msvcrt.LK_LOCK, msvcrt.LK_NBLCK, msvcrt.LK_RLCK, msvcrt.LK_NBRLCK = range(5)
msvcrt.locking = locking
sys.modules["msvcrt"] = msvcrt
sys.modules["fcntl"] = None
for name in ("pread", "pwrite", "fchmod", "O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"):
    delattr(os, name)
for name in ("SIGHUP", "pthread_sigmask"):
    delattr(signal, name)

import charrnn.portable as P
assert P.fcntl is None and P.msvcrt is msvcrt and P.SIGHUP is None and P.NOFOLLOW == 0, "not the Windows path"
sys.argv = ["charrnn", *sys.argv[1:]]
if sys.argv[1:2] == ["--hold"]:  # hold the lock of a directory, as a run would, until stdin closes
    from charrnn.rundir import lock
    with lock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.read()
    sys.exit(0)
from charrnn.cli import main
main()
"""


def charrnn(tmp_path, *args, windows=True):
    """``python -m charrnn ARGS`` (as Windows, by default) in tmp_path: the finished process."""
    env = dict(os.environ, PYTHONPATH=ROOT, FAKE_MSVCRT_LOG=str(tmp_path / "msvcrt.log"))
    cmd = [sys.executable, "-c", WINDOWS] if windows else [sys.executable, "-m", "charrnn"]
    return subprocess.run([*cmd, *map(str, args)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def ok(proc):
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def assert_same_run(a_dir, b_dir):
    """The two runs' checkpoints are bitwise the same: weights, optimizer, state, position, RNG."""
    a, b = ckpt_io.load(str(a_dir / "ckpt.npz")), ckpt_io.load(str(b_dir / "ckpt.npz"))
    assert a.run.step == b.run.step
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    for k in a.run.opt_state:
        assert np.array_equal(a.run.opt_state[k], b.run.opt_state[k]), k
    assert (a.run.position, a.run.smooth_loss, a.run.rng.bit_generator.state) == (
        b.run.position, b.run.smooth_loss, b.run.rng.bit_generator.state)


# --------------------------------------------------------------------------- units


def test_the_pread_fallback_reads_what_os_pread_reads(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 40)
    fd = os.open(path, os.O_RDONLY)
    try:
        cases = [(0, 0), (5, 0), (100, 3), (1, 10239), (4000, 9000), (50, 10240), (50, 20000)]
        want = [os.pread(fd, n, off) for n, off in cases]
        monkeypatch.delattr(os, "pread")
        monkeypatch.delattr(os, "pwrite")
        assert [portable.pread(fd, n, off) for n, off in cases] == want
        # Threads sharing the descriptor, as the corpus prefetcher and the loop do: no read sees
        # another's seek.
        bad = []

        def reader(k):
            for i in range(300):
                off = (k * 37 + i * 101) % 10000
                if portable.pread(fd, 64, off) != want_at(off):
                    bad.append(off)

        data = path.read_bytes()

        def want_at(off):
            return data[off:off + 64]

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bad == []
    finally:
        os.close(fd)
    wfd = os.open(tmp_path / "w.bin", os.O_RDWR | os.O_CREAT)
    try:
        assert portable.pwrite(wfd, b"12345\n", 0) == 6 and portable.pwrite(wfd, b"ab", 2) == 2
        assert portable.pread(wfd, 32, 0) == b"12ab5\n"
    finally:
        os.close(wfd)


def test_the_stop_signals_are_the_platforms(monkeypatch):
    assert portable.STOP_SIGNALS == (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # this is Linux
    with portable.signals_blocked():
        assert set(signal.pthread_sigmask(signal.SIG_BLOCK, set())) >= set(portable.STOP_SIGNALS)
    assert not set(signal.pthread_sigmask(signal.SIG_BLOCK, set())) & set(portable.STOP_SIGNALS)
    monkeypatch.delattr(signal, "pthread_sigmask")
    with portable.signals_blocked():  # Windows: a block that runs as it is
        pass


NAMES_ONLY_HERE = {"fcntl", "msvcrt", "pread", "pwrite", "pthread_sigmask", "SIGHUP", "O_NOFOLLOW", "fchmod"}


@pytest.mark.parametrize("relpath", sorted(
    os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "charrnn"))
    for d, _, fs in os.walk(os.path.join(ROOT, "charrnn")) for f in fs if f.endswith(".py")))
def test_only_portable_touches_what_windows_lacks(relpath):
    """No module but portable.py imports fcntl or msvcrt, or names os.pread, signal.SIGHUP...:
    one that did would fail on Windows, at import or at its first use."""
    if relpath == "portable.py":
        return
    with open(os.path.join(ROOT, "charrnn", relpath), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module in ("fcntl", "msvcrt", "os", "signal"):
            used.update(a.name for a in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("os", "signal"):
            used.add(node.attr)
    assert not used & NAMES_ONLY_HERE, f"charrnn/{relpath} uses {sorted(used & NAMES_ONLY_HERE)}: call charrnn.portable"


# --------------------------------------------------------------------------- the CLI, as on Windows


@pytest.mark.slow
def test_train_resume_sample_eval_as_on_windows_match_a_posix_run(tmp_path, write_config):
    """Trained, stopped and resumed as on Windows: bitwise the run that POSIX trains in one go;
    sample and eval work on it. The emulated msvcrt.locking was what locked the run."""
    corpus = first_chars(tmp_path, 1200)
    cfg = small_config(write_config, corpus, steps=40, checkpoint_every=7)
    ok(charrnn(tmp_path, "train", "--config", cfg, "--out", "posix", "-q", windows=False))
    assert not (tmp_path / "msvcrt.log").exists()  # the POSIX run never called it
    ok(charrnn(tmp_path, "train", "--config", cfg, "--out", "win", "-q", "--stop-at", 20))
    calls = (tmp_path / "msvcrt.log").read_text().splitlines()
    assert calls == [f"2 {portable.LOCK_OFFSET} 1", f"0 {portable.LOCK_OFFSET} 1"], calls  # lock, then unlock
    ok(charrnn(tmp_path, "train", "--resume", tmp_path / "win" / "ckpt.npz", "-q"))
    assert_same_run(tmp_path / "posix", tmp_path / "win")
    assert (tmp_path / "win" / ".lock").read_bytes() == b""  # no stale PID
    s = ok(charrnn(tmp_path, "sample", "--checkpoint", tmp_path / "win", "-n", 50, "--seed", 3))
    s_posix = ok(charrnn(tmp_path, "sample", "--checkpoint", tmp_path / "posix", "-n", 50, "--seed", 3,
                         windows=False))
    assert s.stdout == s_posix.stdout and len(s.stdout) >= 50
    e = ok(charrnn(tmp_path, "eval", "--checkpoint", tmp_path / "win", "--text", corpus))
    e_posix = ok(charrnn(tmp_path, "eval", "--checkpoint", tmp_path / "posix", "--text", corpus, windows=False))
    assert e.stdout == e_posix.stdout and e.stdout.strip()


@pytest.mark.slow
def test_a_prepared_corpus_trains_as_on_posix_and_its_lock_holds_across_processes(tmp_path):
    """prepare, then train on the prepared directory (read by the seek-and-read fallback), as
    on Windows: the run is bitwise the POSIX one. A second process into a directory held by a
    first (both as on Windows) is refused in one line naming the holder's PID; once the holder
    is gone the directory is free."""
    first_chars(tmp_path, 6000, "a.txt")
    ok(charrnn(tmp_path, "prepare", "a.txt", "--out", "prep", "-q"))
    ok(charrnn(tmp_path, "prepare", "a.txt", "--out", "prep_posix", "-q", windows=False))
    names = sorted(os.listdir(tmp_path / "prep"))
    assert names == sorted(os.listdir(tmp_path / "prep_posix")) and len(names) == 4, names  # .lock, meta, 2 splits
    for name in names:
        assert (tmp_path / "prep" / name).read_bytes() == (tmp_path / "prep_posix" / name).read_bytes(), name
    args = ("train", "--config", SMOKE, "--data", "prep", "--steps", 12, "-q")
    ok(charrnn(tmp_path, *args, "--out", "win"))
    ok(charrnn(tmp_path, *args, "--out", "posix", windows=False))
    assert_same_run(tmp_path / "posix", tmp_path / "win")

    env = dict(os.environ, PYTHONPATH=ROOT, FAKE_MSVCRT_LOG=str(tmp_path / "msvcrt.log"))
    with subprocess.Popen([sys.executable, "-c", WINDOWS, "--hold", "held"], cwd=tmp_path, env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "locked\n", holder.stderr.read()
            for cmd in (("train", "--config", SMOKE, "--data", "prep", "--out", "held", "-q"),
                        ("prepare", "a.txt", "--out", "held", "-q")):
                r = charrnn(tmp_path, *cmd)
                assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
                lines = [line for line in r.stderr.splitlines() if line.startswith("Error")]
                assert len(lines) == 1 and f"(PID {holder.pid}) is using this" in lines[0], r.stderr
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0, holder.stderr.read()
    ok(charrnn(tmp_path, "train", "--config", SMOKE, "--data", "prep", "--out", "held", "--steps", 2, "-q"))


@pytest.mark.slow
def test_ctrl_c_as_on_windows_saves_and_resumes(tmp_path):
    """A real SIGINT to a run as on Windows (no SIGHUP, no signal mask): the step finishes, the
    checkpoint is saved, exit 130 with the one line that says how to go on; status.json names
    SIGINT; the printed --resume goes on."""
    env = dict(os.environ, PYTHONPATH=ROOT, FAKE_MSVCRT_LOG=str(tmp_path / "msvcrt.log"))
    with subprocess.Popen([sys.executable, "-c", WINDOWS, "train", "--config", SMOKE, "--out", "run",
                           "--steps", str(10**6), "-q"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        log = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text().count("\n") >= 2) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never logged"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "by Ctrl-C" in lines[0] and "--resume" in lines[0], err
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["signal"] == "SIGINT", status
    step = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step
    ok(charrnn(tmp_path, "train", "--resume", tmp_path / "run" / "ckpt.npz", "--steps", step + 3, "-q"))
    assert ckpt_io.load(str(tmp_path / "run" / "ckpt.npz")).run.step == step + 3
