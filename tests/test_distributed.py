"""charrnn.distributed: data-parallel training under MPI, against one process.

The MPI tests start ``mpiexec -n 2 python -m charrnn train ...`` themselves (the mpiexec of
the ``mpich`` wheel that ``pip install '.[mpi]'`` installs next to Python), one BLAS thread
per rank, and compare with the same config trained in this process. They are skipped,
with the reason shown, only when mpi4py cannot be imported or no mpiexec is found.

Faults are real: a signal to one rank's process, a file-size limit (RLIMIT_FSIZE) or an
address-space limit (RLIMIT_AS) set on one running rank with ``prlimit``, a corpus that
one rank cannot open, ranks started with different files or settings.
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, first_chars, run

from charrnn import checkpoint as ckpt_io
from charrnn import distributed
from charrnn.cells import CELLS, recurrent

try:
    import mpi4py  # noqa: F401

    SKIP = None
except ImportError:
    SKIP = "mpi4py is not installed: pip install '.[mpi]' to run the MPI tests"
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
if SKIP is None and MPIEXEC is None:
    SKIP = "no mpiexec found (pip install '.[mpi]' installs MPICH's)"
needs_mpi = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

TOL = 1e-10  # float64: two ranks sum the halves of every gradient, one process the whole
SHOWN = []  # the largest differences measured, printed by test_equivalence (pytest -s)


def mpi_env():
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHER_VARS}
    env.update(PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HYDRA_LAUNCHER="fork")  # MPICH's mpiexec: start the ranks here, never through ssh
    return env


def mpiexec(*args, n=2, timeout=240, **kw):
    """``mpiexec -n N python -m charrnn ARGS``, its CompletedProcess."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "charrnn", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), cwd=ROOT, timeout=timeout, **kw)


@pytest.fixture
def start():
    """``start(ARGS)``: ``mpiexec -n 2 python -m charrnn ARGS`` in the background, its Popen.
    A job still running when the test ends (a failed or hung test) is killed: mpiexec's
    proxy then ends the ranks."""
    jobs = []

    def start(*args, n=2):
        cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "charrnn", *map(str, args)]
        jobs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=mpi_env(), cwd=ROOT))
        return jobs[-1]

    yield start
    for job in jobs:
        if job.poll() is None:
            job.kill()
            job.communicate()


def rank_pids(marker):
    """{rank: pid} of the rank processes whose command line holds ``marker`` (their --out)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
        except OSError:
            continue
        if marker.encode() in cmd and b"charrnn" in cmd and cmd[0] != MPIEXEC.encode():
            for var in distributed.RANK_VARS:
                if var.encode() in env:
                    found[int(env[var.encode()])] = int(pid)
    return found


def wait_for(predicate, proc, what, timeout=120):
    t = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() - t > timeout:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def lines(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


def config(tmp_path, corpus, name="cfg.yaml", **sections):
    """A float64 config: B=4 streams of 450 characters, T=16 (the streams wrap at step 28),
    validation every 25 steps; ``sections`` override keys, e.g. model={"cell": "lstm"}."""
    base = {
        "data": {"path": str(corpus), "val_fraction": 0.1},
        "model": {"hidden_size": 16, "dtype": "float64", "init_std": 0.1},
        "optim": {},
        "train": {"seq_length": 16, "batch_size": 4, "steps": 50, "log_every": 1, "sample_every": 0,
                  "eval_every": 25, "checkpoint_every": 25, "seed": 3},
    }
    for section, keys in sections.items():
        base[section].update(keys)
    text = "".join(f"{s}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in keys.items())
                   for s, keys in base.items())
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rel(a, b):
    """|a - b| relative to the largest magnitude in b (so near-zero elements do not dominate)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b), initial=0.0))


def compare_runs(dir_a, dir_b, first_step=0):
    """Largest relative differences between two runs: (per-step losses, validation losses,
    checkpoint arrays), over the steps after ``first_step``. Fails if they logged different steps."""
    ma = [m for m in lines(dir_a / "metrics.jsonl") if m["step"] > first_step]
    mb = [m for m in lines(dir_b / "metrics.jsonl") if m["step"] > first_step]
    assert [(m["step"], sorted(m)) for m in ma] == [(m["step"], sorted(m)) for m in mb]
    pairs = list(zip(ma, mb, strict=True))  # the same steps, checked above
    loss = max((abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in pairs if "loss" in x), default=0.0)
    val = max((abs(x["val_loss"] - y["val_loss"]) / abs(y["val_loss"]) for x, y in pairs if "val_loss" in x),
              default=0.0)
    with np.load(dir_a / "ckpt.npz") as za, np.load(dir_b / "ckpt.npz") as zb:
        assert sorted(za.files) == sorted(zb.files)
        arrays = {k: rel(za[k], zb[k]) for k in za.files if za[k].dtype.kind == "f" and za[k].ndim > 0}
        for k in ("step", "position", "epoch", "rng", "vocab"):
            assert np.array_equal(za[k], zb[k]), k
    return loss, val, arrays


def same_bits(dir_a, dir_b, first_step=0):
    """True when both runs logged bitwise the same numbers after ``first_step`` and ended
    with bitwise the same checkpoint (but its wall-clock time)."""
    def strip(ms):
        return [{k: v for k, v in m.items() if k not in ("elapsed_s", "chars_per_s")}
                for m in ms if m["step"] > first_step]

    if strip(lines(dir_a / "metrics.jsonl")) != strip(lines(dir_b / "metrics.jsonl")):
        return False
    with np.load(dir_a / "ckpt.npz") as za, np.load(dir_b / "ckpt.npz") as zb:
        keys = [k for k in za.files if k not in ("elapsed_s", "config")]
        return sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in keys)


# ----------------------------------------------------------------------------- one process


