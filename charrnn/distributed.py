"""Data-parallel training over MPI: N processes (ranks) each carry B/N of the B streams.

``mpiexec -n N charrnn train ...`` (or ``srun``) starts N copies of the same command. They
build the same model from the same seed, and rank r carries the contiguous streams
[r·B/N, (r+1)·B/N) of the batch. Every step, each rank computes the loss and gradients of
its own streams; ``sum`` adds them over the ranks with one allreduce of a single flat
buffer, so every rank holds those of all B streams and clips and updates its weights
identically (Horovod's and PyTorch DDP's data parallelism, with NumPy and mpi4py).
The dropout masks are drawn whole, (T, B, H), from the generator that every rank carries
in the same state, and each rank keeps its slice: the run is the same whatever N is.
A checkpoint gathers the carried state of all B streams to rank 0 (``whole``), which alone
writes files; so a checkpoint is the same file whatever N wrote it, and a run resumes on
any N that divides B, or in a plain process.

Without an MPI launcher nothing here imports mpi4py (importing it starts MPI): ``world()``
is ``SINGLE``, whose methods hand their arguments back unchanged, so a plain run does
exactly what it did before this module existed.

**Every rank ends together.** A collective call waits for every rank, so a rank that
fails on its own (a full disk on rank 0, a failed allocation on rank 1) must not leave
the others waiting. Every collective here is preceded by a small *control* allreduce of
fixed shape (``_control``: an error count, a flag, a value); a rank that fails anywhere
joins the next control allreduce with its error (``ends_together``, around the ``train``
command). Since every rank calls the same collectives in the same order, the others are
at that same control allreduce (or on their way to it); they all learn there that a rank
failed, exchange the messages, and every rank raises: rank 0 the error of the lowest
failing rank (one line, ``rank r of N: ...`` when it is another rank's), the other ranks
exit silently with the same code. A failure that every rank meets at once (a bad config,
a diverged loss) ends the same way, and MPI is finalized normally.
The same control allreduce carries the stop flag (Ctrl-C, SIGTERM) and the time budget,
so that every rank stops after the same step; and the validation loss (``total``).

**A rank that does not answer.** That protocol needs every rank to act. A rank can also
stop answering without failing: its process stopped (SIGSTOP, a debugger, a node that
swaps), its node cut off the network. Every collective is therefore non-blocking
(``Iallreduce``, ``Igather``, ``Iallgather(v)``) and waited for by ``_wait``, which polls
the request in Python: it spins for the first 5 ms, as MPI's blocking calls do, then naps
a tenth of the time waited so far (10 ms at most), so an answer is seen at most ~10% late. A collective that has not
completed after ``train.peer_timeout`` seconds (``heed``) ends the run on this rank
(``_give_up``): it sends a small notice (tag ``NOTICE``) to every other rank, and waits
``GRACE`` seconds for theirs; a rank whose notice does not come is silent. A rank that
receives a notice while it waits in a collective gives up at once too, so that every rank
that can act ends within about ``peer_timeout + GRACE``. A stop signal (the ``StopFlag``
given to ``heed``) while a collective waits gives up ``SIGNAL_GRACE`` seconds after it (at
once after a second signal) instead of waiting for the timeout. The lowest rank that can
act says it in one line (``PeerLost``: which rank did not answer; ``train`` adds the step
and what the last checkpoint holds) on its own stderr, even when that is not rank 0, and
every such rank leaves without finalizing MPI (``_leave``: ``os._exit``, since
MPI_Finalize, or any further collective, would wait for the silent rank); the launcher then
ends the silent processes. Within ``peer_timeout`` every collective is what it was: the
same calls in the same order, the same numbers.

Weights are compared across ranks (a CRC of their bytes) when the run starts and at every
checkpoint: ranks started with different weights, or whose arithmetic drifted apart,
stop the run with a message instead of training on inconsistent copies.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pickle
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from charrnn.errors import CharrnnError, UsageError
from charrnn.signals import SIGNAL_NAMES, Signalled

if TYPE_CHECKING:
    from charrnn.checkpoint import RunState
    from charrnn.device import Arrays
    from charrnn.signals import StopFlag

_T = TypeVar("_T")  # mine(): what it is given, this rank's part of it
_P = ParamSpec("_P")

# Set in the processes that an MPI launcher starts (MPICH and Intel MPI's hydra, Open MPI,
# PMIx launchers such as Slurm's ``srun --mpi=pmix``).
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
RANK_VARS = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")  # this process's rank, before MPI starts
INSTALL_HINT = "pip install 'charrnn[mpi]'"

PEER_TIMEOUT = 600.0  # seconds a collective may wait before ``heed`` sets train.peer_timeout
# The first 5 ms of a wait spin, as MPI's blocking calls do: a rank that naps loses its core on a
# busy machine and comes back late (back-to-back 24-byte allreduces on 2 loaded cores: 250 us a
# call spinning 0.2 ms, 7 to 12 us spinning 5 ms, 14 us blocking; benchmarks/collective_wait.py).
SPIN = 0.005
GRACE = 3.0  # seconds a rank that gave up waits for the others' notices
SIGNAL_GRACE = 3.0  # seconds a collective still waits after a stop signal before giving up
NOTICE = 7377  # the MPI tag of the notice a rank that gives up sends to every other rank
STOP_NAMES = {1: "SIGHUP", 2: "Ctrl-C", 15: "SIGTERM"}  # signals.NAMES, by number (no import of signal handling here)


class PeerLost(CharrnnError):
    """A collective did not complete: some rank did not answer (``silent``), or a stop signal
    came while it waited (``signum``). The message says which rank and why; ``train`` adds the
    step (``step``: the last step this rank completed, set there) and the last checkpoint.
    ``exit_code``: 1, or 128 + ``signum`` (130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP)."""

    def __init__(self, message: str, exit_code: int = 1, silent: tuple[int, ...] = (), signum: int | None = None):
        super().__init__(message)
        self.exit_code, self.silent, self.signum = exit_code, silent, signum
        self.step: int | None = None


def launcher_var() -> str | None:
    """The first launcher variable set in this process's environment, or None."""
    return next((v for v in LAUNCHER_VARS if v in os.environ), None)


