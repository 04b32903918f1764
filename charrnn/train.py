"""The training loop, top to bottom: the plan, the run directory, the corpus, the run's
state, the loop of steps, the finish.

min-char-rnn's loop over B streams: take the next T characters of every stream, run
``loss_and_grads`` from the carried state, clip, update, carry the state on; when the
streams wrap, reset the state (``runstate.next_batch``). ``train_step`` is one such step and
knows only what a step needs (``StepRules``); what happens around the steps (a log line, a
preview, a validation, a checkpoint) is ``Session.after_step``, the one seam between the loop
and the rest, and the session's bookkeeping is the named fields of that one object.

Every ``eval_every`` steps the held-out text is evaluated (with ``optim.ema``, by the moving
average of the weights, updated after every step) and the best model kept as
``RUN/best.npz``. Progress goes to stderr, metrics to ``RUN/metrics.jsonl``, checkpoints to
``RUN/ckpt.npz`` (atomically): ``progress.py`` and ``rundir.py``.

A run holds its directory's lock (``rundir.lock``) from before it reads anything until after
its last save. Ctrl-C, SIGTERM or SIGHUP finishes the step in progress, saves a checkpoint
and stops; a second one stops at once, leaving the last checkpoint as it was (``signals.py``).
How the run ended is written to ``RUN/status.json`` (``runstatus.py``), for a script that requeues
it whatever the launcher's exit code.

Letters: B streams, T characters per chunk, H hidden units, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from charrnn import checkpoint, device, distributed, identity, optim, rundir, runstate, runstatus, sampling, signals
from charrnn import config as C
from charrnn import corpus as CO
from charrnn import data as D
from charrnn import model as M
from charrnn.errors import CharrnnError, Hangup, Interrupted, NothingToDo, Terminated, UsageError
from charrnn.evaluate import evaluate
from charrnn.portable import SIGHUP
from charrnn.progress import SMOOTHING, Progress, Summary, banner, shown_loss
from charrnn.runstate import RunState


class Diverged(Exception):
    """The run blew up at ``step``; nothing of that step is saved."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"training diverged at step {step}: {reason}")


def divergence_reference(first_loss: float, vocab_size: int) -> float:
    """What the divergence rule compares with, nats per character: the larger of log V (a
    uniform guess, where a new run starts) and the run's first step's loss (higher after a
    large init_std). char-rnn stops at 3x its first loss on each step's loss; min-char-rnn's
    Adagrad start has single steps 2 to 3.5 times log V within its first ten (measured over
    12 seeds), so the rule here watches the smoothed loss, which such spikes barely move and
    an explosion (1e31 nats) moves at once."""
    ref = math.log(vocab_size)
    return ref if math.isnan(first_loss) else max(ref, first_loss)


class StepRules(NamedTuple):
    """What a training step needs of the config besides the model, the optimizer and the
    learning rate (``optim.*`` and ``train.diverge_factor``: docs/config.md)."""

    clip_value: float | None = None
    clip_norm: float | None = None
    ema: float | None = None  # decay of the weights' moving average; None: not kept
    diverge_factor: float | None = None
    seq_length: int | None = None  # T, per which chunk the smoothed loss is kept; None: the chunk's own length

    @classmethod
    def of(cls, cfg: C.Config) -> StepRules:
        return cls(cfg.optim.clip_value, cfg.optim.clip_norm, cfg.optim.ema, cfg.train.diverge_factor,
                   cfg.train.seq_length)


def train_step(run: RunState, X: Any, Y: Any, spec: M.ModelSpec, optimizer: Any, lr: float, rules: StepRules,
               comm: Any = distributed.SINGLE) -> float:
    """One step of truncated BPTT on the chunk (X, Y), each (n, B), from the carried state:
    loss and gradients, clipping, the optimizer's update at learning rate ``lr``, the weight
    average; the state is carried on, the position moves on by n. The chunk's length n is
    ``rules.seq_length`` (T), or under ``train.variable_length`` the step's drawn length.

    comm : the processes that share the B streams (``charrnn.distributed``): this one computes
        the loss and gradients of its own streams, ``comm.sum`` makes them those of all B.
    Updates ``run`` in place and returns the loss of the chunk (summed over its n characters,
    averaged over B); the smoothed loss is kept per chunk of T characters, whatever n is.
    Raises Diverged (and changes nothing) when the loss or a gradient is not finite, or the
    smoothed loss exceeds ``rules.diverge_factor`` times ``divergence_reference``.
    """
    n, B = X.shape  # n: this chunk's length
    T = rules.seq_length or n  # the smoothed loss is kept per chunk of T characters
    dtype = run.params["Why"].dtype
    # The masks are drawn for all B streams, so the generator and the run are the same for any N.
    xp = device.array_module(run.params["Why"])
    masks = M.dropout_masks(spec, (n, B, spec.hidden_size), run.rng, dtype, xp) if spec.dropout > 0 else None
    # Overflow is the blow-up that the checks below (and a save's) report in one line: NumPy's
    # warnings about it would only repeat it on stderr, with source paths.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        X, Y, masks = comm.mine(X, axis=1), comm.mine(Y, axis=1), comm.mine(masks, axis=1)  # this process's streams
        loss, grads, state, _ = M.loss_and_grads(run.params, spec, X, Y, run.state, masks)
        loss, grads = comm.sum(loss, grads)  # the mean over all B streams, on every process
        # On a GPU the loss is a device scalar: it is read here, once a step, since the
        # divergence rule below needs its value (a wait for the step's kernels; see docs/gpu.md).
        loss = float(loss)
        # One read of one flag for all the gradients (on a GPU, a read per array would be a wait each).
        if not math.isfinite(loss) or not bool(xp.stack([xp.isfinite(g).all() for g in grads.values()]).all()):
            what = "loss" if not math.isfinite(loss) else "gradient"
            raise Diverged(run.step + 1, f"the {what} is not finite (loss {loss / n} nats/char)")
        per_chunk = loss if n == T else loss / n * T  # a chunk of another length, as if it were T long
        smooth_loss = run.smooth_loss * SMOOTHING + per_chunk * (1 - SMOOTHING)
        first_loss = run.first_loss if run.step else loss / n
        factor = rules.diverge_factor
        ref = divergence_reference(first_loss, spec.vocab_size)
        if factor and smooth_loss / T > factor * ref:
            raise Diverged(run.step + 1, f"the smoothed loss, {smooth_loss / T:.4g} nats/char (this step "
                                         f"{loss / n:.4g}), exceeds train.diverge_factor {factor:g} × {ref:.4g} "
                                         "(the larger of log V and the first step's loss)")
        run.state, run.smooth_loss, run.first_loss = state, smooth_loss, first_loss
        run.loss_sum += loss / n
        run.loss_steps += 1
        if rules.clip_value:
            optim.clip_by_value(grads, rules.clip_value)
        if rules.clip_norm:
            optim.clip_by_norm(grads, rules.clip_norm)
        optimizer.update(run.params, grads, run.opt_state, lr, run.step + 1)
        if run.ema is not None:
            optim.ema_update(run.ema, run.params, rules.ema)
    run.position += n
    run.step += 1
    return loss


