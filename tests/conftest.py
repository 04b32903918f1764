import os

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
CORPUS = os.path.join(ROOT, "data", "shakespeare_tiny.txt")


def corpus_text(chars=-1):
    """The bundled text's first ``chars`` characters (all of it by default)."""
    with open(CORPUS, encoding="utf-8") as f:
        return f.read(chars)


def first_chars(tmp_path, chars, name="c.txt"):
    """The bundled text's first ``chars`` characters, written to tmp_path/name."""
    path = tmp_path / name
    path.write_text(corpus_text(chars), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path):
    """A corpus of the bundled text's first 4,000 characters (tmp_path/c.txt)."""
    return first_chars(tmp_path, 4000)


@pytest.fixture
def corpus_2000(tmp_path):
    """A corpus of its first 2,000 characters (tmp_path/c.txt): the MPI tests' 4 streams of 450
    training characters."""
    return first_chars(tmp_path, 2000)


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML config into tmp_path and return its path."""

    def write(text, name="cfg.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def small_config(write_config, corpus, **train):
    settings = dict(seq_length=8, batch_size=2, steps=20, log_every=1, sample_every=0, checkpoint_every=5)
    settings.update(train)
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    return write_config(
        f"data:\n  path: {corpus}\nmodel:\n  hidden_size: 16\ntrain:\n{lines}\n  out_dir: run\n"
    )


class Payload:
    """Unpickling this creates the marker file: proof that a pickle ran (the checkpoint tests
    and the fuzzing put it into checkpoints, which must never unpickle it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder that refuses writes even to root (who may write into a chmod 0555 folder): a
    tmpfs mounted read-only (EROFS). Skipped where mounting is not allowed (not root)."""
    import subprocess

    path = tmp_path / "read-only"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    yield path
    subprocess.run(["umount", str(path)], check=True)
