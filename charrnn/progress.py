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
from typing import Any, NamedTuple

from tqdm import tqdm

from charrnn.atomic import open_own
from charrnn.errors import CharrnnError

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


class Progress:
    """The progress bar and previews on stderr, and the metrics log.

    ``with Progress(metrics_path, total, initial, quiet) as progress:`` opens the log for
    appending (``metrics_path`` None: no log, as on the ranks other than 0) and starts the bar
    at step ``initial`` of ``total``.
    """

    def __init__(self, metrics_path: str | None, total: int, initial: int, quiet: bool):
        self.quiet = quiet
        self.path = metrics_path or os.devnull
        self.file = open_log(metrics_path) if metrics_path else open(os.devnull, "ab", buffering=0)  # noqa: SIM115
        self.bar = tqdm(total=total, initial=initial, file=sys.stderr, disable=quiet, unit="step",
                        dynamic_ncols=True, mininterval=0.5)
        self.postfix: dict[str, str] = {}

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

    def show(self, **fields: str) -> None:
        """Set parts of the text after the bar, each a whole phrase (``val="val 1.960 nats/char ..."``)."""
        self.postfix.update(fields)
        self.bar.set_postfix_str(" | ".join(self.postfix.values()), refresh=False)

    def write(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stderr)

    def close_bar(self) -> None:
        """End the bar (the log stays open): what follows the last step prints below it."""
        self.bar.close()

    def close(self) -> None:
        self.bar.close()
        self.file.close()


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



def banner(cfg: Any, corpus: Any, spec: Any, run: Any, run_dir: str, start: str) -> str:
    """What the run is, in a few lines on stderr before the first step; ``start`` says how it
    began (new, resumed from a checkpoint, from another run's weights)."""
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
    notes = text_notes(getattr(corpus, "crlf", None), int(getattr(corpus, "bom", False)))
    return "\n".join([
        f"corpus    {cfg.data.path}: {n_train + n_val:,} characters, vocabulary {len(corpus.vocab)}; "
        f"{n_train:,} for training, {n_val:,} for validation" + (f"; {notes}" if notes else ""),
        f"model     {spec.describe()}: {sum(p.size for p in run.params.values()):,} parameters, {cfg.model.dtype}",
        f"optimizer {o.name}, lr {o.lr:g}, {schedule}" + (f"; {extra}" if extra else ""),
        f"batches   B={tc.batch_size} streams × T={tc.seq_length} characters; {tc.steps:,} steps; "
        f"BLAS threads {blas_threads()}",
        f"run       {run_dir} ({start})",
    ])
