"""`charrnn prepare` and training on prepared directories, end to end: the same training
as from the text file, resume, eval, sample, bytes. (Evaluation's own tests are in
test_evaluate.py, the flat-memory test in test_corpus.py, train --data in test_cli.py.)"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, corpus_text, first_chars, one_line_error, run, small_config
from test_corpus import UNICODE, make_tree

from charrnn import checkpoint as ckpt_io
from charrnn import corpus as CO
from charrnn import data as D
from charrnn.errors import CharrnnError


def metrics(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed_s")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def corpus_files(directory):
    """meta.json and the two .bin files it names."""
    meta = json.loads((directory / "meta.json").read_text())
    return sorted(["meta.json", meta["files"]["train"], meta["files"]["val"]])


def test_prepare_a_tree_through_the_cli(tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    out = tmp_path / "prep"
    r = run("prepare", src, "--glob", "*.c", "--glob", "*.h", "--out", out, "--val-fraction", "0.2")
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and "B/s" in r.stderr  # the progress bar in MB and MB/s, on stderr
    assert "from 6 file(s)" in r.stderr
    order = ["a.h", "b.c", "empty.c", "sub-x.c", "sub/deeper/y.c", "sub/z.c"]
    text = "".join(files[f] for f in order)
    meta = json.loads((out / "meta.json").read_text())
    c = CO.open_corpus(str(out))
    assert D.decode(np.concatenate([c.train, c.val]), c.vocab) == text
    assert meta["unit"] == "chars" and meta["format_version"] == 2 and meta["dtype"] == "uint8"
    assert meta["split"] == {"val_fraction": 0.2, "train": len(text) - int(len(text) * 0.2),
                             "val": int(len(text) * 0.2)}
    # A tiny chunk size (every multibyte character straddles a boundary) writes the same files.
    again = tmp_path / "again"
    CO.prepare([str(src)], str(again), globs=["*.c", "*.h"], val_fraction=0.2, chunk_size=2)
    assert corpus_files(out) == corpus_files(again)
    for name in corpus_files(out):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_prepare_refuses_an_existing_directory_unless_overwrite(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first text " * 20, encoding="utf-8")
    b.write_text("second, longer text " * 20, encoding="utf-8")
    out = tmp_path / "prep"
    assert run("prepare", a, "--out", out, "-q").exit_code == 0
    before = {n: (out / n).read_bytes() for n in corpus_files(out)}
    one_line_error(run("prepare", b, "--out", out, "-q"), 1, str(out), "already holds a prepared corpus", "--overwrite")
    assert {n: (out / n).read_bytes() for n in before} == before
    assert run("prepare", b, "--out", out, "-q", "--overwrite").exit_code == 0
    c = CO.open_corpus(str(out))
    assert D.decode(np.concatenate([c.train, c.val]), c.vocab) == b.read_text(encoding="utf-8")
    # No temporary files left; the old corpus moved aside whole, its meta.json the same bytes.
    (folder,) = [n for n in os.listdir(out) if n.startswith("replaced-")]
    assert sorted(os.listdir(out)) == sorted([".lock", folder, *corpus_files(out)])
    assert {n: (out / folder / n).read_bytes() for n in before} == before
    c = CO.open_corpus(str(out / folder))
    assert D.decode(np.concatenate([c.train, c.val]), c.vocab) == a.read_text(encoding="utf-8")


@pytest.mark.parametrize("setup, args, code, fragments", [
    ("none", ["missing.txt"], 1, ["missing.txt: input not found"]),
    ("tree", ["src", "--glob", "*.rs"], 1, ["no file in this directory matches --glob '*.rs'"]),
    ("empty", ["e1.txt", "e2.txt"], 1, ["no text to prepare", "2 file(s)"]),
    ("latin1", ["l.txt"], 1, ["l.txt: not UTF-8 text", "0xe9 at offset 3", "--errors replace", "--bytes"]),
    ("latin1", ["l.txt", "--bytes", "--errors", "replace"], 2, ["--errors applies to decoding UTF-8"]),
    ("tiny", ["t.txt"], 1, ["--val-fraction 0.1 of 5 characters leaves 0"]),
])
def test_prepare_errors_are_one_line(tmp_path, monkeypatch, setup, args, code, fragments):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path / "src")
    (tmp_path / "e1.txt").write_bytes(b"")
    (tmp_path / "e2.txt").write_bytes(b"")
    (tmp_path / "l.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "t.txt").write_text("hello", encoding="utf-8")
    one_line_error(run("prepare", *args, "--out", tmp_path / "prep"), code, *fragments)
    assert not (tmp_path / "prep" / "meta.json").exists()


def test_errors_replace_and_bytes_round_trip(tmp_path):
    raw = "naïve ".encode() + "café".encode("latin-1") + b" \xff\xfe end\n" * 5
    path = tmp_path / "mixed.txt"
    path.write_bytes(raw)
    assert run("prepare", path, "--out", tmp_path / "rep", "--errors", "replace", "-q").exit_code == 0
    c = CO.open_corpus(str(tmp_path / "rep"))
    assert D.decode(np.concatenate([c.train, c.val]), c.vocab) == raw.decode("utf-8", "replace")
    assert 0xFFFD in c.vocab
    assert run("prepare", path, "--out", tmp_path / "bytes", "--bytes", "-q").exit_code == 0
    c = CO.open_corpus(str(tmp_path / "bytes"))
    assert c.unit == "bytes" and json.loads((tmp_path / "bytes" / "meta.json").read_text())["unit"] == "bytes"
    assert bytes(c.vocab[np.concatenate([c.train, c.val])].astype(np.uint8)) == raw


def ckpt_arrays(path):
    """Every array of a checkpoint but its wall time, its record of where the corpus came from
    (a text file or a prepared directory: ``corpus``), the config's data path and run directory."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in ("elapsed_s", "corpus")}
    cfg = json.loads(str(arrays.pop("config")))
    cfg["data"].pop("path")
    cfg["train"].pop("out_dir")
    return arrays, cfg