def next_step(run: RunState, streams: D.Streams, spec: M.ModelSpec, cfg: C.Config) -> tuple[Any, Any, float]:
    """The chunk (X, Y), each (n, B), and the learning rate of the run's next step: n is T, or
    under ``train.variable_length`` the step's length, drawn from (seed, step) by
    ``data.chunk_length`` (the same on every rank and after a resume), and the rate the
    schedule's times n / T for the optimizers in ``optim.SCALE_FREE`` (SGD's gradient of the
    summed loss already shrinks with n). The streams wrap (``runstate.next_batch``) before the
    rate is taken, since the step schedule counts the epochs."""
    tc = cfg.train
    length = D.chunk_length(tc.seed, run.step + 1, tc.seq_length) if tc.variable_length else None
    X, Y = runstate.next_batch(run, streams, spec, length)
    lr = optim.learning_rate(cfg.optim, run.step + 1, run.epoch, tc.steps)
    if length is not None and cfg.optim.name in optim.SCALE_FREE:
        # AWD-LSTM's rescaling (Merity, Keskar & Socher, section 4.1): adagrad, rmsprop and adam
        # set an update's size by the rate, not by the gradient's, so a chunk of 5 characters
        # would move the weights as far as one of T; at length / T its step weighs what its
        # share of the characters does. (AWD-LSTM's loss is a mean per character, so its SGD
        # needs the scaling too; the loss here is summed over the chunk, as min-char-rnn's is.)
        lr = lr * length / tc.seq_length
    return X, Y, lr