class Single:
    """One process: the plain path. Every method hands its arguments back unchanged (no
    copies), so a run through ``SINGLE`` is bitwise the run without this module."""

    rank, size = 0, 1

    def split(self, run: RunState, resumed: bool = False) -> None:
        """A run starts: nothing to divide."""

    def whole(self, run: RunState) -> RunState | None:
        return run

    def mine(self, a: _T, axis: int) -> _T:
        return a

    def span(self, n: int) -> slice:
        return slice(None)

    def sum(self, loss: float, grads: Arrays) -> tuple[float, Arrays]:
        return loss, grads

    def total(self, x: float) -> float:
        return x

    def agreed(self, flag: bool) -> bool:
        return flag

    def same_corpus(self, identity: dict, path: str) -> None:
        """One process reads one corpus: nothing to compare."""

    def heed(self, timeout: float, stop: StopFlag | None = None) -> None:
        """One process waits for no other: nothing to time out."""

    def end(self, error: BaseException | None) -> None:
        """Nothing to coordinate: the error goes its way."""


SINGLE = Single()
_world = None


def world() -> Single | Ranks:
    """The processes of this run: ``SINGLE``, or MPI's world when an MPI launcher started
    this process (ranks other than 0 then print nothing: their stdout and stderr are
    discarded). mpi4py is imported only then. Raises CharrnnError (one line) when a
    launcher started this process but mpi4py is not installed."""
    global _world
    if _world is not None:
        return _world
    var = launcher_var()
    if var is None:
        _world = SINGLE
        return _world
    try:
        import mpi4py

        mpi4py.rc.threads = False  # MPI is called from the main thread only: plain MPI_Init
        from mpi4py import MPI
    except ImportError:
        if env_rank() not in (None, 0):
            _silence()  # every rank would say it: rank 0 says it once
        raise CharrnnError(f"started by an MPI launcher ({var} is set), but mpi4py is not installed: "
                           f"{INSTALL_HINT} (on a cluster, against the site's MPI: see docs/cluster.md)") from None
    comm = MPI.COMM_WORLD
    _world = SINGLE if comm.Get_size() == 1 else Ranks(comm, MPI)
    if _world.rank != 0:
        _silence()
    return _world


