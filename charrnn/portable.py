"""What differs between POSIX and Windows, in one place: the run lock, positioned reads and
writes, the stop signals, blocking signals for a moment, and the flags of a file opened in place.

Everywhere else charrnn calls these, never ``fcntl``, ``os.pread``, ``signal.SIGHUP`` or
``signal.pthread_sigmask`` directly: a name that is missing on Windows would otherwise fail at
import (``fcntl``) or at the first use (``signal.SIGHUP`` is an AttributeError there).

On POSIX (Linux, macOS) each function is exactly what the callers did before: ``flock``,
``os.pread``, ``os.pwrite``, ``pthread_sigmask``, ``O_NOFOLLOW``. On Windows:

- the lock is ``msvcrt.locking`` (``LK_NBLCK``) on one byte of the lock file, at ``LOCK_OFFSET``,
  far past its end (Windows allows that): Windows locks are mandatory, and a lock on the bytes the
  holder's PID is written in would stop a second run from reading who holds the directory. It is
  released explicitly (``unlock``) before the file is closed, since Windows releases the locks of
  a closed handle only "eventually";
- a positioned read or write is a seek and a read (write) under a lock of the module's own, so
  that it stays one operation if threads ever share a descriptor (charrnn starts none today;
  a library caller may);
- there is no SIGHUP (``STOP_SIGNALS`` holds the signals the platform has), and no signal mask:
  ``signals_blocked`` does nothing there;
- ``O_NOFOLLOW`` does not exist: a symbolic link at the name is refused by an ``lstat`` before
  the open instead (a check that a link made in between would pass; on POSIX the open itself
  refuses).

Which code path runs is decided by what the platform has, not by its name, so that the tests
can run the Windows paths on Linux (tests/test_portable.py hides ``fcntl``, ``os.pread``,
``signal.SIGHUP``... and gives a ``msvcrt`` of its own).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None  # type: ignore[assignment]

# The signals that stop a run, those of them that this platform has: Ctrl-C and SIGTERM
# everywhere, SIGHUP (a closed terminal or ssh session) on POSIX only.
SIGHUP: int | None = getattr(signal, "SIGHUP", None)
STOP_SIGNALS: tuple[int, ...] = tuple(s for s in (signal.SIGINT, signal.SIGTERM, SIGHUP) if s is not None)

# msvcrt.locking locks a byte range from the file's current position: one byte, here.
LOCK_OFFSET = 1 << 30

# os.open flags for a file written in place (atomic.open_own): never through a symbolic link
# (O_NOFOLLOW), a FIFO planted at the name must not hang the open (O_NONBLOCK), not inherited
# (O_CLOEXEC; O_NOINHERIT on Windows), and no newline translation (O_BINARY, Windows only).
NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
OWN_FLAGS: int = (NOFOLLOW | NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
                  | getattr(os, "O_BINARY", 0))

_seek_lock = threading.Lock()  # a seek and the read or write after it, as one (no os.pread)


def lock(fd: int) -> None:
    """Lock the open file ``fd`` for this process, at once or not at all: raises OSError with
    errno EWOULDBLOCK, EAGAIN or EACCES if another holds it (``flock(LOCK_EX | LOCK_NB)`` on
    POSIX; ``msvcrt.locking(LK_NBLCK)`` of one byte on Windows)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    if msvcrt is None:
        raise OSError(errno.ENOSYS, "no file locking on this platform")
    with _seek_lock:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:  # held by another: Windows says EACCES (or EDEADLOCK)
            if e.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK), errno.EDEADLK):
                raise OSError(errno.EACCES, e.strerror or "locked by another process") from None
            raise


def unlock(fd: int) -> None:
    """Release ``lock(fd)`` before the file is closed. On POSIX nothing: closing the file
    releases an flock at once (and the kernel does when the process dies, kill -9 included)."""
    if fcntl is not None or msvcrt is None:
        return
    with _seek_lock, contextlib.suppress(OSError):
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def pread(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes of ``fd`` from byte ``offset`` (``os.pread``; where it is missing, a
    seek and a read under a lock, so that threads sharing ``fd`` do not move each other's
    position in between)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    with _seek_lock:
        os.lseek(fd, offset, os.SEEK_SET)
        chunks, left = [], n
        while left > 0:  # a read may return less than asked before the end of the file
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def pwrite(fd: int, data: bytes, offset: int) -> int:
    """Write ``data`` into ``fd`` at byte ``offset`` (``os.pwrite``; where it is missing, a seek
    and a write under the same lock as ``pread``). Returns the number of bytes written."""
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    with _seek_lock:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """The stop signals wait for the block and then arrive (``pthread_sigmask``). Where there is
    no signal mask (Windows) the block runs as it is: a Ctrl-C may then land inside it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def set_mode(fd: int, path: str, mode: int) -> None:
    """Give the open file ``fd`` (named ``path``) the permission bits ``mode``: ``os.fchmod``,
    the file opened and not whatever the name holds by now; where it is missing (Windows before
    Python 3.13), ``os.chmod`` on the name, which on Windows sets the read-only flag only."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def refuse_link(path: str) -> None:
    """Where ``O_NOFOLLOW`` is missing: raise OSError(ELOOP), as the open would, if ``path`` is a
    symbolic link now. Nothing where the open itself refuses one."""
    if not NOFOLLOW and os.path.islink(path):
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", path)