def train(cfg: C.Config | None, *, resume: str | None = None, init_from: str | None = None, steps: int | None = None,
          quiet: bool = False, out_dir: str | None = None, overwrite: bool = False, comm: Any = None,
          device_name: str | None = None, data_path: str | None = None, stop_at: int | None = None,
          minutes: float | None = None) -> Summary:
    """Train according to ``cfg`` (or continue the run in checkpoint ``resume``, cfg None).

    steps : the run's length, its total step count: ``train.steps`` becomes ``steps`` (a
        resumed run's too, which makes it longer or shorter; a schedule is then stretched to
        the new length). Must exceed a resumed run's step.
    stop_at : pause this call at this total step (at most the run's length): no final
        validation, RUN/status.json "paused"; a plain ``--resume`` goes on to the run's length,
        and ends exactly as an uninterrupted run.
    minutes : train at most this many more minutes: ``train.max_minutes`` becomes the run's
        training time so far (a resumed run's) plus ``minutes``.
    A run stopped by a signal and resumed with the command it prints ends exactly as an
    uninterrupted one. Raises NothingToDo (exit 0) for a resumed run that has nothing left
    to do (finished, or out of its time budget), naming the option that would go on.
    out_dir : run directory (default ``cfg.train.out_dir``, or the checkpoint's directory).
    overwrite : a new run replaces the run in ``out_dir`` (its files are moved into
        ``RUN/replaced-<time>/``); without it a directory that holds a checkpoint is refused.
    comm : the processes that share the run (default ``distributed.world()``: the ranks of
        ``mpiexec``/``srun``, or this process alone); rank 0 alone writes and reports.
    device_name : "cpu" or "gpu": overrides ``model.device`` (a resumed run's too, so that a GPU
        run can continue on a CPU and the other way round).
    data_path : with ``resume``, where the run's corpus is now (it moved): its text must be the
        one the checkpoint records; the run's stored config then names this path.
    Returns a Summary. The run directory is locked (``rundir.lock``, by rank 0) before the
    checkpoint or the corpus is read and until the last save is done.
    """
    comm = distributed.world() if comm is None else comm
    files = rundir.RunDir(run_directory(cfg, resume, out_dir))
    record = runstatus.Record(files, created=not os.path.isdir(files.path), writes=comm.rank == 0)
    locked = rundir.lock(files.path) if comm.rank == 0 else contextlib.nullcontext()
    with locked, runstatus.recorded(record), _told(files, record):  # status.json sees the message _told makes
        # The plan: the config (a resumed run's own), where to stop, where to write, on what device.
        try:
            plan = make_plan(cfg, resume, init_from, steps, files, overwrite, device_name, quiet or comm.rank != 0,
                             comm, data_path, stop_at, minutes)
        except NothingToDo:  # a finished run: what a kill -9 in its last write left still goes
            if comm.rank == 0:
                files.remove_temporaries()
            raise
        record.resume_command = plan.resume_command  # what a stopped call of this plan is continued with
        cfg, tc = plan.cfg, plan.cfg.train
        comm.heed(tc.peer_timeout)  # under MPI: how long a collective waits for a rank that does not answer
        if comm.rank == 0:  # the one process that writes the run directory: refused before anything is read
            claim(plan)
            if not plan.overwrite:  # the directory is this run's now
                record.begin()

        # The corpus: the vocabulary, the training text as B streams, the held-out text.
        corpus = open_corpus(plan, comm)
        comm.same_corpus(corpus.identity, plan.cfg.data.path)  # every rank reads the same text
        streams = D.Streams(corpus.train, tc.batch_size, tc.seq_length,
                            D.longest_chunk(tc.seq_length) if tc.variable_length else None)

        # The model, the optimizer and the run's state: resumed whole, or new.
        spec = M.ModelSpec.of(cfg.model, len(corpus.vocab))
        optimizer = optim.from_config(cfg.optim)
        if plan.checkpoint is not None:
            run = plan.checkpoint.run
        else:
            weights = checkpoint.weights_for(init_from, spec, corpus.vocab) if init_from else None
            run = runstate.new_run(cfg, spec, optimizer, weights)
        comm.split(run, resumed=plan.checkpoint is not None)  # each process keeps the carried state of its own streams
        runstate.on_device(run, plan.xp)  # the arrays go where the run trains; the corpus stays on the host
        if comm.rank == 0:
            write_run_dir(plan, run)
            record.begin()  # with --overwrite the old run (its status.json too) has only now moved aside
        if not plan.quiet:
            print(banner(cfg, corpus, spec, run, files.path, plan.start, comm), file=sys.stderr)

        # The loop: batch, learning rate, step, and what follows a step.
        # (The session's plan is the one to read from here on: under train.fit_to_budget it
        # changes the run's length as the run goes.)
        rules = StepRules.of(cfg)
        with signals.StopFlag() as stop, Progress(files.metrics if comm.rank == 0 else None, plan.stop_at, run.step,
                                                  plan.quiet, tc.log_seconds) as progress:
            session = Session(plan, run, corpus, spec, progress, stop, comm, record)
            comm.heed(tc.peer_timeout, stop)  # a stop signal also ends a wait for a rank that does not answer
            try:
                while run.step < session.plan.stop_at and not comm.agreed(stop.set):  # all processes stop together
                    if session.out_of_time():
                        break
                    X, Y, lr = next_step(run, streams, spec, session.cfg)
                    loss = train_step(run, X, Y, spec, optimizer, lr, rules, comm)
                    if session.after_step(loss, lr, Y[-1, 0], len(Y)):
                        break
                progress.close_bar()
                session.finish()  # the final validation and checkpoint; raises Interrupted after a signal
            except distributed.PeerLost as e:
                e.step = run.step  # the last step this rank completed, for the message (_told)
                raise
        summary = session.summary()
        record.returned(summary, session.cfg.train.steps)
    return summary


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """What one call of ``train`` does, settled before the corpus is read."""

    cfg: C.Config  # the run's config: a resumed run's own, with --steps, --device and the run directory applied
    checkpoint: checkpoint.Checkpoint | None  # the run resumed, or None for a new run
    resume: str | None  # its path
    init_from: str | None  # a new run's starting weights, or None
    stop_at: int  # this call stops at this step
    files: rundir.RunDir  # where it writes
    continues_here: bool  # a resumed run continued in its own directory (not branched into another)
    overwrite: bool  # a new run replaces the one in its directory (or a rewound one, the run as it went on)
    xp: Any  # the array module of the device it trains on (numpy, or cupy)
    quiet: bool  # no banner, bar or previews (and always on the ranks other than 0)
    steps_given: bool = False  # the call gave --steps (the run's length, train.steps)
    rewinds: bool = False  # --resume RUN/best.npz --overwrite: RUN goes back to an earlier checkpoint of its own

    @property
    def start(self) -> str:
        """How the run began, for the banner (and where this call pauses, if it does)."""
        if self.resume:
            how = f"resuming at step {self.checkpoint.run.step:,} from {self.resume}"
        else:
            how = f"new, from the weights of {self.init_from}" if self.init_from else "new"
        return how + (f"; pausing at step {self.stop_at:,}" if self.pauses else "")

    @property
    def pauses(self) -> bool:
        """This call stops below the run's length (``--stop-at``)."""
        return self.stop_at < self.cfg.train.steps

    @property
    def resume_command(self) -> str:
        """The command that continues this call after a signal (or a failure, once fixed) stops
        it, to the same end: its ``--steps`` (the run's length: in a checkpoint this call saved,
        but not in an older one, which a failure before the first save leaves) and its pause
        (``--stop-at``, in no checkpoint). A time budget is in every checkpoint this call saves."""
        return self.command(self.files.ckpt)

    def command(self, ckpt: str, *more: str) -> str:
        """``charrnn train --resume CKPT`` with this call's length and pause, and ``more``."""
        steps = [f"--steps {self.cfg.train.steps}"] if self.steps_given else []
        pause = [f"--stop-at {self.stop_at}"] if self.pauses else []
        return " ".join(["charrnn train --resume", ckpt, *more, *steps, *pause])


