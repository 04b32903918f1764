"""The run directory: one run at a time in it, and no finished run replaced by accident.

``lock(run_dir)`` holds an OS lock (``flock``; on Windows ``msvcrt.locking``: ``portable.lock``)
on ``RUN/.lock`` for as long as a run writes there; a second run into the same directory is
refused at once, naming the holder's PID. The kernel drops the lock when the holding process
ends in any way, ``kill -9`` included, so a killed run never leaves a stale lock to clean up
by hand.

``RunDir(path)`` names the files of a run directory (one table, ``CKPT`` ... ``PLOT``, that the
trainer, ``charrnn plot``, the command line and ``check_fresh`` all read) and does what the
trainer does to them outside a step: create the directory with its config, remove the
temporaries a killed run left, cut the log back to a resumed checkpoint, say what the
checkpoint holds.

``check_fresh(run_dir, overwrite)`` is what a new run (not ``--resume``) calls, holding the
lock, before it writes anything: a directory that holds a checkpoint is refused, saying the
step it holds and the three ways on; with ``overwrite`` the previous run's files are moved
into ``RUN/replaced-<time>/``, so the new run starts clean and the old one is still there
until the user deletes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Iterator

import numpy as np

from charrnn import portable
from charrnn.atomic import atomic_write, open_own
from charrnn.errors import CharrnnError, UsageError
from charrnn.progress import damage_warning, read_log

# The files of a run directory, by what they hold.
CKPT = "ckpt.npz"  # the run's checkpoint: --resume continues from it
BEST = "best.npz"  # the weights of the best validation loss so far
METRICS = "metrics.jsonl"  # one JSON line per log line and per evaluation
OLD_METRICS = "metrics.jsonl.old"  # the log of a run that a new one replaced in the same directory
CONFIG = "config.yaml"  # the run's resolved config
PLOT = "loss.png"  # charrnn plot's default picture
VISUALIZE = "visualize.html"  # charrnn visualize's default page
STATUS = "status.json"  # how the run ended (or "running"), for a requeue script: docs/robustness.md
LOCK_NAME = ".lock"  # held by the run that writes here (``lock``)
# What a run writes into its directory; --overwrite moves these (and nothing else) aside.
RUN_FILES = (CKPT, BEST, METRICS, OLD_METRICS, CONFIG, PLOT, VISUALIZE, STATUS)
CHECKPOINTS = (CKPT, BEST)
REPLACED_PREFIX = "replaced-"
# atomic_write's temporary files for the trainer's files: ".ckpt.npz.<8 random>.tmp"
TEMPORARY = re.compile(
    r"\.(" + "|".join(re.escape(n) for n in (CKPT, BEST, METRICS, CONFIG, STATUS)) + r")\.[a-z0-9_]{8}\.tmp")


class RunDir:
    """The run directory ``path`` and its files (``.ckpt``, ``.best``, ``.metrics``,
    ``.config``, ``.plot``, ``.visualize``, ``.status``: their paths)."""

    def __init__(self, path: str):
        self.path = path
        self.ckpt = os.path.join(path, CKPT)
        self.best = os.path.join(path, BEST)
        self.metrics = os.path.join(path, METRICS)
        self.config = os.path.join(path, CONFIG)
        self.plot = os.path.join(path, PLOT)
        self.visualize = os.path.join(path, VISUALIZE)
        self.status = os.path.join(path, STATUS)

    def create(self, config_text: str) -> None:
        """Make the directory (if missing) and write the run's resolved config into it."""
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise CharrnnError(f"{self.path}: cannot create the run directory ({e.strerror or e})") from None
        try:
            atomic_write(self.config, lambda f: f.write(config_text.encode("utf-8")))
        except OSError as e:  # a full disk: the file named, not its temporary
            raise CharrnnError(f"{self.config}: cannot write ({e.strerror or e})") from None

    def remove_temporaries(self) -> None:
        """Delete the temporary files a run killed while saving (kill -9, power loss) left.

        Call it holding the directory's lock: then no other run is writing here, and the
        pattern matches only the temporaries of the trainer's own files (not, say, those of a
        ``charrnn plot`` writing loss.png at the same time).
        """
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            if TEMPORARY.fullmatch(name):
                try:
                    os.unlink(os.path.join(self.path, name))
                except FileNotFoundError:
                    pass

    def start_log(self, resumed_step: int | None) -> None:
        """The metrics log a run appends to: a resumed run's cut back to its checkpoint's step
        (a run that crashed after its last checkpoint logged steps it will take again); a new
        run's fresh, the old log kept as metrics.jsonl.old.

        The checkpoint is the truth, the log only its story: damaged lines of a resumed run's
        log (``progress.read_log``: not UTF-8, not a JSON record with a step, a torn last line,
        NUL bytes) are dropped with one warning on stderr, and the log is rewritten atomically
        with the good lines at steps up to ``resumed_step``, as they were on disk. A log that
        cannot be read at all (a directory, no permission) is one line (CharrnnError).
        """
        if resumed_step is None:
            if os.path.exists(self.metrics):
                try:
                    os.replace(self.metrics, os.path.join(self.path, OLD_METRICS))
                except OSError as e:
                    raise CharrnnError(f"{self.metrics}: cannot move the previous log aside to {OLD_METRICS} "
                                       f"({e.strerror or e}); move it yourself") from None
            return
        try:
            good, damaged = read_log(self.metrics)
        except FileNotFoundError:
            return
        if damaged:
            print(damage_warning(self.metrics, damaged, "dropped"), file=sys.stderr)
        keep = [line.raw + b"\n" for line in good if line.record["step"] <= resumed_step]
        if sum(map(len, keep)) != os.path.getsize(self.metrics):  # lines dropped or cut, or no last newline
            try:
                atomic_write(self.metrics, lambda f: f.write(b"".join(keep)))
            except OSError as e:
                raise CharrnnError(f"{self.metrics}: cannot rewrite the metrics log ({e.strerror or e})") from None

    def holds(self) -> str:
        """What the checkpoint holds now, for messages: read from the file, since a save that
        was stopped may or may not have completed."""
        step = held_step(self.ckpt) if os.path.exists(self.ckpt) else None
        if step is None:
            return "no checkpoint was written yet" if not os.path.exists(self.ckpt) else f"{self.ckpt} cannot be read"
        return f"the last checkpoint, {self.ckpt}, holds step {step}"