def test_a_single_process_is_passed_through_untouched():
    """SINGLE hands back the very objects it is given: the plain path has no extra copy."""
    a = np.zeros((3, 4))
    grads = {"W": a}
    s = distributed.SINGLE
    assert s.mine(a, axis=1) is a and s.mine(None, axis=1) is None
    loss, g = s.sum(1.5, grads)
    assert loss == 1.5 and g is grads and g["W"] is a
    assert s.total(2.5) == 2.5 and s.agreed(True) is True and s.agreed(False) is False


def test_a_plain_run_does_not_import_mpi4py(tmp_path, corpus_2000):
    """Importing mpi4py starts MPI: a run without a launcher must not do it."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 3})
    script = ("import sys; from charrnn.cli import main\n"
              f"sys.argv = ['charrnn', 'train', '--config', {cfg!r}, '--out', {str(tmp_path / 'run')!r}, '-q']\n"
              "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=mpi_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("rank_var", [None, "1"])
def test_a_launcher_without_mpi4py_says_what_to_install_in_one_line(tmp_path, corpus_2000, rank_var):
    """PMI_SIZE=2 as mpiexec sets it, with mpi4py hidden: rank 0 says what to install, once;
    another rank (PMI_RANK=1) says nothing; both exit 1, having written nothing."""
    cfg = config(tmp_path, corpus_2000)
    script = ("import sys; sys.modules['mpi4py'] = None\nfrom charrnn.cli import main\n"
              f"sys.argv = ['charrnn', 'train', '--config', {cfg!r}, '--out', {str(tmp_path / 'run')!r}, '-q']\n"
              "main()")
    env = dict(mpi_env(), PMI_SIZE="2", **({"PMI_RANK": rank_var} if rank_var else {}))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1
    if rank_var is None:
        assert error_lines(out.stderr) == [
            "Error: started by an MPI launcher (PMI_SIZE is set), but mpi4py is not installed: "
            "pip install 'charrnn[mpi]' (on a cluster, against the site's MPI: see docs/cluster.md)"]
    else:
        assert out.stderr == "" and out.stdout == ""
    assert not (tmp_path / "run").exists()


def test_evaluation_split_between_processes_adds_up_to_one_process():
    """Every rank evaluates its contiguous part of the streams, uneven splits and ranks
    without a stream included; the parts' sums add up to one process's to 1e-14."""
    from charrnn import model as M
    from charrnn.evaluate import evaluate

    class Rank(distributed.Ranks):  # span() of rank r of N, without MPI; total() left to the test
        def __init__(self, rank, size):
            self.rank, self.size = rank, size

        def total(self, x):
            return x

    rng = np.random.default_rng(0)
    for cell in CELLS:
        spec = M.ModelSpec(cell, 7, 5, 2, 0.0, recurrent(CELLS[cell]))
        params = M.init_params(spec, rng, np.float64, 0.3)
        for n_chars, N in [(300, 2), (300, 3), (3, 4), (2, 5)]:
            data = rng.integers(0, 7, n_chars).astype(np.uint8)
            one = evaluate(params, spec, data, batch_size=5, seq_length=7)
            parts = [evaluate(params, spec, data, batch_size=5, seq_length=7, comm=Rank(r, N)) for r in range(N)]
            assert sum(p.chars for p in parts) == N * one.chars  # each part divides by all characters
            split = sum(p.nats for p in parts)
            assert abs(split - one.nats) <= 1e-14 * one.nats, (cell, n_chars, N, split, one.nats)


# ----------------------------------------------------------------------------- under MPI

CASES = {
    "rnn-adagrad": dict(model={"cell": "rnn"}, optim={"name": "adagrad", "lr": 0.1}),
    "lstm-2layers-dropout-adam-ema": dict(model={"cell": "lstm", "layers": 2, "dropout": 0.3},
                                          optim={"name": "adam", "lr": 0.01, "ema": 0.9}),
    "gru-multiplicative-2layers-adamw-clipnorm-cosine": dict(
        model={"cell": "gru", "layers": 2, "multiplicative": True},
        optim={"name": "adam", "lr": 0.01, "weight_decay": 0.1, "clip_norm": 1.0, "schedule": "cosine",
               "warmup_steps": 5}),
    "lstm-dropout-adam-variable-length": dict(model={"cell": "lstm", "dropout": 0.3},
                                              optim={"name": "adam", "lr": 0.01}, train={"variable_length": True}),
}


@needs_mpi
@pytest.mark.parametrize("case", [c if c == "rnn-adagrad" else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_two_ranks_train_the_same_run_as_one_process(tmp_path, corpus_2000, case):
    """float64, 50 steps through a wrap of the streams: the loss of every step, the validation
    losses and every array of the final checkpoint (weights, optimizer state, weight average,
    carried state of all B streams) agree to 1e-10 relative with one process."""
    cfg = config(tmp_path, corpus_2000, **CASES[case])
    one = run("train", "--config", cfg, "-q", "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    two = mpiexec("train", "--config", cfg, "-q", "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    loss, val, arrays = compare_runs(tmp_path / "two", tmp_path / "one")
    worst = max(arrays, key=arrays.get)
    SHOWN.append((case, loss, val, worst, arrays[worst]))
    print(f"\n{case}: losses {loss:.1e}, validation {val:.1e}, checkpoint {arrays[worst]:.1e} ({worst})")
    assert lines(tmp_path / "one" / "metrics.jsonl")[-1]["epoch"] == 1, "the streams should have wrapped"
    assert loss <= TOL and val <= TOL, (loss, val)
    assert all(d <= TOL for d in arrays.values()), arrays


@pytest.mark.slow
@needs_mpi
def test_resume_on_another_number_of_processes(tmp_path, corpus_2000):
    """A run saved at step 25 on 2 ranks resumes in one process, and one saved in one
    process resumes on 2 ranks: each within 1e-10 of both uninterrupted runs (1 and 2
    processes). Saved and resumed on the same N, it is bitwise the uninterrupted run of N."""
    cfg = config(tmp_path, corpus_2000, model={"cell": "lstm", "dropout": 0.2}, optim={"name": "adam", "lr": 0.01})
    d = {name: tmp_path / name for name in ("u1", "u2", "h1", "h2", "r21", "r12", "r22", "r11")}
    assert run("train", "--config", cfg, "-q", "--out", d["u1"]).exit_code == 0
    assert mpiexec("train", "--config", cfg, "-q", "--out", d["u2"]).returncode == 0
    assert run("train", "--config", cfg, "-q", "--out", d["h1"], "--stop-at", 25).exit_code == 0
    assert mpiexec("train", "--config", cfg, "-q", "--out", d["h2"], "--stop-at", 25).returncode == 0
    for first, then in [("h2", "r21"), ("h1", "r12"), ("h2", "r22"), ("h1", "r11")]:
        shutil.copytree(d[first], d[then])
    assert run("train", "--resume", d["r21"] / "ckpt.npz", "-q").exit_code == 0
    assert run("train", "--resume", d["r11"] / "ckpt.npz", "-q").exit_code == 0
    for name in ("r12", "r22"):
        r = mpiexec("train", "--resume", d[name] / "ckpt.npz", "-q")
        assert r.returncode == 0, r.stderr
    assert same_bits(d["r22"], d["u2"]) and same_bits(d["r11"], d["u1"])
    for resumed in ("r21", "r12"):
        for whole in ("u1", "u2"):
            loss, val, arrays = compare_runs(d[resumed], d[whole], first_step=25)
            print(f"\n{resumed} vs {whole}: losses {loss:.1e}, validation {val:.1e}, "
                  f"checkpoint {max(arrays.values()):.1e}")
            assert loss <= TOL and val <= TOL and max(arrays.values()) <= TOL, (resumed, whole, loss, val, arrays)


@pytest.mark.slow
@needs_mpi
def test_a_batch_that_the_ranks_cannot_share_is_a_one_line_usage_error(tmp_path, corpus_2000):
    r = mpiexec("train", "--config", config(tmp_path, corpus_2000), "-q", "--out", tmp_path / "run", n=3)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        "Error: train.batch_size 4 cannot be split between 3 processes: run a number of processes that "
        "divides it (1, 2, 4), or set train.batch_size to a multiple of 3"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@needs_mpi
def test_rank_0_alone_writes_and_speaks(tmp_path, corpus_2000):
    """The ranks run in different working directories with a relative --out: only rank 0's
    gets a run directory. The summary line, the previews and the progress bar come once, and a
    run ended by the time budget ends on both ranks at the same step."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 100000, "sample_every": 7, "max_minutes": 0.02,
                                          "log_every": 5, "log_seconds": None, "eval_every": 0,
                                          "checkpoint_every": 0})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    args = [sys.executable, "-m", "charrnn", "train", "--config", cfg, "--out", "run"]
    cmd = [MPIEXEC, "-n", "1", "-wdir", str(a), *args, ":", "-n", "1", "-wdir", str(b), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=240)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(a / "run")) == [".lock", "best.npz", "ckpt.npz", "config.yaml", "metrics.jsonl",
                                             "status.json"]
    assert os.listdir(b) == []
    summary = [line for line in r.stderr.splitlines() if line.startswith("step ") and " | " not in line]
    assert len(summary) == 1 and "(time budget)" in summary[0], r.stderr
    step = int(summary[0].split()[1])
    shown = [line.split()[1] for line in r.stderr.splitlines() if line.startswith("step ") and " | " in line]
    assert shown == [f"{s}/100000" for s in range(5, step + 1, 5)], r.stderr  # plain lines, once, every log_every
    assert "\r" not in r.stderr and "processes 2 (MPI), 2 of the 4 streams each; BLAS threads per process" in r.stderr
    assert ckpt_io.load(str(a / "run" / "ckpt.npz")).run.step == step
    previews = [line for line in r.stderr.splitlines() if line.startswith("----- sample at step")]
    assert [int(line.split()[4]) for line in previews] == list(range(7, step + 1, 7))
    assert r.stdout == ""


