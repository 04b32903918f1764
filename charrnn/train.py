"""The training loop: config -> data -> model -> optimizer -> loop, top to bottom.

min-char-rnn's loop over B streams: take the next T characters of every stream, run
``loss_and_grads`` from the carried state, clip, update, carry the state on; when the
streams wrap, reset the state. Every ``eval_every`` steps the held-out text is evaluated
(with ``optim.ema``, by the moving average of the weights, updated after every step) and
the best model kept as ``RUN/best.npz``. Progress goes to stderr (tqdm), metrics to
``RUN/metrics.jsonl``, checkpoints to ``RUN/ckpt.npz`` (atomically).

A run holds its directory's lock (``rundir.lock``) from before it reads anything until after
its last save. Ctrl-C or SIGTERM finishes the step in progress, saves a checkpoint and
stops; a second one stops at once, leaving the last checkpoint as it was.
"""

import contextlib
import json
import math
import os
import signal
import sys
import re
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from charrnn import checkpoint as ckpt_io
from charrnn import config as C
from charrnn import corpus as CO
from charrnn import data as D
from charrnn import device
from charrnn import distributed
from charrnn import identity
from charrnn import model as M
from charrnn import optim
from charrnn import rundir
from charrnn import sampling
from charrnn.errors import CharrnnError, Interrupted, Terminated, UsageError
from charrnn.evaluate import evaluate

SMOOTHING = 0.999  # min-char-rnn: smooth_loss = smooth_loss * 0.999 + loss * 0.001


@dataclass
class Summary:
    run_dir: str
    step: int
    loss: float  # the training loss shown (train.progress_loss), nats per character (nan: no step taken)
    loss_label: str  # what it is: "mean of the last 100 steps" or min-char-rnn's smoothed loss
    val_loss: float  # last validation loss per character, nats (nan: no validation text)
    best_val_loss: float
    chars_per_s: float
    elapsed_s: float
    stopped: str  # "done", "early stopping", "time budget"


def _write_text(path, text):
    ckpt_io.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load_corpus(cfg, vocab=None, source=None, unit=None, quiet=True):
    """The corpus of ``cfg.data``: a ``corpus.Corpus`` (vocab, train, val, identity, unit).

    ``data.path`` is a text file, read in chunks, whose vocabulary comes from the whole
    text (so the held-out part has no unknown characters), or a prepared directory, read
    from disk as needed. ``vocab`` / ``unit`` are those of a resumed run (``source``),
    which the corpus must fit.
    """
    return CO.open_corpus(cfg.data.path, cfg.data.val_fraction, vocab, unit, source, quiet)


def _truncate_metrics(path, step):
    """Drop metric lines logged after ``step`` (a run that crashed after its last checkpoint)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a crash
    if len(keep) != len(lines):
        _write_text(path, "".join(keep))


def _preview(params, spec, vocab, state, first, cfg, step, unit="chars"):
    """A short sample from stream 0's carried state, seeded by (seed, step) so it never
    touches the training generator: previews on or off, the run is the same."""
    rng = np.random.default_rng([cfg.train.seed, step])
    state0 = [tuple(a[:1] for a in s) for s in state]
    out = sampling.generate(params, spec, int(first), state0, cfg.sample.length, rng, cfg.sample.temperature)
    return D.decode(list(out), vocab, unit)


SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class _StopNow(BaseException):
    """A second Ctrl-C or SIGTERM: stop wherever the run is. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on its way swallows it;
    ``atomic_write`` removes its temporary file and re-raises it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _StopFlag:
    """The first SIGINT or SIGTERM sets a flag checked between steps, so the checkpoint is
    always of a whole step; a second one (either) raises _StopNow at once, and the last
    checkpoint stays as it was."""

    def __init__(self):
        self.signum = None  # the first signal received
        self._old = {}

    @property
    def set(self):
        return self.signum is not None

    def __enter__(self):
        try:
            for s in SIGNAL_NAMES:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not in the main thread: leave the signals alone
            pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise _StopNow(signum)
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def new_run(cfg, spec, optimizer, vocab, init_from=None):
    """The state of a run at step 0: min-char-rnn's initial weights (or those of checkpoint
    ``init_from``), fresh optimizer state, zero carried state, the generator seeded."""
    tc, dtype = cfg.train, np.dtype(cfg.model.dtype)
    rng = np.random.default_rng(tc.seed)
    params = M.init_params(spec, rng, dtype, cfg.model.init_std)
    if init_from is not None:
        params = _weights_from(init_from, spec, vocab, dtype)
    return ckpt_io.RunState(
        params=params,
        opt_state=optimizer.init_state(params),
        ema={k: np.zeros_like(v) for k, v in params.items()} if cfg.optim.ema is not None else None,
        state=M.zero_state(spec, tc.batch_size, dtype),
        rng=rng,
        smooth_loss=-math.log(1.0 / len(vocab)) * tc.seq_length,  # min-char-rnn's start
    )