@pytest.mark.parametrize("text, sets", [
    pytest.param("ascii", [], id="ascii"), pytest.param("unicode", [], id="unicode"),
    pytest.param("ascii", ["train.variable_length=true", "train.seq_length=12"], id="ascii-variable-length")])
def test_text_file_and_prepared_directory_train_bitwise_identically(tmp_path, write_config, text, sets):
    corpus = tmp_path / "c.txt"
    corpus.write_text(corpus_text(3000) if text == "ascii" else UNICODE * 12, encoding="utf-8")
    assert run("prepare", corpus, "--out", tmp_path / "prep", "-q").exit_code == 0
    runs = {}
    for name, data in (("txt", corpus), ("prep", tmp_path / "prep")):
        cfg = small_config(write_config, data, steps=30, eval_every=10, sample_every=10)
        out = tmp_path / name
        r = run("train", "--config", cfg, "--out", out, "--set", "model.layers=2", "--set", "model.dropout=0.2",
                *[a for s in sets for a in ("--set", s)])
        assert r.exit_code == 0, r.output
        sample = run("sample", "--checkpoint", out / "ckpt.npz", "-n", 60, "--seed", 4)
        runs[name] = (metrics(out), ckpt_arrays(out / "ckpt.npz"), ckpt_arrays(out / "best.npz"), sample.stdout,
                      re.findall(r"----- sample at step \d+ -----\n(.*?)\n-----", r.stderr, re.S))
    (m1, (a1, c1), (b1, _), s1, e1), (m2, (a2, c2), (b2, _), s2, e2) = runs["txt"], runs["prep"]
    assert m1 == m2 and c1 == c2 and s1 == s2 and e1 == e2  # metrics, config, sample, previews
    assert len([m for m in m1 if "val_loss" in m]) == 3 and len(e1) == 3
    assert a1.keys() == a2.keys()
    for k in a1:
        assert a1[k].dtype == a2[k].dtype and np.array_equal(a1[k], a2[k]), k
        assert np.array_equal(b1[k], b2[k]), k