def run_directory(cfg: C.Config | None, resume: str | None, out_dir: str | None) -> str:
    """The run directory, absolute: ``--out``, or a resumed checkpoint's directory, or ``train.out_dir``."""
    if resume is not None:
        out_dir = out_dir or os.path.dirname(os.path.abspath(resume))
    return os.path.abspath(out_dir or cfg.train.out_dir)


def make_plan(cfg: C.Config | None, resume: str | None, init_from: str | None, steps: int | None,
              files: rundir.RunDir, overwrite: bool, device_name: str | None, quiet: bool, comm: Any,
              data_path: str | None = None, stop_at: int | None = None, minutes: float | None = None) -> Plan:
    """The plan of a call of ``train``: reads the resumed checkpoint (a resumed run keeps its
    own config, but for ``data_path``, where its corpus moved), applies ``--steps``,
    ``--minutes``, ``--stop-at`` and ``--device``, and refuses what cannot be done."""
    ck = checkpoint.load(resume) if resume is not None else None
    if ck is not None:
        cfg = ck.config
        if data_path is not None:  # checked against the checkpoint's record of its text in open_corpus
            # Absolute, as a config's paths are when written: the run's config.yaml stays true from anywhere.
            cfg = replace(cfg, data=replace(cfg.data, path=os.path.abspath(data_path)))
    if device_name is not None:
        cfg = replace(cfg, model=replace(cfg.model, device=device_name))
    xp = device.get_xp(cfg.model.device)  # numpy, or cupy: a one-line error if there is no GPU to use
    if xp is not np and comm.size > 1:
        raise UsageError(f"model.device gpu trains in one process, not {comm.size} (several GPUs through MPI "
                         "are not supported yet): leave out mpiexec, or train on the CPUs with --device cpu")
    cfg = run_length(cfg, ck, resume, steps, minutes)
    cfg = replace(cfg, train=replace(cfg.train, out_dir=files.path))
    continues_here = ck is not None and os.path.dirname(os.path.abspath(resume)) == files.path
    further = None  # the step RUN/ckpt.npz holds, when the run resumes from an earlier checkpoint kept in RUN
    if continues_here and os.path.abspath(resume) != files.ckpt and os.path.exists(files.ckpt):
        further = rundir.held_step(files.ckpt)
        if further is not None and further <= ck.run.step:
            further = None
    rewinds = further is not None and overwrite
    if continues_here and overwrite and not rewinds:
        raise UsageError(f"--overwrite replaces the run in {files.path} with a new one, --resume continues it; "
                         "give one of them (or --out DIR to continue the run elsewhere)")
    if further is not None and not overwrite:
        # RUN/best.npz (or another checkpoint kept in RUN) continued in RUN would cut the log and
        # overwrite RUN/ckpt.npz back to its step: the steps after it lost without a word.
        raise UsageError(
            f"{resume} holds step {ck.run.step}, {files.ckpt} step {further}: resuming from "
            f"{os.path.basename(resume)} here would rewind the run; continue the run with --resume "
            f"{files.ckpt}, branch from step {ck.run.step} with --resume {resume} --out NEWDIR, or rewind this "
            f"run to it with --resume {resume} --overwrite (the run as it went on is moved into "
            f"{os.path.join(files.path, rundir.REPLACED_PREFIX + '<time>')}/)")
    if stop_at is None:
        stop_at = cfg.train.steps
    elif stop_at > cfg.train.steps:
        raise UsageError(f"--stop-at {stop_at} is past the run's length, train.steps {cfg.train.steps}: give "
                         f"--steps {stop_at} to make the run {stop_at} steps long")
    elif ck is not None and stop_at <= ck.run.step:
        raise UsageError(f"--stop-at {stop_at}: {resume} already holds step {ck.run.step}; give a later step, or "
                         "leave --stop-at out to train to the run's length")
    nothing_to_do(cfg, ck, resume)
    return Plan(cfg, ck, resume, init_from, stop_at, files, continues_here, overwrite, xp, quiet, steps is not None,
                rewinds)


def run_length(cfg: C.Config, ck: checkpoint.Checkpoint | None, resume: str | None, steps: int | None,
               minutes: float | None) -> C.Config:
    """``cfg`` with the run's length (``--steps``, which must exceed a resumed run's step) and
    time budget (``--minutes`` more) applied."""
    done = ck.run.step if ck is not None else 0
    if steps is not None:
        if steps <= done:
            raise UsageError(f"--steps {steps}: {resume} already holds step {done}, and --steps is the run's whole "
                             f"length: give more than {done}, e.g. charrnn train --resume {resume} --steps {2 * done}")
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    if minutes is not None:  # the budget counts the run's training time across resumes
        trained = ck.run.elapsed_s / 60 if ck is not None else 0.0
        cfg = replace(cfg, train=replace(cfg.train, max_minutes=trained + minutes))
    return cfg


