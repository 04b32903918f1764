"""Hashes of short runs, to show that a refactoring changed no behaviour.

Trains a few dozen steps of every shipped config (and a float64 run, a run stopped and
resumed, a 2-rank MPI run), then hashes what each run leaves: every array of ``ckpt.npz``
and ``best.npz`` (but ``elapsed_s``, and ``format_version``: a layout's number, which says
how the arrays are stored, not what they are), ``metrics.jsonl`` without its clock fields
(``elapsed_s``, ``chars_per_s``), and a seeded ``charrnn sample``. The paths a checkpoint
records (the run directory, the corpus's path) are left out, so that two checkouts compare. Run it on the tree before
a change and after it, and compare:

    python benchmarks/behaviour_hashes.py --out before.json
    ...change...
    python benchmarks/behaviour_hashes.py --out after.json --compare before.json

Every run goes through the command line, as users run it, in a temporary folder. A run of
fewer steps than its config's ``train.steps`` is a pause there (no final validation, the
config's schedule): ``--stop-at N`` where the charrnn has it, else ``--steps N``, which meant
that before ``--steps`` became the run's length; so two trees on either side of that change
compare.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK = ("elapsed_s", "chars_per_s")
# Short, but through every part of the loop: logs, previews, validation, best.npz, checkpoints.
COMMON = ["--set", "train.log_every=5", "--set", "train.sample_every=15", "--set", "train.checkpoint_every=10",
          "--set", "train.eval_chars=20000"]
RUNS = {  # name: (config, steps, extra arguments)
    "smoke": ("smoke", 60, []),
    "default": ("default", 30, ["--set", "train.eval_every=20"]),
    "gru": ("gru", 20, ["--set", "train.eval_every=10"]),
    "lstm": ("lstm", 20, ["--set", "train.eval_every=10", "--set", "model.dropout=0.25"]),
    "minchar": ("minchar", 60, []),
    "shakespeare": ("shakespeare", 20, ["--set", "train.eval_every=10", "--set", "optim.warmup_steps=5",
                                        "--set", "train.steps=30"]),
    "lstm_float64": ("lstm", 20, ["--set", "model.dtype=float64", "--set", "train.eval_every=10",
                                  "--set", "train.patience=1", "--set", "model.hidden_size=64"]),
    "smoke_finished": ("smoke", None, ["--set", "train.steps=40", "--set", "train.eval_every=15"]),
}


# Config keys added since the script's reference commit, at their defaults: a run that leaves
# them as they are has the config it had then (a value set otherwise still changes the hash).
ADDED_KEYS = {("train", "peer_timeout"): 600.0, ("train", "log_seconds"): 10.0, ("train", "variable_length"): False,
              ("model", "layer_norm"): False, ("model", "residual"): False}


def digest_npz(path):
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
    with np.load(path, allow_pickle=False) as z:
        for name in names:
            key = name[:-4]
            if key in ("elapsed_s", "format_version"):
                continue
            a = z[key]
            if key in ("config", "corpus"):  # JSON, without the paths (its dtype, <U697, is its length)
                record = json.loads(str(a))
                if key == "config":
                    record["train"]["out_dir"] = record["data"]["path"] = None
                    for (section, name), default in ADDED_KEYS.items():
                        if record.get(section, {}).get(name, default) == default:
                            record.get(section, {}).pop(name, None)
                else:
                    record["path"] = None
                h.update(key.encode() + json.dumps(record, sort_keys=True).encode())
            else:
                h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode())
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def digest_metrics(path):
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            lines.append(json.dumps({k: v for k, v in record.items() if k not in CLOCK}, sort_keys=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16], len(lines)


def charrnn(args, env, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "charrnn", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def hash_run(out, env):
    result = {"ckpt": digest_npz(os.path.join(out, "ckpt.npz"))}
    if os.path.exists(os.path.join(out, "best.npz")):
        result["best"] = digest_npz(os.path.join(out, "best.npz"))
    result["metrics"], result["metric_lines"] = digest_metrics(os.path.join(out, "metrics.jsonl"))
    s = charrnn(["sample", "--checkpoint", os.path.join(out, "ckpt.npz"), "-n", "200", "--seed", "3"], env)
    result["sample"] = hashlib.sha256(s.stdout.encode()).hexdigest()[:16]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file for the hashes")
    ap.add_argument("--compare", help="an earlier --out file: exit 1 if any hash differs")
    ap.add_argument("--no-mpi", action="store_true", help="leave out the 2-rank MPI run")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    hashes = {}
    helped = subprocess.run([sys.executable, "-m", "charrnn", "train", "--help"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    pause = "--stop-at" if "--stop-at" in helped else "--steps"  # see the module docstring
    tmp = tempfile.mkdtemp(prefix="charrnn-hashes-")
    try:
        for name, (config, steps, extra) in RUNS.items():
            out = os.path.join(tmp, name)
            args = ["train", "--config", f"configs/{config}.yaml", "--out", out, "-q", *COMMON, *extra]
            charrnn(args + ([pause, str(steps)] if steps else []), env)
            hashes[name] = hash_run(out, env)
            print(name, hashes[name], file=sys.stderr)
        # Stopped at step 25 and resumed: the same files as one uninterrupted run of 50.
        out = os.path.join(tmp, "resumed")
        base = ["--config", "configs/lstm.yaml", "--out", out, "-q", *COMMON, "--set", "train.eval_every=10",
                "--set", "model.hidden_size=48", "--set", "optim.ema=0.9", "--set", "optim.schedule=cosine",
                "--set", "train.steps=50", "--set", "model.dropout=0.1"]
        charrnn(["train", *base, pause, "25"], env)
        charrnn(["train", "--resume", os.path.join(out, "ckpt.npz"), "-q"], env)
        hashes["lstm_resumed"] = hash_run(out, env)
        print("lstm_resumed", hashes["lstm_resumed"], file=sys.stderr)
        if not a.no_mpi:
            mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
            out = os.path.join(tmp, "mpi2")
            charrnn(["train", "--config", "configs/gru.yaml", "--out", out, "-q", *COMMON,
                     "--set", "train.eval_every=10", "--set", "model.hidden_size=64", pause, "20"],
                    dict(env, HYDRA_LAUNCHER="fork"), prefix=(mpiexec, "-n", "2"))
            hashes["gru_mpi2"] = hash_run(out, env)
            print("gru_mpi2", hashes["gru_mpi2"], file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(a.out, "w") as f:
        json.dump(hashes, f, indent=1, sort_keys=True)
    if a.compare:
        with open(a.compare) as f:
            before = json.load(f)
        differ = [k for k in sorted(set(before) | set(hashes)) if before.get(k) != hashes.get(k)]
        for k in differ:
            print(f"DIFFERS {k}: before {before.get(k)}, now {hashes.get(k)}")
        print(f"{len(hashes) - len(differ)} of {len(set(before) | set(hashes))} runs identical")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
