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


class Streams:
    """The training text laid out as B contiguous streams, torch-rnn style.

    Stream i starts at ``i · (N // B)`` and is ``L = N // B`` characters long, so row i of one
    batch continues row i of the previous one and the carried hidden state stays correct.
    Each step reads the next T characters of every stream (targets shifted by one). When a
    stream would run past its end, all streams go back to their start and the state is reset:
    for B = 1 this is exactly min-char-rnn's rule ``if p + seq_length + 1 >= len(data)``.
    """

    def __init__(self, data: np.ndarray | DiskIndices, batch_size: int, seq_length: int) -> None:
        N = len(data)
        self.data = data
        self.B, self.T = batch_size, seq_length
        self.L = N // batch_size
        if self.L < seq_length + 1:
            raise CharrnnError(
                f"the training text has {N} characters; batch_size {batch_size} × "
                f"(seq_length {seq_length} + 1) = {batch_size * (seq_length + 1)} are needed at least"
            )
        self.starts = np.arange(batch_size, dtype=np.int64) * self.L
        self._offsets = np.arange(seq_length + 1, dtype=np.int64)[:, None] + self.starts[None, :]

    def wraps(self, p: int) -> bool:
        """True when the batch at position ``p`` would run past the end of a stream."""
        return p + self.T + 1 >= self.L

    def batch(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets at position ``p``: two (T, B) int arrays."""
        chunk = self.data[self._offsets + p]  # (T+1, B)
        return chunk[:-1], chunk[1:]