def env_rank() -> int | None:
    """This process's rank as its launcher set it (before MPI starts), or None outside a launcher."""
    for v in RANK_VARS:
        try:
            return int(os.environ[v])
        except (KeyError, ValueError):
            continue
    return None


def speaks() -> bool:
    """Whether this process speaks for the run: rank 0 (or a process outside a launcher), or,
    once a rank gave up on the others (``Ranks._give_up``), the lowest rank that can act."""
    if isinstance(_world, Ranks) and _world.speaker is not None:
        return _world.speaker
    return env_rank() in (None, 0)


def _silence():
    """Rank 0 speaks for the run: other ranks discard what Python would print."""
    sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")


def ends_together(command: Callable[_P, _T]) -> Callable[_P, _T]:
    """Decorate a command so that, under MPI, it ends on every rank at once (see the module
    docstring): an exception on one rank reaches the others at their next collective call."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        comm = world()
        try:
            result = command(*args, **kwargs)
        except BaseException as e:
            comm.end(e)
            raise
        comm.end(None)
        return result

    return run


def _report(e):
    """(one-line message, exit code) for an exception, as the command line would show it."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(e, Signalled):  # SIGTERM or SIGHUP outside the training loop
        return f"stopped by {SIGNAL_NAMES.get(e.signum, e.signum)}", e.exit_code
    if isinstance(e, SystemExit):
        return "exited", e.code if isinstance(e.code, int) else 1
    if isinstance(e, OSError) and e.strerror:
        return (f"{e.filename}: " if e.filename else "") + e.strerror, 1
    if isinstance(e, CharrnnError) or hasattr(e, "format_message"):  # ours, or Click's
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        return message, int(getattr(e, "exit_code", 1))
    return f"{type(e).__name__}: {e}", 1