def _holder(fd):
    """The PID the lock's holder wrote into the lock file, as text ('unknown' if none yet)."""
    try:
        text = portable.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def lock(run_dir: str, holder: str = "charrnn run", place: str = "run directory") -> Iterator[None]:
    """Hold the run directory ``run_dir`` (created if missing) for the ``with`` block.

    ``holder`` and ``place`` name, in the refusal, who holds it and what the directory is
    (``charrnn prepare`` holds a prepared directory the same way: "another charrnn prepare
    (PID 1234) is using this prepared directory").

    Takes ``flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock`` and writes this process's PID into
    it. Raises CharrnnError (exit 1) at once if another process holds it:
    ``"RUN: another charrnn run (PID 1234) is using this run directory; wait for it to
    end or stop it, or give another --out"``. The lock is released when the block ends, or by
    the OS when the process dies. The lock file is left in place (deleting it would let a
    third process lock a new file while the second still holds the old one).

    A second ``lock`` of the same directory in the same process is refused too: flock locks
    belong to an open file, not to a process (and Windows' to a handle).

    A directory that it created and that holds nothing but the lock file when the block ends
    (the run failed before writing anything, e.g. on a bad corpus) is removed again.
    """
    created = not os.path.isdir(run_dir)
    path = os.path.join(run_dir, LOCK_NAME)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise CharrnnError(f"{run_dir}: cannot create the {place}'s lock file: {e.strerror}") from None
    try:
        # A link planted at RUN/.lock must not make the run truncate and write its PID into a file
        # elsewhere (the run directory itself may be a link: the user chose it).
        fd = open_own(path, os.O_RDWR, f"the {place}'s lock file must be a plain file of its own")
    except (CharrnnError, OSError) as e:
        if created:  # what this call made goes again: nothing of the run is in it
            with contextlib.suppress(OSError):
                os.rmdir(run_dir)
        if isinstance(e, CharrnnError):
            raise
        raise CharrnnError(f"{path}: cannot create the {place}'s lock file: {e.strerror}") from None
    held = False  # the lock taken: only then is the file this run's to truncate
    try:
        try:
            portable.lock(fd)  # flock; msvcrt.locking on Windows
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CharrnnError(f"{run_dir}: cannot lock the {place}: {e.strerror}") from None
            raise CharrnnError(
                f"{run_dir}: another {holder} (PID {_holder(fd)}) is using this {place}; "
                "wait for it to end or stop it, or give another --out"
            ) from None
        held = True
        try:
            os.ftruncate(fd, 0)
            portable.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as e:  # a full disk or a file-size limit, before the run has written anything
            raise CharrnnError(f"{path}: cannot write the lock file ({e.strerror or e})") from None
        yield
    finally:
        try:
            if held:
                os.ftruncate(fd, 0)  # no stale PID for the next reader; the lock goes with close
            if held and created and os.listdir(run_dir) == [LOCK_NAME]:  # still holding it: nobody else is in
                os.unlink(path)
                os.rmdir(run_dir)
        except OSError:
            pass
        if held:
            portable.unlock(fd)  # Windows; on POSIX the close releases it
        os.close(fd)


