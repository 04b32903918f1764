"""Stopping a run on a signal: the first Ctrl-C, SIGTERM or SIGHUP asks, a second one insists.

The first SIGINT, SIGTERM or SIGHUP (a closed terminal or ssh session) sets a flag that the
loop reads between steps, so that the checkpoint saved on the way out is always of a whole
step. A second one (any of them) raises ``StopNow`` at once, wherever the run is, and the last
checkpoint stays as it was (``atomic.atomic_write`` removes its temporary file on the way).

Outside a training loop (loading a corpus, ``sample``, ``eval``) SIGTERM and SIGHUP raise
``Signalled`` (``raising_on_signals``), as Python's own handler turns SIGINT into
KeyboardInterrupt: every ``finally`` on the way runs (a pipe's temporary copy is removed, a lock
released), where the default action would end the process on the spot.

A SIGHUP that is ignored when the program starts (``nohup charrnn train ...``) stays ignored:
that is what the user asked for. Windows has no SIGHUP: only the signals the platform has
(``portable.STOP_SIGNALS``) are handled and named.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from charrnn.portable import SIGHUP, STOP_SIGNALS

# The stop signals this platform has (no SIGHUP on Windows), as the user knows them.
NAMES = {s: {signal.SIGINT: "Ctrl-C"}.get(s, signal.Signals(s).name) for s in STOP_SIGNALS}
# The names a machine reads (RUN/status.json): the signal's own.
SIGNAL_NAMES = {s: signal.Signals(s).name for s in STOP_SIGNALS}


class Signalled(BaseException):
    """SIGTERM or SIGHUP outside a training loop: unwind, running every ``finally``, and exit
    128 + the signal's number (143, 129), quietly. A BaseException, as KeyboardInterrupt is."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_signalled(signum: int, frame: FrameType | None) -> None:
    raise Signalled(signum)


def ignored_at_start(signum: int) -> bool:
    """Whether ``signum`` is ignored now (SIGHUP under ``nohup``): it is then left alone."""
    return signal.getsignal(signum) is signal.SIG_IGN


def raising_on_signals() -> None:
    """From now on SIGTERM, and SIGHUP unless it is ignored, raise ``Signalled`` (call it in the
    main thread, once, as the program starts: ``cli.main``)."""
    for s in STOP_SIGNALS:
        if s == signal.SIGINT:  # Python's own handler: KeyboardInterrupt
            continue
        if s == SIGHUP and ignored_at_start(s):
            continue
        signal.signal(s, _raise_signalled)


class StopNow(BaseException):
    """A second Ctrl-C, SIGTERM or SIGHUP: stop wherever the run is. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on its way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_in(exc: BaseException | None) -> StopNow | None:
    """The StopNow behind ``exc``, if any: ``exc`` itself, or the exception it arose while
    handling. A StopNow raised inside a library's code can come out as another error: numpy's
    ``savez`` interrupted while it opens a zip member raises ValueError from its ``finally``
    (the zip file cannot close), and the signal is then only that error's context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StopNow):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class StopFlag:
    """``with StopFlag() as stop:``: inside the block SIGINT, SIGTERM and SIGHUP set
    ``stop.signum`` (``stop.set`` is then true); a second one raises ``StopNow``. The handlers
    that were there before come back when the block ends. Outside the main thread, where Python
    cannot handle signals, it leaves them alone (and the flag stays unset). A SIGHUP ignored
    when the block starts (``nohup``) stays ignored."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self._old: dict = {}
        self._holding = 0  # how many ``held`` blocks are open
        self._pending: int | None = None  # a second signal that arrived inside one

    @property
    def set(self) -> bool:
        return self.signum is not None

    @property
    def insisted(self) -> bool:
        """A second signal came inside a ``held`` block (it raises StopNow as the block ends)."""
        return self._pending is not None

    def __enter__(self) -> StopFlag:
        try:
            for s in NAMES:
                if s == SIGHUP and ignored_at_start(s):
                    continue
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not in the main thread
            pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        elif self._holding:
            self._pending = signum
        else:
            raise StopNow(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block that a second signal does not cut short: it raises StopNow as the block
        ends. For code that an exception in its middle leaves broken: numpy's ``savez``,
        interrupted while it opens a zip member, fails in its own ``finally`` with ValueError
        and leaves a zip file that complains again when it is collected. Serializing a
        checkpoint into its temporary file takes milliseconds; the file is then discarded."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if self._pending is not None and not self._holding:
            signum, self._pending = self._pending, None
            raise StopNow(signum)

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