class Ranks:
    """N > 1 processes under MPI. See the module docstring for the protocol."""

    CONTROL = 3  # [errors, flag, value]

    def __init__(self, comm: Any, MPI: Any) -> None:  # mpi4py's COMM_WORLD and MPI module
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._control_buf = np.zeros(self.CONTROL, dtype=np.float64)
        self._buf = None  # the flat gradient buffer, allocated at the first ``sum``
        self._streams = None  # this rank's slice of the B training streams, from ``split``
        self._ended = False  # every rank knows the run is ending with an error
        self._broken = False  # this rank gave up on a collective: no further one is attempted
        self.timeout, self._stop = PEER_TIMEOUT, None  # from ``heed``
        self.exit_code = 1  # after giving up: this process's (``_leave``)
        self.speaker: bool | None = None  # after giving up: whether this rank says why (``speaks``)
        self._sent = []  # the notices this rank sent when it gave up (kept until it exits)

    def heed(self, timeout: float, stop: StopFlag | None = None) -> None:
        """From now on a collective gives up after ``timeout`` seconds (train.peer_timeout),
        and, with ``stop``, ``SIGNAL_GRACE`` seconds after a stop signal (at once after a
        second one) instead of waiting for a rank that does not answer."""
        self.timeout, self._stop = float(timeout), stop

    # ----------------------------------------------------------------- waiting
    def _wait(self, req: Any) -> None:
        """Wait for the non-blocking collective ``req``; give up (``_give_up``: raises
        PeerLost) when it has not completed within ``self.timeout`` seconds, when another
        rank's notice says it gave up, or after a stop signal.

        It polls ``req.Test()`` (which also drives MPI's progress): for the first ``SPIN``
        seconds without a pause, then with naps of a tenth of the time waited so far (10 ms at
        most), so the answer is seen at most ~10% late and a long wait leaves the core to
        others. Python runs between polls, so a signal's handler sets the stop flag here."""
        if req.Test():
            return
        stop = self._stop
        # A second signal while waiting is held until the collective completes (then StopNow,
        # between two collectives, as a blocking call would have it): cut short in the middle,
        # this rank would start the next collective while the others finish this one.
        with stop.held() if stop is not None else contextlib.nullcontext():
            t0 = time.monotonic()
            next_look = t0 + 0.05  # when to look for a notice next: not on every poll
            signalled = None  # when the wait first saw the stop flag set
            while not req.Test():
                now = time.monotonic()
                waited = now - t0
                if now >= next_look:
                    next_look = now + 0.05
                    if self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=NOTICE):
                        self._give_up(notified=True)
                    if stop is not None and stop.set:
                        signalled = now if signalled is None else signalled
                        if stop.insisted or now - signalled >= SIGNAL_GRACE:
                            self._give_up(signum=stop.signum)
                    if waited >= self.timeout:
                        self._give_up()
                if waited > SPIN:
                    time.sleep(min(0.01, 0.1 * waited))

    def _give_up(self, signum: int | None = None, notified: bool = False) -> None:
        """This rank stops waiting: it tells every other rank (a notice: its exit code and the
        signal, if any), gathers the notices of those that can still act for ``GRACE`` seconds
        (fewer when all have come), and raises PeerLost naming the ranks whose notice did not
        come. From here no collective is attempted (``_broken``) and the process leaves
        without finalizing MPI (``_leave``, at exit); the lowest rank that can act speaks,
        on its own stderr (others' was silenced)."""
        MPI, comm = self.MPI, self.comm
        self._broken = True
        code = 128 + signum if signum else 1
        mine = np.array([code, signum or 0], dtype=np.int64)
        self._sent = [comm.Isend(mine, dest=r, tag=NOTICE) for r in range(self.size) if r != self.rank]
        notices = {}
        deadline = time.monotonic() + GRACE
        status = MPI.Status()
        while len(notices) < self.size - 1 and time.monotonic() < deadline:
            if comm.Iprobe(source=MPI.ANY_SOURCE, tag=NOTICE, status=status):
                theirs = np.empty(2, dtype=np.int64)
                comm.Recv(theirs, source=status.Get_source(), tag=NOTICE)
                notices[status.Get_source()] = theirs
            else:
                time.sleep(0.005)
        silent = tuple(r for r in range(self.size) if r != self.rank and r not in notices)
        if notified and not signum and notices:  # another rank gave up first: end as it does
            first = notices[min(notices)]
            code, signum = int(first[0]), int(first[1]) or None
        alive = [r for r in range(self.size) if r not in silent]
        self.speaker = self.rank == alive[0]
        if self.speaker and self.rank != 0:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # rank 0 is silent: this rank speaks
        self.exit_code = code
        atexit.register(self._leave)
        who = (f"rank {silent[0]}" if len(silent) == 1 else "ranks " + ", ".join(map(str, silent))) + \
            f" of {self.size}"
        name = STOP_NAMES.get(signum, f"signal {signum}")
        if not silent and signum:  # e.g. a rank busy for longer than SIGNAL_GRACE (a large checkpoint)
            message = f"interrupted by {name} while the {self.size} ranks were at different steps (every rank " \
                      "answered, but a collective did not complete in time)"
        elif not silent:
            message = f"the {self.size} ranks fell out of step (a collective did not complete, though every rank " \
                      "answered)"
        elif signum:
            message = f"interrupted by {name} while {who} did not answer"
        else:
            message = f"{who} did not answer for {self.timeout:g} s (train.peer_timeout)"
        raise PeerLost(message, code, silent, signum)

    def _leave(self) -> None:
        """At exit, after this rank gave up on the others: flush what was said and leave with
        ``exit_code`` without MPI_Finalize, which would wait for them (registered by
        ``_give_up``, so it runs before mpi4py's finalization). The launcher sees a rank end
        without finalizing and ends the job."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(self.exit_code)

    # ----------------------------------------------------------------- control and errors
    def _control(self, error=None, flag=False, value=0.0):
        """The allreduce before every collective: (any rank's flag, sum of the values).

        Raises on every rank when any rank brings an error (``error``, from ``end``).
        """
        c = self._control_buf
        c[:] = (error is not None, bool(flag), value)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, c, op=self.MPI.SUM))
        if c[0]:
            self._fail(error)
        return bool(c[1]), float(c[2])

    def _allgather(self, obj: Any) -> list:
        """Every rank's picklable ``obj``, on every rank (mpi4py's ``allgather``, non-blocking:
        the sizes, then the bytes)."""
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes))
        at = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._wait(self.comm.Iallgatherv(data, [out, sizes, at, self.MPI.BYTE]))
        return [pickle.loads(out[a:a + n].tobytes()) for a, n in zip(at, sizes, strict=True)]

    def _fail(self, error):
        """Some rank failed, and every rank knows it: exchange the reports and raise. Rank 0
        raises the error of the lowest failing rank (its own exception, when that is rank 0);
        the others exit with the same code, silently."""
        self._ended = True
        reports = self._allgather(None if error is None else _report(error))
        first = next(r for r, x in enumerate(reports) if x is not None)
        message, code = reports[first]
        if self.rank != 0:
            raise SystemExit(code)
        if first == 0:
            return  # ``end`` re-raises rank 0's own exception, shown as in a single process
        e = CharrnnError(f"rank {first} of {self.size}: {message}")
        e.exit_code = code
        raise e

    def end(self, error: BaseException | None) -> None:
        """This rank's command ended (``error``: with an exception). Unless every rank already
        knows of a failure, or this rank gave up on them, meet the others at their next
        control allreduce.

        A KeyboardInterrupt (a second Ctrl-C: stop at once) can strike between a control
        allreduce and the one it announces, where no other rank would meet this one; it ends
        the job at once instead (MPI_Abort; the last checkpoint is intact, being atomic)."""
        if isinstance(error, KeyboardInterrupt):
            self.comm.Abort(130)
        if self._ended or self._broken:
            return
        try:
            self._control(error=error)
        except PeerLost as lost:
            if error is None or isinstance(error, SystemExit):
                raise
            message, self.exit_code = _report(error)  # this rank's own error, and then no answer
            raise PeerLost(f"{message}; then {lost}", self.exit_code, lost.silent, lost.signum) from None

    def agreed(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (a stop request, the time budget)."""
        return self._control(flag=flag)[0]

    def total(self, x: float) -> float:
        """The sum of float ``x`` over the ranks, on every rank."""
        return self._control(value=x)[1]

    # ----------------------------------------------------------------- streams
    def span(self, n: int) -> slice:
        """This rank's contiguous part of n items (the first n mod N ranks one more)."""
        q, r = divmod(n, self.size)
        lo = self.rank * q + min(self.rank, r)
        return slice(lo, lo + q + (self.rank < r))

    def mine(self, a: _T, axis: int) -> _T:
        """This rank's streams of ``a``: a contiguous copy of its slice along ``axis`` (the B
        axis). ``a``: an array, a list or tuple of them (carried state, masks), or None."""
        if a is None:
            return None
        if isinstance(a, (list, tuple)):
            return type(a)(self.mine(x, axis) for x in a)
        return np.ascontiguousarray(a[(slice(None),) * axis + (self._streams,)])

    def same_corpus(self, identity: dict, path: str) -> None:
        """Before the first step: every rank's corpus (its size and SHA-256, as a checkpoint
        records it) must be rank 0's. The same path can name other files on other nodes (another
        mount, another working directory); their gradients would mix two texts without a word."""
        mine = (int(identity["bytes"]), str(identity["sha256"]), os.path.abspath(path))
        self._control()
        everyone = self._allgather(mine)
        bad = [r for r, x in enumerate(everyone) if x[:2] != everyone[0][:2]]
        if bad:
            r = bad[0]
            raise CharrnnError(f"ranks 0 and {r} of {self.size} read different corpora: {everyone[0][2]} on rank 0 "
                               f"({everyone[0][0]:,} bytes, SHA-256 {everyone[0][1][:12]}...) and {everyone[r][2]} "
                               f"on rank {r} ({everyone[r][0]:,} bytes, SHA-256 {everyone[r][1][:12]}...): their "
                               "contents differ; give every rank the same file (a shared file system, or copies "
                               "checked with sha256sum)")

    def split(self, run: RunState, resumed: bool = False) -> None:
        """A run starts on every rank: check that they all hold the same weights, and keep
        this rank's streams of the carried state (a checkpoint or a new run holds all B).
        ``resumed``: the run continues a checkpoint, whose batch size is fixed."""
        B = run.state[0][0].shape[0]
        if B % self.size:
            fits = [n for n in range(1, B + 1) if B % n == 0]
            how = (f"the resumed run's train.batch_size is fixed: run a number of processes that divides it "
                   f"(mpiexec -n N with N one of {', '.join(map(str, fits))})" if resumed else
                   f"run a number of processes that divides it ({', '.join(map(str, fits))}), "
                   f"or set train.batch_size to a multiple of {self.size}")
            raise UsageError(f"train.batch_size {B} cannot be split between {self.size} processes: {how}")
        self._check_weights(run, "start every rank with the same command and files (config, --resume, --init-from)")
        self._streams = slice(self.rank * B // self.size, (self.rank + 1) * B // self.size)
        run.state = self.mine(run.state, axis=0)

    def whole(self, run: RunState) -> RunState | None:
        """The run with the carried state of all B streams, on rank 0 (None on the others),
        for a checkpoint; the weights are checked to be equal on every rank first."""
        self._check_weights(run, "the ranks computed different updates (settings that differ between "
                                 "ranks, or mixed hardware or libraries); no checkpoint was written for it")
        arrays = [a for layer in run.state for a in layer]  # each (B/N, H)
        mine = np.stack(arrays)  # (S, B/N, H)
        everything = np.empty((self.size,) + mine.shape, mine.dtype) if self.rank == 0 else None
        self._control()
        self._wait(self.comm.Igather(mine, everything, root=0))
        if self.rank != 0:
            return None
        full = np.concatenate(everything, axis=1)  # (S, B, H): rank r's streams after rank r-1's
        it = iter(full)
        state = [tuple(next(it).copy() for _ in layer) for layer in run.state]
        return replace(run, state=state)

    def _check_weights(self, run, why):
        """Every rank's CRC of its weights' bytes; a difference raises on every rank."""
        crc = 0
        for p in run.params.values():
            crc = zlib.crc32(np.ascontiguousarray(p).data, crc)
        self._control()
        crcs = self._allgather(crc)
        bad = [r for r, c in enumerate(crcs) if c != crcs[0]]
        if bad:
            raise CharrnnError(f"the weights of rank {bad[0]} of {self.size} differ from rank 0's at step "
                               f"{run.step}: {why}")

    # ----------------------------------------------------------------- the step's reduction
    def sum(self, loss: float, grads: Arrays) -> tuple[float, Arrays]:
        """The loss and gradients of all B streams from each rank's own: each rank's are
        means over its B/N streams, so the mean over all B is the sum of them scaled by 1/N
        (exact when N is a power of two). The gradients travel in one flat buffer of the
        parameters' dtype, in the dicts' (fixed) order, with one Allreduce; the returned
        gradients are views into that buffer, valid until the next ``sum``. The loss travels
        in float64 in the control allreduce before it."""
        scale = 1.0 / self.size
        if self._buf is None:
            first = next(iter(grads.values()))
            self._buf = np.empty(sum(g.size for g in grads.values()), dtype=first.dtype)
        buf, out, at = self._buf, {}, 0
        for k, g in grads.items():
            part = buf[at:at + g.size]
            np.multiply(g.reshape(-1), g.dtype.type(scale), out=part)
            out[k] = part.reshape(g.shape)
            at += g.size
        _, loss = self._control(value=loss * scale)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM))
        return loss, out
