"""The training loop: config -> data -> model -> optimizer -> loop, top to bottom.

min-char-rnn's loop over B streams: take the next T characters of every stream, run
``loss_and_grads`` from the carried state, clip, update, carry the state on; when the
streams wrap, reset the state. Every ``eval_every`` steps the held-out text is evaluated
(with ``optim.ema``, by the moving average of the weights, updated after every step) and
the best model kept as ``RUN/best.npz``. Progress goes to stderr (tqdm), metrics to
``RUN/metrics.jsonl``, checkpoints to ``RUN/ckpt.npz`` (atomically). Ctrl-C finishes the
step in progress, saves a checkpoint and stops.
"""

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from charrnn import checkpoint as ckpt_io
from charrnn import config as C
from charrnn import data as D
from charrnn import distributed
from charrnn import model as M
from charrnn import optim
from charrnn import sampling
from charrnn.errors import CharrnnError, Interrupted
from charrnn.evaluate import evaluate

SMOOTHING = 0.999  # min-char-rnn: smooth_loss = smooth_loss * 0.999 + loss * 0.001


@dataclass
class Summary:
    run_dir: str
    step: int
    loss: float  # smoothed training loss per character, nats
    val_loss: float  # last validation loss per character, nats (nan: no validation text)
    best_val_loss: float
    chars_per_s: float
    elapsed_s: float
    stopped: str  # "done", "early stopping", "time budget"


def _write_text(path, text):
    ckpt_io.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load_corpus(cfg, vocab=None, source=None):
    """(vocab, train indices, validation indices) for ``cfg.data``.

    The vocabulary comes from the whole corpus (so the held-out text has no unknown
    characters), or is given (a resumed run), in which case the corpus must fit it.
    """
    path = cfg.data.path
    text = D.read_text(path)
    if not text:
        raise CharrnnError(f"{path}: corpus is empty")
    if vocab is None:
        vocab = D.build_vocab(text)
    try:
        data = D.encode(text, vocab)
    except CharrnnError as e:
        raise CharrnnError(f"{path}: does not match the vocabulary of {source}: {e}") from None
    n_val = int(len(data) * cfg.data.val_fraction)
    if cfg.data.val_fraction > 0 and n_val < 2:
        raise CharrnnError(
            f"{path}: data.val_fraction {cfg.data.val_fraction} of {len(data)} characters leaves "
            f"{n_val} for validation, 2 are needed; use a longer corpus or data.val_fraction 0"
        )
    return vocab, data[: len(data) - n_val], data[len(data) - n_val:]


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


def _preview(params, spec, vocab, state, first, cfg, step):
    """A short sample from stream 0's carried state, seeded by (seed, step) so it never
    touches the training generator: previews on or off, the run is the same."""
    rng = np.random.default_rng([cfg.train.seed, step])
    state0 = [tuple(a[:1] for a in s) for s in state]
    out = sampling.generate(params, spec, int(first), state0, cfg.sample.length, rng, cfg.sample.temperature)
    return D.decode(list(out), vocab)


class _StopFlag:
    """SIGINT and SIGTERM set a flag checked between steps, so the checkpoint is always of
    a whole step; a second Ctrl-C interrupts at once (the last checkpoint stays intact)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)  # SIGTERM: what kill, timeout and Slurm send

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        try:
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not in the main thread: leave Ctrl-C alone
            self._old = {}
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

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


def next_batch(run, streams, spec):
    """The chunk at the run's position, (X, Y) each (T, B); when the streams would run past
    their end, they start again (a new epoch) from a zero state."""
    if streams.wraps(run.position):
        run.position, run.epoch = 0, run.epoch + 1
        run.state = M.zero_state(spec, len(run.state[0][0]), run.state[0][0].dtype)  # B/N streams under MPI
    return streams.batch(run.position)


class Diverged(Exception):
    """A step's loss or gradients are not finite; the run state is left as before the step."""

    def __init__(self, step, what, loss):
        super().__init__(f"training diverged at step {step}: the {what} is not finite (loss {loss})")


