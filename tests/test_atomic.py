"""atomic_write's errors name the file the caller asked for, never its hidden temporary."""

import errno
import os

import pytest

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