def test_prepared_corpus_trains_resumes_evaluates_and_samples(tmp_path, write_config):
    corpus = tmp_path / "c.txt"
    corpus.write_text(UNICODE * 2, encoding="utf-8")  # 2 streams of 208: they wrap at step 25
    prep = tmp_path / "prep"
    assert run("prepare", corpus, "--out", prep, "-q").exit_code == 0
    cfg = small_config(write_config, prep / "meta.json", steps=40, checkpoint_every=7, eval_every=10)
    whole, half = tmp_path / "whole", tmp_path / "half"
    assert run("train", "--config", cfg, "--out", whole, "-q").exit_code == 0
    assert run("train", "--config", cfg, "--out", half, "-q", "--stop-at", 20).exit_code == 0
    assert run("train", "--resume", half / "ckpt.npz", "-q").exit_code == 0
    a, b = ckpt_io.load(str(whole / "ckpt.npz")), ckpt_io.load(str(half / "ckpt.npz"))
    assert a.run.step == b.run.step == 40 and a.run.epoch >= 1 and a.unit == b.unit == "chars"
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    assert metrics(whole) == metrics(half)
    # `charrnn eval --text DIR` reads the directory's validation split: the run's own number.
    r = run("eval", "--checkpoint", whole / "ckpt.npz", "--text", prep, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["nats_per_char"] == a.run.val_loss == metrics(whole)[-1]["val_loss"]
    default = run("eval", "--checkpoint", whole / "ckpt.npz", "--json")
    assert json.loads(default.stdout)["nats_per_char"] == a.run.val_loss
    s = run("sample", "--checkpoint", whole / "ckpt.npz", "--prime", "春眠", "-n", 30, "--seed", 1)
    assert s.exit_code == 0 and s.stdout.startswith("春眠") and set(s.stdout.strip()) <= set(UNICODE)


@pytest.mark.parametrize("change", ["prepared-again", "train.bin-cut"])
def test_resume_refuses_a_prepared_corpus_that_changed(tmp_path, write_config, change):
    corpus = tmp_path / "c.txt"
    corpus.write_text(UNICODE * 2, encoding="utf-8")
    prep = tmp_path / "prep"
    assert run("prepare", corpus, "--out", prep, "-q").exit_code == 0
    cfg = small_config(write_config, prep, steps=20, checkpoint_every=5)
    assert run("train", "--config", cfg, "--out", tmp_path / "run", "-q", "--stop-at", 10).exit_code == 0
    if change == "prepared-again":  # the same text and one more line: another train.bin and meta.json
        corpus.write_text(UNICODE * 2 + UNICODE[:40], encoding="utf-8")
        assert run("prepare", corpus, "--out", prep, "-q", "--overwrite").exit_code == 0
    else:  # a train.bin that lost its last 16 indices
        train_bin = prep / json.loads((prep / "meta.json").read_text())["files"]["train"]
        data = train_bin.read_bytes()
        train_bin.write_bytes(data[:-16])
    before = (tmp_path / "run" / "ckpt.npz").read_bytes()
    r = run("train", "--resume", tmp_path / "run" / "ckpt.npz", "-q")
    one_line_error(r, 1, str(prep))
    assert (tmp_path / "run" / "ckpt.npz").read_bytes() == before


def test_bytes_model_trains_and_samples_bytes(tmp_path, write_config):
    raw = "Grüße, café. ".encode("latin-1") * 40 + "日本".encode() * 10
    path = tmp_path / "latin1.txt"
    path.write_bytes(raw)
    one_line_error(run("train", "--config", small_config(write_config, path), "-q"), 1, "not UTF-8 text")
    assert run("prepare", path, "--out", tmp_path / "prep", "--bytes", "-q").exit_code == 0
    cfg = small_config(write_config, tmp_path / "prep", steps=10)
    assert run("train", "--config", cfg, "-q").exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    assert ck.unit == "bytes" and np.array_equal(ck.vocab, np.unique(np.frombuffer(raw, np.uint8)))
    # Not a terminal: the bytes as they are.
    r = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "-n", 200, "--seed", 2, "--prime", "Gr")
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes.startswith(b"Gr") and len(r.stdout_bytes) == 2 + 200 + 1
    assert set(r.stdout_bytes[2:-1]) <= set(raw)
    two = run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "-n", 400, "--seed", 3, "--num-samples", 2,
              "--stop", ", ")
    parts = two.stdout_bytes.split(b"\n" + b"-" * 40 + b"\n")
    assert len(parts) == 2 and all(p.endswith(b", \n") or len(p) == 401 for p in parts)
    assert any(p.endswith(b", \n") for p in parts)
    # A prime whose UTF-8 bytes the model has not seen.
    one_line_error(run("sample", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--prime", "€"), 2,
                   "byte value(s)", "0xe2")
    # `eval --text` reads a file's bytes for a model of bytes.
    e = run("eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--text", path, "--json")
    assert e.exit_code == 0 and json.loads(e.stdout)["chars"] == len(raw) - 1


@pytest.mark.slow
def test_bytes_sample_to_a_terminal_is_decoded(tmp_path, write_config):
    import pty

    text = "日本語のテキスト、漢字とかな。\n" * 30
    path = tmp_path / "ja.txt"
    path.write_text(text, encoding="utf-8")
    assert run("prepare", path, "--out", tmp_path / "prep", "--bytes", "-q").exit_code == 0
    assert run("train", "--config", small_config(write_config, tmp_path / "prep", steps=5), "-q").exit_code == 0
    args = ["sample", "--checkpoint", str(tmp_path / "run" / "ckpt.npz"), "-n", "300", "--seed", "0"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    piped = subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True, env=env, check=True).stdout
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "charrnn", *args], stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        shown += chunk
    p.wait()
    os.close(master)
    # An untrained model of bytes makes invalid UTF-8; the terminal gets it decoded with U+FFFD.
    assert piped.decode("utf-8", "replace").encode("utf-8") == shown.replace(b"\r\n", b"\n")
    assert piped != shown.replace(b"\r\n", b"\n")