def on_device(run, xp):
    """``run`` with its arrays in ``xp``'s memory (numpy: the host, cupy: the GPU), in place.

    A GPU run's dropout masks come from a ``device.CounterRNG`` (its state, seed and draws, is
    what the checkpoint keeps, so the run resumes exactly on the GPU); a run that reaches the
    GPU with NumPy's generator (a CPU checkpoint) starts one, seeded from that generator.
    """
    run.params, run.opt_state, run.ema = (device.to_device(t, xp) for t in (run.params, run.opt_state, run.ema))
    run.state = [tuple(device.to_device(list(s), xp)) for s in run.state]
    if isinstance(run.rng, device.CounterRNG):
        run.rng.xp = xp
    elif xp is not np:
        run.rng = device.CounterRNG(int(run.rng.integers(2**63)), xp=xp)
    return run


def on_host(run):
    """A copy of ``run`` whose arrays are on the host, for a checkpoint (the run itself stays)."""
    return replace(run, params=device.to_host(run.params), opt_state=device.to_host(run.opt_state),
                   ema=device.to_host(run.ema), state=[tuple(device.to_host(list(s))) for s in run.state])


def next_batch(run, streams, spec):
    """The chunk at the run's position, (X, Y) each (T, B); when the streams would run past
    their end, they start again (a new epoch) from a zero state."""
    if streams.wraps(run.position):
        run.position, run.epoch = 0, run.epoch + 1
        h = run.state[0][0]  # (B, H), or (B/N, H) under MPI, on the run's device
        run.state = M.zero_state(spec, len(h), h.dtype, device.array_module(h))
    return streams.batch(run.position)


class Diverged(Exception):
    """The run blew up at ``step``; nothing of that step is saved."""

    def __init__(self, step, reason):
        super().__init__(f"training diverged at step {step}: {reason}")


def divergence_reference(first_loss, vocab_size):
    """What the divergence rule compares with, nats per character: the larger of log V (a
    uniform guess, where a new run starts) and the run's first step's loss (higher after a
    large init_std). char-rnn stops at 3x its first loss on each step's loss; min-char-rnn's
    Adagrad start has single steps 2 to 3.5 times log V within its first ten (measured over
    12 seeds), so the rule here watches the smoothed loss, which such spikes barely move and
    an explosion (1e31 nats) moves at once."""
    ref = math.log(vocab_size)
    return ref if math.isnan(first_loss) else max(ref, first_loss)