def nothing_to_do(cfg: C.Config, ck: checkpoint.Checkpoint | None, resume: str | None) -> None:
    """Raise NothingToDo, naming the option that goes on, for a resumed run that is finished at
    its length or out of its time budget (after every usage error: those are said first)."""
    if ck is None:
        return
    tc, done = cfg.train, ck.run.step
    if done >= tc.steps:
        raise NothingToDo(f"{resume}: the run is finished (step {done:,} of train.steps {tc.steps:,}); nothing to do. "
                          f"To train it further, give its new length: charrnn train --resume {resume} --steps "
                          f"{2 * done}")
    if tc.max_minutes is not None and ck.run.elapsed_s >= 60 * tc.max_minutes:
        raise NothingToDo(f"{resume}: the run stopped on its time budget (train.max_minutes {tc.max_minutes:g}, "
                          f"{ck.run.elapsed_s / 60:.3g} minutes trained, step {done:,} of {tc.steps:,}); "
                          "nothing to do. "
                          f"To train it further: charrnn train --resume {resume} --minutes {_budget(tc.max_minutes)} "
                          "(that many more minutes)")


def _budget(minutes: float) -> str:
    """A time budget as an option's value: the same again, at least one minute."""
    return f"{max(1, round(minutes)):d}"


def claim(plan: Plan) -> None:
    """Before anything is read: a new run, or a run continued into another directory, must not
    replace a run unasked (with --overwrite the old one is moved aside only once the new one is
    ready: ``write_run_dir``); what a killed run left half-written goes."""
    if not plan.continues_here and not plan.overwrite:
        rundir.check_fresh(plan.files.path, overwrite=False)
    plan.files.remove_temporaries()


def open_corpus(plan: Plan, comm: Any = distributed.SINGLE) -> CO.Corpus:
    """The corpus of the plan's ``data.path``; a resumed run's must be the text it was trained on.
    Under MPI it must be a file or a prepared directory that every rank can read."""
    ck, path = plan.checkpoint, plan.cfg.data.path
    if comm.size > 1 and not _seekable(path):
        # A pipe gives its bytes once, to whichever rank reads first: the others would wait for
        # a writer for ever, or read nothing. Refused before any rank opens it (no copy is made).
        raise UsageError(f"{path}: a pipe or device cannot be the corpus of {comm.size} processes (each rank "
                         "reads the corpus itself): copy it to a file, or charrnn prepare it into a directory, "
                         "and train on that")
    if ck is not None and not os.path.exists(path):
        out = [] if plan.continues_here else ["--out", plan.files.path]  # the same call, with the new place
        raise CharrnnError(f"{path}: corpus file not found; if it moved, give its new place: "
                           f"{plan.command(plan.resume, *out)} --data NEWPATH")
    corpus = CO.open_corpus(path, plan.cfg.data.val_fraction, ck.vocab if ck else None, ck.unit if ck else None,
                            plan.resume, plan.quiet)
    if ck is not None and ck.corpus is not None:
        moved_from = ck.config.data.path if path != ck.config.data.path else None
        identity.check_unchanged(ck.corpus, corpus.identity, path, moved_from)
    elif ck is not None:
        print(f"warning: {plan.resume} does not record its corpus (an older charrnn wrote it), so a changed "
              f"{path} cannot be detected", file=sys.stderr)
    return corpus


