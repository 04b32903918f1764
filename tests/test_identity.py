"""Corpus identity: the reason a corpus differs from the one a checkpoint recorded."""

import hashlib

import pytest

from charrnn import identity
from charrnn.errors import CharrnnError

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50).encode("utf-8")


def identity_of(path, data):
    """The record corpus.py keeps of a text (the fields describe_change reads)."""
    return {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda t: t + b"more text\n", f"its size went from {len(TEXT):,} to {len(TEXT) + 10:,} bytes"),
        (lambda t: t[: len(t) // 2], f"its size went from {len(TEXT):,} to {len(TEXT) // 2:,} bytes"),
        (lambda t: b"abc " * (len(t) // 4) + b"x" * (len(t) % 4),
         f"same size ({len(TEXT):,} bytes), different content"),
        (lambda t: t[:-2] + b"?\n", "same size"),  # one character, at the very end
    ],
    ids=["appended", "truncated", "replaced", "one-char"],
)
def test_a_changed_corpus_is_described_in_one_line(tmp_path, change, reason):
    path = str(tmp_path / "c.txt")
    old, new = identity_of(path, TEXT), identity_of(path, change(TEXT))
    line = identity.describe_change(old, new, path)
    assert line.startswith(f"{path}: the corpus changed since the checkpoint was written: ")
    assert reason in line and "\n" not in line
    with pytest.raises(CharrnnError) as e:
        identity.check_unchanged(old, new, path)
    assert str(e.value).startswith(line) and "--init-from" in str(e.value)


def test_the_same_corpus_is_no_change_even_at_another_path(tmp_path):
    old = identity_of("/old/place/c.txt", TEXT)
    new = identity_of(str(tmp_path / "c.txt"), bytes(TEXT))
    assert identity.describe_change(old, new, str(tmp_path / "c.txt")) is None
    identity.check_unchanged(old, new, "c.txt")  # does not raise


@pytest.mark.parametrize("record", [None, {}, {"bytes": "many", "sha256": "x"}, ["bytes"]])
def test_a_damaged_record_is_a_one_line_error(record):
    with pytest.raises(CharrnnError, match="record of its corpus is damaged"):
        identity.describe_change(record, identity_of("c.txt", TEXT), "c.txt")
