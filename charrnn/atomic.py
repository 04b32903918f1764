"""Writing a file so that whatever happens (a crash, kill -9, a full disk, Ctrl-C) it holds
either what it held before or the whole new content, never a part of it.

The content goes into a temporary file beside the target (same directory, so same file
system), is flushed and fsynced, and is then moved over the target with ``os.replace``, which
is atomic on POSIX and Windows. On any failure the temporary file is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from typing import IO, Any

from charrnn import portable
from charrnn.errors import CharrnnError

# A new file of this process: never one that is there already, never through a link at its name.
_TEMPORARY_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | portable.NOFOLLOW | getattr(os, "O_BINARY", 0)
                    | getattr(os, "O_CLOEXEC", 0))


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str, write: Callable[[IO[bytes]], Any], hold: Callable[[], Any] | None = None) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then move it into place.

    ``hold``: a context manager factory to call ``write`` inside (``signals.StopFlag.held``,
    so that a second Ctrl-C waits for the serialization and then discards the file).

    The temporary file is created readable by its owner only (0600); it gets the mode a
    plainly written file would have, so that a run's checkpoints, config and plots are as
    readable as its metrics.jsonl.
    """
    directory = os.path.dirname(os.path.abspath(path))
    # Opened with O_CREAT | O_EXCL (and O_NOFOLLOW): the temporary is always a new file of this
    # process, never one a link planted at its name points to; os.replace (rename) then replaces
    # whatever is at ``path``, a symbolic link included, instead of writing through it. The name
    # is chosen before the file is made, inside the ``try``: a Ctrl-C that lands as the open
    # returns (tempfile.mkstemp's window, where its caller never learns the name) still finds
    # the file to remove.
    tmp = None
    try:
        for _ in range(100):
            tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, _TEMPORARY_FLAGS, 0o600)
                break
            except FileExistsError:  # that name is taken (another writer's, a planted file): not ours
                tmp = None
            except OSError as e:  # a missing or read-only folder: named as the file the caller asked for
                tmp = None
                raise _naming(e, path, None) from None
        else:
            raise CharrnnError(f"{path}: no free temporary name beside it")
        portable.set_mode(fd, tmp, _new_file_mode())  # the file opened, not whatever the name holds by now
        with os.fdopen(fd, "wb") as f:
            with hold() if hold is not None else contextlib.nullcontext():
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            if tmp is not None:
                os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            renamed = _naming(e, path, tmp)
            if renamed is not e:
                raise renamed from None
        raise


def _naming(e: OSError, path: str, tmp: str | None) -> OSError:
    """``e`` as an error about ``path`` when it is about the temporary file (or about no file: a
    write into it that failed, a full disk), so that a message built from ``e.filename`` names
    the file the user knows of, never the hidden ``.NAME.XXXXXXXX.tmp``; ``e`` itself otherwise.
    ``tmp`` None: the temporary file could not be made."""
    if e.errno is None or (tmp is not None and e.filename not in (None, tmp)):
        return e
    return OSError(e.errno, e.strerror, path)  # the subclass of the errno (FileNotFoundError, ...)


def open_own(path: str, flags: int, rule: str) -> int:
    """``os.open(path, flags | O_CREAT)`` for a file a run writes in place (its lock file, its
    metrics log): never through a symbolic link (``O_NOFOLLOW``), and refused unless it is a
    regular file that no other name shares, since a hard link would carry a write or a truncation
    to a file elsewhere. ``rule`` ends the refusal ("the lock file must be a plain file of its
    own"). Returns the descriptor (blocking); raises CharrnnError for a link or a foreign file,
    OSError for the rest."""
    try:
        # O_NONBLOCK: a FIFO planted at the name must not hang the open; the check below refuses it.
        portable.refuse_link(path)  # where there is no O_NOFOLLOW (Windows)
        fd = os.open(path, flags | os.O_CREAT | portable.OWN_FLAGS, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CharrnnError(f"{path}: is a symbolic link; {rule} (remove the link)") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"a file with {st.st_nlink} names"
        raise CharrnnError(f"{path}: is {what}; {rule} (move it away)")
    if portable.NONBLOCK:
        os.set_blocking(fd, True)
    return fd
