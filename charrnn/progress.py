"""What a run tells its user and its log: the start banner, the progress bar and previews on
stderr, one JSON line per record in ``metrics.jsonl`` (written by ``Progress.log``, read back
by ``read_log``), and the final summary line.

Losses are shown in nats per character and in bits (``nats_bits``), the two units the
char-RNN literature uses (nats: the loss as trained; bits: the compression figure).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, NamedTuple

from tqdm import tqdm

from charrnn.atomic import open_own
from charrnn.errors import CharrnnError
from charrnn.optim import SCALE_FREE

SMOOTHING = 0.999  # min-char-rnn: smooth_loss = smooth_loss * 0.999 + loss * 0.001


class Summary(NamedTuple):
    """How a call of ``train.train`` ended."""

    run_dir: str
    step: int
    loss: float  # the training loss shown (train.progress_loss), nats per character (nan: no step taken)
    loss_label: str  # what it is: "mean of the last 100 steps" or min-char-rnn's smoothed loss
    val_loss: float  # last validation loss per character, nats (nan: no validation text)
    best_val_loss: float  # the lowest validation loss of the run (inf: none yet)
    chars_per_s: float  # training speed over the last steps, validation and saving left out
    elapsed_s: float
    stopped: str  # "done", "early stopping", "time budget"
    best_step: int | None = None  # the step of best_val_loss (None: not known)
    best_path: str | None = None  # the checkpoint that holds it, RUN/best.npz (None: not known)


def nats_bits(nats: float, digits: int = 3) -> str:
    """``1.853 nats/char (2.674 bits)``: one loss in both units, as the bar and summary show them."""
    return f"{nats:.{digits}f} nats/char ({nats / math.log(2):.{digits}f} bits)"


def shown_loss(run: Any, train_cfg: Any) -> tuple[float, str]:
    """The training loss the bar and the summary show (``train.progress_loss``), and its label."""
    if train_cfg.progress_loss == "smooth":
        return run.smooth_loss / train_cfg.seq_length, f"min-char-rnn's smoothed loss ({SMOOTHING})"
    n = run.loss_steps
    return run.loss_sum / n, f"mean of the last {n} step{'s' * (n != 1)}"


def summary_line(s: Summary, ckpt_path: str) -> str:
    """The one line ``charrnn train`` ends with."""
    def both(nats: float) -> str:
        return f"{nats:.4f} nats/char ({nats / math.log(2):.4f} bits/char)"

    parts = [] if math.isnan(s.loss) else [f"training loss {both(s.loss)}, {s.loss_label}"]
    parts += [] if math.isnan(s.val_loss) else [f"validation {both(s.val_loss)}"]
    if math.isfinite(s.best_val_loss):
        at = f" at step {s.best_step}" if s.best_step is not None else ""
        where = f", in {s.best_path}" if s.best_path else ""
        parts.append(f"best validation {s.best_val_loss:.4f} nats/char ({s.best_val_loss / math.log(2):.4f} "
                     f"bits/char){at}{where}")
    parts += [f"{s.chars_per_s:,.0f} chars/s, {s.elapsed_s:.0f} s", f"checkpoint {ckpt_path}"]
    why = "" if s.stopped == "done" else f" ({s.stopped})"
    return f"step {s.step}{why}: " + "; ".join(parts)


def open_log(path: str) -> Any:
    """``path`` opened for appending, unbuffered, if it is a plain file of the run directory's
    own (``atomic.open_own``: never through a link). Raises CharrnnError."""
    try:
        fd = open_own(path, os.O_WRONLY | os.O_APPEND, "the run appends only to a plain file of its own")
    except OSError as e:
        raise CharrnnError(f"{path}: cannot open the metrics log ({e.strerror or e})") from None
    return open(fd, "ab", buffering=0, closefd=True)  # noqa: SIM115 (closed by Progress.close())


SHOWN_LINES = 5  # how many damaged lines' numbers a warning names


class LogLine(NamedTuple):
    """One good line of a metrics log: its number (from 1), its bytes as on disk (without the
    newline), and the record it holds."""

    number: int
    raw: bytes
    record: dict


def read_log(path: str) -> tuple[list[LogLine], list[int]]:
    """The good lines of the metrics log ``path``, and the numbers of the damaged ones.

    The log is read in binary and each line decoded on its own, so one bad byte costs its line
    only: a line is good if it is UTF-8, a JSON object, and has an integer ``step``. Damage
    (a line torn by a crash, garbage, the run of NUL bytes some file systems leave after a
    power loss, a line without a step) is dropped, never fatal: the checkpoint, not the log,
    is the truth of a run. Raises FileNotFoundError if there is no log, CharrnnError (one line)
    if ``path`` cannot be read (a directory, no permission).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read the metrics log ({e.strerror or e}); move it aside "
                           "(the checkpoint does not need it)") from None
    good, damaged = [], []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    for number, raw in enumerate(lines, 1):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            good.append(LogLine(number, raw, record))
        else:
            damaged.append(number)
    return good, damaged