def test_checkpoints_without_a_unit_load_as_characters(tmp_path, write_config):
    corpus = tmp_path / "c.txt"
    corpus.write_text(UNICODE * 10, encoding="utf-8")
    assert run("train", "--config", small_config(write_config, corpus, steps=5), "-q").exit_code == 0
    path = tmp_path / "run" / "ckpt.npz"
    with np.load(path, allow_pickle=False) as z:  # as format version 1 wrote it: no unit, corpus, ...
        arrays = {k: z[k] for k in z.files if k not in ("unit", "corpus", *ckpt_io.LATER_SCALARS)}
    arrays["format_version"] = np.int64(1)
    np.savez(tmp_path / "old.npz", **arrays)
    assert ckpt_io.load(str(tmp_path / "old.npz")).unit == "chars"
    for unit in ("bytes", "words"):  # bytes, but code points beyond 255; no such unit
        arrays["unit"] = np.array(unit)
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(CharrnnError, match=f"damaged checkpoint: 'unit' '{unit}'"):
            ckpt_io.load(str(tmp_path / "bad.npz"))


def test_resuming_a_bytes_run_on_a_text_file_is_refused(tmp_path, write_config):
    path = tmp_path / "a.txt"
    path.write_text("abc def " * 50, encoding="utf-8")
    assert run("prepare", path, "--out", tmp_path / "prep", "--bytes", "-q").exit_code == 0
    cfg = small_config(write_config, tmp_path / "prep", steps=5)
    assert run("train", "--config", cfg, "-q").exit_code == 0
    ck = ckpt_io.load(str(tmp_path / "run" / "ckpt.npz"))
    with pytest.raises(CharrnnError, match="was trained on bytes; a text file is read as UTF-8 characters"):
        CO.open_corpus(str(path), 0.1, ck.vocab, ck.unit, "the checkpoint")


def test_a_full_disk_while_preparing_leaves_no_corpus_and_no_temporary_files(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE) stops the writing of train.bin."""
    import resource

    text = first_chars(tmp_path, 300_000, "t.txt")
    out = tmp_path / "prep"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = subprocess.run([sys.executable, "-m", "charrnn", "prepare", str(text), "--out", str(out), "-q"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), preexec_fn=limit)
    assert not out.exists()  # as it was: no empty directory that would block the next prepare
    assert r.returncode == 1, r.stderr
    assert r.stderr == f"Error: {out}: cannot write the prepared corpus: File too large; the directory is as it was\n"


# --- Real faults: a second prepare, kill -9, an empty --out, a full disk ------------------------
# docs/robustness.md's fault matrix has a row for each.

ENV = dict(os.environ, PYTHONPATH=ROOT)


def start_prepare(*args):
    return subprocess.Popen([sys.executable, "-m", "charrnn", "prepare", *map(str, args)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def prepare_proc(*args, **kw):
    return subprocess.run([sys.executable, "-m", "charrnn", "prepare", *map(str, args)], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kw)


def holds_lock(directory, proc):
    try:
        return (directory / ".lock").read_text() == f"{proc.pid}\n"
    except OSError:
        return False


def wait_until(condition, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def whole_corpus(directory):
    """The text of the prepared corpus in ``directory``, checked whole: the .bin files that
    meta.json names have its sizes, and decode to text whose SHA-256 is its sources'."""
    import hashlib

    c = CO.open_prepared(str(directory))
    meta, _ = CO.read_meta(str(directory))
    text = D.decode(np.concatenate([np.asarray(c.train), np.asarray(c.val)]), c.vocab)
    (source,) = meta["sources"]
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == source["sha256"]
    assert (len(c.train), len(c.val)) == (meta["split"]["train"], meta["split"]["val"])
    return text