@pytest.mark.slow
@needs_mpi
def test_an_error_on_rank_1_alone_ends_both_ranks_with_its_message(tmp_path, start):
    """A real MemoryError on rank 1 only: its address space is capped (prlimit RLIMIT_AS) while
    it trains, so the first validation, which needs new memory for 128-step chunks, fails
    there. Both ranks end, rank 0 prints rank 1's error in one line, exit 1."""
    corpus = first_chars(tmp_path, 20000)
    cfg = config(tmp_path, corpus, data={"val_fraction": 0.5}, model={"cell": "lstm", "hidden_size": 128},
                 train={"steps": 100000, "eval_every": 100, "checkpoint_every": 0})
    out = tmp_path / "run"
    proc = start("train", "--config", cfg, "--out", out, "-q")
    wait_for(lambda: lines(out / "metrics.jsonl"), proc, "the first step")
    pid = rank_pids(str(out))[1]
    with open(f"/proc/{pid}/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    resource.prlimit(pid, resource.RLIMIT_AS, (vm + 2 * 2**20,) * 2)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    errors = error_lines(stderr)
    assert len(errors) == 1 and errors[0].startswith("Error: rank 1 of 2: MemoryError: Unable to allocate"), stderr
    assert max(m["step"] for m in lines(out / "metrics.jsonl")) <= 100  # rank 0 went no further
    assert rank_pids(str(out)) == {}


@pytest.mark.slow
@needs_mpi
def test_a_full_disk_on_rank_0_ends_both_ranks_and_keeps_the_last_checkpoint(tmp_path, corpus_2000, start):
    """Rank 0's files may not grow past 8 KB (prlimit RLIMIT_FSIZE on the running rank 0, after
    its first checkpoint): the next checkpoint fails with EFBIG. Both ranks end with the
    one-line error, exit 1; the last good checkpoint is intact and no temporary file is left."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 100000, "log_every": 1000, "eval_every": 0,
                                          "checkpoint_every": 10})
    out = tmp_path / "run"
    proc = start("train", "--config", cfg, "--out", out, "-q")
    wait_for(lambda: (out / "ckpt.npz").exists(), proc, "the first checkpoint")
    assert os.path.getsize(out / "ckpt.npz") > 8192
    resource.prlimit(rank_pids(str(out))[0], resource.RLIMIT_FSIZE, (8192, 8192))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    ck = ckpt_io.load(str(out / "ckpt.npz"))
    assert error_lines(stderr) == [f"Error: {out / 'ckpt.npz'}: cannot write (File too large); the last checkpoint, "
                                   f"{out / 'ckpt.npz'}, holds step {ck.run.step}"], stderr
    assert ck.run.step % 10 == 0 and ck.run.step >= 10
    assert sorted(os.listdir(out)) == [".lock", "ckpt.npz", "config.yaml", "metrics.jsonl", "status.json"]


@pytest.mark.slow
@needs_mpi
def test_a_corpus_that_rank_1_cannot_open_ends_both_ranks(tmp_path, corpus_2000):
    """data.path is /dev/fd/57: open on the corpus in rank 0's process, not in rank 1's, like
    a file system that one node does not mount. Rank 1 fails before any collective call of
    the run; rank 0 learns it at its first one."""
    cfg = config(tmp_path, corpus_2000, data={"path": "/dev/fd/57"})
    args = ["-m", "charrnn", "train", "--config", cfg, "--out", str(tmp_path / "run"), "-q"]
    with_fd = (f"import os, sys; os.dup2(os.open({str(corpus_2000)!r}, os.O_RDONLY), 57); "
               "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    cmd = [MPIEXEC, "-n", "1", sys.executable, "-c", with_fd, *args, ":", "-n", "1", sys.executable, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr) == ["Error: rank 1 of 2: /dev/fd/57: corpus file not found"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("how", ["SIGINT to rank 1", "SIGTERM to mpiexec"])
def test_a_stop_signal_stops_every_rank_after_the_same_step(tmp_path, corpus_2000, how, start):
    """The stop flag travels with every step's control allreduce: a SIGINT that only rank 1
    receives, or a SIGTERM to mpiexec (which forwards it), stops both ranks after the same
    step; rank 0 saves once and says how to resume; the run then resumes in one process."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 100000, "eval_every": 0, "checkpoint_every": 0})
    out = tmp_path / "run"
    proc = start("train", "--config", cfg, "--out", out, "-q")
    wait_for(lambda: len(lines(out / "metrics.jsonl")) >= 3, proc, "three steps")
    if how == "SIGINT to rank 1":
        os.kill(rank_pids(str(out))[1], signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (130, 143), stderr
    said = [line for line in stderr.splitlines() if line.startswith("interrupted at step")]
    assert len(said) == 1 and "continue with: charrnn train --resume" in said[0], stderr
    step = int(said[0].split()[3].rstrip(";"))
    assert ckpt_io.load(str(out / "ckpt.npz")).run.step == step == lines(out / "metrics.jsonl")[-1]["step"]
    more = run("train", "--resume", out / "ckpt.npz", "-q", "--steps", step + 3)
    assert more.exit_code == 0, more.output
    assert lines(out / "metrics.jsonl")[-1]["step"] == step + 3


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("differ", ["initial weights", "learning rate"])
def test_ranks_whose_weights_differ_are_stopped(tmp_path, corpus_2000, differ):
    """Ranks started from different --init-from checkpoints are stopped before the first
    step; ranks whose updates differ (another learning rate on rank 1) at the first checkpoint,
    which is then not written."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 30, "checkpoint_every": 10, "eval_every": 0})
    args = [sys.executable, "-m", "charrnn", "train", "--config", cfg, "--out", str(tmp_path / "run"), "-q"]
    if differ == "initial weights":
        for seed in (1, 2):
            assert run("train", "--config", cfg, "-q", "--steps", 1, "--seed", seed,
                       "--out", tmp_path / f"init{seed}").exit_code == 0
        first, second = [args + ["--init-from", str(tmp_path / f"init{s}" / "ckpt.npz")] for s in (1, 2)]
    else:
        first, second = args, args + ["--set", "optim.lr=0.2"]
    r = subprocess.run([MPIEXEC, "-n", "1", *first, ":", "-n", "1", *second], capture_output=True, text=True,
                       env=mpi_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stderr
    step = 0 if differ == "initial weights" else 10
    assert error_lines(r.stderr) == [f"Error: the weights of rank 1 of 2 differ from rank 0's at step {step}: " + (
        "start every rank with the same command and files (config, --resume, --init-from)" if step == 0 else
        "the ranks computed different updates (settings that differ between ranks, or mixed hardware or "
        "libraries); no checkpoint was written for it")]
    assert not (tmp_path / "run" / "ckpt.npz").exists()


@pytest.mark.slow
@needs_mpi
def test_ranks_that_read_different_corpora_are_stopped(tmp_path, corpus_2000):
    """--data is relative, and rank 1 starts in another directory: the same path names
    another file there (as another mount would), of the same size and characters. Both ranks
    stop before the first step, with one line naming the ranks and paths; no checkpoint."""
    text = corpus_2000.read_text(encoding="utf-8")
    for d, t in (("r0", text), ("r1", text[::-1])):
        (tmp_path / d).mkdir()
        (tmp_path / d / "c.txt").write_text(t, encoding="utf-8")
    cfg = config(tmp_path, corpus_2000)
    args = ["-m", "charrnn", "train", "--config", cfg, "--data", "c.txt", "--out", str(tmp_path / "run"), "-q"]
    chdir = (f"import os, sys; os.chdir({str(tmp_path / 'r1')!r}); "
             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    cmd = [MPIEXEC, "-n", "1", "-wdir", str(tmp_path / "r0"), sys.executable, *args, ":",
           "-n", "1", sys.executable, "-c", chdir, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stderr
    said = error_lines(r.stderr)
    assert len(said) == 1 and said[0].startswith(
        f"Error: ranks 0 and 1 of 2 read different corpora: {tmp_path / 'r0' / 'c.txt'} on rank 0 "), r.stderr
    assert f"{tmp_path / 'r1' / 'c.txt'} on rank 1" in said[0] and "their contents differ" in said[0]
    assert not (tmp_path / "run" / "ckpt.npz").exists()


@needs_mpi
def test_a_pipe_as_the_corpus_of_two_ranks_is_refused_once_and_copies_nothing(tmp_path):
    """A FIFO gives its bytes to one reader: refused on every rank before any opens it (no
    hang on a writer, no temporary copy), said once."""
    fifo, tmp = tmp_path / "fifo", tmp_path / "tmp"
    os.mkfifo(fifo)
    tmp.mkdir()
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "charrnn", "train", "--config", config(tmp_path, fifo),
           "--out", str(tmp_path / "run"), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**mpi_env(), "TMPDIR": str(tmp)}, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        f"Error: {fifo}: a pipe or device cannot be the corpus of 2 processes (each rank reads the corpus itself): "
        "copy it to a file, or charrnn prepare it into a directory, and train on that"]
    assert os.listdir(tmp) == [] and not (tmp_path / "run").exists()


@needs_mpi
def test_a_usage_error_under_mpiexec_is_said_once(tmp_path):
    r = mpiexec("train", "--no-such-option")
    assert r.returncode == 2, r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("Error")] == [
        "Error: No such option '--no-such-option'. (charrnn train --help lists the options)"]


@pytest.mark.slow
@needs_mpi
def test_resume_on_a_number_of_ranks_that_does_not_divide_the_batch_advises_one_that_does(tmp_path, corpus_2000):
    cfg = config(tmp_path, corpus_2000)
    assert run("train", "--config", cfg, "-q", "--stop-at", 2, "--out", tmp_path / "run").exit_code == 0
    r = mpiexec("train", "--resume", tmp_path / "run" / "ckpt.npz", "-q", n=3)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        "Error: train.batch_size 4 cannot be split between 3 processes: the resumed run's train.batch_size is "
        "fixed: run a number of processes that divides it (mpiexec -n N with N one of 1, 2, 4)"]


# ----------------------------------------------------------------------------- a rank that does not answer

PEER_TIMEOUT = 5  # train.peer_timeout of the frozen-rank runs, seconds
ENDS_WITHIN = PEER_TIMEOUT + distributed.GRACE + 20  # generous: the machine is shared and loaded


def frozen_run(tmp_path, corpus, start, peer_timeout=PEER_TIMEOUT):
    """A 2-rank run that checkpoints every 10 steps, waited for until its first checkpoint:
    (its Popen, its run directory, {rank: pid})."""
    cfg = config(tmp_path, corpus, train={"steps": 100000, "log_every": 1000, "eval_every": 0,
                                          "checkpoint_every": 10, "peer_timeout": peer_timeout})
    out = tmp_path / "run"
    proc = start("train", "--config", cfg, "--out", out, "-q")
    wait_for(lambda: (out / "ckpt.npz").exists(), proc, "the first checkpoint")
    pids = rank_pids(str(out))
    assert sorted(pids) == [0, 1], pids
    return proc, out, pids


@pytest.fixture
def frozen():
    """``frozen(pid)``: SIGSTOP the rank process ``pid``; at teardown, a frozen rank that is still
    there (a failed test) is killed, so that no test leaves a process behind."""
    stopped = []

    def freeze(pid):
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        return time.monotonic()

    yield freeze
    for pid in stopped:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"charrnn" in f.read():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def ended(proc, timeout=120):
    """The stderr of the job ``proc`` once it has ended; if it is still running after ``timeout``
    seconds (a hang: what these tests exist to rule out), fail with the state of every process
    of the job (each one's state, what it waits in, its command) and what it printed so far."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        table = subprocess.run(["ps", "-e", "-o", "pid,ppid,stat,wchan:24,etime,args", "--forest"],
                               capture_output=True, text=True).stdout
        job = [line for line in table.splitlines() if "charrnn" in line or "hydra" in line or "mpiexec" in line]
        proc.kill()
        _, stderr = proc.communicate()
        states = "\n".join(job)
        raise AssertionError(f"the job still ran after {timeout} s:\n{states}\nstderr:\n{stderr}") from None


def said_step(line, pattern):
    """(step after which the run gave up, step the checkpoint holds) from the one line."""
    m = re.fullmatch(pattern, line)
    assert m, line
    return int(m["after"]), int(m["holds"])


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("rank", [1, 0])
def test_a_frozen_rank_ends_the_run_after_peer_timeout_in_one_line(tmp_path, corpus_2000, start, frozen, rank):
    """A real SIGSTOP on one rank after the first checkpoint: the other gives up after
    train.peer_timeout (5 s), says in one line which rank did not answer, after which step,
    and what the last checkpoint holds (rank 1 says it when rank 0 is the frozen one); exit 1.
    The job ends whole (the launcher kills the stopped rank), the checkpoint loads, and the
    run resumes from it in one process."""
    proc, out, pids = frozen_run(tmp_path, corpus_2000, start)
    t = frozen(pids[rank])
    stderr = ended(proc)
    took = time.monotonic() - t
    assert proc.returncode == 1, stderr
    ckpt = out / "ckpt.npz"
    (line,) = error_lines(stderr)
    after, holds = said_step(line, rf"Error: rank {rank} of 2 did not answer for {PEER_TIMEOUT} s "
                                   rf"\(train\.peer_timeout\) after step (?P<after>\d+); the last checkpoint, "
                                   rf"{ckpt}, holds step (?P<holds>\d+); continue with: charrnn train --resume {ckpt}")
    print(f"\nrank {rank} frozen: the job ended {took:.1f} s after the SIGSTOP")
    assert PEER_TIMEOUT - 1 <= took <= ENDS_WITHIN, took
    assert rank_pids(str(out)) == {}
    step = ckpt_io.load(str(ckpt)).run.step
    assert step == holds and holds % 10 == 0 and after >= holds, (after, holds)
    status = json.loads((out / "status.json").read_text(encoding="utf-8"))
    if rank == 1:  # rank 0 writes RUN/status.json: how the run ended, its line as the message
        assert (status["status"], status["exit_code"], status["step"]) == ("rank lost", 1, step)
        assert status["message"] == line.removeprefix("Error: ")
        assert status["resume"] == f"charrnn train --resume {ckpt}"
    else:  # only rank 0 writes it, and rank 0 is the silent one: "running", with no process left to hold the lock
        assert status["status"] == "running"
    more = run("train", "--resume", ckpt, "-q", "--steps", step + 3)
    assert more.exit_code == 0, more.output
    assert ckpt_io.load(str(ckpt)).run.step == step + 3


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_a_rank_is_frozen_ends_the_run_within_seconds(tmp_path, corpus_2000, start, frozen,
                                                                           signame):
    """Rank 1 is stopped (SIGSTOP), then SIGTERM or SIGINT goes to mpiexec, which forwards it:
    rank 0 gives up a few seconds later, far from train.peer_timeout (120 s), with one line
    saying it was interrupted while rank 1 did not answer and what the checkpoint holds;
    exit 143 (130). Nothing is left running; the run resumes on 2 ranks."""
    proc, out, pids = frozen_run(tmp_path, corpus_2000, start, peer_timeout=120)
    frozen(pids[1])
    time.sleep(0.5)  # rank 0 is now waiting for rank 1
    sig = getattr(signal, signame)
    t = time.monotonic()
    proc.send_signal(sig)
    stderr = ended(proc, timeout=100)
    took = time.monotonic() - t
    assert proc.returncode == 128 + sig, stderr
    ckpt = out / "ckpt.npz"
    how = {"SIGTERM": "SIGTERM", "SIGINT": "Ctrl-C"}[signame]
    (line,) = error_lines(stderr)
    after, holds = said_step(line, rf"interrupted by {how} while rank 1 of 2 did not answer after step "
                                   rf"(?P<after>\d+); the last checkpoint, {ckpt}, holds step (?P<holds>\d+); "
                                   rf"continue with: charrnn train --resume {ckpt}")
    print(f"\n{signame} with rank 1 frozen: the job ended {took:.1f} s after the signal")
    assert took <= distributed.SIGNAL_GRACE + distributed.GRACE + 20, took
    assert rank_pids(str(out)) == {}
    step = ckpt_io.load(str(ckpt)).run.step
    assert step == holds and after >= holds
    status = json.loads((out / "status.json").read_text(encoding="utf-8"))
    assert (status["status"], status["signal"], status["exit_code"], status["message"]) == (
        "interrupted", signame, 128 + sig, line)
    r = mpiexec("train", "--resume", ckpt, "-q", "--steps", step + 3)
    assert r.returncode == 0, r.stderr
    assert ckpt_io.load(str(ckpt)).run.step == step + 3


class FakeMPI:
    """What ``Ranks._wait`` and ``_give_up`` use of mpi4py's MPI module, for the unit tests below."""

    ANY_SOURCE = -1

    class Status:
        source = None

        def Get_source(self):
            return self.source


class FakeComm:
    """Rank 0 of 2: its collectives complete when ``done()`` says so; the notices it is sent are
    ``inbox`` ({source: [code, signum]}); those it sends are kept."""

    def __init__(self, inbox=None):
        self.inbox, self.sent = dict(inbox or {}), []

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def Iprobe(self, source, tag, status=None):
        if self.inbox and status is not None:
            status.source = next(iter(self.inbox))
        return bool(self.inbox)

    def Recv(self, buf, source, tag):
        buf[:] = self.inbox.pop(source)

    def Isend(self, buf, dest, tag):
        self.sent.append((dest, tag, list(buf)))


class Request:
    def __init__(self, after):  # completes ``after`` seconds from now (None: never)
        self.at = None if after is None else time.monotonic() + after

    def Test(self):
        return self.at is not None and time.monotonic() >= self.at


@pytest.fixture
def ranks(monkeypatch):
    """``ranks(inbox)``: a Ranks over FakeComm, with short graces and the exit at the end of a
    give-up recorded (not registered: it would end pytest)."""
    left = []
    monkeypatch.setattr(distributed, "GRACE", 0.3)
    monkeypatch.setattr(distributed, "SIGNAL_GRACE", 0.3)
    monkeypatch.setattr(distributed.atexit, "register", lambda f: left.append(f.__self__.exit_code))

    def make(inbox=None):
        r = distributed.Ranks(FakeComm(inbox), FakeMPI)
        r.left = left
        return r

    return make


def test_a_collective_that_completes_is_seen_soon_after(ranks):
    """The naps grow with the wait, but stay a tenth of it: 0.2 s is seen within ~10%."""
    r = ranks()
    for after in (0.0, 0.001, 0.2):
        t = time.monotonic()
        r._wait(Request(after))
        late = time.monotonic() - t - after
        assert late <= 0.1 * after + 0.015, (after, late)
    assert r.comm.sent == [] and r.left == []


@pytest.mark.slow
def test_a_collective_that_never_completes_gives_up_after_the_timeout(ranks):
    """A request that never completes: after peer_timeout the rank sends its notice (exit code
    1) to rank 1, waits the grace for rank 1's, and raises PeerLost naming rank 1; the process
    is set to leave with code 1, and nothing further is attempted (``end`` does nothing)."""
    r = ranks()
    r.heed(0.5)
    t = time.monotonic()
    with pytest.raises(distributed.PeerLost, match=r"^rank 1 of 2 did not answer for 0\.5 s \(train\.peer_timeout\)$") \
            as e:
        r._wait(Request(None))
    took = time.monotonic() - t
    assert 0.5 <= took <= 0.5 + 0.3 + 0.5, took
    assert e.value.exit_code == 1 and e.value.silent == (1,)
    assert r.comm.sent == [(1, distributed.NOTICE, [1, 0])] and r.left == [1]
    assert r.speaker is True
    r.end(None)  # no collective: it would wait for rank 1 again


@pytest.mark.slow
def test_a_stop_signal_while_waiting_gives_up_after_the_signal_grace(ranks):
    """The stop flag is set (SIGTERM) while the collective waits: it gives up SIGNAL_GRACE
    later, long before the timeout, exit 143."""
    from charrnn.signals import StopFlag

    r = ranks()
    stop = StopFlag()
    stop.signum = signal.SIGTERM
    r.heed(600, stop)
    t = time.monotonic()
    with pytest.raises(distributed.PeerLost, match="^interrupted by SIGTERM while rank 1 of 2 did not answer$") as e:
        r._wait(Request(None))
    assert time.monotonic() - t <= 0.3 + 0.3 + 0.5
    assert e.value.exit_code == 143 and r.left == [143]


def test_a_notice_from_a_rank_that_gave_up_ends_the_wait_at_once(ranks):
    """Rank 1 gave up first (its notice: code 1, no signal): rank 0 gives up at its next look,
    without waiting for the timeout; rank 1 answered, so no rank is named silent."""
    r = ranks(inbox={1: [1, 0]})
    r.heed(600)
    t = time.monotonic()
    with pytest.raises(distributed.PeerLost, match="^the 2 ranks fell out of step") as e:
        r._wait(Request(None))
    assert time.monotonic() - t <= 0.5
    assert e.value.silent == () and r.left == [1]


# ----------------------------------------------------------------------------- two hosts on this machine

IP = shutil.which("ip") or "/usr/sbin/ip"
# What keeps MPICH's ranks off shared memory, so that the gradients cross the veth link over
# TCP: without MPIR_CVAR_NOLOCAL both "hosts" (one hostname) talk through /dev/shm, and with
# it alone UCX still picks its own shared-memory transports (measured: ~8 kB on the link
# for 80 MB of allreduces, against 80 MB with both).
OVER_TCP = {"MPIR_CVAR_NOLOCAL": "1", "UCX_TLS": "tcp,self"}


def _ip(*args):
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def hosts():
    """Two network namespaces joined by a veth pair, 10.77.0.1/24 and 10.77.0.2/24: two hosts
    on this machine. Yields ``Hosts``; at teardown every process left in them is killed and
    both are deleted (which deletes the link). Skipped, with the reason, where namespaces
    cannot be made (not root, no ip, refused)."""
    tag = f"{os.getpid() % 100000}"
    names = (f"charrnn{tag}a", f"charrnn{tag}b")
    links = (f"cr{tag}a", f"cr{tag}b")
    if not os.path.exists(IP):
        pytest.skip("no ip command: two network namespaces cannot be made")
    made = []
    try:
        for ns in names:
            r = _ip("netns", "add", ns)
            if r.returncode:
                pytest.skip(f"cannot make a network namespace (ip netns add): {r.stderr.strip()}")
            made.append(ns)
        steps = [("link", "add", links[0], "type", "veth", "peer", "name", links[1])]
        for ns, link, addr in zip(names, links, ("10.77.0.1/24", "10.77.0.2/24"), strict=True):
            steps += [("link", "set", link, "netns", ns), ("-n", ns, "addr", "add", addr, "dev", link),
                      ("-n", ns, "link", "set", "lo", "up"), ("-n", ns, "link", "set", link, "up")]
        for step in steps:
            r = _ip(*step)
            if r.returncode:
                pytest.skip(f"cannot join two network namespaces (ip {' '.join(step)}): {r.stderr.strip()}")
        two = Hosts(names, links)
        yield two
    finally:
        for ns in made:
            for pid in _ip("netns", "pids", ns).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for proc in two.procs if "two" in locals() else ():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for ns in made:
            for _ in range(50):  # the killed processes leave the namespace first
                if _ip("netns", "del", ns).returncode == 0:
                    break
                time.sleep(0.1)


class Hosts:
    """``start(ARGS)``: ``mpiexec -n 2 python -m charrnn ARGS`` with rank 0 on host a and rank 1
    on host b: mpiexec runs in a with hydra's manual launcher, and each proxy command that it
    prints runs in its namespace (``ip netns exec``). Returns mpiexec's Popen."""

    def __init__(self, names, links):
        self.names, self.links, self.procs = names, links, []

    def start(self, *args):
        env = {k: v for k, v in mpi_env().items() if k != "HYDRA_LAUNCHER"}
        env.update(OVER_TCP)
        cmd = [IP, "netns", "exec", self.names[0], MPIEXEC, "-launcher", "manual", "-hosts", "10.77.0.1,10.77.0.2",
               "-n", "2", sys.executable, "-m", "charrnn", *map(str, args)]
        job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        proxies = []
        for line in job.stdout:
            if line.startswith("HYDRA_LAUNCH_END"):
                break
            if line.startswith("HYDRA_LAUNCH:"):
                proxies.append(line.split(":", 1)[1].split())
        assert len(proxies) == 2, proxies
        for ns, proxy in zip(self.names, proxies, strict=True):
            self.procs.append(subprocess.Popen([IP, "netns", "exec", ns, *proxy], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, env=env, cwd=ROOT))
        self.procs.append(job)
        return job

    def received(self, i):
        """Bytes received so far on host i's end of the link."""
        out = _ip("-n", self.names[i], "-s", "-j", "link", "show", self.links[i]).stdout
        return json.loads(out)[0]["stats64"]["rx"]["bytes"]

    def cut(self):
        """Take the link down (on host a's end: the pair goes down)."""
        r = _ip("-n", self.names[0], "link", "set", self.links[0], "down")
        assert r.returncode == 0, r.stderr

    def heal(self):
        r = _ip("-n", self.names[0], "link", "set", self.links[0], "up")
        assert r.returncode == 0, r.stderr


@pytest.mark.slow
@needs_mpi
def test_a_run_across_two_hosts_equals_one_process(tmp_path, corpus_2000, hosts):
    """Rank 0 and rank 1 in two network namespaces, the gradients over TCP on the veth link
    (the bytes received on it are counted): the run is bitwise the same 2-rank run on one
    host, and within 1e-10 of one process (as test_equivalence)."""
    cfg = config(tmp_path, corpus_2000, model={"cell": "lstm"}, optim={"name": "adam", "lr": 0.01})
    assert run("train", "--config", cfg, "-q", "--out", tmp_path / "one").exit_code == 0
    r = mpiexec("train", "--config", cfg, "-q", "--out", tmp_path / "local")
    assert r.returncode == 0, r.stderr
    before = hosts.received(0)
    job = hosts.start("train", "--config", cfg, "-q", "--out", tmp_path / "two")
    _, stderr = job.communicate(timeout=240)
    assert job.returncode == 0, stderr
    crossed = hosts.received(0) - before
    P = sum(a.size for k, a in ckpt_io.load(str(tmp_path / "one" / "ckpt.npz")).run.params.items())
    print(f"\ntwo hosts: {crossed:,} bytes received on host a's end of the link (P = {P:,}, 50 steps)")
    assert crossed >= 50 * P * 8, crossed  # every step's float64 gradients came over the link
    assert same_bits(tmp_path / "two", tmp_path / "local")
    loss, val, arrays = compare_runs(tmp_path / "two", tmp_path / "one")
    assert loss <= TOL and val <= TOL and max(arrays.values()) <= TOL, (loss, val, arrays)


@pytest.mark.slow
@needs_mpi
def test_a_cut_link_between_two_hosts_ends_every_rank_in_one_line(tmp_path, corpus_2000, hosts):
    """The link between the two hosts goes down (ip link set down) after the first checkpoint:
    rank 0 gives up after train.peer_timeout and says in one line that rank 1 did not answer
    and what the checkpoint holds; rank 1, cut off, gives up too. Every rank process and
    both hydra proxies end within peer_timeout and a margin. mpiexec itself waits to hear
    from the cut-off proxy, and ends (exit 1) once the link is back. The checkpoint loads and
    the run resumes from it."""
    cfg = config(tmp_path, corpus_2000, train={"steps": 100000, "log_every": 1000, "eval_every": 0,
                                          "checkpoint_every": 10, "peer_timeout": PEER_TIMEOUT})
    out = tmp_path / "run"
    job = hosts.start("train", "--config", cfg, "--out", out, "-q")
    wait_for(lambda: (out / "ckpt.npz").exists(), job, "the first checkpoint")
    assert sorted(rank_pids(str(out))) == [0, 1]
    hosts.cut()
    t = time.monotonic()
    while (rank_pids(str(out)) or any(p.poll() is None for p in hosts.procs[:2])) and \
            time.monotonic() - t < ENDS_WITHIN:
        time.sleep(0.1)
    took = time.monotonic() - t
    assert rank_pids(str(out)) == {}, "a rank is still running"
    assert [p.poll() for p in hosts.procs[:2]] == [0, 0], "a proxy is still running"
    # mpiexec, on host a, waits to hear from host b's proxy: it ends once the link is back.
    waiting = job.poll() is None
    hosts.heal()
    _, stderr = job.communicate(timeout=60)
    print(f"\ncut link: the ranks and proxies ended {took:.1f} s after the cut; mpiexec "
          f"{'waited until the link was back, then ' if waiting else ''}exited {job.returncode}")
    assert job.returncode == 1, stderr
    ckpt = out / "ckpt.npz"
    said = [line for line in error_lines(stderr) if "rank 1 of 2" in line]
    assert len(said) == 1, stderr
    after, holds = said_step(said[0], rf"Error: rank 1 of 2 did not answer for {PEER_TIMEOUT} s "
                                      rf"\(train\.peer_timeout\) after step (?P<after>\d+); the last checkpoint, "
                                      rf"{ckpt}, holds step (?P<holds>\d+); continue with: charrnn train --resume "
                                      rf"{ckpt}")
    # rank 1 gave up too (its line, naming rank 0, comes through once the link is back)
    assert all("rank 0 of 2 did not answer" in line for line in error_lines(stderr) if line != said[0]), stderr
    step = ckpt_io.load(str(ckpt)).run.step
    assert step == holds and after >= holds
    more = run("train", "--resume", ckpt, "-q", "--steps", step + 3)
    assert more.exit_code == 0, more.output
    assert ckpt_io.load(str(ckpt)).run.step == step + 3


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_outside_the_loop_is_reported_to_the_other_ranks_with_its_exit_code(signum, code):
    """SIGTERM or SIGHUP while a rank reads its corpus raises signals.Signalled there; the report
    the ranks exchange (``_report``) keeps its code, so every rank exits 143 or 129, not 1."""
    from charrnn.distributed import _report
    from charrnn.signals import Signalled

    assert _report(Signalled(signum)) == (f"stopped by {signal.Signals(signum).name}", code)
