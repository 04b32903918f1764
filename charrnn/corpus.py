"""Corpora on disk, of any size: text files and prepared directories, read in chunks.

Reading. A file is read ``chunk_size`` bytes at a time (4 MiB by default), and each
chunk is cut at a character boundary: the bytes of a character begun at its end go on
to the next piece, so every piece is whole UTF-8 and decodes on its own, to exactly
what decoding the whole file would give (what an incremental decoder does, and the
pieces can then also be worked on as bytes). Strict UTF-8 by default: an invalid byte
is a one-line error naming the file and its byte offset. ``errors="replace"`` turns
invalid bytes into U+FFFD; the unit ``"bytes"`` skips decoding and takes every byte as a
symbol (char-rnn's way, for text that is not UTF-8 or not text at all). Files are joined
as they are, each decoded on its own. A UTF-8 byte-order mark at the start of a file is not
text and is left out (in characters; the unit bytes keeps it), unless the vocabulary holds
U+FEFF anyway (``_bom_kept``: a model trained before the mark was left out reads its text as
it was). Line endings are the text's own: CR LF is not converted, only counted (``Scan.crlf``)
so that the user is told '\r' is in the vocabulary.

Two passes, linear in the text. The first checks the UTF-8, counts every code point
(``np.bincount``, a few hundred thousand at a time, into one count per possible code
point) and hashes the bytes (SHA-256); the vocabulary is then the code points that
occur, in increasing order: exactly ``np.unique`` of the whole text, so runs and
checkpoints made before this module keep their indices. The second pass maps every
piece to indices through a lookup table (one entry per possible code point) into an
array allocated once: a text file's memory is its index array plus a few pieces, never
copies of the text. Indices use the smallest unsigned type that holds the vocabulary.

Speed (benchmarks/corpus.py) comes from never touching characters one at a time in
Python and from doing ASCII, most of most text, as bytes: a pure-ASCII piece is its own
code points; in valid UTF-8 the ASCII bytes are the ASCII characters, so the first pass
counts bytes and decodes only the rest, and the second translates bytes to indices with
``bytes.translate`` and looks up only the non-ASCII characters.

Prepared directories (``charrnn prepare``; nanoGPT's way) hold ``train.<tag>.bin`` and
``val.<tag>.bin``, the raw little-endian indices, and ``meta.json``: the format version, the
vocabulary with counts, the unit, the sources with their sizes and hashes, the number
of characters, the split and the names of the two .bin files. Replacing meta.json commits a
new corpus (``prepare``), so a directory holds one corpus whole at every moment. Training
reads from the two files just the positions each step needs (``DiskIndices``), so resident
memory does not grow with the corpus.

Identity. Every corpus comes with a small record saying which text it is, for
``--resume`` to compare: ``kind`` ("text" or "prepared"), ``path`` (absolute), ``unit``,
``chars`` (symbols in the corpus), ``bytes`` (the text file's size; for a prepared
directory, the sizes of its two .bin files together) and ``sha256`` (of the text
file's bytes, a byte-order mark included, computed in the first pass; for a prepared directory, of its meta.json,
which holds every source's hash and the options it was prepared with). An edit of a
.bin file that keeps its size is not seen: that would mean reading all of it at start-up.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike
from tqdm import tqdm

from charrnn import data as D
from charrnn import portable, rundir
from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError, UsageError
from charrnn.progress import text_notes

if TYPE_CHECKING:
    from charrnn.config import Config

CHUNK = 4 << 20  # bytes read at a time: large enough for fast decoding, small beside any model
COUNT_PIECE = 1 << 18  # code points per bincount: its int64 temporaries stay in the cache
MAX_CODE_POINT = 0x110000
UNITS = ("chars", "bytes")
FORMAT = "charrnn prepared corpus"
# 2: meta.json names its .bin files ("files"), so that replacing meta.json commits a new corpus
# at once; version 1's fixed train.bin and val.bin are still read.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
META, TRAIN_BIN, VAL_BIN = "meta.json", "train.bin", "val.bin"
SPLIT_FILE = re.compile(r"(train|val)(\.[0-9a-f]{16})?\.bin")  # a name meta.json may give a split's file
# atomic_write's temporary files for prepare's files: ".train.<tag>.bin.<8 random>.tmp"
PREP_TEMPORARY = re.compile(r"\.(meta\.json|(train|val)(\.[0-9a-f]{16})?\.bin)\.[a-z0-9_]{8}\.tmp")
BAR_MIN_BYTES = 32 << 20  # reading a text to train on shows a progress bar from this size on


class Source(NamedTuple):
    path: str  # absolute
    bytes: int
    chars: int  # symbols decoded from it (bytes, for the unit "bytes")
    sha256: str


class Scan(NamedTuple):
    """What the first pass over some files found."""

    sources: list[Source]  # in reading order
    counts: np.ndarray  # (256,) for bytes or (0x110000,) for chars: occurrences of each symbol
    unit: str
    boms: tuple[bool, ...] = ()  # for each source, whether a byte-order mark at its start was left out
    crlf: int = 0  # lines that end in CR LF ("\r\n"), in all the sources

    @property
    def chars(self) -> int:
        return int(self.counts.sum())

    @property
    def vocab(self) -> np.ndarray:
        """The symbols that occur, in increasing order: (V,) int32."""
        return np.flatnonzero(self.counts).astype(np.int32)


class Corpus(NamedTuple):
    """A corpus ready to train on: its vocabulary, its two splits as index arrays
    (DiskIndices for a prepared directory), its identity record and its unit."""

    vocab: np.ndarray  # (V,) int32 code points (byte values for the unit "bytes"), in index order
    train: np.ndarray | DiskIndices  # (N_train,) indices
    val: np.ndarray | DiskIndices  # (N_val,) indices
    identity: dict
    unit: str
    crlf: int | None = None  # lines of the text that end in CR LF (None: not known, a prepared directory)
    bom: bool = False  # a byte-order mark at the start of the text was left out


def _bar(desc, total, quiet):
    """A progress bar on stderr in MB and MB/s."""
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, disable=quiet,
                dynamic_ncols=True, mininterval=0.5, leave=False)


# ----------------------------------------------------------------------------------------
# Reading and decoding.


class _Copied(str):
    """The path of a pipe or device, as messages and records name it; its bytes are read from
    ``file``, a temporary copy (see ``_readable_twice``)."""

    file = None


@contextlib.contextmanager
def _readable_twice(path):
    """``path``, or for a pipe or a device (``--data <(zcat big.txt.gz)``, ``/dev/stdin``) a
    ``_Copied`` path: a text is read twice (count, then encode) and a pipe gives its bytes only
    once, so they are first copied, in chunks, into a temporary file, removed afterwards."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = True  # not there, or unreadable: reading it says so
    if regular:
        yield path
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix="charrnn-", suffix=".txt")
    except OSError as e:
        raise CharrnnError(f"{path}: cannot make its temporary copy in {tempfile.gettempdir()} ({e.strerror or e}); "
                           "set TMPDIR to a folder that takes it, or copy the text to a file and give that") from None
    # Removed on every way out: an error, Ctrl-C, and SIGTERM or SIGHUP too (cli.main turns them
    # into an exception, signals.Signalled, so that this ``finally`` runs).
    try:
        with os.fdopen(fd, "wb", buffering=0) as out, _open(path) as f:  # unbuffered: no write left for close
            while True:
                try:
                    chunk = f.read(CHUNK)
                except OSError as e:
                    raise CharrnnError(f"{path}: cannot read corpus: {e.strerror or e}") from None
                if not chunk:
                    break
                data = memoryview(chunk)
                try:
                    while data:
                        data = data[out.write(data):]
                except OSError as e:  # a full disk: the copy's file named, and the way round it
                    raise CharrnnError(f"{tmp}: cannot write the temporary copy of {path} ({e.strerror or e}); "
                                       "set TMPDIR to a folder with room, or copy the text to a file and give "
                                       "that") from None
        copied = _Copied(path)
        copied.file = tmp
        yield copied
    finally:
        os.unlink(tmp)


