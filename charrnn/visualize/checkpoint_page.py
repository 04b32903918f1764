"""The page for a checkpoint: which text to run its model over, and the header it shows.

What ``charrnn visualize`` does, as one call (``page_for``), so that the command only parses
its options and writes the file. The text is a file, a text sampled from the model (as
``charrnn sample`` prints it), or by default the start of the validation split of the corpus
the run was trained on (``corpus.validation_split``: the trainer is not imported).

The split starts wherever the corpus was cut, mostly inside a word: the default text starts
after the first line break in the split's first ``LINE_SEARCH`` characters (when there is
one) and ends after its last line break (when that keeps at least half of it). The
characters skipped at the start are still read, first, to warm the model's state up: the
page then shows what the model computes over that text in its context, as during training,
rather than from a zero state at an arbitrary line.
"""

import math
import os
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from charrnn import checkpoint as ckpt_io
from charrnn import corpus, sampling
from charrnn import data as D
from charrnn.errors import CharrnnError, UsageError
from charrnn.visualize.render import build, byte_indices
from charrnn.visualize.tracing import sample_text

LINE_SEARCH = 1000  # the default text starts at a line break found within this many characters


class Visualization(NamedTuple):
    html: str  # the self-contained page
    text: str  # the N characters it shows
    source: str  # where they came from, as the page's header says
    skipped: int = 0  # characters of --text dropped as not in the vocabulary (skip_unknown)


def known_only(text: str, vocab: np.ndarray, chars: int) -> tuple[str, int]:
    """The first ``chars`` characters of ``text`` that are in ``vocab``, and how many
    characters not in it were dropped on the way to them."""
    cps = D.code_points(text)
    at = np.minimum(np.searchsorted(vocab, cps), len(vocab) - 1)
    known = np.flatnonzero(vocab[at] == cps)
    if len(known) <= chars:
        return "".join(text[i] for i in known), len(text) - len(known)
    end = int(known[chars - 1]) + 1  # the unknown ones after the last character kept are not counted
    return "".join(text[i] for i in known[:chars]), end - chars