def train_step(run, X, Y, spec, optimizer, cfg, comm=distributed.SINGLE):
    """One step of truncated BPTT on the chunk (X, Y) from the carried state: loss and
    gradients, clipping, the optimizer's update, the weight average; the state is carried on.

    comm : the processes that share the B streams (``charrnn.distributed``): this one computes
        the loss and gradients of its own streams, ``comm.sum`` makes them those of all B.
    Updates ``run`` in place and returns (loss of the chunk, learning rate used).
    Raises Diverged (and changes nothing) when the loss or a gradient is not finite, or the
    smoothed loss exceeds ``train.diverge_factor`` times ``divergence_reference``.
    """
    T, B = X.shape
    dtype = run.params["Why"].dtype
    # The masks are drawn for all B streams, so the generator and the run are the same for any N.
    xp = device.array_module(run.params["Why"])
    masks = M.dropout_masks(spec, (T, B, spec.hidden_size), run.rng, dtype, xp) if spec.dropout > 0 else None
    # Overflow is the blow-up that the checks below (and save's) report in one line: NumPy's
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
            raise Diverged(run.step + 1, f"the {what} is not finite (loss {loss / T} nats/char)")
        smooth_loss = run.smooth_loss * SMOOTHING + loss * (1 - SMOOTHING)
        first_loss = run.first_loss if run.step else float(loss) / T
        factor = cfg.train.diverge_factor
        ref = divergence_reference(first_loss, spec.vocab_size)
        if factor and smooth_loss / T > factor * ref:
            raise Diverged(run.step + 1, f"the smoothed loss, {smooth_loss / T:.4g} nats/char (this step "
                                         f"{loss / T:.4g}), exceeds train.diverge_factor {factor:g} × {ref:.4g} "
                                         "(the larger of log V and the first step's loss)")
        run.state, run.smooth_loss, run.first_loss = state, smooth_loss, first_loss
        run.loss_sum += float(loss) / T
        run.loss_steps += 1
        if cfg.optim.clip_value:
            optim.clip_by_value(grads, cfg.optim.clip_value)
        if cfg.optim.clip_norm:
            optim.clip_by_norm(grads, cfg.optim.clip_norm)
        lr = optim.learning_rate(cfg.optim, run.step + 1, run.epoch, cfg.train.steps)
        optimizer.update(run.params, grads, run.opt_state, lr, run.step + 1)
        if run.ema is not None:
            optim.ema_update(run.ema, run.params, cfg.optim.ema)
    run.position += T
    run.step += 1
    return loss, lr


def _not_finite(run):
    """What of the run's arrays holds NaN or inf (a checkpoint of it would not load), or None."""
    for what, arrays in (("weights", run.params), ("optimizer state", run.opt_state), ("weight average", run.ema or {})):
        if not all(bool(device.array_module(a).isfinite(a).all()) for a in arrays.values()):
            return what
    return None


class RunDir:
    """The run directory's files: the checkpoint, the best model, the metrics log."""

    # atomic_write's temporary files for the files above: ".ckpt.npz.<8 random>.tmp"
    TEMPORARY = re.compile(r"\.(ckpt\.npz|best\.npz|metrics\.jsonl|config\.yaml)\.[a-z0-9_]{8}\.tmp")

    def __init__(self, out_dir):
        self.path = out_dir
        self.ckpt = os.path.join(out_dir, "ckpt.npz")
        self.best = os.path.join(out_dir, "best.npz")
        self.metrics = os.path.join(out_dir, "metrics.jsonl")
        self.config = os.path.join(out_dir, "config.yaml")

    def create(self, cfg):
        try:
            os.makedirs(self.path, exist_ok=True)
            _write_text(self.config, C.dump_yaml(cfg))
        except OSError as e:
            raise CharrnnError(f"{self.path}: cannot write the run directory: {e.strerror}") from None

    def remove_temporaries(self):
        """Delete the temporary files a run killed while saving (kill -9, power loss) left.

        Call it holding the directory's lock: then no other run is writing here, and the
        pattern matches only the temporaries of this run's own files (not, say, those of a
        ``charrnn plot`` writing loss.png at the same time).
        """
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            if self.TEMPORARY.fullmatch(name):
                try:
                    os.unlink(os.path.join(self.path, name))
                except FileNotFoundError:
                    pass

    def holds(self):
        """What the checkpoint holds now, for messages: read from the file, since a save that
        was stopped may or may not have completed."""
        step = rundir.held_step(self.ckpt) if os.path.exists(self.ckpt) else None
        if step is None:
            return "no checkpoint was written yet" if not os.path.exists(self.ckpt) else f"{self.ckpt} cannot be read"
        return f"the last checkpoint, {self.ckpt}, holds step {step}"


