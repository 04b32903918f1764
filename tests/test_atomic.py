"""atomic_write's errors name the file the caller asked for, never its hidden temporary."""

import errno
import os

import pytest

from charrnn import atomic
from charrnn.atomic import atomic_write


def test_a_missing_folder_is_an_error_about_the_target(tmp_path):
    target = tmp_path / "missing" / "x.bin"
    with pytest.raises(FileNotFoundError) as e:
        atomic_write(str(target), lambda f: f.write(b"x"))
    assert e.value.filename == str(target) and e.value.errno == errno.ENOENT


def test_a_failed_write_is_an_error_about_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"

    def full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write to a full disk raises it

    with pytest.raises(OSError) as e:
        atomic_write(str(target), full)
    assert (e.value.filename, e.value.errno) == (str(target), errno.ENOSPC)
    assert os.listdir(tmp_path) == []


def test_an_error_about_another_file_is_passed_on_as_it_is(tmp_path):
    other = str(tmp_path / "source.txt")

    def read_other(f):
        with open(other, "rb") as src:  # not there
            f.write(src.read())

    with pytest.raises(FileNotFoundError) as e:
        atomic_write(str(tmp_path / "x.bin"), read_other)
    assert e.value.filename == other


def test_a_ctrl_c_as_the_temporary_file_is_opened_leaves_no_temporary(tmp_path, monkeypatch):
    """A Ctrl-C whose handler runs just as the open returns (the file made, its descriptor not yet
    in the caller's hands): tempfile.mkstemp's window, where a second Ctrl-C in a real run once
    left ``.status.json.XXXXXXXX.tmp`` behind (tests/test_faults.py's double Ctrl-C)."""
    real_open = os.open

    def open_then_interrupted(name, flags, mode=0o777):
        real_open(name, flags, mode)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "open", open_then_interrupted)
    target = tmp_path / "status.json"
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(str(target), lambda f: f.write(b"{}"))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_taken_temporary_name_is_passed_over(tmp_path, monkeypatch):
    """O_EXCL refuses a name already there (another writer's, or a file planted at it): another
    random name is drawn, and the planted file is left as it was."""
    planted = tmp_path / ".x.bin.aaaaaaaa.tmp"
    planted.write_bytes(b"not ours")
    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(names))
    atomic.atomic_write(str(tmp_path / "x.bin"), lambda f: f.write(b"new"))
    assert (tmp_path / "x.bin").read_bytes() == b"new"
    assert planted.read_bytes() == b"not ours"
    assert sorted(os.listdir(tmp_path)) == [".x.bin.aaaaaaaa.tmp", "x.bin"]