def checkpoint_in(path: str) -> str:
    """The checkpoint file ``--checkpoint PATH`` means: PATH itself, or in a run directory its
    best.npz, else its ckpt.npz; a directory with neither is a one-line CharrnnError."""
    if not os.path.isdir(path):
        return path
    for name in (BEST, CKPT):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise CharrnnError(f"{path}: a directory without {BEST} or {CKPT}; give a checkpoint file, or a run "
                       "directory that holds one")


def resumed_in(path: str) -> str:
    """The checkpoint ``train --resume PATH`` means: PATH itself, or in a run directory its
    ckpt.npz (where the run last stood; its best.npz is an earlier step, and resuming from it
    is a rewind that must be asked for by name); a directory without one is a UsageError."""
    if not os.path.isdir(path):
        return path
    if os.path.isfile(os.path.join(path, CKPT)):
        return os.path.join(path, CKPT)
    raise UsageError(f"--resume {path}: a directory without {CKPT}; give a checkpoint file, or the directory of a "
                     f"run that has saved one")


def run_name(data_path: str, config_path: str | None = None) -> str:
    """The run directory of ``charrnn train --data PATH`` without ``--out``: ``runs/<the
    corpus's name>`` in the working directory, and with ``--config FILE``
    ``runs/<corpus>-<config>`` (``--config configs/lstm.yaml --data book.txt``: ``runs/book-lstm``),
    so that one corpus trained with two configs, or two corpora with one, never share a
    directory. A prepared directory (``DIR`` or ``DIR/meta.json``) is named after ``DIR``."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(data_path)))[0]
    if stem == "meta":  # DIR/meta.json: the run is named after the directory
        stem = os.path.basename(os.path.dirname(os.path.abspath(data_path)))
    if config_path is not None:
        stem += "-" + os.path.splitext(os.path.basename(os.path.normpath(config_path)))[0]
    return os.path.abspath(os.path.join("runs", stem))


def held_step(path: str) -> int | None:
    """The step stored in checkpoint ``path``, or None if it cannot be read.

    Reads only the ``step`` array (with ``allow_pickle=False``), not the whole checkpoint:
    this is for a message, and must not fail on a damaged file.
    """
    held = _held(path, ("step",))
    step = held.get("step") if held else None
    return int(step) if step is not None and step.shape == () and step.dtype.kind in "iu" else None


def held_best(path: str) -> tuple[int | None, float | None]:
    """The step and validation loss that checkpoint ``path`` (a best.npz) holds, or (None, None)
    if it is not there or cannot be read; reads only those two scalars."""
    held = _held(path, ("step", "val_loss"))
    try:
        return int(held["step"]), float(held["val_loss"])
    except Exception:  # absent or damaged: not known
        return None, None


def _held(path: str, keys: tuple[str, ...]) -> dict | None:
    """The small arrays ``keys`` of checkpoint ``path`` (those it has), or None if it cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if any(zf.getinfo(k + ".npy").file_size > (1 << 20 if k == "config" else 1024)
                   for k in keys if k + ".npy" in names):
                return None  # a scalar takes 136 bytes, a config a few KB: never inflate more
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys if k + ".npy" in names}
    except Exception:  # any damage: the caller says "unreadable" instead of a step
        return None


def how_to_go_on(path: str) -> str:
    """The command that trains the run of checkpoint ``path`` further, for a message: a plain
    ``--resume`` below its length, ``--steps`` (a longer run) once it is finished, ``--minutes``
    once it has used its time budget. Reads only a few small arrays; a damaged file gets the
    plain command."""
    plain = f"continue it with charrnn train --resume {path}"
    held = _held(path, ("step", "elapsed_s", "config"))
    try:
        step, elapsed = int(held["step"]), float(held["elapsed_s"])
        train = json.loads(str(held["config"]))["train"]
        length, budget = int(train["steps"]), train.get("max_minutes")
    except Exception:  # damaged or not a charrnn checkpoint: the plain command is the best guess
        return plain
    if step >= length:
        return f"it is finished: train it further with charrnn train --resume {path} --steps {2 * step} (its new " \
               "length)"
    if budget is not None and elapsed >= 60 * float(budget):
        return (f"it stopped on its time budget: train it further with charrnn train --resume {path} --minutes "
                f"{max(1, round(float(budget)))} (that many more minutes)")
    return plain


