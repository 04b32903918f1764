"""How a run ended, for a machine: ``RUN/status.json``.

A requeue script (SLURM's, a cron job's) has to tell a finished run from one that a signal
stopped, from one that failed; a launcher's exit code does not always say (Open MPI's
``mpirun`` turns 130 and 143 into 1). So rank 0 writes a small JSON record into the run
directory: ``"running"`` once the directory is this run's, then how it ended (finished, time
budget, early stopping, paused at ``--stop-at``, interrupted and by which signal, diverged,
a rank lost under MPI, failed), with the exit code, the step the checkpoint holds and the
command to continue.
``train.train`` wraps the whole run in ``recorded``. The fields are listed in
docs/robustness.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from collections.abc import Iterator

from charrnn import portable, rundir, signals
from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError, Hangup, Interrupted, Terminated
from charrnn.progress import Summary, summary_line


class Record:
    """``RUN/status.json``: how the run ended, for a machine (a requeue script), whatever exit code
    a launcher passes on. Written atomically by rank 0, and only once the directory is this run's
    (``begin``: after the lock and ``claim``; with --overwrite, once the old run moved aside): a
    run refused there never touches another run's record. ``begin`` writes ``"running"``; the end
    of ``train`` (``recorded``) writes how it ended. docs/robustness.md lists the fields."""

    def __init__(self, files: rundir.RunDir, created: bool, writes: bool):
        self.files, self.created, self.writes = files, created, writes
        self.ours = False  # begun: the record in the directory is this run's
        self.outcome: tuple[str, str] | None = None  # (status, message) of a call that returned
        # The exception the run ends with, as train._told made it: what ``recorded`` records when a
        # late signal, striking inside contextlib's exit between the two, kept it from arriving
        # there (the generator is then closed, and GeneratorExit is all it sees).
        self.seen: BaseException | None = None
        # What continues a stopped call to the end it was heading for (train.Plan.resume_command,
        # set once the plan is made): a --stop-at pause is in it; the run's length and budget are
        # in the checkpoint's config.
        self.resume_command = f"charrnn train --resume {files.ckpt}"

    def begin(self) -> None:
        if self.writes and not self.ours:
            self.ours = True
            with _signals_wait():
                self.write("running", None, None, None, strict=True)

    def returned(self, summary: Summary, planned_steps: int) -> None:
        """The call ran to its end: finished, out of time, early stopping, or paused at --stop-at N."""
        status = {"time budget": "time budget", "early stopping": "early stopping"}.get(summary.stopped)
        if status is None:
            status = "finished" if summary.step >= planned_steps else "paused"
        self.outcome = (status, summary_line(summary, self.files.ckpt))

    def ended(self, exc: BaseException | None) -> None:
        """Write how the run ended: ``exc`` None, as ``returned`` said; else what ``exc`` is."""
        if not self.ours:
            return
        if exc is None:
            status, message = self.outcome or ("finished", None)
            self.write(status, None, 0, message, warn=True)
            return
        signal_name = None
        exc = _stop_behind(exc)
        if isinstance(exc, Interrupted):
            default = {Hangup: "SIGHUP", Terminated: "SIGTERM"}.get(type(exc), "SIGINT")
            status, signal_name, code, message = "interrupted", getattr(exc, "signal", default), exc.exit_code, str(exc)
        elif isinstance(exc, KeyboardInterrupt):  # Ctrl-C outside the loop: quietly, as cli.py ends it
            status, signal_name, code, message = "interrupted", "SIGINT", 130, None
        elif isinstance(exc, signals.Signalled):  # SIGTERM or SIGHUP outside the loop
            status, signal_name, code, message = ("interrupted", signals.SIGNAL_NAMES.get(exc.signum),
                                                  exc.exit_code, None)
        elif isinstance(exc, CharrnnError):
            status = "diverged" if getattr(exc, "diverged", False) else \
                "rank lost" if getattr(exc, "rank_lost", False) else "failed"
            code, message = exc.exit_code, str(exc)
        elif isinstance(exc, OSError):  # as cli.py words it
            status, code = "failed", 1
            message = (f"{exc.filename}: " if exc.filename else "") + str(exc.strerror or exc)
        else:
            status, code, message = "failed", 1, f"{type(exc).__name__}: {exc}"
        files = self.files
        saved = os.path.exists(files.ckpt) or os.path.exists(files.best)
        logged = os.path.exists(files.metrics) and os.path.getsize(files.metrics) > 0
        if self.created and not saved and not logged and (status == "failed" or not os.path.exists(files.config)):
            # A directory this run made, that a failure left without a checkpoint or a line of its
            # log (a full disk at the start), or that a signal stopped before the run wrote anything:
            # its files go, so that the lock removes the directory. (A diverged or interrupted run,
            # or one that logged steps before it failed, keeps what it wrote.)
            for p in (files.status, files.config, files.metrics):
                with contextlib.suppress(OSError):
                    os.unlink(p)
            return
        self.write(status, signal_name, code, message)

    def write(self, status: str, signal_name: str | None, exit_code: int | None, message: str | None,
              strict: bool = False, warn: bool = False) -> None:
        """Write the record. A disk too full for it: at the start (``strict``) the run stops there,
        in one line naming the file; at a clean end (``warn``) a warning; after a failure nothing
        more than the failure's own line (the record then still says "running")."""
        files = self.files
        step = rundir.held_step(files.ckpt) if os.path.exists(files.ckpt) else None
        has_ckpt = step is not None
        # A pause is continued to the run's length; a call stopped on its way, to where it was heading.
        resume = None if not has_ckpt else f"charrnn train --resume {files.ckpt}" if status == "paused" else \
            self.resume_command if status in ("running", "interrupted", "rank lost", "failed") else None
        record = {"status": status, "signal": signal_name, "exit_code": exit_code, "step": step,
                  "checkpoint": files.ckpt if has_ckpt else None, "message": message, "resume": resume,
                  "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "pid": os.getpid()}
        body = (json.dumps(record, indent=1) + "\n").encode("utf-8")
        try:
            atomic_write(files.status, lambda f: f.write(body))
        except OSError as e:
            if strict:
                raise CharrnnError(f"{files.status}: cannot write ({e.strerror or e})") from None
            if warn:
                print(f"warning: {files.status}: cannot write ({e.strerror or e})", file=sys.stderr)


def _stop_behind(exc: BaseException) -> BaseException:
    """The Interrupted that a late signal's KeyboardInterrupt (or Signalled) cut short, if any (the
    line the run ends with is that stop's: ``cli._stopped_in``); else ``exc``."""
    seen, e = set(), exc
    while isinstance(e, (KeyboardInterrupt, signals.Signalled)) and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
        if isinstance(e, Interrupted):
            return e
    return exc


@contextlib.contextmanager
def _signals_wait() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait for the block (a millisecond: the record's write), then
    arrive: a record abandoned half way would leave the previous one, saying "running"."""
    with portable.signals_blocked():  # on Windows, which has no signal mask, nothing
        yield


@contextlib.contextmanager
def recorded(record: Record) -> Iterator[Record]:
    """Around the whole run, outside ``_told`` so that it sees the final message: writes
    ``RUN/status.json`` as the run ends, however it ends (but ``kill -9``)."""
    try:
        yield record
    except GeneratorExit:  # the run's exception never came here (see Record.seen)
        if record.seen is not None:
            _record_end(record, record.seen)
        raise
    except BaseException as e:
        _record_end(record, e)
        raise
    _record_end(record, None)


def _record_end(record: Record, exc: BaseException | None) -> None:
    """``record.ended(exc)``, signals held while it writes. A second Ctrl-C that lands as a
    stopped run unwinds (the stop flag's handlers gone) can raise here before they are held: the
    record is written all the same, of the stop it cut short, and the late signal then goes on."""
    late = None
    for _ in range(3):  # a third signal within the same few microseconds is the limit
        try:
            with _signals_wait():
                record.ended(exc)
            break
        except (KeyboardInterrupt, signals.Signalled) as e:
            late = late or e
    if late is not None:
        raise late
