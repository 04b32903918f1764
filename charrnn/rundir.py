"""The run directory: one run at a time in it, and no finished run replaced by accident.

``lock(run_dir)`` holds an OS lock (``flock``) on ``RUN/.lock`` for as long as a run writes
there; a second run into the same directory is refused at once, naming the holder's PID.
The kernel drops the lock when the holding process ends in any way, ``kill -9`` included,
so a killed run never leaves a stale lock to clean up by hand.

``check_fresh(run_dir, overwrite)`` is what a new run (not ``--resume``) calls, holding the
lock, before it writes anything: a directory that holds a checkpoint is refused, saying the
step it holds and the three ways on; with ``overwrite`` the previous run's files are moved
into ``RUN/replaced-<time>/``, so the new run starts clean and the old one is still there
until the user deletes it.
"""

import errno
import fcntl
import os
import time
import zipfile
from contextlib import contextmanager

import numpy as np

from charrnn.errors import CharrnnError

LOCK_NAME = ".lock"
# What a run writes into its directory; --overwrite moves these (and nothing else) aside.
RUN_FILES = ("ckpt.npz", "best.npz", "metrics.jsonl", "metrics.jsonl.old", "config.yaml", "loss.png")
CHECKPOINTS = ("ckpt.npz", "best.npz")
REPLACED_PREFIX = "replaced-"


def _holder(fd):
    """The PID the lock's holder wrote into the lock file, as text ('unknown' if none yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


@contextmanager
def lock(run_dir):
    """Hold the run directory ``run_dir`` (created if missing) for the ``with`` block.

    Takes ``flock(LOCK_EX | LOCK_NB)`` on ``RUN/.lock`` and writes this process's PID into
    it. Raises CharrnnError (exit 1) at once if another process holds it:
    ``"RUN: another charrnn run (PID 1234) is using this run directory; wait for it to
    end or stop it, or give another --out"``. The lock is released when the block ends, or by
    the OS when the process dies. The lock file is left in place (deleting it would let a
    third process lock a new file while the second still holds the old one).

    A second ``lock`` of the same directory in the same process is refused too: flock locks
    belong to an open file, not to a process.

    A directory that it created and that holds nothing but the lock file when the block ends
    (the run failed before writing anything, e.g. on a bad corpus) is removed again.
    """
    created = not os.path.isdir(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise CharrnnError(f"{run_dir}: cannot create the run directory's lock file: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CharrnnError(f"{run_dir}: cannot lock the run directory: {e.strerror}") from None
            raise CharrnnError(
                f"{run_dir}: another charrnn run (PID {_holder(fd)}) is using this run directory; "
                "wait for it to end or stop it, or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)  # no stale PID for the next reader; the lock goes with close
                if created and os.listdir(run_dir) == [LOCK_NAME]:  # still holding it: nobody else is in
                    os.unlink(os.path.join(run_dir, LOCK_NAME))
                    os.rmdir(run_dir)
            except OSError:
                pass
    finally:
        os.close(fd)


def held_step(path):
    """The step stored in checkpoint ``path``, or None if it cannot be read.

    Reads only the ``step`` array (with ``allow_pickle=False``), not the whole checkpoint:
    this is for a message, and must not fail on a damaged file.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.getinfo("step.npy").file_size > 1024:  # a scalar takes 136 bytes: never inflate more
                return None
        with np.load(path, allow_pickle=False) as z:
            step = z["step"]
            return int(step) if step.shape == () and step.dtype.kind in "iu" else None
    except Exception:  # any damage: the caller says "unreadable" instead of a step
        return None


def check_fresh(run_dir, overwrite):
    """Make sure a new run may write into ``run_dir``; call it while holding ``lock(run_dir)``.

    - No ``ckpt.npz`` or ``best.npz`` in it (or no directory): returns None.
    - One there, ``overwrite`` false: raises CharrnnError (exit 1), e.g.
      ``"RUN: already holds a run (ckpt.npz at step 120); continue it with
      charrnn train --resume RUN/ckpt.npz, give another --out, or add --overwrite to replace
      it (its files are then moved into RUN/replaced-<time>/)"``.
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
        resume = os.path.join(run_dir, "ckpt.npz")
        raise CharrnnError(
            f"{run_dir}: already holds a run ({held}); continue it with charrnn train --resume "
            f"{resume}, give another --out, or add --overwrite to replace it (its files are then "
            f"moved into {os.path.join(run_dir, REPLACED_PREFIX + '<time>')}/)"
        )
    if not overwrite or not present:
        return None
    folder = _new_folder(run_dir)
    try:
        for name in present:
            os.replace(os.path.join(run_dir, name), os.path.join(folder, name))
    except OSError as e:
        raise CharrnnError(f"{run_dir}: cannot move the previous run into {folder}: {e.strerror}") from None
    return folder


def _new_folder(run_dir):
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
