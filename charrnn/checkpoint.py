"""Checkpoints: one self-describing ``.npz`` file that resumes a run exactly.

Written atomically (a temporary file in the same directory, flushed and fsynced, then
``os.replace``), so a crash or Ctrl-C leaves either the previous checkpoint or the new one,
never half of one. Read with ``allow_pickle=False``: a checkpoint is data, never code.
Every array is read and validated before anything is returned, so a damaged file is
reported in one line and never half-loaded.

Keys (docs/checkpoints.md has the full table):

- the parameters under their names (``Wxh``, ``Whh``, ``bh``, ``Why``, ``by``, ``Wxh_1``, ...)
- ``optim.<slot>.<param>``: optimizer state (e.g. ``optim.mem.Wxh`` for Adagrad)
- ``ema.<param>``: the moving average of the weights, when ``optim.ema`` is set (not yet
  bias-corrected; ``weights`` gives the average itself)
- ``state.<layer>.<h|c>``: the carried hidden state, (B, H)
- ``vocab``: int32 code points in index order (byte values when ``unit`` is ``bytes``);
  ``config``: the resolved config as JSON
- ``unit``: what the vocabulary's symbols are, ``chars`` (Unicode code points) or ``bytes``
  (a corpus prepared with ``charrnn prepare --bytes``); checkpoints without it are ``chars``
- ``step``, ``position``, ``epoch``, ``smooth_loss``, ``elapsed_s``, ``val_loss``,
  ``best_val_loss``, ``evals_since_best``, ``rng`` (the training random generator's state as
  JSON), ``format_version``
- ``first_loss``, ``loss_sum``, ``loss_steps``: the divergence rule's reference and the
  current log window (absent in older checkpoints, which then load with their defaults)
- ``corpus``: what the run was trained on, as JSON: ``corpus.py``'s identity record (``kind``,
  ``path``, ``unit``, ``chars``, ``bytes``, ``sha256``; absent in older checkpoints), so that
  ``--resume`` can refuse a changed corpus

Format versions (``format_version``; docs/checkpoints.md, "Format versions", says which commit
wrote each). Every layout is still read, with the defaults its missing keys imply:

1. the first layout read today (cc907c0, the validation split): no ``unit`` (so ``chars``), no
   ``corpus`` (``None``: ``--resume`` warns that it cannot check the text), no ``first_loss``,
   ``loss_sum``, ``loss_steps`` (``LATER_SCALARS``)
2. adds ``unit`` (0464c76, ``charrnn prepare`` and corpora of bytes)
3. adds ``first_loss``, ``loss_sum``, ``loss_steps`` and ``corpus`` (480cbf7, the divergence rule
   and the corpus identity), always all four
4. the same keys; ``rng`` may also be a GPU run's ``charrnn.CounterRNG`` state (b9bc590), which a
   reader of 3 cannot resume

charrnn wrote ``format_version`` 1 whatever the layout until the layouts were numbered, so a
file that declares 1 is the layout its keys show (they must be exactly one layout's keys, and a
``CounterRNG`` state makes it 4). A file that declares 2 or more must have exactly its layout's
keys. A version above ``FORMAT_VERSION`` is refused with a message to upgrade charrnn; a key of a
later layout, or a missing key of the declared one, is a one-line "damaged checkpoint" error.
"""

from __future__ import annotations

import json
import math
import os
import tokenize
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from charrnn import config as C
from charrnn import optim
from charrnn.atomic import atomic_write
from charrnn.data import describe_chars
from charrnn.device import CounterRNG
from charrnn.errors import CharrnnError, UsageError
from charrnn.model import ModelSpec, param_shapes
from charrnn.runstate import RunState

FORMAT_VERSION = 4  # the layout this charrnn writes (the module docstring lists them all)
SCALARS = ("step", "position", "epoch", "smooth_loss", "elapsed_s", "val_loss", "best_val_loss", "evals_since_best",
           "first_loss", "loss_sum", "loss_steps")