def _open(path):
    try:
        return open(getattr(path, "file", None) or path, "rb")
    except FileNotFoundError:
        raise CharrnnError(f"{path}: corpus file not found") from None
    except IsADirectoryError:
        raise CharrnnError(
            f"{path}: is a directory; prepare a folder of files first: charrnn prepare {path} --out DIR"
        ) from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read corpus: {e.strerror}") from None


class _Digest:
    """The SHA-256 and the size of the bytes read, taken as they go by."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def update(self, raw):
        self.sha256.update(raw)
        self.bytes += len(raw)


def _raw_chunks(path, chunk_size, hasher=None, bar=None):
    """(offset, bytes) of the file, ``chunk_size`` bytes at a time."""
    with _open(path) as f:
        offset = 0
        while True:
            try:
                raw = f.read(chunk_size)
            except OSError as e:
                raise CharrnnError(f"{path}: cannot read corpus: {e.strerror}") from None
            if not raw:
                return
            if hasher is not None:
                hasher.update(raw)
            if bar is not None:
                bar.update(len(raw))
            yield offset, raw
            offset += len(raw)


ASCII = bytes(range(0x80))
BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8: at the start of a file, a byte-order mark, not text
BOM_CHAR = 0xFEFF
CONTINUATION = bytes(range(0x80, 0xC0))  # the bytes that continue a multibyte UTF-8 character


def _cut(data):
    """Where to cut UTF-8 ``data`` so that no character is split: before the first byte of
    a multibyte character among the last four bytes, if its remaining bytes may be missing.

    A UTF-8 decoder never takes a byte that is not a continuation byte as part of an
    earlier character, so decoding the pieces cut there, one by one, gives exactly what
    decoding the whole file gives, invalid bytes and their offsets included.
    """
    for i in range(len(data) - 1, max(len(data) - 5, -1), -1):
        b = data[i]
        if b < 0x80:  # ASCII: complete
            return len(data)
        if b >= 0xC0:  # a lead byte (or an invalid one): its character needs this many bytes
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return i if len(data) - i < need else len(data)
    return len(data)


def _pieces(path, unit, chunk_size, hasher=None, bar=None, keep_bom=False, found=None):
    """(offset, bytes) of the file, about ``chunk_size`` bytes at a time; for the unit chars,
    each piece ends at a character boundary (the bytes of a character begun at the end of
    a chunk are carried over to the next piece), and a UTF-8 byte-order mark at the start of
    the file is left out (unless ``keep_bom``; ``found``, a list, is told whether there was one).
    The hasher sees every byte: the identity is of the file as it is on disk."""
    carry, end, first = b"", 0, unit == "chars"
    for offset, raw in _raw_chunks(path, chunk_size, hasher, bar):
        data = carry + raw if carry else raw
        end = offset + len(raw)
        cut = len(data) if unit == "bytes" else _cut(data)
        carry = data[cut:]
        if cut and first:  # the file's first whole character: _cut never splits the mark's three bytes
            first = False
            if data.startswith(BOM):
                if found is not None:
                    found.append(True)
                if not keep_bom:
                    data, cut = data[len(BOM):], cut - len(BOM)
        if cut:
            yield end - len(data), data[:cut]
    if carry:  # a character cut off by the end of the file: decoding it reports it
        yield end - len(carry), carry


def _code_points(text):
    """The code points of a str: uint8 when it is ASCII (the common case, and a plain
    copy), otherwise uint32."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), "<u4")


def _non_ascii(piece):
    """The code points of the non-ASCII characters of valid UTF-8 ``piece``, in order: its
    bytes without the ASCII ones are the UTF-8 of just those characters."""
    return np.frombuffer(piece.translate(None, ASCII).decode("utf-8").encode("utf-32-le"), "<u4")


def _decode(path, offset, piece, errors):
    try:
        return piece.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        byte = e.object[e.start]
        raise CharrnnError(
            f"{path}: not UTF-8 text (invalid byte 0x{byte:02x} at offset {offset + e.start}: {e.reason}); "
            "convert it to UTF-8, or prepare it with charrnn prepare --errors replace (invalid bytes "
            "become U+FFFD) or --bytes (a vocabulary of byte values)") from None


def _count(symbols, counts, below=None):
    """Add the occurrences of each symbol (only those under ``below``) to ``counts``."""
    if symbols.dtype == np.uint8:
        counts[:256][:below] += _count_bytes(symbols)[:below]
        return
    for i in range(0, len(symbols), COUNT_PIECE):  # in pieces whose temporaries stay in the cache
        c = np.bincount(symbols[i:i + COUNT_PIECE])[:below]
        counts[:len(c)] += c