def leftovers(directory):
    """What is in ``directory`` beyond its lock, meta.json, the files it names and whole
    replaced-* folders (each itself a whole corpus)."""
    expected = {".lock", *corpus_files(directory)}
    extra = []
    for name in os.listdir(directory):
        if name.startswith("replaced-") and (directory / name).is_dir():
            whole_corpus(directory / name)
            assert sorted(os.listdir(directory / name)) == corpus_files(directory / name)
        elif name not in expected:
            extra.append(name)
    return extra


@pytest.mark.slow
def test_a_second_prepare_into_the_same_directory_is_refused_at_once(tmp_path, write_config):
    """The first prepare reads its input from a named pipe: holding the lock, it waits there
    until the test feeds it, so each second prepare meets it for certain."""
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    text = corpus_text(20_000)
    other = tmp_path / "other.txt"
    other.write_text("another text entirely, " * 200, encoding="utf-8")
    out = tmp_path / "prep"
    first = start_prepare(pipe, "--out", out, "-q")
    wait_until(lambda: holds_lock(out, first), first)
    refusal = (f"Error: {out}: another charrnn prepare (PID {first.pid}) is using this prepared directory; "
               "wait for it to end or stop it, or give another --out\n")
    for extra in ([], ["--overwrite"]):
        t0 = time.monotonic()
        second = prepare_proc(other, "--out", out, "-q", *extra)
        assert (second.returncode, second.stderr) == (1, refusal)
        assert time.monotonic() - t0 < 30 and first.poll() is None
    fd = os.open(pipe, os.O_WRONLY)  # the first has it open for reading: this does not block
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert whole_corpus(out) == text and leftovers(out) == []
    cfg = small_config(write_config, out, steps=5)
    r = run("train", "--config", cfg, "--out", tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output


@pytest.mark.slow
def test_kill_9_during_prepare_overwrite_leaves_the_old_corpus_or_the_new_one_whole(tmp_path):
    """``prepare --overwrite`` over a prepared directory, killed (SIGKILL) at a seeded random
    moment after it takes the lock, until 10 kills have landed before it ended. After each,
    the directory is one of the two corpora, whole; the next prepare into it (refused, since
    it holds a corpus) removes what the killed one left."""
    import random

    full = corpus_text(3_000_000)
    texts = [tmp_path / "a.txt", tmp_path / "b.txt"]
    texts[0].write_text(full[:1_000_000], encoding="utf-8")
    texts[1].write_text(full, encoding="utf-8")
    content = [t.read_text(encoding="utf-8") for t in texts]
    out = tmp_path / "prep"
    assert prepare_proc(texts[0], "--out", out, "-q").returncode == 0
    # How long the part after the lock takes, unkilled (b over a): the window to kill in.
    p = start_prepare(texts[1], "--out", out, "-q", "--overwrite")
    wait_until(lambda: holds_lock(out, p), p)
    t0 = time.monotonic()
    p.communicate(timeout=300)  # communicate, not wait: it also closes the pipes
    assert p.returncode == 0
    window = time.monotonic() - t0
    current = 1
    rng = random.Random(20261201)
    landed = trials = dirty = switched = 0
    while landed < 10:
        trials += 1
        assert trials < 60, f"only {landed} of {trials} kills landed"
        new = 1 - current
        p = start_prepare(texts[new], "--out", out, "-q", "--overwrite")
        wait_until(lambda p=p: holds_lock(out, p), p)
        time.sleep(rng.uniform(0, window))
        if p.poll() is None:
            landed += 1
        p.kill()
        p.communicate()
        got = whole_corpus(out)
        assert got in (content[current], content[new])
        switched += current != content.index(got)
        current = content.index(got)
        dirty += bool(leftovers(out))
        again = prepare_proc(texts[current], "--out", out, "-q")  # refused: but it cleans up first
        assert again.returncode == 1 and "already holds a prepared corpus" in again.stderr, again.stderr
        assert leftovers(out) == []
    assert whole_corpus(out) == content[current]
    print(f"{landed} of {trials} kills landed; {switched} found the new corpus, {dirty} left files that the next "
          "prepare removed")


def test_an_empty_existing_directory_is_accepted_and_a_non_empty_one_refused(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("some text to prepare " * 30, encoding="utf-8")
    out = tmp_path / "empty"
    out.mkdir()
    r = run("prepare", text, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert whole_corpus(out) == text.read_text(encoding="utf-8")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("mine\n")
    one_line_error(run("prepare", text, "--out", notes, "-q"), 1, str(notes), "is not a prepared corpus and is not "
                   "empty", "'todo.md'", "give an empty or new directory")
    assert os.listdir(notes) == ["todo.md"]  # refused before it locks: nothing added


def test_a_full_disk_during_prepare_overwrite_leaves_the_old_corpus_as_it_was(tmp_path):
    """A real write failure (RLIMIT_FSIZE, SIGXFSZ ignored) while the new train .bin is written
    over a prepared directory: one line naming it, and the old corpus byte for byte."""
    import resource
    import signal

    old, big = tmp_path / "old.txt", tmp_path / "big.txt"
    old.write_text("the old corpus, small " * 50, encoding="utf-8")
    big.write_text(corpus_text(300_000), encoding="utf-8")
    out = tmp_path / "prep"
    assert run("prepare", old, "--out", out, "-q").exit_code == 0
    before = {n: (out / n).read_bytes() for n in os.listdir(out) if n != ".lock"}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = prepare_proc(big, "--out", out, "-q", "--overwrite", preexec_fn=limit)
    assert {n: (out / n).read_bytes() for n in os.listdir(out) if n != ".lock"} == before
    assert whole_corpus(out) == old.read_text(encoding="utf-8")
    assert r.returncode == 1
    assert r.stderr == f"Error: {out}: cannot write the prepared corpus: File too large; the directory is as it was\n"
    assert run("prepare", big, "--out", out, "-q", "--overwrite").exit_code == 0  # nothing blocks the next one
    assert whole_corpus(out) == big.read_text(encoding="utf-8") and leftovers(out) == []


def test_a_reader_that_read_meta_json_just_before_a_commit_opens_the_new_corpus(tmp_path, monkeypatch):
    """A real prepare --overwrite commits between a reader's reading of meta.json and its
    opening of the files meta.json named (which the commit removed): it reads meta.json again."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("the first text " * 40, encoding="utf-8")
    b.write_text("and then a second one " * 40, encoding="utf-8")
    out = tmp_path / "prep"
    CO.prepare([str(a)], str(out))
    real, first = CO.read_meta, []

    def read_meta_then_replace(directory):
        got = real(directory)
        if not first:  # the reader's first reading: the commit lands just after it
            first.append(got)
            CO.prepare([str(b)], str(out), overwrite=True)
        return got

    monkeypatch.setattr(CO, "read_meta", read_meta_then_replace)
    c = CO.open_prepared(str(out))
    assert first[0][0]["files"] != real(str(out))[0]["files"]  # it had read the old corpus's names
    assert D.decode(np.concatenate([np.asarray(c.train), np.asarray(c.val)]), c.vocab) == b.read_text(encoding="utf-8")


# --- A damaged byte in a prepared split ---------------------------------------------------------

def test_an_index_outside_the_vocabulary_is_one_line_naming_the_file_and_offset(tmp_path, write_config):
    """A damaged byte in train.bin or val.bin (a size-keeping edit, which opening cannot see
    without reading the whole file) stops train, resume and eval with one line, not an
    IndexError from the model's lookup."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(UNICODE * 2, encoding="utf-8")
    prep = tmp_path / "prep"
    assert run("prepare", corpus, "--out", prep, "-q").exit_code == 0
    cfg = small_config(write_config, prep, steps=20, checkpoint_every=5, eval_every=5)
    assert run("train", "--config", cfg, "--out", tmp_path / "run", "-q", "--stop-at", 10).exit_code == 0

    files = json.loads((prep / "meta.json").read_text())["files"]  # train.<tag>.bin, val.<tag>.bin

    def damage(split, offset):
        name = files[split]
        data = bytearray((prep / name).read_bytes())
        data[offset] = 0xFF  # the vocabulary is far smaller than 255: uint8 indices
        (prep / name).write_bytes(bytes(data))

    damage("train", 85)  # stream 0's step 11 reads positions 80 to 88 (T = 8): after the resume too
    for args in (("--config", cfg, "--out", tmp_path / "fresh"), ("--resume", tmp_path / "run" / "ckpt.npz")):
        one_line_error(run("train", *args, "-q"), 1, str(prep / files["train"]), "byte offset 85",
                       "outside the vocabulary")
    damage("val", 5)
    one_line_error(run("eval", "--checkpoint", tmp_path / "run" / "ckpt.npz"), 1, str(prep / files["val"]),
                   "byte offset 5")
    one_line_error(run("eval", "--checkpoint", tmp_path / "run" / "ckpt.npz", "--text", prep), 1,
                   str(prep / files["val"]), "byte offset 5")


def test_disk_indices_check_every_read_against_the_vocabulary(tmp_path):
    path = tmp_path / "x.bin"
    data = np.arange(100, dtype=np.uint8) % 7
    data[61] = 9
    path.write_bytes(data.tobytes())
    disk = CO.DiskIndices(str(path), np.uint8, 100, vocab_size=7)
    assert np.array_equal(disk[np.arange(10, 20)], data[10:20])  # reads that miss it are fine
    for read in (lambda: disk[np.arange(55, 70)], lambda: disk[np.arange(50, 70).reshape(4, 5)],
                 lambda: disk[np.arange(60, 63)[:, None] + np.array([0, 10])], lambda: np.asarray(disk),
                 lambda: np.asarray(disk[40:80])):
        with pytest.raises(CharrnnError, match="index 9 at byte offset 61 is outside the vocabulary of 7"):
            read()


def test_prepare_leaves_out_the_mark_of_each_file_and_says_so(tmp_path):
    """A folder whose files each start with a byte-order mark (one in CR LF): the prepared
    corpus is the texts without the marks, its sources' sizes and hashes are the files' bytes,
    and prepare says how many lines end in CR LF and that the marks were left out."""
    import hashlib

    tree, plain = tmp_path / "tree", tmp_path / "plain"
    tree.mkdir()
    plain.mkdir()
    texts = {"a.txt": UNICODE, "b.txt": corpus_text(2000).replace("\n", "\r\n"), "c.txt": "no mark here\n" * 20}
    for name, text in texts.items():
        (tree / name).write_bytes((b"" if name == "c.txt" else b"\xef\xbb\xbf") + text.encode("utf-8"))
        (plain / name).write_bytes(text.encode("utf-8"))
    r = run("prepare", tree, "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    crlf = texts["b.txt"].count("\r\n")
    assert f"{tmp_path / 'p'}: {crlf:,} lines end in CR LF, so '\\r' is in the vocabulary (convert the text to LF " \
           "line endings first to leave it out); a UTF-8 byte-order mark at the start of 2 of its 3 files left out" \
           in r.stderr.splitlines(), r.stderr
    assert run("prepare", plain, "--out", tmp_path / "q").exit_code == 0
    a, b = CO.open_prepared(str(tmp_path / "p")), CO.open_prepared(str(tmp_path / "q"))
    assert 0xFEFF not in a.vocab and np.array_equal(a.vocab, b.vocab)
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train)) and np.array_equal(np.asarray(a.val),
                                                                                         np.asarray(b.val))
    sources = json.loads((tmp_path / "p" / "meta.json").read_text())["sources"]
    assert [(s["bytes"], s["sha256"]) for s in sources] == [
        (os.path.getsize(tree / n), hashlib.sha256((tree / n).read_bytes()).hexdigest()) for n in sorted(texts)]
    assert [s["chars"] for s in sources] == [len(texts[n]) for n in sorted(texts)]


def test_prepare_from_a_pipe_leaves_out_its_mark(tmp_path):
    """A real pipe (/dev/stdin of a charrnn prepare process) carrying a text with a mark."""
    text = corpus_text(3000)
    proc = subprocess.run([sys.executable, "-m", "charrnn", "prepare", "/dev/stdin", "--out", str(tmp_path / "p")],
                          input=b"\xef\xbb\xbf" + text.encode("utf-8"), capture_output=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert b"a UTF-8 byte-order mark at its start left out" in proc.stderr
    p = CO.open_prepared(str(tmp_path / "p"))
    whole = p.vocab[np.concatenate([np.asarray(p.train), np.asarray(p.val)])]
    assert whole.tolist() == D.code_points(text).tolist()