def train_step(run, X, Y, spec, optimizer, cfg, comm=distributed.SINGLE):
    """One step of truncated BPTT on the chunk (X, Y) from the carried state: loss and
    gradients, clipping, the optimizer's update, the weight average; the state is carried on.

    comm : the processes that share the B streams (``charrnn.distributed``): this one computes
        the loss and gradients of its own streams, ``comm.sum`` makes them those of all B.
    Updates ``run`` in place and returns (loss of the chunk, learning rate used).
    Raises Diverged (and changes nothing) when the loss or a gradient is not finite.
    """
    T, B = X.shape
    dtype = run.params["Why"].dtype
    # The masks are drawn for all B streams, so the generator and the run are the same for any N.
    masks = M.dropout_masks(spec, (T, B, spec.hidden_size), run.rng, dtype) if spec.dropout > 0 else None
    X, Y, masks = comm.mine(X, axis=1), comm.mine(Y, axis=1), comm.mine(masks, axis=1)  # this process's streams
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
        loss, grads, state, _ = M.loss_and_grads(run.params, spec, X, Y, run.state, masks)
    loss, grads = comm.sum(loss, grads)  # the mean over all B streams, on every process
    if not math.isfinite(loss) or not all(np.isfinite(g).all() for g in grads.values()):
        raise Diverged(run.step + 1, "loss" if not math.isfinite(loss) else "gradient", loss)
    run.state = state
    run.smooth_loss = run.smooth_loss * SMOOTHING + loss * (1 - SMOOTHING)
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


class RunDir:
    """The run directory's files: the checkpoint, the best model, the metrics log."""

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
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def show(self, **fields):
        self.postfix.update(fields)
        self.bar.set_postfix(self.postfix, refresh=False)

    def write(self, text):
        if not self.quiet:
            self.bar.write(text, file=sys.stderr)

    def close(self):
        self.bar.close()