def _count_bytes(b):
    """(256,) occurrences of each value in the uint8 array ``b``, counted two bytes at a
    time: np.bincount's cost is per element, so it counts the uint16 pairs (half as many),
    and a value's count is its count as the first byte of a pair plus as the second."""
    even = len(b) // 2 * 2
    pairs = np.zeros(1 << 16, np.int64)
    for i in range(0, even, 2 * COUNT_PIECE):
        c = np.bincount(b[i:min(i + 2 * COUNT_PIECE, even)].view(np.uint16))
        pairs[:len(c)] += c
    pairs = pairs.reshape(256, 256)
    counts = pairs.sum(axis=0) + pairs.sum(axis=1)
    if even < len(b):
        counts[b[-1]] += 1
    return counts


def scan(paths: Sequence[str], unit: str = "chars", errors: str = "strict", chunk_size: int = CHUNK,
         quiet: bool = True, desc: str = "counting") -> Scan:
    """The first pass: every file's size, symbol count and SHA-256, and the counts of all
    symbols. Raises CharrnnError for an unreadable file or invalid UTF-8."""
    counts = np.zeros(256 if unit == "bytes" else MAX_CODE_POINT, np.int64)
    sources, boms, crlf = [], [], 0
    total = sum(_size(p) for p in paths)
    with _bar(desc, total, quiet) as bar:
        for path in paths:
            digest, chars, found, cr = _Digest(), 0, [], False
            for offset, piece in _pieces(path, unit, chunk_size, digest, bar, found=found):
                if cr or b"\r" in piece:  # a memchr: a text without CR costs next to nothing here
                    crlf += piece.count(b"\r\n") + (cr and piece[:1] == b"\n")
                    cr = piece[-1:] == b"\r"
                if unit == "bytes" or piece.isascii():
                    _count(np.frombuffer(piece, np.uint8), counts)
                    chars += len(piece)
                    continue
                text = _decode(path, offset, piece, errors)  # checks the UTF-8, whatever comes next
                chars += len(text)
                if errors == "strict" and len(piece) - len(text) < len(piece) // 8:
                    # Valid and mostly ASCII: its ASCII bytes are its ASCII characters.
                    _count(np.frombuffer(piece, np.uint8), counts, below=0x80)
                    _count(_non_ascii(piece), counts)
                else:
                    _count(_code_points(text), counts)
            sources.append(Source(os.path.abspath(path), digest.bytes, chars, digest.sha256.hexdigest()))
            boms.append(bool(found))
    return Scan(sources, counts, unit, tuple(boms), crlf)


def _bom_kept(s: Scan, vocab: np.ndarray | None) -> bool:
    """Whether the byte-order marks ``scan`` left out are read as characters (U+FEFF) after all:
    when the vocabulary holds U+FEFF anyway, that of a model (a run resumed, a model evaluated:
    one trained before charrnn dropped the mark has it, and its text must stay the same) or,
    with no ``vocab``, the text's own (U+FEFF inside it too). So a text reads the same, mark
    or none, in every pass and at every resume."""
    if not any(s.boms):
        return False
    return bool(np.isin(BOM_CHAR, vocab)) if vocab is not None else bool(s.counts[BOM_CHAR])


def _with_boms(s: Scan) -> Scan:
    """``s`` as if each byte-order mark it left out had been read as the character U+FEFF."""
    counts = s.counts.copy()
    counts[BOM_CHAR] += sum(s.boms)
    sources = [src._replace(chars=src.chars + bom) for src, bom in zip(s.sources, s.boms, strict=True)]
    return Scan(sources, counts, s.unit, (False,) * len(s.boms), s.crlf)


def _settled(s: Scan, vocab: np.ndarray | None) -> tuple[Scan, bool]:
    """The scan with the byte-order marks read as ``_bom_kept`` says, and whether they are kept."""
    keep = _bom_kept(s, vocab)
    return (_with_boms(s) if keep else s), keep


def _size(path):
    try:
        return os.path.getsize(getattr(path, "file", None) or path)
    except FileNotFoundError:
        raise CharrnnError(f"{path}: corpus file not found") from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read corpus: {e.strerror}") from None


# ----------------------------------------------------------------------------------------
# Encoding: symbols to indices through a lookup table.


class _Changed(Exception):
    """The second pass met bytes that the first pass did not see."""


class _Lookup:
    """Symbol -> index in ``vocab``, or V (no such symbol), one table entry per symbol."""

    def __init__(self, vocab, unit):
        self.V = len(vocab)
        self.dtype = np.dtype(D.index_dtype(self.V))
        self.table = np.full(256 if unit == "bytes" else MAX_CODE_POINT, self.V, D.index_dtype(self.V + 1))
        self.table[vocab] = np.arange(self.V)
        # Bytes to index bytes in one C call when every index and the marker fit a byte.
        self.translation = self.table[:256].tobytes() if self.table.dtype == np.uint8 else None

    def __call__(self, symbols):
        """(N,) indices, V where a symbol is not in the vocabulary."""
        if self.translation is not None and symbols.dtype == np.uint8:
            return np.frombuffer(symbols.tobytes().translate(self.translation), np.uint8)
        return self.table[symbols]

    def utf8(self, piece):
        """The indices of the characters of valid UTF-8 ``piece`` without decoding all of it
        (with ``translation``): its bytes less the continuation bytes are one byte per
        character, ASCII bytes translate to their indices in one call, and only the
        characters at the lead bytes are decoded and looked up."""
        heads = piece.translate(None, CONTINUATION)
        idx = np.frombuffer(bytearray(heads.translate(self.translation)), np.uint8)
        lead = np.flatnonzero(np.frombuffer(heads, np.uint8) >= 0xC0)
        try:
            others = _non_ascii(piece)
        except UnicodeDecodeError:
            raise _Changed() from None
        if len(others) != len(lead):
            raise _Changed()
        idx[lead] = self.table[others]
        return idx