class Progress:
    """What the run tells the user and the log: the progress bar and preview samples on
    stderr, one JSON line per record in metrics.jsonl."""

    def __init__(self, metrics_file, total, initial, quiet):
        self.file = metrics_file
        self.quiet = quiet
        self.bar = tqdm(total=total, initial=initial, file=sys.stderr, disable=quiet, unit="step",
                        dynamic_ncols=True, mininterval=0.5)
        self.postfix = {}

    def log(self, record):
        """Append one line, with one unbuffered write at a time, so that a failed write (a
        full disk) leaves nothing in a buffer to fail again when the file is closed."""
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        try:
            while data:
                data = data[self.file.write(data):]
        except OSError as e:
            raise CharrnnError(f"{self.file.name}: cannot append to the metrics log ({e.strerror or e})") from None

    def show(self, **fields):
        """Set parts of the text after the bar, each a whole phrase (``val="val 1.960 nats/char ..."``)."""
        self.postfix.update(fields)
        self.bar.set_postfix_str(" | ".join(self.postfix.values()), refresh=False)

    def write(self, text):
        if not self.quiet:
            self.bar.write(text, file=sys.stderr)

    def close(self):
        self.bar.close()


def train(cfg, *, resume=None, init_from=None, steps=None, quiet=False, out_dir=None, overwrite=False, comm=None,
          device_name=None):
    """Train according to ``cfg`` (or continue the run in checkpoint ``resume``).

    steps : stop at this total step count (default ``train.steps``); a run stopped early
        and resumed ends exactly as an uninterrupted one.
    out_dir : run directory (default ``cfg.train.out_dir``, or the checkpoint's directory).
    overwrite : a new run replaces the run in ``out_dir`` (its files are moved into
        ``RUN/replaced-<time>/``); without it a directory that holds a checkpoint is refused.
    comm : the processes that share the run (default ``distributed.world()``: the ranks of
        ``mpiexec``/``srun``, or this process alone); rank 0 alone writes and reports.
    device_name : "cpu" or "gpu": overrides ``model.device`` (a resumed run's too, so that a GPU
        run can continue on a CPU and the other way round).
    Returns a Summary. The run directory is locked (``rundir.lock``, by rank 0) before the
    checkpoint or the corpus is read and until the last save is done.
    """
    comm = distributed.world() if comm is None else comm
    quiet = quiet or comm.rank != 0
    if resume is not None:
        out_dir = out_dir or os.path.dirname(os.path.abspath(resume))
    out_dir = os.path.abspath(out_dir or cfg.train.out_dir)
    files = RunDir(out_dir)
    with rundir.lock(out_dir) if comm.rank == 0 else contextlib.nullcontext():
        try:
            return _train(cfg, resume, init_from, steps, quiet, files, overwrite, comm, device_name)
        except Diverged as e:
            raise CharrnnError(f"{e}; {files.holds()}; try a lower optim.lr or enable clipping") from None
        except _StopNow as e:  # a second signal: the last checkpoint is what there is
            how = "continue with: charrnn train --resume " + files.ckpt if os.path.exists(files.ckpt) else "nothing to resume"
            cls = Terminated if e.signum == signal.SIGTERM else Interrupted
            raise cls(f"stopped at once by a second {SIGNAL_NAMES[e.signum]}; {files.holds()}; {how}") from None