# Scalars that layouts 1 and 2 lack: a checkpoint of those layouts loads with these.
LATER_SCALARS = {"first_loss": float("nan"), "loss_sum": 0.0, "loss_steps": 0}
# The keys each layout added to the one before (besides these, every layout has the parameters,
# the optimizer state, ema.* and the carried state that its stored config implies). Layout 4
# added no key: its rng may be a CounterRNG's state.
ADDED = {
    1: ("format_version", "config", "rng", "vocab", "step", "position", "epoch", "smooth_loss", "elapsed_s",
        "val_loss", "best_val_loss", "evals_since_best"),
    2: ("unit",),
    3: ("first_loss", "loss_sum", "loss_steps", "corpus"),
    4: (),
}
COUNTER_RNG_SINCE = 4  # the first layout whose rng may be a charrnn.CounterRNG (a GPU run)


@dataclass
class Checkpoint:
    """A run's state and what it describes: the vocabulary, the resolved config, the model."""

    run: RunState
    vocab: np.ndarray  # (V,) int32 code points
    config: C.Config
    spec: ModelSpec
    corpus: dict | None = None  # the corpus's identity record (corpus.py; None: not recorded)
    unit: str = "chars"  # the vocabulary's symbols: "chars" (code points) or "bytes" (byte values)


def weights(ck: Checkpoint) -> dict:
    """The weights to evaluate and sample with: the moving average of the weights when the
    run keeps one (``optim.ema``) and has taken a step, otherwise the trained parameters."""
    return optim.eval_weights(ck.run.params, ck.run.ema, ck.config.optim.ema, ck.run.step)


def weights_for(path: str, spec: ModelSpec, vocab: np.ndarray) -> dict:
    """The weights of checkpoint ``path`` (its moving average, if it keeps one) for a new run
    of model ``spec`` on a corpus of vocabulary ``vocab`` (``--init-from``): refused in one
    line when the vocabulary or the model's shape differs (dropout may differ)."""
    src = load(path)
    if not np.array_equal(src.vocab, vocab):
        extra = np.setdiff1d(vocab, src.vocab)
        detail = f"; the corpus has {describe_chars(extra)} that it lacks" if len(extra) else ""
        raise CharrnnError(
            f"{path}: its vocabulary ({len(src.vocab)} characters) does not match the corpus "
            f"({len(vocab)} characters){detail}; --init-from needs the same vocabulary"
        )
    if replace(src.spec, dropout=0.0) != replace(spec, dropout=0.0):
        raise CharrnnError(
            f"{path}: its model ({src.spec.describe()}) does not match the config's ({spec.describe()})"
        )
    return weights(src)


def save(path: str, ck: Checkpoint, hold: Callable[[], Any] | None = None) -> None:
    """Write checkpoint ``ck`` to ``path`` atomically, in the newest layout (``FORMAT_VERSION``),
    which records the corpus: ``ck.corpus`` must be its identity record. ``hold``: as
    ``atomic_write`` takes it."""
    if ck.corpus is None:
        raise ValueError(f"format version {FORMAT_VERSION} records the corpus: Checkpoint.corpus is None")
    run = ck.run
    arrays = dict(run.params)
    arrays.update({f"optim.{k}": v for k, v in run.opt_state.items()})
    if run.ema is not None:
        arrays.update({f"ema.{k}": v for k, v in run.ema.items()})
    for layer, arrs in enumerate(run.state):
        for name, a in zip(ck.spec.module.STATE, arrs, strict=True):
            arrays[f"state.{layer}.{name}"] = a
    arrays["vocab"] = np.asarray(ck.vocab, dtype=np.int32)
    arrays["unit"] = np.array(ck.unit)
    arrays["config"] = np.array(json.dumps(C.to_dict(ck.config)))
    arrays["rng"] = np.array(json.dumps(generator_state(run.rng)))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    arrays["corpus"] = np.array(json.dumps(ck.corpus))
    for k in SCALARS:
        arrays[k] = np.array(getattr(run, k))
    atomic_write(path, lambda f: np.savez(f, **arrays), hold)