def damage_warning(path: str, damaged: list[int], what: str) -> str:
    """The one line that says which lines of the log ``path`` were ``what`` ("dropped"...)."""
    n = len(damaged)
    shown = ", ".join(map(str, damaged[:SHOWN_LINES])) + (f" and {n - SHOWN_LINES} more" if n > SHOWN_LINES else "")
    return (f"warning: {path}: {what} {n} damaged line{'s' * (n != 1)} (line{'s' * (n != 1)} {shown}: "
            "not a UTF-8 JSON record with a step)")


def clock(seconds: float) -> str:
    """``12m04s``, ``1h05m``, ``42s``: a duration as the plain progress line shows it."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """The progress on stderr (a bar on a terminal, plain lines otherwise), the previews, and
    the metrics log.

    ``with Progress(metrics_path, total, initial, quiet) as progress:`` opens the log for
    appending (``metrics_path`` None: no log, as on the ranks other than 0) and starts showing
    progress at step ``initial`` of ``total``.

    On a terminal it is tqdm's bar, its text in the order that matters when the window is
    narrow: the step, the training loss, the validation loss, the speed, the time left; the bar
    itself takes what width is left, last (at 80 columns the text fits). When stderr is
    not a terminal (a file, a pipe: SLURM, nohup, mpiexec) a bar's refreshes, each a carriage
    return and the whole line, would fill the file; there the progress is one plain line per
    ``train.log_every`` steps instead, ``step 400/19000 | train 1.523 nats (2.197 bits) |
    val 1.613 nats (2.327 bits) | 6,211 chars/s | eta 12m04s``, which a ``grep '^step '``
    or ``tail -f`` reads. The line of a step is printed when the next step is shown (or at the
    end), so that a validation of that same step is in it; with ``every_s``
    (``train.log_seconds``), only if that many seconds have passed since the last line.
    """

    def __init__(self, metrics_path: str | None, total: int, initial: int, quiet: bool,
                 every_s: float | None = None):
        self.quiet, self.every_s = quiet, every_s  # every_s: train.log_seconds, the plain lines' least interval
        self.path = metrics_path or os.devnull
        self.file = open_log(metrics_path) if metrics_path else open(os.devnull, "ab", buffering=0)  # noqa: SIM115
        self.plain = not quiet and not _is_terminal(sys.stderr)
        self.total, self.initial = total, initial
        self.train: tuple[float, str] | None = None  # the training loss shown, nats, and its label
        self.val: float | None = None  # the last validation loss, nats
        self.speed: float | None = None  # chars/s over the last window
        self.left_s: float | None = None  # the time budget left (train.max_minutes), seconds
        self.due: int | None = None  # the step whose plain line is still to print
        self.t0 = time.perf_counter()
        self.printed_at = -math.inf  # when the last plain line was printed
        self.bar: Any = _PlainBar(self, initial) if self.plain else tqdm(
            total=total, initial=initial, file=sys.stderr, disable=quiet, unit="step", dynamic_ncols=True,
            mininterval=0.5, bar_format=self._bar_format())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, record: dict) -> None:
        """Append one line, with one unbuffered write at a time, so that a failed write (a
        full disk) leaves nothing in a buffer to fail again when the file is closed."""
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        try:
            while data:
                data = data[self.file.write(data):]
        except OSError as e:
            raise CharrnnError(f"{self.path}: cannot append to the metrics log ({e.strerror or e})") from None

    def show(self, train: tuple[float, str] | None = None, speed: float | None = None, val: float | None = None,
             left_s: float | None = None) -> None:
        """What the progress shows from now on: the training loss (nats per character, and its
        label, as ``shown_loss`` gives them) and the speed (characters per second) of a log
        step, with the time budget left (``left_s``, seconds; None: no budget), or the
        validation loss (nats per character) of an evaluation."""
        if train is not None:
            self.train, self.speed, self.left_s = train, speed, left_s
            self.due = self.bar.n
        if val is not None:
            self.val = val
        if not self.plain:
            self.bar.bar_format = self._bar_format()

    def _bar_format(self) -> str:
        """tqdm's bar_format: the text first, single-spaced, 2 decimals (the plain line and the
        summary give more), then the time left, then the bar in whatever width is left. At 80
        columns, ``400/19000 train 1.52 (2.20 bits) val 1.61 (2.33 bits) 6,211 chars/s eta
        12:04`` fits; what a narrower window or longer figures cut is the bar, then the time."""
        parts = []
        if self.train is not None:
            parts.append(f"train {self.train[0]:.2f} ({_bits(self.train[0]):.2f} bits)")
        if self.val is not None:
            parts.append(f"val {self.val:.2f} ({_bits(self.val):.2f} bits)")
        if self.speed is not None:
            parts.append(f"{self.speed:,.0f} chars/s")
        text = "".join(f" {p}" for p in parts).replace("{", "{{").replace("}", "}}")
        return "{n_fmt}/{total_fmt}" + text + " eta {remaining} |{bar}|"

    def line(self, step: int) -> str:
        """The plain progress line of ``step`` (what was last shown, with the time left)."""
        parts = [f"step {step}/{self.total}"]
        if self.train is not None:
            nats = self.train[0]
            parts.append(f"train {nats:.3f} nats ({_bits(nats):.3f} bits)")
        if self.val is not None:
            parts.append(f"val {self.val:.3f} nats ({_bits(self.val):.3f} bits)")
        if self.speed is not None:
            parts.append(f"{self.speed:,.0f} chars/s")
        elapsed = time.perf_counter() - self.t0
        done = step - self.initial
        parts.append(f"elapsed {clock(elapsed)}")
        eta = elapsed / done * (self.total - step) if done > 0 else None
        if self.left_s is not None:
            eta = max(0.0, self.left_s) if eta is None else min(eta, max(0.0, self.left_s))
        if eta is not None:
            parts.append(f"eta {clock(eta)}")
        return " | ".join(parts)

    def flush_line(self, last: bool = False) -> None:
        """Print the plain line still due, if any, unless ``train.log_seconds`` have not passed
        since the last one printed (the ``last`` one, at the end, always)."""
        if self.plain and self.due is not None:
            step, self.due = self.due, None
            now = time.perf_counter()
            if last or self.every_s is None or now - self.printed_at >= self.every_s:
                self.printed_at = now
                print(self.line(step), file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stderr)

    def set_total(self, total: int) -> None:
        """The step the bar (and the plain line's ``step N/TOTAL``) now runs to."""
        self.total = total
        if not self.plain:
            self.bar.total = total
            self.bar.refresh()

    def close_bar(self) -> None:
        """End the bar (the log stays open): what follows the last step prints below it."""
        self.bar.close()

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def _bits(nats: float) -> float:
    return nats / math.log(2)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _PlainBar:
    """What stands for tqdm's bar when stderr is not a terminal: it counts the steps and prints
    the line due (``Progress.flush_line``) when the next step is counted or the bar ends."""

    def __init__(self, progress: Progress, initial: int):
        self.progress, self.n = progress, initial

    def update(self, n: int = 1) -> None:
        self.progress.flush_line()
        self.n += n

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        self.progress.flush_line(last=True)


def blas_threads() -> str:
    """How many threads BLAS may use, as far as the environment says (no dependency to ask the
    library itself): the first of the variables OpenBLAS, MKL and OpenMP read that is set."""
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            return f"{os.environ[var]} ({var})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"not set (the library's default, usually one per core: {cores} here)"


def text_notes(crlf: int | None, boms: int, files: int = 1) -> str:
    """What a user should know of a text's bytes, in a phrase ("" when nothing): lines that end
    in CR LF (the text is taken as it is, so "\\r" is a character of the vocabulary) and
    byte-order marks left out."""
    parts = []
    if crlf:
        parts.append(f"{crlf:,} line{'s' * (crlf != 1)} end{'s' * (crlf == 1)} in CR LF, so '\\r' is in the vocabulary "
                     "(convert the text to LF line endings first to leave it out)")
    if boms:
        where = "its start" if files == 1 else f"the start of {boms} of its {files} files"
        parts.append(f"a UTF-8 byte-order mark at {where} left out")
    return "; ".join(parts)



def processes_line(comm: Any, batch_size: int) -> str:
    """The banner's line for a run of several processes (``comm.size`` > 1): how many train,
    how many of the B streams each computes, and how many BLAS threads each may use."""
    n = comm.size
    threads = blas_threads()
    count = threads.split(" ", 1)[0]
    total = f", {int(count) * n:,} in all" if count.isdigit() else ""
    return (f"processes {n} (MPI), {batch_size // n} of the {batch_size} streams each; "
            f"BLAS threads per process {threads}{total}")


def banner(cfg: Any, corpus: Any, spec: Any, run: Any, run_dir: str, start: str, comm: Any = None) -> str:
    """What the run is, in a few lines on stderr before the first step; ``start`` says how it
    began (new, resumed from a checkpoint, from another run's weights). ``comm`` (the run's
    processes, ``charrnn.distributed``): with more than one, a line says how many train, and
    the BLAS threads are per process."""
    o, tc = cfg.optim, cfg.train
    # Under train.fit_to_budget (only with a budget and a decaying schedule: charrnn.config) the
    # run's end follows the machine's speed, and train.steps is its upper bound.
    fitted = tc.fit_to_budget
    n_train, n_val = len(corpus.train), len(corpus.val)
    if o.schedule == "constant":
        schedule = "constant rate"
    elif o.schedule == "step":
        schedule = f"× {o.decay_rate:g} per epoch from epoch {o.decay_after}"
    else:
        end = f"the fitted end (step {tc.steps:,} at most)" if fitted else f"step {tc.steps:,}"
        schedule = f"{o.schedule} to {o.min_lr:g} at {end} after {o.warmup_steps:,} steps of warm-up"
    extra = ", ".join(f"{name} {value:g}" for name, value in
                      (("clip_value", o.clip_value), ("clip_norm", o.clip_norm), ("ema", o.ema)) if value)
    notes = text_notes(getattr(corpus, "crlf", None), int(getattr(corpus, "bom", False)))
    several = comm is not None and comm.size > 1
    return "\n".join([
        f"corpus    {cfg.data.path}: {n_train + n_val:,} characters, vocabulary {len(corpus.vocab)}; "
        f"{n_train:,} for training, {n_val:,} for validation" + (f"; {notes}" if notes else ""),
        f"model     {spec.describe()}: {sum(p.size for p in run.params.values()):,} parameters, {cfg.model.dtype}",
        f"optimizer {o.name}, lr {o.lr:g}, {schedule}" + (f"; {extra}" if extra else ""),
        f"batches   B={tc.batch_size} streams × T={tc.seq_length} characters"
        + ((" (variable: drawn per step, 5 to T + 20" + (", the rate scaled by length / T)"
                                                         if o.name in SCALE_FREE else ")"))
           if tc.variable_length else "")
        + (f"; {tc.steps:,} steps at most, as many as fit in {tc.max_minutes:g} minutes (train.fit_to_budget)"
           if fitted else f"; {tc.steps:,} steps")
        + ("" if several else f"; BLAS threads {blas_threads()}"),
        *([processes_line(comm, tc.batch_size)] if several else []),
        f"run       {run_dir} ({start})",
    ])
