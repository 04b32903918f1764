"""Checkpoints: one self-describing ``.npz`` file that resumes a run exactly.

Written atomically (a temporary file in the same directory, flushed and fsynced, then
``os.replace``), so a crash or Ctrl-C leaves either the previous checkpoint or the new one,
never half of one. Read with ``allow_pickle=False``: a checkpoint is data, never code.
Every array is read and validated before anything is returned, so a damaged file is
reported in one line and never half-loaded.

Keys (see the README for the full table):

- the parameters under their names (``Wxh``, ``Whh``, ``bh``, ``Why``, ``by``, ``Wxh_1``, ...)
- ``optim.<slot>.<param>``: optimizer state (e.g. ``optim.mem.Wxh`` for Adagrad)
- ``ema.<param>``: the moving average of the weights, when ``optim.ema`` is set (not yet
  bias-corrected; ``weights`` gives the average itself)
- ``state.<layer>.<h|c>``: the carried hidden state, (B, H)
- ``vocab``: int32 code points in index order; ``config``: the resolved config as JSON
- ``step``, ``position``, ``epoch``, ``smooth_loss``, ``elapsed_s``, ``val_loss``,
  ``best_val_loss``, ``evals_since_best``, ``rng`` (the training random generator's state as
  JSON), ``format_version``
"""

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from charrnn import config as C
from charrnn import optim
from charrnn.errors import CharrnnError, UsageError
from charrnn.model import ModelSpec, param_shapes

FORMAT_VERSION = 1
SCALARS = ("step", "position", "epoch", "smooth_loss", "elapsed_s", "val_loss", "best_val_loss", "evals_since_best")


@dataclass
class RunState:
    """Everything that changes while a run trains, and that resuming needs: one object that a
    training step updates and a checkpoint saves and loads whole.

    Arrays live on the run's device (NumPy here); the carried state holds all B streams (under
    MPI, a rank's holds its own B/N, and ``distributed.Ranks.whole`` gathers all B for a checkpoint).
    """

    params: dict  # name -> array
    opt_state: dict  # "<slot>.<param>" -> array: the optimizer's state by parameter name
    ema: Optional[dict]  # name -> array: the weights' moving average accumulator (optim.ema), or None
    state: list  # carried hidden state: per layer, a tuple of (B, H) arrays
    rng: np.random.Generator  # draws the dropout masks
    step: int = 0  # optimizer steps taken
    position: int = 0  # offset of the next chunk in every stream
    epoch: int = 0  # times the streams have wrapped
    smooth_loss: float = float("nan")  # min-char-rnn's smoothed loss (per chunk, as it keeps it)
    elapsed_s: float = 0.0  # wall time of training so far, across resumes
    val_loss: float = float("nan")  # last validation loss, nats per character (nan: none yet)
    best_val_loss: float = float("inf")  # lowest validation loss seen (the one in best.npz)
    evals_since_best: int = 0  # evaluations since it, for early stopping


@dataclass
class Checkpoint:
    """A run's state and what it describes: the vocabulary, the resolved config, the model."""

    run: RunState
    vocab: np.ndarray  # (V,) int32 code points
    config: C.Config
    spec: ModelSpec


def weights(ck):
    """The weights to evaluate and sample with: the moving average of the weights when the
    run keeps one (``optim.ema``) and has taken a step, otherwise the trained parameters."""
    return optim.eval_weights(ck.run.params, ck.run.ema, ck.config.optim.ema, ck.run.step)