def at_lines(text: str | bytes, chars: int) -> tuple[str, str] | tuple[bytes, bytes]:
    """At most ``chars`` characters of ``text`` cut to whole lines, as (context, shown): the
    shown part starts after the first line break within ``LINE_SEARCH`` characters, when there
    is one, and ends after its last line break, when that keeps at least half of it; the
    context is everything before it."""
    nl = text.find(b"\n" if isinstance(text, bytes) else "\n", 0, LINE_SEARCH)  # text: str, or bytes
    start = nl + 1 if 0 <= nl < len(text) - 2 else 0  # at least 2 characters left to show
    shown = text[start:start + chars]
    last = shown.rfind(b"\n" if isinstance(text, bytes) else "\n")
    if last + 1 >= max(2, len(shown) // 2):
        shown = shown[:last + 1]
    return text[:start], shown


def page_for(ckpt_path: str, text_path: str | None = None, prime: str | None = None, length: int | None = None,
             temperature: float | None = None, seed: int | None = None, chars: int = 2000,
             layers: Iterable[int] | None = None, skip_unknown: bool = False) -> Visualization:
    """The page of ``ckpt_path``'s model over at most ``chars`` characters of a text.

    The text: the file ``text_path``; or, with ``length``, ``prime`` (default: a line break,
    as ``charrnn sample`` starts) and ``length`` characters sampled after it at ``temperature``
    (default: the run's sample.temperature) with ``seed``; or else the start of the run's
    validation split, cut to whole lines, its state warmed up on what comes before them (the
    module's docstring). ``layers``: counted from 1 (None: all). ``skip_unknown``: the
    characters of ``text_path`` outside the vocabulary are dropped (and counted in
    ``skipped``) instead of failing.

    Raises UsageError (exit 2) for options that contradict each other, a prime or layer the
    model cannot take, and a run without a validation split when no text is given;
    CharrnnError for a text of fewer than 2 characters or one with characters outside the
    vocabulary. A model of bytes (``charrnn prepare --bytes``) gets a page of bytes, and
    ``chars`` counts bytes.
    """
    if text_path and (prime is not None or length):
        raise UsageError("--text runs the model over a file; --prime and --length sample a text instead: "
                         "give one or the other")
    if (prime is not None or temperature is not None or seed is not None) and not length:
        raise UsageError("--prime, --temperature and --seed sample a text: give --length N, the characters to sample")
    ck = ckpt_io.load(ckpt_path)
    params = ckpt_io.weights(ck)  # the moving average of the weights, when the run keeps one
    context, skipped = (b"" if ck.unit == "bytes" else ""), 0  # what precedes the text (the state warms up on it)
    if text_path:
        read = _bytes_of_file if ck.unit == "bytes" else _chars_of_file
        text, source, skipped = read(ck, text_path, chars, skip_unknown)
    elif length:
        text, source = _sampled(ck, params, prime, length, temperature, seed, chars)
    else:
        context, text, source = _validation_start(ck, ckpt_path, chars)
    if ck.unit == "bytes" and len(text) < 2:  # (a text of characters: build says it)
        raise CharrnnError(f"{source}: the text to visualize has fewer than 2 bytes")
    html, _ = build(params, ck.spec, ck.vocab, text, _header(ck, ckpt_path, source), layers, context=context)
    return Visualization(html, text, source, skipped)


def _chars_of_file(ck, text_path, chars: int, skip_unknown: bool) -> tuple[str, str, int]:
    """(text, source, skipped) of ``--text`` for a model of characters."""
    text, source, skipped = D.read_text(text_path), str(text_path), 0
    if skip_unknown:
        text, skipped = known_only(text, ck.vocab, chars)
    else:
        text = text[:chars]
        try:
            D.encode(text, ck.vocab)
        except CharrnnError as e:
            raise CharrnnError(f"{source}: {e}; pass --skip-unknown to drop them") from None
    return text, source, skipped


def _bytes_of_file(ck, text_path, chars: int, skip_unknown: bool) -> tuple[bytes, str, int]:
    """(text, source, skipped) of ``--text`` for a model of bytes: the file's bytes as they are
    (invalid UTF-8 included), ``chars`` of them."""
    try:
        with open(text_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CharrnnError(f"{text_path}: cannot read the text: {e.strerror}") from None
    source, skipped = str(text_path), 0
    if skip_unknown:
        b = np.frombuffer(raw, np.uint8)
        keep = np.isin(b, ck.vocab)
        known = np.flatnonzero(keep)  # as known_only counts: the unknown ones after the last kept are not
        skipped = len(b) - len(known) if len(known) <= chars else int(known[chars - 1]) + 1 - chars
        text = bytes(b[known[:chars]])
    else:
        text = raw[:chars]
        try:
            byte_indices(text, ck.vocab)
        except CharrnnError as e:
            raise CharrnnError(f"{source}: {e}; pass --skip-unknown to drop them") from None
    return text, source, skipped


def _sampled(ck, params, prime, length: int, temperature, seed, chars: int) -> tuple[str | bytes, str]:
    """(text, source) sampled after ``prime`` (no prime: as charrnn sample starts, after a line
    break, or the first character), as ``charrnn sample`` writes it."""
    try:
        indices = sampling.start_indices(prime, ck.vocab, ck.unit)
    except CharrnnError as e:
        raise UsageError(f"--prime: {e}") from None
    temperature = ck.config.sample.temperature if temperature is None else temperature
    rng = np.random.default_rng(seed)
    text = sample_text(params, ck.spec, ck.vocab, indices, length, rng, temperature, ck.unit)[:chars]
    return text, f"sampled at temperature {temperature:g}" + (f", seed {seed}" if seed is not None else "")


def _validation_start(ck, ckpt_path, chars: int) -> tuple[str | bytes, str | bytes, str]:
    """(context, text, source): the start of the run's validation split cut to whole lines, and
    what precedes them (``at_lines``), in characters or, for a model of bytes, bytes."""
    val = corpus.validation_split(ck.config, ck.vocab, ck.unit, ckpt_path)
    if len(val) == 0:
        raise UsageError(f"{ckpt_path}: the run's corpus has no validation split; "
                         "give --text FILE or --prime/--length")
    rel = os.path.relpath(ck.config.data.path)  # shorter in the page's header, where it is below here
    where = ck.config.data.path if rel.startswith("..") else rel
    head = val[:LINE_SEARCH + chars]
    if ck.unit == "bytes":
        start = bytes(ck.vocab[np.asarray(head, np.int64)].astype(np.uint8))
    else:
        start = D.decode(head, ck.vocab)
    context, text = at_lines(start, chars)
    return context, text, f"validation split of {where}"


def _header(ck, ckpt_path, source: str) -> dict:
    v = ck.run.val_loss
    unit = "byte" if ck.unit == "bytes" else "char"
    val_loss = None if math.isnan(v) else f"{v:.3f} nats/{unit} ({v / math.log(2):.3f} bits)"
    return {"checkpoint": str(ckpt_path), "model": ck.spec.describe(), "step": ck.run.step, "val_loss": val_loss,
            "source": source}


