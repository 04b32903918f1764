"""Make the checkpoints of each layout in this folder with the charrnn that wrote that layout.

    python tests/data/checkpoints/make.py          (from the repository root; needs git)

Each old layout is written by the old code itself: the commit is checked out into a temporary
``git worktree`` (removed afterwards), and that charrnn trains 2 steps of a tiny RNN (H=4) on
``tiny.txt`` (10 distinct characters). The newest layout is written by this checkout's charrnn;
a GPU run's generator (a ``charrnn.CounterRNG``) cannot be made without a GPU, so ``v4.npz``
gets the state that ``train.on_device`` would start a GPU run's generator from, as a GPU run's
checkpoint holds it (docs/checkpoints.md, "Layouts").

The stored config's ``data.path`` is where the corpus was when the file was made; the tests
copy a checkpoint and point its ``data.path`` at a copy of ``tiny.txt`` to resume it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

# layout -> the commit whose charrnn wrote it (the last commit before the next layout's)
OLD = {
    1: "c63c853",  # RunState; no unit, no corpus, no first_loss/loss_sum/loss_steps (cc907c0 .. c63c853)
    2: "0464c76",  # + unit (charrnn prepare, corpora of bytes)
    3: "b9bc590^",  # + first_loss, loss_sum, loss_steps, corpus (480cbf7 .. b9bc590^)
}
CONFIG = """\
data:
  path: {corpus}
  val_fraction: 0.1
model:
  cell: rnn
  hidden_size: 4
optim:
  name: adagrad
  lr: 0.1
train:
  seq_length: 8
  batch_size: 2
  steps: 2
  seed: 7
  out_dir: {out}
  log_every: 1
  sample_every: 0
  eval_every: 0
  checkpoint_every: 1
"""


def tiny_text():
    """About 1,000 characters of 10 distinct ones: 'abcdefgh', space and newline."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefgh"), rng.integers(1, 6))) for _ in range(200)]
    lines = [" ".join(words[i:i + 8]) for i in range(0, len(words), 8)]
    return "\n".join(lines) + "\n"


def train(code, work, layout):
    """Train 2 steps with the charrnn in ``code``; the checkpoint's path."""
    out = os.path.join(work, f"run{layout}")
    cfg = os.path.join(work, f"cfg{layout}.yaml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(corpus=os.path.join(work, "tiny.txt"), out=out))
    env = dict(os.environ, PYTHONPATH=code)
    subprocess.run([sys.executable, "-m", "charrnn", "train", "--config", cfg, "-q"], check=True, env=env, cwd=work)
    return os.path.join(out, "ckpt.npz")


def main():
    with open(os.path.join(HERE, "tiny.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(tiny_text())
    work = tempfile.mkdtemp(prefix="charrnn-layouts-")
    shutil.copy(os.path.join(HERE, "tiny.txt"), work)
    try:
        for layout, commit in OLD.items():
            code = os.path.join(work, f"charrnn-{layout}")
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", code, commit], check=True)
            try:
                shutil.copy(train(code, work, layout), os.path.join(HERE, f"v{layout}.npz"))
            finally:
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", code], check=True)
        path = train(ROOT, work, 4)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        sys.path.insert(0, ROOT)
        from charrnn import checkpoint, device

        rng = checkpoint.generator(json.loads(str(arrays["rng"])))
        arrays["rng"] = np.array(json.dumps(device.CounterRNG(int(rng.integers(2**63))).state))
        np.savez(os.path.join(HERE, "v4.npz"), **arrays)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
