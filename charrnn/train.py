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
from charrnn import corpus
from charrnn import data as D
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


def load_corpus(cfg, vocab=None, source=None, unit=None, quiet=True):
    """The corpus of ``cfg.data``: a ``corpus.Corpus`` (vocab, train, val, identity, unit).

    ``data.path`` is a text file, read in chunks, whose vocabulary comes from the whole
    text (so the held-out part has no unknown characters), or a prepared directory, read
    from disk as needed. ``vocab`` / ``unit`` are those of a resumed run (``source``),
    which the corpus must fit.
    """
    return corpus.open_corpus(cfg.data.path, cfg.data.val_fraction, vocab, unit, source, quiet)


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


class _StopFlag:
    """SIGINT sets a flag checked between steps, so the checkpoint is always of a whole
    step; a second Ctrl-C interrupts at once (the last checkpoint stays intact)."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: leave Ctrl-C alone
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(cfg, *, resume=None, init_from=None, steps=None, quiet=False, out_dir=None):
    """Train according to ``cfg`` (or continue the run in checkpoint ``resume``).

    steps : stop at this total step count (default ``train.steps``); a run stopped early
        and resumed ends exactly as an uninterrupted one.
    out_dir : run directory (default ``cfg.train.out_dir``, or the checkpoint's directory).
    Returns a Summary.
    """
    ck = None
    if resume is not None:
        ck = ckpt_io.load(resume)
        cfg = ck.config
        out_dir = out_dir or os.path.dirname(os.path.abspath(resume))
    # --steps N stops this invocation at step N; the run's plan (train.steps, which
    # schedules and the final log line follow) changes only when N extends it.
    if steps is not None and steps > cfg.train.steps:
        cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    stop_at = cfg.train.steps if steps is None else steps
    out_dir = os.path.abspath(out_dir or cfg.train.out_dir)
    cfg = replace(cfg, train=replace(cfg.train, out_dir=out_dir))
    tc, mc = cfg.train, cfg.model
    dtype = np.dtype(mc.dtype)

    # Data.
    data = load_corpus(cfg, ck.vocab if ck else None, resume, ck.unit if ck else None, quiet)
    vocab, train_data, val_data = data.vocab, data.train, data.val
    streams = D.Streams(train_data, tc.batch_size, tc.seq_length)
    spec = M.ModelSpec.of(mc, len(vocab))

    # Model, optimizer and loop state.
    optimizer = optim.from_config(cfg.optim)
    if ck is not None:
        params, opt_state, state, ema = ck.params, ck.optim_state, ck.state, ck.ema
        rng = np.random.default_rng()
        rng.bit_generator.state = ck.rng_state
        step, p, epoch, smooth_loss, elapsed0 = ck.step, ck.position, ck.epoch, ck.smooth_loss, ck.elapsed_s
        val_loss, best_val, evals_since_best = ck.val_loss, ck.best_val_loss, ck.evals_since_best
    else:
        rng = np.random.default_rng(tc.seed)
        params = M.init_params(spec, rng, dtype, mc.init_std)
        if init_from is not None:
            params = _weights_from(init_from, spec, vocab, dtype)
        opt_state = optimizer.init_state(params)
        ema = {k: np.zeros_like(v) for k, v in params.items()} if cfg.optim.ema is not None else None
        state = M.zero_state(spec, tc.batch_size, dtype)
        step, p, epoch, elapsed0 = 0, 0, 0, 0.0
        smooth_loss = -math.log(1.0 / len(vocab)) * tc.seq_length  # min-char-rnn's start
        val_loss, best_val, evals_since_best = math.nan, math.inf, 0

    try:
        os.makedirs(out_dir, exist_ok=True)
        _write_text(os.path.join(out_dir, "config.yaml"), C.dump_yaml(cfg))
    except OSError as e:
        raise CharrnnError(f"{out_dir}: cannot write the run directory: {e.strerror}") from None
    ckpt_path = os.path.join(out_dir, "ckpt.npz")
    best_path = os.path.join(out_dir, "best.npz")
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    if ck is not None:
        _truncate_metrics(metrics_path, step)
    elif os.path.exists(metrics_path):
        os.replace(metrics_path, metrics_path + ".old")  # a fresh run starts a fresh log

    t_start = time.perf_counter()

    def elapsed():
        return elapsed0 + time.perf_counter() - t_start

    def save(path):
        ckpt_io.save(path, ckpt_io.Checkpoint(
            params, opt_state, state, vocab, cfg, spec, step, p, epoch, smooth_loss,
            elapsed(), rng.bit_generator.state, val_loss, best_val, evals_since_best, ema, data.unit))

    def eval_weights():
        """What validation and previews use: the moving average of the weights, if kept."""
        return optim.eval_weights(params, ema, cfg.optim.ema, step)

    T, B = tc.seq_length, tc.batch_size
    clip_value, clip_norm = cfg.optim.clip_value, cfg.optim.clip_norm
    bar = tqdm(total=stop_at, initial=step, file=sys.stderr, disable=quiet, unit="step",
               dynamic_ncols=True, mininterval=0.5)
    window_t, window_steps = time.perf_counter(), 0
    chars_per_s = 0.0
    last_saved = step if ck is not None else None
    last_eval = step if ck is not None and not math.isnan(val_loss) else None
    stopped = "done"
    postfix = {}
    with _StopFlag() as stop, open(metrics_path, "a", encoding="utf-8") as metrics:

        def log(record):
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()

        def run_eval():
            """Validation loss now; keeps best.npz; True when patience has run out."""
            nonlocal val_loss, best_val, evals_since_best, last_eval, last_saved
            val_loss = evaluate(eval_weights(), spec, val_data[:tc.eval_chars]).nats  # None: all of it
            last_eval = step
            improved = val_loss < best_val
            if improved:
                best_val, evals_since_best = val_loss, 0
            else:
                evals_since_best += 1
            log({"step": step, "epoch": epoch, "val_loss": val_loss, "val_bpc": val_loss / math.log(2),
                 "best_val_loss": best_val, "elapsed_s": round(elapsed(), 3)})
            postfix["val_bpc"] = f"{val_loss / math.log(2):.3f}"
            bar.set_postfix(postfix, refresh=False)
            save(ckpt_path)  # the checkpoint always agrees with the metrics and best.npz
            last_saved = step
            if improved:
                save(best_path)
            return tc.patience is not None and evals_since_best >= tc.patience

        try:
            while step < stop_at and not stop.set:
                if tc.max_minutes is not None and elapsed() >= 60 * tc.max_minutes:
                    stopped = "time budget"
                    break
                if streams.wraps(p):
                    p, epoch = 0, epoch + 1
                    state = M.zero_state(spec, B, dtype)
                X, Y = streams.batch(p)
                masks = M.dropout_masks(spec, (T, B, mc.hidden_size), rng, dtype) if mc.dropout > 0 else None
                with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
                    loss, grads, new_state, _ = M.loss_and_grads(params, spec, X, Y, state, masks)
                if not math.isfinite(loss) or not all(np.isfinite(g).all() for g in grads.values()):
                    what = "loss" if not math.isfinite(loss) else "gradient"
                    raise CharrnnError(
                        f"training diverged at step {step + 1}: the {what} is not finite "
                        f"(loss {loss}); no checkpoint was written for it, the last good one "
                        f"is {ckpt_path if last_saved is not None else 'none (none was written yet)'}; "
                        "try a lower optim.lr or enable clipping"
                    )
                state = new_state
                smooth_loss = smooth_loss * SMOOTHING + loss * (1 - SMOOTHING)
                if clip_value:
                    optim.clip_by_value(grads, clip_value)
                if clip_norm:
                    optim.clip_by_norm(grads, clip_norm)
                lr = optim.learning_rate(cfg.optim, step + 1, epoch, tc.steps)
                optimizer.update(params, grads, opt_state, lr, step + 1)
                if ema is not None:
                    optim.ema_update(ema, params, cfg.optim.ema)
                p += T
                step += 1
                window_steps += 1
                bar.update(1)

                if step % tc.log_every == 0 or step == tc.steps:
                    now = time.perf_counter()
                    chars_per_s = window_steps * T * B / max(now - window_t, 1e-9)
                    window_t, window_steps = now, 0
                    postfix.update(loss=f"{smooth_loss / T:.4f}", chars_s=f"{chars_per_s:,.0f}")
                    bar.set_postfix(postfix, refresh=False)
                    log({"step": step, "epoch": epoch, "loss": loss / T, "smooth_loss": smooth_loss / T,
                         "lr": lr, "chars_per_s": round(chars_per_s, 1), "elapsed_s": round(elapsed(), 3)})
                if tc.sample_every and step % tc.sample_every == 0 and not quiet:
                    text = _preview(eval_weights(), spec, vocab, state, Y[-1, 0], cfg, step, data.unit)
                    bar.write(f"----- sample at step {step} -----\n{text}\n-----", file=sys.stderr)
                if len(val_data) and tc.eval_every and step % tc.eval_every == 0:
                    if run_eval():
                        stopped = "early stopping"
                        break
                    window_t = time.perf_counter()  # evaluation time is not training speed
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and last_saved != step:
                    save(ckpt_path)
                    last_saved = step
        finally:
            bar.close()
        interrupted = stop.set and step < stop_at and stopped == "done"
        finished = step >= tc.steps or stopped == "time budget"  # not a pause at --steps N
        if len(val_data) and last_eval != step and finished:
            run_eval()  # a finished run ends with the validation loss of its final weights
        if last_saved != step:
            save(ckpt_path)
    if interrupted:
        raise Interrupted(f"interrupted at step {step}; checkpoint saved to {ckpt_path}; "
                          f"continue with: charrnn train --resume {ckpt_path}")
    return Summary(out_dir, step, smooth_loss / T, val_loss, best_val, chars_per_s, elapsed(), stopped)


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
