"""Vocabulary, encoding and decoding of short texts, and a corpus's layout as B contiguous streams.

The vocabulary is the sorted set of the text's Unicode code points, so it is the same
on every run and machine (min-char-rnn's ``list(set(data))`` is not). Text is encoded
as a compact integer array of indices into it. Corpora on disk, of any size, are read by
``charrnn.corpus``, which gives the same vocabulary and indices as ``build_vocab`` and
``encode`` here; these serve a prime, a test, a benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError

if TYPE_CHECKING:
    from charrnn.corpus import DiskIndices


def read_text(path: str) -> str:
    """Read a UTF-8 text file, with one-line errors for the ways that can fail. A byte-order
    mark at its start is left out, as ``charrnn.corpus`` leaves it out of a corpus."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CharrnnError(f"{path}: corpus file not found") from None
    except IsADirectoryError:
        raise CharrnnError(f"{path}: is a directory, expected a UTF-8 text file") from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read corpus: {e.strerror}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise CharrnnError(
            f"{path}: not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "convert it to UTF-8 first"
        ) from None


def code_points(text: str) -> np.ndarray:
    """(N,) int32 array of the text's Unicode code points."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int32)


def build_vocab(text: str) -> np.ndarray:
    """The sorted distinct code points of ``text``, (V,) int32."""
    return np.unique(code_points(text))


def index_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type that holds indices into a vocabulary of this size."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32


def describe_chars(cps: Sequence[int] | np.ndarray, limit: int = 20) -> str:
    """Human-readable list of characters, e.g. ``'é' (U+00E9), '\\t' (U+0009)``."""
    shown = ", ".join(f"{chr(c)!r} (U+{c:04X})" for c in cps[:limit])
    return shown + (f" and {len(cps) - limit} more" if len(cps) > limit else "")


def encode(text: str, vocab: np.ndarray, unit: str = "chars") -> np.ndarray:
    """Indices of ``text``'s characters (for the unit "bytes", of its UTF-8 bytes) in
    ``vocab``, as a compact unsigned array.

    Raises CharrnnError listing the characters that are not in the vocabulary.
    """
    if unit == "bytes":
        cps = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    else:
        cps = code_points(text)
    idx = np.searchsorted(vocab, cps)
    idx_c = np.minimum(idx, len(vocab) - 1)
    unknown = vocab[idx_c] != cps
    if unknown.any():
        missing = np.unique(cps[unknown])
        if unit == "bytes":
            raise CharrnnError(f"{len(missing)} byte value(s) not in the model's vocabulary: "
                               + ", ".join(f"0x{b:02x}" for b in missing))
        raise CharrnnError(
            f"{len(missing)} character(s) not in the model's vocabulary: {describe_chars(missing)}"
        )
    return idx.astype(index_dtype(len(vocab)))


def decode(indices: Sequence[int] | np.ndarray, vocab: np.ndarray, unit: str = "chars") -> str:
    """The text for a sequence of indices (for the unit "bytes", their bytes decoded as
    UTF-8, an invalid byte shown as U+FFFD)."""
    symbols = vocab[np.asarray(indices, dtype=np.int64)]
    if unit == "bytes":
        return bytes(symbols.astype(np.uint8)).decode("utf-8", "replace")
    return "".join(map(chr, symbols))


# The draw of a variable chunk length (AWD-LSTM: Merity, Keskar & Socher, "Regularizing and
# Optimizing LSTM Language Models", 2017, section 4.1, and their main.py).
HALF_SHARE = 0.05  # the share of steps whose length is drawn around T/2 (theirs: 1 - 0.95)
LENGTH_SIGMA = 5.0  # the standard deviation of the normal draw around T or T/2
SHORTEST = 5  # the length is at least this
LONGER_BY = 20  # and at most T + this (their cap against a rare huge draw)
LENGTH_TAG = 0x62707474  # "bptt": keeps this generator apart from the others seeded by train.seed


def longest_chunk(seq_length: int) -> int:
    """The longest chunk ``chunk_length`` draws for the base length ``seq_length``: T + 20."""
    return seq_length + LONGER_BY


def chunk_length(seed: int, step: int, seq_length: int) -> int:
    """The length of update number ``step`` (from 1) under ``train.variable_length``, a pure
    function of (``seed``, ``step``, ``seq_length`` = T), as AWD-LSTM draws it (Merity, Keskar
    & Socher, "Regularizing and Optimizing LSTM Language Models", section 4.1):

        base = T with probability 0.95, else T / 2
        length = min(max(5, int(normal(base, 5))), T + 20)   (int truncates, as theirs does)

    The draws come from a NumPy generator seeded with (seed, step, LENGTH_TAG), never from
    the run's generators: a resumed run, every rank of an MPI run and a run from a prepared
    corpus draw the same lengths, and a checkpoint holds nothing new.
    """
    rng = np.random.default_rng([seed, step, LENGTH_TAG])
    base = seq_length if rng.random() >= HALF_SHARE else seq_length / 2
    return min(max(SHORTEST, int(rng.normal(base, LENGTH_SIGMA))), longest_chunk(seq_length))


def mean_chunk_length(seed: int, seq_length: int, steps: int) -> float:
    """The mean of ``chunk_length`` over the steps 1 to ``steps`` (the characters per stream a
    run under ``train.variable_length`` reads per step, on average; a little under T)."""
    return sum(chunk_length(seed, k, seq_length) for k in range(1, steps + 1)) / steps


class Streams:
    """The training text laid out as B contiguous streams, torch-rnn style.

    Stream i starts at ``i · (N // B)`` and is ``L = N // B`` characters long, so row i of one
    batch continues row i of the previous one and the carried hidden state stays correct.
    Each step reads the next T characters of every stream (targets shifted by one), or, with
    ``train.variable_length``, the step's own length (``chunk_length``): ``wraps`` and
    ``batch`` take it, and ``longest`` is the longest that will be asked for. When a stream
    would run past its end, all streams go back to their start and the state is reset:
    for B = 1 this is exactly min-char-rnn's rule ``if p + seq_length + 1 >= len(data)``.
    """

    def __init__(self, data: np.ndarray | DiskIndices, batch_size: int, seq_length: int,
                 longest: int | None = None) -> None:
        N = len(data)
        self.data = data
        self.B, self.T = batch_size, seq_length
        self.L = N // batch_size
        longest = seq_length if longest is None else longest
        if self.L < longest + 1:
            what = (f"(seq_length {seq_length} + 1)" if longest == seq_length else
                    f"(train.variable_length's longest chunk, seq_length {seq_length} + {longest - seq_length}, + 1)")
            raise CharrnnError(
                f"the training text has {N} characters; batch_size {batch_size} × "
                f"{what} = {batch_size * (longest + 1)} are needed at least"
            )
        self.starts = np.arange(batch_size, dtype=np.int64) * self.L
        self._offsets = np.arange(seq_length + 1, dtype=np.int64)[:, None] + self.starts[None, :]

    def wraps(self, p: int, length: int | None = None) -> bool:
        """True when the batch of ``length`` characters (default T) at position ``p`` would run
        past the end of a stream."""
        return p + (self.T if length is None else length) + 1 >= self.L

    def batch(self, p: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets at position ``p``: two (T, B) int arrays, T = ``length`` if given."""
        if length is None or length == self.T:
            chunk = self.data[self._offsets + p]  # (T+1, B)
        else:
            chunk = self.data[np.arange(length + 1, dtype=np.int64)[:, None] + (self.starts + p)[None, :]]
        return chunk[:-1], chunk[1:]