def _new_file_mode():
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then move it into place.

    mkstemp creates the temporary file readable by its owner only (0600); it gets the mode a
    plainly written file would have, so that a run's checkpoints, config and plots are as
    readable as its metrics.jsonl.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(path, ck):
    """Write checkpoint ``ck`` to ``path`` atomically."""
    run = ck.run
    arrays = dict(run.params)
    arrays.update({f"optim.{k}": v for k, v in run.opt_state.items()})
    if run.ema is not None:
        arrays.update({f"ema.{k}": v for k, v in run.ema.items()})
    for layer, arrs in enumerate(run.state):
        for name, a in zip(ck.spec.module.STATE, arrs):
            arrays[f"state.{layer}.{name}"] = a
    arrays["vocab"] = np.asarray(ck.vocab, dtype=np.int32)
    arrays["config"] = np.array(json.dumps(C.to_dict(ck.config)))
    arrays["rng"] = np.array(json.dumps(run.rng.bit_generator.state))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    for k in SCALARS:
        arrays[k] = np.array(getattr(run, k))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _read_all(path):
    """Every array of the file, read eagerly; one-line errors for damaged files."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise UsageError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory; give the checkpoint file, e.g. RUN/ckpt.npz") from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read checkpoint: {e.strerror}") from None
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise CharrnnError(f"{path}: not a charrnn checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise CharrnnError(
                f"{path}: refused to load: the file holds pickled Python objects, and a charrnn "
                "checkpoint is plain arrays (loading pickles could run code)"
            ) from None
        raise CharrnnError(f"{path}: damaged or truncated checkpoint ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise CharrnnError(f"{path}: damaged or truncated checkpoint ({type(e).__name__}: {e})") from None


def load(path):
    """Read and validate a checkpoint. Raises CharrnnError with a one-line reason."""
    z = _read_all(path)

    def need(key):
        if key not in z:
            raise CharrnnError(f"{path}: not a charrnn checkpoint (no '{key}' array)")
        return z[key]

    version = need("format_version")
    if version.shape != () or int(version) != FORMAT_VERSION:
        raise CharrnnError(f"{path}: checkpoint format version {version} is not supported (expected {FORMAT_VERSION})")
    try:
        raw_config = json.loads(str(need("config")))
        rng_state = json.loads(str(need("rng")))
    except json.JSONDecodeError as e:
        raise CharrnnError(f"{path}: damaged checkpoint: its config or rng is not valid JSON ({e})") from None
    try:
        cfg = C.from_dict(raw_config, f"{path} (stored config)")
    except UsageError as e:
        raise CharrnnError(str(e)) from None
    vocab = need("vocab")
    if vocab.ndim != 1 or vocab.dtype != np.int32 or len(vocab) < 1 or np.any(np.diff(vocab) <= 0):
        raise CharrnnError(f"{path}: damaged checkpoint: 'vocab' must be sorted distinct int32 code points")
    spec = ModelSpec.of(cfg.model, len(vocab))
    dtype = np.dtype(cfg.model.dtype)

    def checked(key, shape):
        a = need(key)
        if a.shape != tuple(shape) or a.dtype != dtype:
            raise CharrnnError(
                f"{path}: '{key}' is {a.dtype}{list(a.shape)}, but the stored config needs {dtype}{list(shape)}"
            )
        if not np.all(np.isfinite(a)):
            raise CharrnnError(f"{path}: '{key}' holds NaN or infinite values")
        return a

    shapes = param_shapes(spec)
    params = {k: checked(k, s) for k, s in shapes.items()}
    slots = optim.from_config(cfg.optim).slots
    optim_state = {f"{slot}.{k}": checked(f"optim.{slot}.{k}", s) for slot in slots for k, s in shapes.items()}
    ema = {k: checked(f"ema.{k}", s) for k, s in shapes.items()} if cfg.optim.ema is not None else None
    state_shape = (cfg.train.batch_size, cfg.model.hidden_size)
    state = [
        tuple(checked(f"state.{layer}.{name}", state_shape) for name in spec.module.STATE)
        for layer in range(spec.layers)
    ]
    scalars = {}
    for k in SCALARS:
        a = need(k)
        if a.shape != ():
            raise CharrnnError(f"{path}: damaged checkpoint: '{k}' must be a scalar")
        scalars[k] = a.item()
    ints = ("step", "position", "epoch", "evals_since_best")
    scalars = {k: int(v) if k in ints else float(v) for k, v in scalars.items()}
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError) as e:
        raise CharrnnError(f"{path}: damaged checkpoint: 'rng' is not a random generator state ({e})") from None
    run = RunState(params, optim_state, ema, state, rng, **scalars)
    return Checkpoint(run, vocab, cfg, spec)