def index_chunks(paths: Sequence[str], vocab: np.ndarray, unit: str = "chars", errors: str = "strict",
                 chunk_size: int = CHUNK, skip_unknown: bool = False, bar: tqdm | None = None,
                 keep_bom: bool = False) -> Iterator[np.ndarray]:
    """The second pass: the files' indices in ``vocab``, a piece at a time, in the smallest
    unsigned type that holds them. It expects files that ``scan`` has read (and checked);
    a byte-order mark at the start of a file is left out as there, unless ``keep_bom``.

    A symbol outside ``vocab`` is dropped with ``skip_unknown``; otherwise it means the file
    changed after the first pass counted it, which is an error.
    """
    lookup = _Lookup(vocab, unit)
    for path in paths:
        for offset, piece in _pieces(path, unit, chunk_size, bar=bar, keep_bom=keep_bom):
            try:
                if unit == "bytes" or piece.isascii():
                    idx = lookup(np.frombuffer(piece, np.uint8))
                elif errors == "strict" and lookup.translation is not None:
                    idx = lookup.utf8(piece)
                else:
                    idx = lookup(_code_points(_decode(path, offset, piece, errors)))
            except (_Changed, CharrnnError):
                raise CharrnnError(f"{path}: changed while it was being read (its bytes at offset {offset} "
                                   "differ from the first pass); read it again") from None
            if idx.max() >= lookup.V:
                if not skip_unknown:
                    symbols = (np.frombuffer(piece, np.uint8) if unit == "bytes"
                               else _code_points(piece.decode("utf-8", "replace")))
                    unknown = np.unique(symbols[lookup.table[symbols] >= lookup.V])
                    raise CharrnnError(
                        f"{path}: changed while it was being read ({_describe(unknown, unit)} appeared "
                        "after the first pass); read it again")
                idx = idx[idx < lookup.V]
            yield idx.astype(lookup.dtype, copy=False)


def _describe(symbols, unit):
    if unit == "bytes":
        shown = ", ".join(f"0x{b:02x}" for b in symbols[:20])
        return shown + (f" and {len(symbols) - 20} more" if len(symbols) > 20 else "")
    return D.describe_chars(symbols)


def _encode_into(out, paths, vocab, unit, errors, chunk_size, skip_unknown=False, bar=None, keep_bom=False):
    """Fill the preallocated index array ``out`` with the second pass."""
    pos = 0
    for idx in index_chunks(paths, vocab, unit, errors, chunk_size, skip_unknown, bar, keep_bom):
        if pos + len(idx) > len(out):
            raise CharrnnError(f"{paths[-1]}: changed while it was being read (it grew); read it again")
        out[pos:pos + len(idx)] = idx
        pos += len(idx)
    if pos != len(out):
        raise CharrnnError(f"{paths[-1]}: changed while it was being read (it shrank); read it again")
    return out


def _unknown_in(scan_, vocab):
    """The symbols counted in ``scan_`` that are not in ``vocab``, sorted."""
    return np.setdiff1d(scan_.vocab, vocab)


def read_indices(path: str, vocab: np.ndarray, unit: str = "chars", skip_unknown: bool = False,
                 chunk_size: int = CHUNK, quiet: bool = True) -> tuple[np.ndarray, int]:
    """A text file's indices in a given vocabulary (``charrnn eval --text``), and how many
    symbols were not in it (dropped with ``skip_unknown``, an error otherwise)."""
    with _readable_twice(path) as path:
        return _read_indices(path, vocab, unit, skip_unknown, chunk_size, quiet)


def _read_indices(path, vocab, unit, skip_unknown, chunk_size, quiet):
    s, keep_bom = _settled(scan([path], unit, "strict", chunk_size, quiet), vocab)
    unknown = _unknown_in(s, vocab)
    if len(unknown) and not skip_unknown:
        raise CharrnnError(
            f"{path}: {len(unknown)} {'byte value(s)' if unit == 'bytes' else 'character(s)'} not in the "
            f"model's vocabulary: {_describe(unknown, unit)}; pass --skip-unknown to drop them")
    skipped = int(s.counts[unknown].sum())
    out = np.empty(s.chars - skipped, D.index_dtype(len(vocab)))
    with _bar("encoding", sum(src.bytes for src in s.sources), quiet) as bar:
        _encode_into(out, [path], vocab, unit, "strict", chunk_size, skip_unknown, bar, keep_bom)
    return out, skipped


# ----------------------------------------------------------------------------------------
# A text file to train on directly.


def _split_sizes(n, val_fraction, where, key):
    """(train, val) lengths: the last ``val_fraction`` of the text is validation."""
    n_val = int(n * val_fraction)
    if val_fraction > 0 and n_val < 2:
        raise CharrnnError(
            f"{where}: {key} {val_fraction} of {n} characters leaves {n_val} for validation, 2 are "
            f"needed; use a longer corpus or {key} 0")
    return n - n_val, n_val


def read_text_corpus(path: str, val_fraction: float, vocab: np.ndarray | None = None, source: str | None = None,
                     chunk_size: int = CHUNK, quiet: bool = True) -> Corpus:
    """A UTF-8 text file as a Corpus, in two passes (count, then encode into one array).

    The vocabulary is the text's own, or ``vocab`` (a resumed run), which it must fit.
    """
    with _readable_twice(path) as path:
        return _read_text_corpus(path, val_fraction, vocab, source, chunk_size, quiet)


def _read_text_corpus(path, val_fraction, vocab, source, chunk_size, quiet):
    size = _size(path)
    no_bar = quiet or size < BAR_MIN_BYTES
    s, keep_bom = _settled(scan([path], "chars", "strict", chunk_size, quiet=no_bar,
                                desc=f"counting {os.path.basename(path)}"), vocab)
    if s.chars == 0:
        raise CharrnnError(f"{path}: corpus is empty")
    if vocab is None:
        vocab = s.vocab
    else:
        unknown = _unknown_in(s, vocab)
        if len(unknown):
            raise CharrnnError(
                f"{path}: does not match the vocabulary of {source}: {len(unknown)} character(s) not in "
                f"the model's vocabulary: {D.describe_chars(unknown)}")
    n_train, _ = _split_sizes(s.chars, val_fraction, path, "data.val_fraction")
    data = np.empty(s.chars, D.index_dtype(len(vocab)))
    with _bar(f"encoding {os.path.basename(path)}", size, no_bar) as bar:
        _encode_into(data, [path], vocab, "chars", "strict", chunk_size, bar=bar, keep_bom=keep_bom)
    src = s.sources[0]
    identity = dict(kind="text", path=src.path, unit="chars", chars=s.chars, bytes=src.bytes, sha256=src.sha256)
    return Corpus(np.asarray(vocab, np.int32), data[:n_train], data[n_train:], identity, "chars", s.crlf,
                  any(s.boms) and not keep_bom)


# ----------------------------------------------------------------------------------------
# Finding the files of `charrnn prepare`.