# A member that inflates more than this many times over, to more than BOMB_BYTES, is refused
# before it is inflated: charrnn writes checkpoints uncompressed, and weights barely compress.
BOMB_RATIO, BOMB_BYTES = 100, 64 * 2**20
PICKLE_REFUSAL = ("refused to load: the file holds pickled Python objects, and a charrnn checkpoint "
                  "is plain arrays (loading pickles could run code)")


def _check_members(path, zf):
    """Refuse, before reading any array data, members that are not arrays or whose sizes do
    not add up: a header declaring a huge shape (which would be allocated first), an entry
    that inflates enormously (a zip bomb), or one that runs past the end of the file."""
    file_size = os.path.getsize(path)
    for info in zf.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if not name.isprintable():  # a message is one line, whatever the entry is called
            name = name.encode("unicode_escape").decode("ascii")
        if not info.filename.endswith(".npy"):
            raise CharrnnError(f"{path}: damaged checkpoint: '{name}' is not an array (.npy) entry")
        if info.compress_type == zipfile.ZIP_STORED and info.header_offset + info.compress_size > file_size:
            raise CharrnnError(f"{path}: damaged or truncated checkpoint: '{name}' runs past the end of the file")
        if info.file_size > BOMB_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
            raise CharrnnError(
                f"{path}: refused: '{name}' unpacks to {info.file_size:,} bytes from {info.compress_size:,} "
                "(a zip bomb?); charrnn writes checkpoints uncompressed"
            )
        try:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                header = f.tell()
        except (ValueError, SyntaxError, tokenize.TokenError, RecursionError, MemoryError, TypeError):
            # numpy parses the header, a Python dict literal, with ast.literal_eval, and its
            # 'descr' with np.dtype (TypeError: "data type not understood"): a damaged one can
            # raise any of these
            raise CharrnnError(f"{path}: damaged checkpoint: '{name}' has a damaged array header") from None
        if dtype.hasobject:
            raise CharrnnError(f"{path}: {PICKLE_REFUSAL}")
        declared = math.prod(shape) * dtype.itemsize
        if header + declared != info.file_size:
            raise CharrnnError(
                f"{path}: damaged checkpoint: '{name}' declares {dtype}{list(shape)} ({declared:,} bytes), "
                f"but its entry holds {info.file_size - header:,} bytes of data"
            )


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
        with zipfile.ZipFile(path) as zf:
            _check_members(path, zf)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise CharrnnError(f"{path}: {PICKLE_REFUSAL}") from None
        raise CharrnnError(f"{path}: damaged or truncated checkpoint ({_one_line(e)})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError, RuntimeError, MemoryError) as e:
        # What zipfile and numpy's .npy reader raise on damage besides ValueError: a bad CRC or
        # header (BadZipFile), an unknown compression method (NotImplementedError), a member
        # flagged as encrypted (RuntimeError).
        raise CharrnnError(f"{path}: damaged or truncated checkpoint ({type(e).__name__}: {_one_line(e)})") from None


def _one_line(e, limit=200):
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


def load(path: str) -> Checkpoint:
    """Read and validate a checkpoint. Raises CharrnnError with a one-line reason."""
    z = _read_all(path)

    def need(key):
        if key not in z:
            raise CharrnnError(f"{path}: not a charrnn checkpoint (no '{key}' array)")
        return z[key]

    _declared(path, need("format_version"))  # first: a newer file may differ in anything else
    raw_config, rng_state = _json(path, need("config"), "config"), _json(path, need("rng"), "rng")
    version = layout(path, z, isinstance(rng_state, dict) and rng_state.get("bit_generator") == "charrnn.CounterRNG")
    try:
        cfg = C.from_dict(raw_config, f"{path} (stored config)")
    except UsageError as e:
        raise CharrnnError(str(e)) from None
    if cfg.data.path is None:
        raise CharrnnError(f"{path}: damaged checkpoint: its stored config has no data.path")
    try:  # the generator must accept the state, or resuming would fail half-way in
        rng = generator(rng_state)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CharrnnError(f"{path}: damaged checkpoint: 'rng' is not a random generator state "
                           f"({_one_line(e)})") from None
    vocab = need("vocab")
    if vocab.ndim != 1 or vocab.dtype != np.int32 or len(vocab) < 1 or np.any(np.diff(vocab) <= 0):
        raise CharrnnError(f"{path}: damaged checkpoint: 'vocab' must be sorted distinct int32 code points")
    if vocab[0] < 0 or vocab[-1] > 0x10FFFF or np.any((vocab >= 0xD800) & (vocab <= 0xDFFF)):
        raise CharrnnError(f"{path}: damaged checkpoint: 'vocab' holds values that are not Unicode characters")
    unit = _text(path, z["unit"], "unit") if version >= 2 else "chars"  # written since corpora could be bytes
    if unit not in ("chars", "bytes") or (unit == "bytes" and (vocab[0] < 0 or vocab[-1] > 255)):
        raise CharrnnError(f"{path}: damaged checkpoint: 'unit' {_one_line(unit)!r} "
                           f"with code points {vocab[0]}..{vocab[-1]}")
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
    scalars = {k: LATER_SCALARS[k] if k in LATER_SCALARS and version < 3 else _scalar(path, k, need(k))
               for k in SCALARS}
    run = RunState(params, optim_state, ema, state, rng, **scalars)
    return Checkpoint(run, vocab, cfg, spec, _corpus(path, z), unit)


def _declared(path, a):
    """The format version that the array ``a`` (``format_version``) declares, if this charrnn reads it."""
    if a.shape != () or a.dtype.kind not in "iu":
        raise CharrnnError(f"{path}: damaged checkpoint: 'format_version' must be an integer scalar")
    declared = int(a)
    if declared > FORMAT_VERSION:
        raise CharrnnError(f"{path}: checkpoint format version {declared} is newer than this charrnn reads "
                           f"(1 to {FORMAT_VERSION}): upgrade charrnn to load it")
    if declared < 1:
        raise CharrnnError(f"{path}: damaged checkpoint: format version {declared} (versions start at 1)")
    return declared


def layout(path: str, z: Mapping[str, np.ndarray], counter_rng: bool = False) -> int:
    """The layout (1 to ``FORMAT_VERSION``) of the arrays ``z`` of the checkpoint at ``path``,
    whose rng is a ``CounterRNG``'s state if ``counter_rng``: its declared ``format_version``, or
    for a file that declares 1 (what charrnn wrote before the layouts were numbered), the layout
    its keys show. Raises CharrnnError (one line) for a version this charrnn does not know, or
    for keys that are not exactly the layout's."""
    declared = _declared(path, z["format_version"])
    # (a missing key of layout 1 is reported by load: such a file is not a charrnn checkpoint)
    added_in = {key: v for v, keys in ADDED.items() if v > 1 for key in keys}
    later = sorted((v, key) for key, v in added_in.items() if key in z)
    if declared == 1:  # the layout its keys show: the newest key present (a CounterRNG: layout 4)
        version = max([later[-1][0] if later else 1] + ([COUNTER_RNG_SINCE] if counter_rng else []))
        for key, v in added_in.items():
            if v <= version and key not in z:
                evidence = "a CounterRNG 'rng'" if version == COUNTER_RNG_SINCE and counter_rng else f"'{later[-1][1]}'"
                raise CharrnnError(f"{path}: damaged checkpoint: it has {evidence} (format version {version}) "
                                   f"but no '{key}', which charrnn wrote with it")
        return version
    for key, v in added_in.items():
        if v <= declared and key not in z:
            raise CharrnnError(f"{path}: damaged checkpoint: no '{key}', which format version {declared} has")
    for v, key in later:
        if v > declared:
            raise CharrnnError(f"{path}: damaged checkpoint: it has '{key}', which format version {declared} "
                               f"does not have (format version {v} added it)")
    if counter_rng and declared < COUNTER_RNG_SINCE:
        raise CharrnnError(f"{path}: damaged checkpoint: its 'rng' is a GPU run's generator (charrnn.CounterRNG), "
                           f"which format version {declared} does not have "
                           f"(format version {COUNTER_RNG_SINCE} added it)")
    return declared


def _text(path, a, key):
    """The text stored as a 0-d unicode array ``key``."""
    if a.shape != () or a.dtype.kind != "U":
        raise CharrnnError(f"{path}: damaged checkpoint: '{key}' must be a text")
    return str(a)


def generator_state(rng: np.random.Generator | CounterRNG) -> dict:
    """The JSON-able state of a run's generator (NumPy's, or a ``device.CounterRNG``)."""
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else rng.state


def generator(state: dict) -> np.random.Generator | CounterRNG:
    """The generator that ``generator_state`` described: a GPU run's ``CounterRNG`` comes back
    on the host (``train`` moves it to the run's device). Raises TypeError, ValueError or
    KeyError for a state that neither takes."""
    if not isinstance(state, dict):
        raise TypeError(f"expected a mapping, got {type(state).__name__}")
    rng = CounterRNG(0) if state.get("bit_generator") == "charrnn.CounterRNG" else np.random.default_rng()
    if isinstance(rng, CounterRNG):
        rng.state = state
    else:
        rng.bit_generator.state = state
    return rng


def _json(path, a, key):
    """The JSON text stored as a 0-d unicode array ``key``, parsed."""
    if a.shape != () or a.dtype.kind != "U":
        raise CharrnnError(f"{path}: damaged checkpoint: '{key}' must be a JSON text")
    try:
        return json.loads(str(a))
    except (json.JSONDecodeError, RecursionError) as e:
        what = "nested too deeply" if isinstance(e, RecursionError) else _one_line(e)
        raise CharrnnError(f"{path}: damaged checkpoint: its '{key}' is not valid JSON ({what})") from None


# What each scalar may hold: counters are integers >= 0; a loss that nothing has measured yet
# is nan (val_loss) or inf (best_val_loss).
INT_SCALARS = ("step", "position", "epoch", "evals_since_best", "loss_steps")
MAY_BE = {"val_loss": "nan", "best_val_loss": "inf", "first_loss": "nan"}


def _scalar(path, key, a):
    """The scalar ``key`` as a Python int or float, checked for kind and range."""
    if key in INT_SCALARS:
        if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
            raise CharrnnError(f"{path}: damaged checkpoint: '{key}' must be an integer scalar ≥ 0")
        return int(a)
    if a.shape != () or a.dtype.kind != "f":
        raise CharrnnError(f"{path}: damaged checkpoint: '{key}' must be a floating-point scalar")
    v = float(a)
    may_be = MAY_BE.get(key)
    allowed = math.isfinite(v) or (may_be == "nan" and math.isnan(v)) or (may_be == "inf" and v == math.inf)
    if not allowed or (key == "elapsed_s" and v < 0):
        raise CharrnnError(f"{path}: damaged checkpoint: '{key}' is {v}")
    return v


def _corpus(path, z):
    """The checkpoint's record of its corpus, or None for a checkpoint written before it was kept."""
    if "corpus" not in z:
        return None
    corpus = _json(path, z["corpus"], "corpus")
    if not (isinstance(corpus, dict) and isinstance(corpus.get("bytes"), int)
            and isinstance(corpus.get("sha256"), str)):
        raise CharrnnError(f"{path}: damaged checkpoint: 'corpus' is not a record of the corpus's size and SHA-256")
    return corpus