def _seekable(path: str) -> bool:
    """Whether ``path`` is a regular file or a directory (or is not there: opening it says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def write_run_dir(plan: Plan, run: RunState) -> None:
    """The run directory, now that the run is ready (a bad corpus, config or --init-from file
    has been refused by now, so --overwrite has not moved the old run aside for nothing): the
    config written, the log cut back to a resumed checkpoint or started afresh."""
    if plan.overwrite and not plan.continues_here:
        rundir.check_fresh(plan.files.path, overwrite=True)
    elif plan.rewinds:
        rundir.rewind(plan.files.path, plan.resume)
    plan.files.create(C.dump_yaml(plan.cfg))
    plan.files.start_log(run.step if plan.checkpoint is not None else None)


@contextlib.contextmanager
def _told(files: rundir.RunDir, record: runstatus.Record) -> Iterator[None]:
    """A run that diverged, that a second signal stopped, or whose ranks did not all answer
    (``distributed.PeerLost``), ends with one line saying what the last checkpoint holds and
    how to go on (``record.resume_command``: the plan's, once made)."""
    try:
        yield
    except BaseException as e:
        record.seen = _what_told(e, files, record)  # for status.json, should a late signal cut its way short
        if record.seen is e:
            raise
        raise record.seen from None


def _what_told(e: BaseException, files: rundir.RunDir, record: runstatus.Record) -> BaseException:
    """The exception a run that raised ``e`` ends with (``e`` itself unless ``_told`` rewords it)."""
    stop = signals.stop_in(e)  # a second signal, even where it made a library fail on its way
    if stop is not None:
        how = f"continue with: {record.resume_command}" if os.path.exists(files.ckpt) else "nothing to resume"
        return stopped_by(stop.signum, f"stopped at once by a second {signals.NAMES[stop.signum]}; "
                                      f"{files.holds()}; {how}")
    if isinstance(e, Diverged):
        err = CharrnnError(f"{e}; {files.holds()}; try a lower optim.lr or enable clipping")
        err.diverged = True  # for RUN/status.json
        return err
    if isinstance(e, distributed.PeerLost):  # under MPI, a rank did not answer
        when = "before the first step" if e.step is None else f"after step {e.step}"
        how = f"continue with: {record.resume_command}" if os.path.exists(files.ckpt) else "nothing to resume"
        message = f"{e} {when}; {files.holds()}; {how}"
        err = stopped_by(e.signum, message) if e.signum else CharrnnError(message)
        err.exit_code = e.exit_code
        err.rank_lost = True  # for RUN/status.json: a resume is the way on once the ranks are back
        return err
    return e


def stopped_by(signum: int | None, message: str) -> Interrupted:
    """The exit of a run stopped by ``signum`` (None: by a stop signal to another process of the
    run): Terminated (143) for SIGTERM, Hangup (129) for SIGHUP, else Interrupted (130)."""
    cls = {signal.SIGTERM: Terminated, **({SIGHUP: Hangup} if SIGHUP is not None else {})}.get(
        signum, Interrupted)  # no SIGHUP on Windows
    err = cls(message)
    err.signal = signals.SIGNAL_NAMES.get(signum)
    return err


# ----------------------------------------------------------------------------- around the steps

FIT_EVERY = 50  # train.fit_to_budget: steps between two projections of where the budget ends
FIT_WINDOW = 10  # the speed of the last FIT_WINDOW × FIT_EVERY steps is what a projection uses
FIT_SHARE = 0.98  # of the budget, what the steps may fill: the rest is room for the speed to sag


def fitted_length(step: int, limit: int, left_s: float, s_per_step: float, current: int, eval_every: int = 0,
                  eval_s: float = 0.0) -> int:
    """``train.fit_to_budget``'s rule: the run's length once ``step`` steps are done, when the
    steps may take ``left_s`` seconds more (``FIT_SHARE`` of the budget, less the training time
    so far), a step takes ``s_per_step`` (with the previews and saves between steps, as they
    came in the recent steps) and a validation every ``eval_every`` steps takes ``eval_s``: the
    steps that fit, with the validations they hold, capped by ``limit`` (the length the call was
    given) and at least step + 1. ``current`` (the length now) is kept unless the fit differs
    from it by more than 2% of the steps left, so that the noise of the speed does not move the
    schedule at every projection. Under a decaying schedule a shorter length lowers the rate at
    once (the cosine is computed against the new end), a longer one raises it a little."""
    n = left_s / s_per_step
    for _ in range(3):  # the validations within the steps that fit, and the steps that fit beside them
        evals = (step + max(0, int(n))) // eval_every - step // eval_every if eval_every else 0
        n = (left_s - evals * eval_s) / s_per_step
    new = min(limit, step + max(1, int(n)))
    return current if abs(new - current) <= max(1, (current - step) // 50) else new


class Session:
    """One call of ``train``, in its run directory: the work around the steps (log lines,
    previews, validation, checkpoints, the finish) and its bookkeeping, as named fields.

    What a checkpoint must hold is in the ``RunState``; what is here lasts only as long as this
    call (the clock, the speed window, which step was last saved or evaluated, why it stopped).
    """

    def __init__(self, plan: Plan, run: RunState, corpus: CO.Corpus, spec: M.ModelSpec, progress: Progress,
                 stop: signals.StopFlag, comm: Any, record: runstatus.Record | None = None):
        self.plan, self.cfg, self.files = plan, plan.cfg, plan.files
        self.run, self.corpus, self.spec, self.progress, self.stop, self.comm = run, corpus, spec, progress, stop, comm
        self.record = record  # its resume command follows the plan when train.fit_to_budget changes it
        resumed = plan.checkpoint is not None
        self.elapsed_before = run.elapsed_s  # training time of earlier calls (a resumed run's)
        self.t_start = time.perf_counter()
        self.last_saved = run.step if resumed else None  # the step the checkpoint on disk holds
        self.last_eval = run.step if resumed and not math.isnan(run.val_loss) else None
        self.window_t = time.perf_counter()  # the speed window since the last log line starts
        self.window_chars = 0  # characters per stream of the window's steps (their chunks' lengths, summed)
        self.chars = 0  # and of all this call's steps
        self.chars_per_s = 0.0
        self.train_end: float | None = None  # when the last step ended (the final validation and save come after)
        self.first_step = run.step  # this call's steps are those after it
        self.eval_s = 0.0  # time this call spent in validations between steps: not training speed
        self.last_eval_s = 0.0  # and the last of them (train.fit_to_budget counts those still to come)
        self.shown = (float("nan"), "no step taken")  # the training loss for the summary, and what it is
        self.stopped = "done"  # or "early stopping", "time budget"
        self.limit = plan.cfg.train.steps  # train.fit_to_budget's cap: the length this call was given
        self.pause_at = plan.stop_at if plan.pauses else None  # this call's --stop-at, which a new length keeps
        self.marks: list[tuple[int, float]] = []  # (step, training time less validations) at the last projections

    def elapsed(self) -> float:
        """Training time of the run so far, across resumes, seconds."""
        return self.elapsed_before + time.perf_counter() - self.t_start

    def out_of_time(self) -> bool:
        """Whether ``train.max_minutes`` has run out (agreed by all processes)."""
        limit = self.cfg.train.max_minutes
        if limit is not None and self.comm.agreed(self.elapsed() >= 60 * limit):
            self.stopped = "time budget"
            return True
        return False

    def after_step(self, loss: float, lr: float, last: int, length: int) -> bool:
        """What follows the step just taken (``loss`` of its chunk of ``length`` characters at
        learning rate ``lr``; ``last``: stream 0's last character, where a preview starts): a log
        line, a preview, a validation, a checkpoint, each when it is due. True when the run should
        stop early."""
        run, tc = self.run, self.cfg.train
        self.window_chars += length
        self.chars += length
        self.progress.bar.update(1)
        if run.step % tc.log_every == 0 or run.step == tc.steps:
            self.log(loss, lr, length)
        if tc.sample_every and run.step % tc.sample_every == 0 and not self.plan.quiet:
            self.preview(last)
        if len(self.corpus.val) and tc.eval_every and run.step % tc.eval_every == 0:
            t_eval = time.perf_counter()
            patience_out = self.validate()
            spent = time.perf_counter() - t_eval
            self.window_t += spent  # evaluation time is not training speed
            self.eval_s += spent
            self.last_eval_s = spent
            if patience_out:
                self.stopped = "early stopping"
                return True
        if tc.checkpoint_every and run.step % tc.checkpoint_every == 0 and self.last_saved != run.step:
            self.save(self.files.ckpt)
        if tc.fit_to_budget and run.step % FIT_EVERY == 0:
            self.fit_to_budget()
        return False

    def fit_to_budget(self) -> None:
        """``train.fit_to_budget``: where the budget ends at the speed of the recent steps
        (``fitted_length``), made the run's length. Rank 0's clock decides, for every rank."""
        run, tc = self.run, self.cfg.train
        now = self.elapsed()
        self.marks.append((run.step, now - self.eval_s))  # the validations are counted apart
        if len(self.marks) <= FIT_WINDOW:  # a call's first steps (and its start-up) are not its speed yet
            return
        del self.marks[:-FIT_WINDOW - 1]
        (s0, t0), (s1, t1) = self.marks[0], self.marks[-1]
        per_step = (t1 - t0) / (s1 - s0)
        evals = tc.eval_every if len(self.corpus.val) else 0
        new = fitted_length(run.step, self.limit, FIT_SHARE * 60 * tc.max_minutes - now, per_step, tc.steps, evals,
                            self.last_eval_s)
        new = int(self.comm.total(float(new) if self.comm.rank == 0 else 0.0))
        if new != tc.steps:
            self.set_length(new, tc.batch_size * tc.seq_length / per_step)

    def set_length(self, steps: int, speed: float) -> None:
        """Make ``steps`` the run's length (``train.steps``: the schedule, the final validation and
        the next checkpoint follow it), log it and say it (``speed``: chars/s it was fitted at)."""
        run, old = self.run, self.cfg.train.steps
        self.cfg = replace(self.cfg, train=replace(self.cfg.train, steps=steps))
        # The length is the checkpoint's now, not a --steps to repeat; a --stop-at past it is moot.
        stop_at = steps if self.pause_at is None else min(self.pause_at, steps)
        self.plan = replace(self.plan, cfg=self.cfg, stop_at=stop_at, steps_given=False)
        if self.record is not None:
            self.record.resume_command = self.plan.resume_command
        self.progress.set_total(self.plan.stop_at)
        self.progress.log({"step": run.step, "steps": steps, "was": old, "fitted_chars_per_s": round(speed, 1),
                           "elapsed_s": round(self.elapsed(), 3)})
        if self.comm.rank == 0:
            self.files.create(C.dump_yaml(self.cfg))  # the run's config.yaml says its length
        self.progress.write(f"train.fit_to_budget: at {speed:,.0f} chars/s, {steps:,} steps fit in the budget "
                            f"(train.max_minutes {self.cfg.train.max_minutes:g}); the run's length is now {steps:,} "
                            f"(was {old:,})")

    def log(self, loss: float, lr: float, length: int) -> None:
        """A line in metrics.jsonl and the bar's text: the training loss over the window since
        the last line, and the speed over it (``loss``: the last step's, of ``length`` characters)."""
        run, tc = self.run, self.cfg.train
        now = time.perf_counter()
        self.chars_per_s = tc.batch_size * self.window_chars / max(now - self.window_t, 1e-9)
        self.window_t, self.window_chars = now, 0
        self.shown = shown_loss(run, tc)
        limit = tc.max_minutes
        self.progress.show(train=self.shown, speed=self.chars_per_s,
                           left_s=None if limit is None else 60 * limit - self.elapsed())
        T = tc.seq_length  # the smoothed loss is kept per chunk of T
        self.progress.log({"step": run.step, "epoch": run.epoch, "loss": loss / length,
                           "smooth_loss": run.smooth_loss / T, "window_loss": run.loss_sum / run.loss_steps,
                           "lr": lr, "chars_per_s": round(self.chars_per_s, 1), "elapsed_s": round(self.elapsed(), 3)})
        run.loss_sum, run.loss_steps = 0.0, 0  # the next window starts

    def eval_weights(self) -> dict:
        """What validation and previews use: the moving average of the weights, if kept."""
        return optim.eval_weights(self.run.params, self.run.ema, self.cfg.optim.ema, self.run.step)

    def preview(self, first: int) -> None:
        """A short sample on stderr from stream 0's carried state, seeded by (seed, step) so it
        never touches the training generator: previews on or off, the run is the same."""
        run, cfg = self.run, self.cfg
        rng = np.random.default_rng([cfg.train.seed, run.step])
        state0 = [tuple(a[:1] for a in s) for s in run.state]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see train_step
            out = sampling.generate(self.eval_weights(), self.spec, int(first), state0, cfg.sample.length, rng,
                                    cfg.sample.temperature)
        text = D.decode(list(out), self.corpus.vocab, self.corpus.unit)
        self.progress.write(f"----- sample at step {run.step} -----\n{text}\n-----")

    def validate(self) -> bool:
        """The validation loss now, logged; keeps best.npz and saves the checkpoint; True when
        ``train.patience`` has run out."""
        run, tc = self.run, self.cfg.train
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see train_step
            run.val_loss = evaluate(self.eval_weights(), self.spec, self.corpus.val[:tc.eval_chars],
                                    comm=self.comm).nats
        self.last_eval = run.step
        improved = run.val_loss < run.best_val_loss
        if improved:
            run.best_val_loss, run.evals_since_best = run.val_loss, 0
        else:
            run.evals_since_best += 1
        self.progress.log({"step": run.step, "epoch": run.epoch, "val_loss": run.val_loss,
                           "val_bpc": run.val_loss / math.log(2), "best_val_loss": run.best_val_loss,
                           "elapsed_s": round(self.elapsed(), 3)})
        self.progress.show(val=run.val_loss)
        # best.npz first: a run killed between the two saves resumes from before this
        # evaluation and writes best.npz again; the other way round it would never write it.
        if improved:
            self.save(self.files.best)
        self.save(self.files.ckpt)  # the checkpoint always agrees with the metrics and best.npz
        return tc.patience is not None and run.evals_since_best >= tc.patience

    def save(self, path: str) -> None:
        """Write the run to ``path`` (by rank 0, with the carried state of all B streams)."""
        run = self.run
        bad = runstate.not_finite(run)
        if bad is not None:  # the loss has not shown it yet; a checkpoint of it would not load
            raise Diverged(run.step, f"the {bad} {'are' if bad == 'weights' else 'is'} not finite")
        run.elapsed_s = self.elapsed()
        whole = self.comm.whole(runstate.on_host(run))  # on the host, all B streams, on rank 0
        if self.comm.rank == 0:
            c = self.corpus
            try:
                ck = checkpoint.Checkpoint(whole, c.vocab, self.cfg, self.spec, c.identity, c.unit)
                checkpoint.save(path, ck, hold=self.stop.held)  # a second signal: after numpy's savez
            except OSError as e:  # a full disk: atomic_write has left the file as it was
                raise CharrnnError(f"{path}: cannot write ({e.strerror or e}); {self.files.holds()}") from None
        if path == self.files.ckpt:
            self.last_saved = run.step

    def finish(self) -> None:
        """After the last step: a finished run's final validation, the last checkpoint; after a
        stop signal, Interrupted (or Terminated) saying where the run can be continued from."""
        run, tc, stop = self.run, self.cfg.train, self.stop
        self.train_end = time.perf_counter()  # the summary's speed is of the steps, not of what follows them
        interrupted = self.comm.agreed(stop.set) and run.step < self.plan.stop_at and self.stopped == "done"
        finished = run.step >= tc.steps or self.stopped == "time budget"  # not a pause at --steps N
        if len(self.corpus.val) and self.last_eval != run.step and finished:
            self.validate()  # a finished run ends with the validation loss of its final weights
        if self.last_saved != run.step:
            self.save(self.files.ckpt)
        if interrupted:  # raised inside the StopFlag: a second signal until here still stops at once
            how = signals.NAMES.get(stop.signum, "a stop signal to another process of the run")
            raise stopped_by(stop.signum, f"interrupted at step {run.step} by {how}; checkpoint saved to "
                                          f"{self.files.ckpt}; continue with: {self.plan.resume_command}")

    def summary(self) -> Summary:
        """How the call ended: the training loss over the steps since the last log line (when it
        stopped between two), the speed of all this call's steps (its validations, and the final
        validation and save, left out: as a log line's window leaves out the validations in it),
        the validation losses, the best one and where it is, the time."""
        run, tc = self.run, self.cfg.train
        if run.loss_steps:
            self.shown = shown_loss(run, tc)
        steps = run.step - self.first_step
        if steps:
            end = self.train_end if self.train_end is not None else time.perf_counter()
            self.chars_per_s = tc.batch_size * self.chars / max(end - self.t_start - self.eval_s, 1e-9)
        best_step, best_path = self.best()
        return Summary(self.files.path, run.step, self.shown[0], self.shown[1], run.val_loss, run.best_val_loss,
                       self.chars_per_s, self.elapsed(), self.stopped, best_step, best_path)

    def best(self) -> tuple[int | None, str | None]:
        """The step and the file of the run's best validation loss: RUN/best.npz, if it holds that
        loss (its own step is the best step); for a run branched into another directory that has
        not improved on it yet, the best.npz beside the resumed checkpoint. (None, None) when no
        file holds it (moved, deleted, or no validation yet)."""
        places = [self.files.best]
        if self.plan.resume and not self.plan.continues_here:
            places.append(os.path.join(os.path.dirname(os.path.abspath(self.plan.resume)), rundir.BEST))
        for path in places:
            step, loss = rundir.held_best(path)
            if step is not None and loss == self.run.best_val_loss:
                return step, path
        return None, None