def find_files(inputs: Sequence[str], globs: Sequence[str] = (), exclude: str | None = None) -> list[str]:
    """The files to prepare, in reading order.

    Each input is a file (taken as it is, in the order given) or a directory, whose files
    are found recursively and taken in the sorted order of their paths (plain string
    order), skipping names that begin with a dot (.git, .DS_Store) and the directory
    ``exclude`` (the output). ``globs`` filter the files found in directories: a pattern
    with a ``/`` is matched against the path below the directory (where ``*`` matches a
    ``/`` too), otherwise against the file name (``fnmatch``, case-sensitive).
    """
    if not inputs:
        raise UsageError("give at least one input file or directory")
    exclude = os.path.realpath(exclude) if exclude else None
    files = []
    for inp in inputs:
        if os.path.exists(inp) and not os.path.isdir(inp):  # a file, or a pipe (<(zcat big.gz))
            files.append(inp)
            continue
        if not os.path.isdir(inp):
            raise CharrnnError(f"{inp}: input not found (expected a text file or a directory)")
        found = []
        for root, dirs, names in os.walk(inp):
            dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) != exclude]
            for name in names:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, inp).replace(os.sep, "/")
                if name.startswith(".") or not os.path.isfile(path):
                    continue
                if globs and not any(fnmatch.fnmatchcase(rel if "/" in g else name, g) for g in globs):
                    continue
                found.append((rel, path))
        if not found and globs:
            raise CharrnnError(f"{inp}: no file in this directory matches --glob {' '.join(repr(g) for g in globs)}")
        if not found:
            raise CharrnnError(f"{inp}: no files in this directory (names that begin with a dot are skipped)")
        files.extend(path for _, path in sorted(found))
    return files


# ----------------------------------------------------------------------------------------
# Prepared directories.


def prepare(inputs: Sequence[str], out: str, globs: Sequence[str] = (), val_fraction: float = 0.1,
            errors: str = "strict", unit: str = "chars", overwrite: bool = False, chunk_size: int = CHUNK,
            quiet: bool = True) -> dict[str, Any]:
    """Read, count and encode ``inputs`` into the prepared directory ``out``; returns its
    meta.json as a dict.

    Holding ``out``'s lock (``rundir.lock``: a second prepare is refused at once, naming this
    one's PID), it first removes what a killed prepare left there, then writes the new
    ``train.<tag>.bin`` and ``val.<tag>.bin`` beside the old corpus's files and commits them
    with one atomic replace of meta.json, which names them: at every moment ``out`` holds the
    old corpus whole or the new one whole. With ``overwrite``, the old corpus is then moved
    (hard links, no copy) into ``out/replaced-<time>/``, whole. ``<tag>`` is a hash of the
    new meta.json's content, so preparing the same text again gives the same files and the
    same identity (a run on it still resumes).
    """
    if unit not in UNITS:
        raise UsageError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CharrnnError(f"{out}: exists and is not a directory")
    if os.path.isdir(out) and not os.path.exists(os.path.join(out, META)):
        _refuse_foreign(out)  # before the lock, which would add a file to someone else's directory
    with rundir.lock(out, "charrnn prepare", "prepared directory"):
        has_meta, live = _clean(out)
        if has_meta and not overwrite:
            raise CharrnnError(
                f"{out}: already holds a prepared corpus; give another --out, or add --overwrite to replace it "
                f"(the old one is then moved into {os.path.join(out, rundir.REPLACED_PREFIX + '<time>')}/)")
        if not has_meta:
            _refuse_foreign(out)
        with contextlib.ExitStack() as stack:  # pipes (prepare <(zcat big.gz)) are copied once, to read twice
            paths = [stack.enter_context(_readable_twice(p)) for p in find_files(inputs, globs, exclude=out)]
            return _build(inputs, paths, out, live, val_fraction, errors, unit, chunk_size, quiet)


def _refuse_foreign(out):
    """Refuse a directory without meta.json that holds files other than the lock and what a
    killed prepare leaves (which ``_clean`` removes): a prepare writes only into its own."""
    others = sorted(n for n in os.listdir(out) if n != rundir.LOCK_NAME and not PREP_TEMPORARY.fullmatch(n)
                    and not SPLIT_FILE.fullmatch(n))
    if others:
        raise CharrnnError(f"{out}: exists, is not a prepared corpus and is not empty (it holds {others[0]!r}"
                           f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}); give an empty or "
                           "new directory as --out")