def check_fresh(run_dir: str, overwrite: bool) -> str | None:
    """Make sure a new run may write into ``run_dir``; call it while holding ``lock(run_dir)``.

    - No ``ckpt.npz`` or ``best.npz`` in it (or no directory): returns None.
    - One there, ``overwrite`` false: raises CharrnnError (exit 1), e.g.
      ``"RUN: already holds a run (ckpt.npz at step 120); continue it with
      charrnn train --resume RUN/ckpt.npz, give another --out, or add --overwrite to replace
      it (its files are then moved into RUN/replaced-<time>/)"``; for a finished run the way on
      is ``--steps`` (a longer run), for one out of its time budget ``--minutes`` (``how_to_go_on``).
    - ``overwrite`` true: moves the previous run's files (``RUN_FILES`` that exist, whether
      or not it left a checkpoint) into a new folder ``RUN/replaced-YYYYmmdd-HHMMSS[-n]/``
      and returns that folder's path (None if there was nothing to move). Moving is a
      rename within one file system: no copy, and the old run stays whole.
    """
    present = [n for n in RUN_FILES if os.path.isfile(os.path.join(run_dir, n))]
    checkpoints = [n for n in CHECKPOINTS if n in present]
    if checkpoints and not overwrite:
        name = checkpoints[0]
        step = held_step(os.path.join(run_dir, name))
        held = f"{name} at step {step}" if step is not None else f"{name}, unreadable"
        go_on = how_to_go_on(os.path.join(run_dir, CKPT))
        raise CharrnnError(
            f"{run_dir}: already holds a run ({held}); {go_on}, give another --out, or add --overwrite to "
            f"replace it (its files are then moved into {os.path.join(run_dir, REPLACED_PREFIX + '<time>')}/)"
        )
    if not overwrite or not present:
        return None
    folder = new_folder(run_dir)
    try:
        for name in present:
            os.replace(os.path.join(run_dir, name), os.path.join(folder, name))
    except OSError as e:
        raise CharrnnError(f"{run_dir}: cannot move the previous run into {folder}: {e.strerror}") from None
    return folder


def rewind(run_dir: str, resume: str) -> str:
    """``--resume RUN/best.npz --overwrite``: RUN goes back to the checkpoint ``resume`` it holds.
    The run as it went on (``RUN_FILES``) moves whole into ``RUN/replaced-<time>/``, as with
    ``check_fresh(overwrite=True)``; ``resume`` comes back into RUN as a second name of the moved
    file (a hard link: no copy, and a later save replaces the name, never the file), and the log
    as a copy (the resumed run cuts it back to its step; a log is never written through a link).
    Returns the folder."""
    folder = check_fresh(run_dir, overwrite=True)
    name = os.path.basename(resume)
    try:
        if name in RUN_FILES and os.path.isfile(os.path.join(folder, name)):
            os.link(os.path.join(folder, name), os.path.join(run_dir, name))
        old_log = os.path.join(folder, METRICS)
        if os.path.isfile(old_log):
            with open(old_log, "rb") as f:
                log = f.read()
            atomic_write(os.path.join(run_dir, METRICS), lambda f: f.write(log))
    except OSError as e:
        raise CharrnnError(f"{run_dir}: cannot bring {name} back from {folder}: {e.strerror}") from None
    return folder


def new_folder(run_dir: str) -> str:
    """A new, empty ``RUN/replaced-<time>[-n]`` folder (mkdir claims the name atomically)."""
    stem = os.path.join(run_dir, REPLACED_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
    for n in range(1, 1000):
        folder = stem if n == 1 else f"{stem}-{n}"
        try:
            os.mkdir(folder)
            return folder
        except FileExistsError:
            continue
        except OSError as e:
            raise CharrnnError(f"{run_dir}: cannot make a folder for the previous run: {e.strerror}") from None
    raise CharrnnError(f"{run_dir}: too many {REPLACED_PREFIX}* folders for this second; try again")