def _train(cfg, resume, init_from, steps, quiet, files, overwrite, comm, device_name):
    """train() in its run directory ``files``, holding its lock."""
    # The plan: the config (a resumed run's own), where to stop, where to write, on what.
    ck = ckpt_io.load(resume) if resume is not None else None
    if ck is not None:
        cfg = ck.config
    if device_name is not None:
        cfg = replace(cfg, model=replace(cfg.model, device=device_name))
    xp = device.get_xp(cfg.model.device)  # numpy, or cupy: a one-line error if there is no GPU to use
    if xp is not np and comm.size > 1:
        raise UsageError(f"model.device gpu trains in one process, not {comm.size} (several GPUs through MPI "
                         "are not supported yet): leave out mpiexec, or train on the CPUs with --device cpu")
    # --steps N stops this invocation at step N; the run's plan (train.steps, which
    # schedules and the final log line follow) changes only when N extends it.
    if steps is not None and steps > cfg.train.steps:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    stop_at = cfg.train.steps if steps is None else steps
    out_dir = files.path
    cfg = replace(cfg, train=replace(cfg.train, out_dir=out_dir))
    tc = cfg.train

    # A new run, or a run continued into another directory, must not replace a run unasked.
    continues_here = ck is not None and os.path.dirname(os.path.abspath(resume)) == out_dir
    if continues_here and overwrite:
        raise UsageError(f"--overwrite replaces the run in {out_dir} with a new one, --resume continues it; "
                         "give one of them (or --out DIR to continue the run elsewhere)")
    if comm.rank == 0:  # the one process that writes the run directory
        if not continues_here and not overwrite:  # refused before anything is read
            rundir.check_fresh(out_dir, overwrite=False)
        files.remove_temporaries()

    # Data: the vocabulary, the training text as B streams, the held-out text.
    corpus = load_corpus(cfg, ck.vocab if ck else None, resume, ck.unit if ck else None, quiet)
    if ck is not None and ck.corpus is not None:
        identity.check_unchanged(ck.corpus, corpus.identity, cfg.data.path)
    elif ck is not None:
        print(f"warning: {resume} does not record its corpus (an older charrnn wrote it), so a changed "
              f"{cfg.data.path} cannot be detected", file=sys.stderr)
    vocab, train_data, val_data = corpus.vocab, corpus.train, corpus.val
    streams = D.Streams(train_data, tc.batch_size, tc.seq_length)

    # Model, optimizer, and the run's state: resumed whole, or new.
    spec = M.ModelSpec.of(cfg.model, len(vocab))
    optimizer = optim.from_config(cfg.optim)
    run = ck.run if ck is not None else new_run(cfg, spec, optimizer, vocab, init_from)
    comm.split(run)  # each process keeps the carried state of its own streams
    on_device(run, xp)  # the arrays go where the run trains; the corpus stays on the host

    def save(path):
        bad = _not_finite(run)
        if bad is not None:  # the loss has not shown it yet; a checkpoint of it would not load
            raise Diverged(run.step, f"the {bad} {'are' if bad == 'weights' else 'is'} not finite")
        run.elapsed_s = elapsed()
        whole = comm.whole(on_host(run))  # on the host, with the carried state of all B streams, on rank 0
        if comm.rank == 0:
            try:
                ckpt_io.save(path, ckpt_io.Checkpoint(whole, vocab, cfg, spec, corpus.identity, corpus.unit))
            except OSError as e:  # a full disk: atomic_write has left the file as it was
                raise CharrnnError(f"{path}: cannot write ({e.strerror or e}); {files.holds()}") from None

    def eval_weights():
        """What validation and previews use: the moving average of the weights, if kept."""
        return optim.eval_weights(run.params, run.ema, cfg.optim.ema, run.step)

    def validate():
        """Validation loss now, logged; keeps best.npz; True when patience has run out."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see train_step
            run.val_loss = evaluate(eval_weights(), spec, val_data[:tc.eval_chars], comm=comm).nats  # None: all
        improved = run.val_loss < run.best_val_loss
        if improved:
            run.best_val_loss, run.evals_since_best = run.val_loss, 0
        else:
            run.evals_since_best += 1
        progress.log({"step": run.step, "epoch": run.epoch, "val_loss": run.val_loss,
                      "val_bpc": run.val_loss / math.log(2), "best_val_loss": run.best_val_loss,
                      "elapsed_s": round(elapsed(), 3)})
        progress.show(val="val " + _nats_bits(run.val_loss))
        # best.npz first: a run killed between the two saves resumes from before this
        # evaluation and writes best.npz again; the other way round it would never write it.
        if improved:
            save(files.best)
        save(files.ckpt)  # the checkpoint always agrees with the metrics and best.npz
        return tc.patience is not None and run.evals_since_best >= tc.patience

    # The run directory; a resumed run's log is cut back to its checkpoint.
    if comm.rank == 0:  # one process writes the run directory
        if overwrite and not continues_here:  # only now that the new run is ready: a bad corpus,
            rundir.check_fresh(out_dir, overwrite=True)  # config or --init-from file keeps the old one
        files.create(cfg)
        if ck is not None:
            _truncate_metrics(files.metrics, run.step)
        elif os.path.exists(files.metrics):
            os.replace(files.metrics, files.metrics + ".old")  # a fresh run starts a fresh log
    if not quiet:
        print(_banner(cfg, corpus, spec, run, files, resume, init_from), file=sys.stderr)

    elapsed0, t_start = run.elapsed_s, time.perf_counter()

    def elapsed():
        return elapsed0 + time.perf_counter() - t_start

    last_saved = run.step if ck is not None else None
    last_eval = run.step if ck is not None and not math.isnan(run.val_loss) else None
    window_t, window_steps, chars_per_s = time.perf_counter(), 0, 0.0
    shown = (float("nan"), "no step taken")  # the training loss for the summary, and what it is
    stopped = "done"
    metrics_path = files.metrics if comm.rank == 0 else os.devnull
    with _StopFlag() as stop, open(metrics_path, "ab", buffering=0) as metrics_file:
        progress = Progress(metrics_file, stop_at, run.step, quiet)
        try:
            while run.step < stop_at and not comm.agreed(stop.set):  # all processes stop together
                if tc.max_minutes is not None and comm.agreed(elapsed() >= 60 * tc.max_minutes):
                    stopped = "time budget"
                    break
                X, Y = next_batch(run, streams, spec)
                loss, lr = train_step(run, X, Y, spec, optimizer, cfg, comm)
                window_steps += 1
                progress.bar.update(1)

                if run.step % tc.log_every == 0 or run.step == tc.steps:
                    now = time.perf_counter()
                    chars_per_s = window_steps * X.size / max(now - window_t, 1e-9)
                    window_t, window_steps = now, 0
                    T = tc.seq_length
                    shown = _shown_loss(run, tc)
                    progress.show(train=f"train {_nats_bits(shown[0])}, {shown[1]}", speed=f"{chars_per_s:,.0f} chars/s")
                    progress.log({"step": run.step, "epoch": run.epoch, "loss": loss / T,
                                  "smooth_loss": run.smooth_loss / T, "window_loss": run.loss_sum / run.loss_steps,
                                  "lr": lr, "chars_per_s": round(chars_per_s, 1), "elapsed_s": round(elapsed(), 3)})
                    run.loss_sum, run.loss_steps = 0.0, 0  # the next window starts
                if tc.sample_every and run.step % tc.sample_every == 0 and not quiet:
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see train_step
                        text = _preview(eval_weights(), spec, vocab, run.state, Y[-1, 0], cfg, run.step, corpus.unit)
                    progress.write(f"----- sample at step {run.step} -----\n{text}\n-----")
                if len(val_data) and tc.eval_every and run.step % tc.eval_every == 0:
                    last_eval = last_saved = run.step
                    t_eval = time.perf_counter()
                    if validate():
                        stopped = "early stopping"
                        break
                    window_t += time.perf_counter() - t_eval  # evaluation time is not training speed
                if tc.checkpoint_every and run.step % tc.checkpoint_every == 0 and last_saved != run.step:
                    save(files.ckpt)
                    last_saved = run.step
        finally:
            progress.close()
        interrupted = comm.agreed(stop.set) and run.step < stop_at and stopped == "done"
        finished = run.step >= tc.steps or stopped == "time budget"  # not a pause at --steps N
        if len(val_data) and last_eval != run.step and finished:
            validate()  # a finished run ends with the validation loss of its final weights
            last_saved = run.step
        if last_saved != run.step:
            save(files.ckpt)
        if interrupted:  # raised inside: a second signal until here still stops at once
            cls = Terminated if stop.signum == signal.SIGTERM else Interrupted
            how = SIGNAL_NAMES.get(stop.signum, "a stop signal to another process of the run")
            raise cls(f"interrupted at step {run.step} by {how}; checkpoint saved to "
                      f"{files.ckpt}; continue with: charrnn train --resume {files.ckpt}")
    if run.loss_steps:  # stopped between log lines: the steps since the last one
        shown = _shown_loss(run, tc)
    if window_steps:  # and the speed over them
        chars_per_s = window_steps * tc.batch_size * tc.seq_length / max(time.perf_counter() - window_t, 1e-9)
    return Summary(out_dir, run.step, shown[0], shown[1], run.val_loss, run.best_val_loss,
                   chars_per_s, elapsed(), stopped)


def _nats_bits(nats):
    """``1.853 nats/char (2.674 bits)``: one loss in both units, as the bar and summary show them."""
    return f"{nats:.3f} nats/char ({nats / math.log(2):.3f} bits)"


def _shown_loss(run, tc):
    """The training loss the bar and the summary show (``train.progress_loss``), and its label."""
    if tc.progress_loss == "smooth":
        return run.smooth_loss / tc.seq_length, f"min-char-rnn's smoothed loss ({SMOOTHING})"
    return run.loss_sum / run.loss_steps, f"mean of the last {run.loss_steps} step{'s' * (run.loss_steps != 1)}"


def blas_threads():
    """How many threads BLAS may use, as far as the environment says (no dependency to ask the
    library itself): the first of the variables OpenBLAS, MKL and OpenMP read that is set."""
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            return f"{os.environ[var]} ({var})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"not set (the library's default, usually one per core: {cores} here)"


def _banner(cfg, corpus, spec, run, files, resume, init_from):
    """What the run is, in a few lines on stderr before the first step."""
    o, tc = cfg.optim, cfg.train
    n_train, n_val = len(corpus.train), len(corpus.val)
    if o.schedule == "constant":
        schedule = "constant rate"
    elif o.schedule == "step":
        schedule = f"× {o.decay_rate:g} per epoch from epoch {o.decay_after}"
    else:
        schedule = f"{o.schedule} to {o.min_lr:g} at step {tc.steps:,} after {o.warmup_steps:,} steps of warm-up"
    extra = ", ".join(f"{name} {value:g}" for name, value in
                      (("clip_value", o.clip_value), ("clip_norm", o.clip_norm), ("ema", o.ema)) if value)
    start = (f"resuming at step {run.step:,} from {resume}" if resume else
             f"new, from the weights of {init_from}" if init_from else "new")
    return "\n".join([
        f"corpus    {cfg.data.path}: {n_train + n_val:,} characters, vocabulary {len(corpus.vocab)}; "
        f"{n_train:,} for training, {n_val:,} for validation",
        f"model     {spec.describe()}: {sum(p.size for p in run.params.values()):,} parameters, {cfg.model.dtype}",
        f"optimizer {o.name}, lr {o.lr:g}, {schedule}" + (f"; {extra}" if extra else ""),
        f"batches   B={tc.batch_size} streams × T={tc.seq_length} characters; {tc.steps:,} steps; "
        f"BLAS threads {blas_threads()}",
        f"run       {files.path} ({start})",
    ])


def _weights_from(path, spec, vocab, dtype):
    """The weights of checkpoint ``path`` (its moving average, if it keeps one), for a new
    run on this corpus and model."""
    src = ckpt_io.load(path)
    if not np.array_equal(src.vocab, vocab):
        extra = np.setdiff1d(vocab, src.vocab)
        detail = f"; the corpus has {D.describe_chars(extra)} that it lacks" if len(extra) else ""
        raise CharrnnError(
            f"{path}: its vocabulary ({len(src.vocab)} characters) does not match the corpus "
            f"({len(vocab)} characters){detail}; --init-from needs the same vocabulary"
        )
    if replace(src.spec, dropout=0.0) != replace(spec, dropout=0.0):  # dropout may change
        raise CharrnnError(
            f"{path}: its model ({src.spec.describe()}) does not match the config's ({spec.describe()})"
        )
    return {k: v.astype(dtype) for k, v in ckpt_io.weights(src).items()}