def _clean(out):
    """Remove what a killed prepare left in ``out`` (call it holding the lock): atomic_write's
    temporaries, .bin files that meta.json does not name (written but never committed, or
    the old corpus's, already linked into its replaced-* folder), and replaced-* folders
    that a kill left unfinished (no meta.json yet, or the live one's: never committed).

    Returns (whether ``out`` has a meta.json, the names of the files it names; empty when
    it cannot be read, and then no .bin file is removed).
    """
    meta_path = os.path.join(out, META)
    has_meta = os.path.exists(meta_path)
    live = None
    if has_meta:
        try:
            live = set(split_files(read_meta(out)[0]).values())
        except CharrnnError:
            live = None  # damaged: leave its files to the user (or to --overwrite)
    for name in os.listdir(out):
        path = os.path.join(out, name)
        known = live is not None or not has_meta  # which .bin files are the corpus's is known
        if PREP_TEMPORARY.fullmatch(name) or (known and SPLIT_FILE.fullmatch(name) and name not in (live or ())):
            _remove(path)
        elif name.startswith(rundir.REPLACED_PREFIX) and os.path.isdir(path):
            inside = os.listdir(path)
            folder_meta = os.path.join(path, META)
            if not all(SPLIT_FILE.fullmatch(n) or n == META for n in inside):
                continue  # not ours (train --overwrite's folders share the prefix)
            if META not in inside or (has_meta and os.path.samefile(folder_meta, meta_path)):
                for n in inside:
                    _remove(os.path.join(path, n))
                with contextlib.suppress(OSError):
                    os.rmdir(path)
    return has_meta, live or set()


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _build(inputs, paths, out, live, val_fraction, errors, unit, chunk_size, quiet):
    """The second half of ``prepare``, holding the lock: scan, write the new .bin files beside
    the live corpus (whose files are ``live``), commit, move the old corpus aside."""
    s, keep_bom = _settled(scan(paths, unit, errors, chunk_size, quiet), None)
    if s.chars == 0:
        raise CharrnnError(f"{', '.join(inputs)}: no text to prepare (the {len(paths)} file(s) found are empty)")
    vocab = s.vocab
    n_train, n_val = _split_sizes(s.chars, val_fraction, ", ".join(inputs), "--val-fraction")
    dtype = np.dtype(D.index_dtype(len(vocab))).newbyteorder("<")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unit": unit,
        "errors": errors if unit == "chars" else None,
        "dtype": dtype.name,
        "chars": s.chars,
        "split": {"val_fraction": val_fraction, "train": n_train, "val": n_val},
        "vocab": vocab.tolist(),
        "counts": s.counts[vocab].tolist(),
        "sources": [src._asdict() for src in s.sources],
    }
    # Named by what they hold: the same text prepared again reuses its names (and identity).
    tag = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    files = {"train": f"train.{tag}.bin", "val": f"val.{tag}.bin"}
    meta["files"] = files
    new = [n for n in files.values() if n not in live]  # the live corpus's files are never removed

    def discard():
        for name in new:
            _remove(os.path.join(out, name))

    with _bar("encoding", sum(src.bytes for src in s.sources), quiet) as bar:

        def write_splits(train_file, val_file):
            """One pass of encoding: the first n_train indices to train.bin, the rest to val.bin."""
            pos = 0
            for idx in index_chunks(paths, vocab, unit, errors, chunk_size, bar=bar, keep_bom=keep_bom):
                head = max(0, min(len(idx), n_train - pos))
                train_file.write(idx[:head].astype(dtype, copy=False).data)
                val_file.write(idx[head:].astype(dtype, copy=False).data)
                pos += len(idx)
            if pos != s.chars:
                raise CharrnnError(f"{', '.join(inputs)}: changed while being read ({s.chars}, then {pos} symbols)")

        try:
            atomic_write(os.path.join(out, files["train"]), lambda t: atomic_write(
                os.path.join(out, files["val"]), lambda v: write_splits(t, v)))
        except OSError as e:  # e.g. a full disk: the temporary files are gone, meta.json is the old one
            discard()
            raise CharrnnError(f"{out}: cannot write the prepared corpus: {e.strerror or e}; "
                               "the directory is as it was") from None
        except BaseException:
            discard()
            raise
    old = sorted(live - set(files.values()))
    meta_path = os.path.join(out, META)
    # One key a line, each value on its line: readable, and short even for a large vocabulary.
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n"
    folder = None
    try:
        if old:  # the old corpus, linked whole into its folder before the commit: never lost, never copied
            folder = rundir.new_folder(out)
            for name in old:
                os.link(os.path.join(out, name), os.path.join(folder, name))
            os.link(meta_path, os.path.join(folder, META))  # last: a folder with a meta.json is whole
        atomic_write(meta_path, lambda f: f.write(text.encode("utf-8")))  # the commit
    except BaseException as e:
        discard()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, OSError):
            raise CharrnnError(f"{out}: cannot write the prepared corpus: {e.strerror or e}; "
                               "the directory is as it was") from None
        raise
    for name in old:  # committed: the old files now live on in the folder only
        _remove(os.path.join(out, name))
    notes = text_notes(s.crlf, sum(s.boms) if not keep_bom else 0, len(paths))
    if notes:
        print(f"{out}: {notes}", file=sys.stderr)
    return meta


def split_files(meta: dict[str, Any]) -> dict[str, str]:
    """The names of a prepared directory's two .bin files, by split ("train", "val"), as its
    (validated) meta.json gives them; format version 1 had fixed names."""
    return meta.get("files") or {"train": TRAIN_BIN, "val": VAL_BIN}


def _bad_meta(path, what):
    return CharrnnError(f"{path}: not a valid prepared corpus: {what}; prepare it again with charrnn prepare")


def read_meta(directory: str) -> tuple[dict[str, Any], str]:
    """meta.json of a prepared directory, validated; and the SHA-256 of its bytes."""
    path = os.path.join(directory, META)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CharrnnError(f"{directory}: is a directory but not a prepared corpus (no {META}); "
                           f"{_way_on(directory)}") from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read: {e.strerror}") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad_meta(path, f"not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad_meta(path, f"its 'format' is not {FORMAT!r}")
    if meta.get("format_version") not in READ_VERSIONS:
        raise CharrnnError(f"{path}: prepared corpus format version {meta.get('format_version')!r} is not "
                           f"supported (expected {FORMAT_VERSION}); prepare it again with this charrnn")
    try:
        unit, split, dtype = meta["unit"], meta["split"], np.dtype(meta["dtype"])
        vocab = np.asarray(meta["vocab"], np.int64)
        n_train, n_val = int(split["train"]), int(split["val"])
    except (KeyError, TypeError, ValueError) as e:
        raise _bad_meta(path, f"missing or malformed key ({type(e).__name__}: {e})") from None
    files = meta.get("files")
    if meta["format_version"] >= 2 and not (
            isinstance(files, dict) and sorted(files) == ["train", "val"] and files["train"] != files["val"]
            and all(isinstance(n, str) and SPLIT_FILE.fullmatch(n) for n in files.values())):
        # Plain names matching the pattern: meta.json never points outside its directory.
        raise _bad_meta(path, "'files' must name its train and val .bin files")
    limit = 256 if unit == "bytes" else MAX_CODE_POINT
    if unit not in UNITS:
        raise _bad_meta(path, f"'unit' must be one of {', '.join(UNITS)}, got {unit!r}")
    if vocab.ndim != 1 or len(vocab) < 1 or np.any(np.diff(vocab) <= 0) or vocab[0] < 0 or vocab[-1] >= limit:
        raise _bad_meta(path, "'vocab' must be increasing distinct code points (byte values for the unit bytes)")
    if dtype != np.dtype(D.index_dtype(len(vocab))):
        raise _bad_meta(path, f"'dtype' {dtype} does not fit a vocabulary of {len(vocab)}")
    if n_train < 0 or n_val < 0:
        raise _bad_meta(path, "negative split sizes")
    return meta, hashlib.sha256(raw).hexdigest()


