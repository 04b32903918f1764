"""Stopping a run on a signal: the first Ctrl-C or SIGTERM asks, a second one insists.

The first SIGINT or SIGTERM sets a flag that the loop reads between steps, so that the
checkpoint saved on the way out is always of a whole step. A second one (either) raises
``StopNow`` at once, wherever the run is, and the last checkpoint stays as it was
(``checkpoint.atomic_write`` removes its temporary file on the way).
"""

from __future__ import annotations

import signal
from types import FrameType

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopNow(BaseException):
    """A second Ctrl-C or SIGTERM: stop wherever the run is. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on its way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopFlag:
    """``with StopFlag() as stop:``: inside the block SIGINT and SIGTERM set ``stop.signum``
    (``stop.set`` is then true); a second one raises ``StopNow``. The handlers that were there
    before come back when the block ends. Outside the main thread, where Python cannot
    handle signals, it leaves them alone (and the flag stays unset)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self._old: dict = {}

    @property
    def set(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopFlag:
        try:
            for s in NAMES:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not in the main thread
            pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