def train(cfg, *, resume=None, init_from=None, steps=None, quiet=False, out_dir=None, comm=None):
    """Train according to ``cfg`` (or continue the run in checkpoint ``resume``).

    steps : stop at this total step count (default ``train.steps``); a run stopped early
        and resumed ends exactly as an uninterrupted one.
    out_dir : run directory (default ``cfg.train.out_dir``, or the checkpoint's directory).
    comm : the processes that share the run (default ``distributed.world()``: the ranks of
        ``mpiexec``/``srun``, or this process alone); rank 0 alone writes and reports.
    Returns a Summary.
    """
    comm = distributed.world() if comm is None else comm
    quiet = quiet or comm.rank != 0
    # The plan: the config (a resumed run's own), where to stop, where to write.
    ck = ckpt_io.load(resume) if resume is not None else None
    if ck is not None:
        cfg = ck.config
        out_dir = out_dir or os.path.dirname(os.path.abspath(resume))
    # --steps N stops this invocation at step N; the run's plan (train.steps, which
    # schedules and the final log line follow) changes only when N extends it.
    if steps is not None and steps > cfg.train.steps:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    stop_at = cfg.train.steps if steps is None else steps
    out_dir = os.path.abspath(out_dir or cfg.train.out_dir)
    cfg = replace(cfg, train=replace(cfg.train, out_dir=out_dir))
    tc = cfg.train

    # Data: the vocabulary, the training text as B streams, the held-out text.
    vocab, train_data, val_data = load_corpus(cfg, ck.vocab if ck else None, resume)
    streams = D.Streams(train_data, tc.batch_size, tc.seq_length)

    # Model, optimizer, and the run's state: resumed whole, or new.
    spec = M.ModelSpec.of(cfg.model, len(vocab))
    optimizer = optim.from_config(cfg.optim)
    run = ck.run if ck is not None else new_run(cfg, spec, optimizer, vocab, init_from)
    comm.split(run)  # each process keeps the carried state of its own streams

    def save(path):
        run.elapsed_s = elapsed()
        whole = comm.whole(run)  # with the carried state of all B streams, on rank 0
        if comm.rank == 0:
            ckpt_io.save(path, ckpt_io.Checkpoint(whole, vocab, cfg, spec))

    def eval_weights():
        """What validation and previews use: the moving average of the weights, if kept."""
        return optim.eval_weights(run.params, run.ema, cfg.optim.ema, run.step)

    def validate():
        """Validation loss now, logged; keeps best.npz; True when patience has run out."""
        run.val_loss = evaluate(eval_weights(), spec, val_data, comm=comm).nats
        improved = run.val_loss < run.best_val_loss
        if improved:
            run.best_val_loss, run.evals_since_best = run.val_loss, 0
        else:
            run.evals_since_best += 1
        progress.log({"step": run.step, "epoch": run.epoch, "val_loss": run.val_loss,
                      "val_bpc": run.val_loss / math.log(2), "best_val_loss": run.best_val_loss,
                      "elapsed_s": round(elapsed(), 3)})
        progress.show(val_bpc=f"{run.val_loss / math.log(2):.3f}")
        save(files.ckpt)  # the checkpoint always agrees with the metrics and best.npz
        if improved:
            save(files.best)
        return tc.patience is not None and run.evals_since_best >= tc.patience

    # The run directory; a resumed run's log is cut back to its checkpoint.
    files = RunDir(out_dir)
    if comm.rank == 0:  # one process writes the run directory
        files.create(cfg)
        if ck is not None:
            _truncate_metrics(files.metrics, run.step)
        elif os.path.exists(files.metrics):
            os.replace(files.metrics, files.metrics + ".old")  # a fresh run starts a fresh log

    elapsed0, t_start = run.elapsed_s, time.perf_counter()

    def elapsed():
        return elapsed0 + time.perf_counter() - t_start

    last_saved = run.step if ck is not None else None
    last_eval = run.step if ck is not None and not math.isnan(run.val_loss) else None
    window_t, window_steps, chars_per_s = time.perf_counter(), 0, 0.0
    stopped = "done"
    metrics_path = files.metrics if comm.rank == 0 else os.devnull
    with _StopFlag() as stop, open(metrics_path, "a", encoding="utf-8") as metrics_file:
        progress = Progress(metrics_file, stop_at, run.step, quiet)
        try:
            while run.step < stop_at and not comm.agreed(stop.set):  # all processes stop together
                if tc.max_minutes is not None and comm.agreed(elapsed() >= 60 * tc.max_minutes):
                    stopped = "time budget"
                    break
                X, Y = next_batch(run, streams, spec)
                try:
                    loss, lr = train_step(run, X, Y, spec, optimizer, cfg, comm)
                except Diverged as e:
                    last = files.ckpt if last_saved is not None else "none (none was written yet)"
                    raise CharrnnError(f"{e}; no checkpoint was written for it, the last good one is "
                                       f"{last}; try a lower optim.lr or enable clipping") from None
                window_steps += 1
                progress.bar.update(1)

                if run.step % tc.log_every == 0 or run.step == tc.steps:
                    now = time.perf_counter()
                    chars_per_s = window_steps * X.size / max(now - window_t, 1e-9)
                    window_t, window_steps = now, 0
                    T = tc.seq_length
                    progress.show(loss=f"{run.smooth_loss / T:.4f}", chars_s=f"{chars_per_s:,.0f}")
                    progress.log({"step": run.step, "epoch": run.epoch, "loss": loss / T,
                                  "smooth_loss": run.smooth_loss / T, "lr": lr,
                                  "chars_per_s": round(chars_per_s, 1), "elapsed_s": round(elapsed(), 3)})
                if tc.sample_every and run.step % tc.sample_every == 0 and not quiet:
                    text = _preview(eval_weights(), spec, vocab, run.state, Y[-1, 0], cfg, run.step)
                    progress.write(f"----- sample at step {run.step} -----\n{text}\n-----")
                if len(val_data) and tc.eval_every and run.step % tc.eval_every == 0:
                    last_eval = last_saved = run.step
                    if validate():
                        stopped = "early stopping"
                        break
                    window_t = time.perf_counter()  # evaluation time is not training speed
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
    if interrupted:
        raise Interrupted(f"interrupted at step {run.step}; checkpoint saved to {files.ckpt}; "
                          f"continue with: charrnn train --resume {files.ckpt}")
    return Summary(out_dir, run.step, run.smooth_loss / tc.seq_length, run.val_loss, run.best_val_loss,
                   chars_per_s, elapsed(), stopped)


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