class _SplitFile:
    """The open file of a split, shared by a ``DiskIndices`` and its views: closed with the last
    of them to be collected (a corpus lives as long as its run, and nothing else knows when
    that is), or by ``close``."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class DiskIndices:
    """A read-only 1-D array of indices in a file (train.bin, val.bin), read on demand.

    Indexing it with an array of positions (a batch's (T+1, B) offsets, a chunk of an
    evaluation) reads just those positions with ``os.pread`` (``portable.pread``), one read per run of
    consecutive positions; a slice is a view of part of the file; ``np.asarray`` reads
    the whole of it (tests do, training never does).

    Why reads and not a memory map: the Linux page cache now keeps files in large folios,
    and touching one byte of a mapping maps the whole folio (up to 2 MB) into the
    process. A batch touches B places, so a mapped corpus's resident memory grew with
    its size: a 40 MB train.bin was all resident after the first step (measured). Reads
    copy the few KB a step needs and leave the file in the page cache, which is shared
    and which the kernel reclaims when memory is short, not in the process.

    ``vocab_size``: every index read is checked to be below it (one ``max()`` of what was
    read, a few microseconds for a batch against milliseconds for a step), and one that is
    not is a one-line error naming the file and its byte offset. Checking the whole file
    when it is opened would mean reading all of it at start-up; checking what is read
    catches a damaged byte before the model ever indexes with it.
    """

    ndim = 1

    def __init__(self, path: str, dtype: DTypeLike, length: int, start: int = 0, file: Any = None,
                 vocab_size: int | None = None) -> None:
        self.path, self.dtype, self.length, self.start = path, np.dtype(dtype), length, start
        self.vocab_size = vocab_size
        self._file = file if file is not None else _SplitFile(path)  # views share it

    def close(self) -> None:
        """Close the file now (and for its views), instead of when the last of them is collected."""
        self._file.close()

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> tuple[int]:
        return (self.length,)

    @property
    def nbytes(self) -> int:
        return self.length * self.dtype.itemsize

    def _read(self, first, count):
        """``count`` indices from position ``first``, as bytes."""
        n = count * self.dtype.itemsize
        raw = portable.pread(self._file.fd, n, (self.start + first) * self.dtype.itemsize)
        if len(raw) != n:
            raise CharrnnError(f"{self.path}: shorter than meta.json says (it changed after it was opened)")
        return raw

    def __getitem__(self, key: slice | np.ndarray | Sequence[int]) -> DiskIndices | np.ndarray:
        if isinstance(key, slice):
            first, stop, step = key.indices(self.length)
            if step != 1:
                raise IndexError("only contiguous slices of a DiskIndices")
            return DiskIndices(self.path, self.dtype, max(stop - first, 0), self.start + first, self._file,
                               self.vocab_size)
        idx = np.asarray(key, dtype=np.int64)
        if idx.size == 0:
            return np.empty(idx.shape, self.dtype)
        if idx.min() < 0 or idx.max() >= self.length:
            raise IndexError(f"position out of range for {self.length} indices")
        if idx.ndim == 2 and idx.shape[0] > 1 and (np.diff(idx, axis=0) == 1).all():
            # A (T, B) block whose columns are runs, as a batch is: one read per column.
            raw = b"".join(self._read(first, idx.shape[0]) for first in idx[0].tolist())
            block = np.ascontiguousarray(np.frombuffer(raw, self.dtype).reshape(idx.shape[::-1]).T)
            return self._checked(block, idx)
        flat = idx.ravel()
        positions = np.unique(flat)  # sorted; runs of consecutive ones are read at once
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        firsts = positions[np.r_[0, breaks]].tolist()
        counts = np.diff(np.r_[0, breaks, len(positions)]).tolist()
        values = np.frombuffer(b"".join(self._read(f, c) for f, c in zip(firsts, counts, strict=True)), self.dtype)
        return self._checked(values[np.searchsorted(positions, flat)].reshape(idx.shape), idx)

    def _checked(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """``values`` (read from ``positions``), or a CharrnnError naming the byte offset of
        the first index that is not below ``vocab_size``."""
        if self.vocab_size is None or values.size == 0 or values.max() < self.vocab_size:
            return values
        bad = values >= self.vocab_size
        first = int(positions[bad].min())
        value = int(values[positions == first].flat[0])
        raise CharrnnError(
            f"{self.path}: index {value} at byte offset {(self.start + first) * self.dtype.itemsize} is outside "
            f"the vocabulary of {self.vocab_size} in meta.json; the file is damaged: prepare it again")

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        if not self.length:
            return np.empty(0, self.dtype if dtype is None else dtype)
        a = self._checked(np.frombuffer(self._read(0, self.length), self.dtype), np.arange(self.length))
        return a if dtype is None else a.astype(dtype)


def _way_on(directory):
    """What to do with a directory that is not a prepared corpus: a way that works."""
    try:
        entries = [n for n in os.listdir(directory) if n != rundir.LOCK_NAME]
    except OSError:
        entries = []
    if not entries:
        return f"it is empty; prepare a corpus into it with: charrnn prepare TEXT... --out {directory}"
    if all(SPLIT_FILE.fullmatch(n) or PREP_TEMPORARY.fullmatch(n) for n in entries):
        return (f"it holds only what an unfinished prepare left; prepare the text into it again: charrnn prepare "
                f"TEXT... --out {directory}")
    try:
        find_files([directory])
    except CharrnnError:
        return ("it holds no files to prepare (names that begin with a dot are skipped); give a text file or a "
                "directory made by charrnn prepare")
    return f"prepare its files with: charrnn prepare {directory} --out DIR, and use DIR"


class _Gone(Exception):
    """A split file that meta.json names is not there (a prepare replaced the corpus since)."""


def _open_split(path, dtype, n, vocab_size):
    """A split file as DiskIndices of n indices, checking its size (and, as they are read,
    that its indices are below ``vocab_size``)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise _Gone(path) from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read: {e.strerror}") from None
    if size != n * dtype.itemsize:
        raise CharrnnError(
            f"{path}: is {size} bytes, but meta.json says {n} indices of {dtype.itemsize} byte(s); "
            "the directory is damaged or half-written: prepare it again")
    try:
        return DiskIndices(path, dtype, n, vocab_size=vocab_size)
    except FileNotFoundError:  # removed since its size was read: a commit of a new corpus
        raise _Gone(path) from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read: {e.strerror}") from None


def prepared_dir(path: str) -> str | None:
    """The prepared directory that ``path`` names (the directory itself or its meta.json),
    or None when it names something else."""
    if os.path.isdir(path):
        return path
    if os.path.basename(path) == META and os.path.isfile(path):
        return os.path.dirname(path) or "."
    return None


def _open_splits(directory):
    """meta.json, its hash and the two splits it names, opened: one consistent corpus.

    A ``prepare --overwrite`` may commit a new corpus between the reading of meta.json and
    the opening of the files it names, and remove those; then meta.json is read again (it
    names the new corpus, whose files are in place before it is). Once open, a file stays
    readable whatever happens to its name.
    """
    for _ in range(5):
        meta, digest = read_meta(directory)
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        files, split = split_files(meta), meta["split"]
        opened = []
        try:
            for key in ("train", "val"):
                size = len(meta["vocab"])
                opened.append(_open_split(os.path.join(directory, files[key]), dtype, split[key], size))
            return meta, digest, opened[0], opened[1]
        except _Gone as gone:
            for f in opened:
                f.close()
            if read_meta(directory)[1] == digest:  # not replaced: the file is missing
                raise CharrnnError(f"{gone}: not found, but {META} names it; the directory is damaged: prepare "
                                   "it again (charrnn prepare TEXT... --out DIR --overwrite)") from None
    raise CharrnnError(f"{directory}: its corpus keeps being replaced (charrnn prepare --overwrite); try again")


def open_prepared(directory: str, vocab: np.ndarray | None = None, unit: str | None = None,
                  source: str | None = None) -> Corpus:
    """A prepared directory as a Corpus whose splits are read from disk on demand.

    ``vocab`` / ``unit``: those of a resumed run, which the directory's must equal.
    """
    meta, digest, train, val = _open_splits(directory)
    own = np.asarray(meta["vocab"], np.int32)
    if unit is not None and unit != meta["unit"]:
        raise CharrnnError(f"{directory}: its unit is {meta['unit']}, but {source} was trained on {unit}")
    if vocab is not None and not np.array_equal(own, vocab):
        extra = np.setdiff1d(own, vocab)
        detail = f"; it has {_describe(extra, meta['unit'])} that the model lacks" if len(extra) else ""
        raise CharrnnError(
            f"{directory}: its vocabulary ({len(own)} symbols) differs from that of {source} "
            f"({len(vocab)}){detail}")
    identity = dict(kind="prepared", path=os.path.abspath(directory), unit=meta["unit"],
                    chars=len(train) + len(val), bytes=train.nbytes + val.nbytes, sha256=digest)
    return Corpus(own, train, val, identity, meta["unit"])


def open_corpus(path: str, val_fraction: float = 0.1, vocab: np.ndarray | None = None, unit: str | None = None,
                source: str | None = None, quiet: bool = True, chunk_size: int = CHUNK) -> Corpus:
    """The corpus at ``path``: a prepared directory (or its meta.json), read on demand, or a
    UTF-8 text file, read and encoded in chunks (``val_fraction`` applies to it; a prepared
    directory keeps the split it was prepared with).

    ``vocab`` / ``unit``: those of a resumed run (``source``, for messages), which the
    corpus must fit.
    """
    directory = prepared_dir(path)
    if directory is not None:
        return open_prepared(directory, vocab, unit, source)
    if unit is not None and unit != "chars":
        raise CharrnnError(f"{path}: {source} was trained on {unit}; a text file is read as UTF-8 characters "
                           "(train on the directory that charrnn prepare --bytes made)")
    return read_text_corpus(path, val_fraction, vocab, source, chunk_size, quiet)


def remap(indices: np.ndarray | DiskIndices, from_vocab: np.ndarray, to_vocab: np.ndarray, unit: str = "chars",
          skip_unknown: bool = False, where: str = "text",
          chunk: int = CHUNK) -> tuple[np.ndarray | DiskIndices, int]:
    """Indices in ``from_vocab`` as indices in ``to_vocab``, read ``chunk`` at a time (e.g.
    a split on disk), and how many were dropped as unknown (``skip_unknown``)."""
    if np.array_equal(from_vocab, to_vocab):
        return indices, 0
    present = np.zeros(len(from_vocab), bool)
    for i in range(0, len(indices), chunk):
        present |= np.bincount(indices[i:i + chunk], minlength=len(from_vocab)) > 0
    unknown = np.setdiff1d(from_vocab[present], to_vocab)
    if len(unknown) and not skip_unknown:
        kind = "byte value(s)" if unit == "bytes" else "character(s)"
        raise CharrnnError(f"{where}: {len(unknown)} {kind} not in the model's vocabulary: {_describe(unknown, unit)}; "
                           "pass --skip-unknown to drop them")
    lookup = _Lookup(to_vocab, unit)
    table = lookup.table[from_vocab]  # from-index -> to-index (or V)
    parts, skipped = [], 0
    for i in range(0, len(indices), chunk):
        idx = table[indices[i:i + chunk]]
        keep = idx < lookup.V
        skipped += int((~keep).sum())
        parts.append(idx[keep].astype(lookup.dtype, copy=False))
    out = np.concatenate(parts) if parts else np.empty(0, lookup.dtype)
    return out, skipped


def validation_split(config: Config, vocab: np.ndarray, unit: str = "chars", source: str | None = None,
                     quiet: bool = True) -> np.ndarray | DiskIndices:
    """The validation split of the corpus a run was trained on (``config.data``, as a
    checkpoint stores it), as indices in the run's ``vocab``: what ``charrnn eval`` and
    ``charrnn visualize`` read when no text is given. ``source`` names the checkpoint in
    messages. Empty when the run held nothing out (``data.val_fraction: 0``)."""
    return open_corpus(config.data.path, config.data.val_fraction, vocab, unit, source, quiet).val


class EvalText(NamedTuple):
    """A text to evaluate a model on, as indices in its vocabulary."""

    data: np.ndarray  # (N,) indices
    source: str  # what it is, for the report: a path, or "validation split of ..."
    skipped: int  # characters dropped as unknown (skip_unknown)


def evaluation_text(ck: Any, ckpt_path: str, text_path: str | None = None, skip_unknown: bool = False) -> EvalText:
    """What ``charrnn eval`` reads for checkpoint ``ck`` (from ``ckpt_path``): the text file
    ``text_path``, the validation split of the prepared directory ``text_path``, or with no
    ``text_path`` the validation split of the corpus the run was trained on. Unknown
    characters are an error, or dropped and counted with ``skip_unknown``."""
    directory = text_path and prepared_dir(text_path)
    skipped = 0
    if text_path is None:
        data = validation_split(ck.config, ck.vocab, ck.unit, ckpt_path)
        if len(data) == 0:
            raise UsageError(f"{ckpt_path}: the run's corpus has no validation split; give --text FILE")
        source = f"validation split of {ck.config.data.path}"
    elif directory is not None:
        prepared = open_prepared(directory)
        if prepared.unit != ck.unit:
            raise CharrnnError(f"{directory}: its unit is {prepared.unit}, but {ckpt_path} was trained on {ck.unit}")
        if len(prepared.val) == 0:
            raise CharrnnError(f"{directory}: has no validation split (prepared with --val-fraction 0); "
                               "evaluate a text file instead")
        data, skipped = remap(prepared.val, prepared.vocab, ck.vocab, ck.unit, skip_unknown, where=directory)
        source = f"validation split of {directory}"
    else:
        data, skipped = read_indices(text_path, ck.vocab, ck.unit, skip_unknown)
        source = text_path
    if len(data) < 2:
        raise CharrnnError(f"{source}: fewer than 2 characters to evaluate")
    return EvalText(data, source, skipped)
