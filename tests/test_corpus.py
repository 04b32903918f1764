"""charrnn.corpus: chunked reading and decoding, the counted vocabulary, the table lookup,
finding files, prepared directories and the identity record."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, corpus_text, run
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import corpus as CO
from charrnn import data as D
from charrnn.errors import CharrnnError, UsageError

# 1-, 2-, 3- and 4-byte characters, so that every small chunk size cuts some of them.
UNICODE = "Ab é ü ß — “quoted” 春眠不觉晓 🙂🌍 x\n" * 7


def symbols_of(path, chunk_size, errors="strict"):
    """The file's code points as ``charrnn prepare`` reads them: the first pass (which checks
    the UTF-8) for the vocabulary, the second for the indices, both ``chunk_size`` at a time."""
    s = CO.scan([str(path)], errors=errors, chunk_size=chunk_size)
    parts = list(CO.index_chunks([str(path)], s.vocab, errors=errors, chunk_size=chunk_size))
    return s.vocab[np.concatenate(parts)].astype(np.int64) if parts else np.empty(0, np.int64)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, CO.CHUNK])
def test_characters_straddling_chunk_boundaries_decode_whole(tmp_path, chunk_size):
    path = tmp_path / "u.txt"
    path.write_text(UNICODE, encoding="utf-8")
    got = symbols_of(path, chunk_size)
    assert list(got) == [ord(c) for c in UNICODE]


# Bytes that make UTF-8 and its failures: ASCII, lead bytes of every length, continuation
# bytes, and bytes that never occur in UTF-8.
UTF8ISH = st.lists(st.sampled_from([b"a", b"\n", "é".encode(), "春".encode(), "🙂".encode(), b"\xc3", b"\xe6\x98",
                                    b"\xf0\x9f", b"\x80", b"\xbf", b"\xff", b"\xc0\xaf"]), max_size=40).map(b"".join)


@pytest.mark.slow  # 300 examples
@settings(max_examples=300, deadline=None)
@given(raw=UTF8ISH, chunk_size=st.integers(1, 9))
def test_pieces_decode_to_what_the_whole_file_decodes_to(tmp_path_factory, raw, chunk_size):
    """Cut at character boundaries, the pieces decode (strictly, or with replacement) to
    exactly what the whole file does, and an invalid byte is reported at the same offset."""
    path = tmp_path_factory.mktemp("p") / "x.txt"
    path.write_bytes(raw)
    pieces = list(CO._pieces(str(path), "chars", chunk_size))
    assert b"".join(p for _, p in pieces) == raw
    assert [off for off, _ in pieces] == list(np.cumsum([0] + [len(p) for _, p in pieces])[:-1])
    assert "".join(p.decode("utf-8", "replace") for _, p in pieces) == raw.decode("utf-8", "replace")
    try:
        raw.decode("utf-8")
        expected = None
    except UnicodeDecodeError as e:
        expected = f"at offset {e.start}:"
    if expected is None:
        assert "".join(map(chr, symbols_of(path, chunk_size))) == raw.decode("utf-8")
    else:
        with pytest.raises(CharrnnError, match=expected):
            symbols_of(path, chunk_size)


@pytest.mark.parametrize("wide", [False, True], ids=["bytes-path", "decoding-path"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 5, 13, CO.CHUNK])
def test_both_encoding_paths_give_todays_indices(tmp_path, chunk_size, wide):
    """Up to 255 characters, valid UTF-8 is encoded as bytes (ASCII translated, only the
    other characters decoded); with more, by decoding. Both give ``encode``'s indices."""
    text = UNICODE + ("".join(map(chr, range(0x3400, 0x3400 + 300))) if wide else "")
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    s = CO.scan([str(path)], chunk_size=chunk_size)
    assert np.array_equal(s.vocab, D.build_vocab(text))
    assert (CO._Lookup(s.vocab, "chars").translation is None) == wide  # which path is taken
    got = np.concatenate(list(CO.index_chunks([str(path)], s.vocab, chunk_size=chunk_size)))
    assert got.dtype == np.dtype(D.index_dtype(len(s.vocab))) and np.array_equal(got, D.encode(text, s.vocab))


def test_text_file_gives_todays_vocabulary_and_indices(tmp_path):
    """np.unique and searchsorted (the code before chunked reading) and the chunked two
    passes agree, so existing runs and checkpoints stay valid."""
    for text in (corpus_text(20000), UNICODE):
        path = tmp_path / "c.txt"
        path.write_text(text, encoding="utf-8")
        c = CO.read_text_corpus(str(path), 0.1, chunk_size=5)
        old_vocab = D.build_vocab(text)
        old = D.encode(text, old_vocab)
        assert c.vocab.dtype == np.int32 and np.array_equal(c.vocab, old_vocab)
        both = np.concatenate([c.train, c.val])
        assert both.dtype == old.dtype and np.array_equal(both, old)
        assert len(c.val) == int(len(text) * 0.1)


def test_a_vocabulary_beyond_65536_characters_takes_uint32(tmp_path):
    # 70,000 distinct code points (no surrogates: UTF-8 cannot hold them).
    text = "".join(chr(c) for c in range(0x20, 0x20 + 72000) if not 0xD800 <= c < 0xE000)
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    c = CO.read_text_corpus(str(path), 0.0)
    assert len(c.vocab) > 65536 and c.train.dtype == np.uint32
    assert D.decode(c.train, c.vocab) == text


def test_invalid_utf8_names_the_file_and_the_absolute_byte_offset(tmp_path):
    good = "héllo wörld 春 ".encode() * 20
    cases = {
        "bad start byte": good + b"\xff" + good,
        "bad continuation": good + b"\xe6\x98" + b"x" + good,
        "cut off at the end": good + b"\xe6\x98",
    }
    for name, raw in cases.items():
        path = tmp_path / "bad.txt"
        path.write_bytes(raw)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            expected = e.start
        for chunk_size in (1, 3, 16, len(good) + 1, CO.CHUNK):
            with pytest.raises(CharrnnError) as info:
                symbols_of(path, chunk_size)
            msg = str(info.value)
            assert msg.startswith(f"{path}: not UTF-8 text") and "\n" not in msg, msg
            assert f"0x{raw[expected]:02x} at offset {expected}:" in msg, (name, chunk_size, msg)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, CO.CHUNK])
def test_errors_replace_gives_what_decoding_the_whole_file_gives(tmp_path, chunk_size):
    raw = "ok é ".encode() + b"\xff\xfe" + "春".encode()[:2] + b"abc" + "🙂".encode()[:3] + b" end" + b"\xe6"
    path = tmp_path / "r.txt"
    path.write_bytes(raw)
    got = symbols_of(path, chunk_size, errors="replace")
    assert "".join(map(chr, got)) == raw.decode("utf-8", "replace")


def test_bytes_unit_reads_bytes_without_decoding(tmp_path):
    raw = bytes(range(256)) + "café".encode("latin-1") + b"\x00\xff"
    path = tmp_path / "b.bin"
    path.write_bytes(raw)
    s = CO.scan([str(path)], unit="bytes", chunk_size=3)
    assert np.array_equal(s.vocab, np.arange(256)) and s.chars == len(raw)
    assert s.counts[0xFF] == 2 and s.counts[ord("c")] == 2
    idx = np.concatenate(list(CO.index_chunks([str(path)], s.vocab, unit="bytes", chunk_size=5)))
    assert bytes(s.vocab[idx].astype(np.uint8)) == raw


def test_scan_counts_and_hashes_every_source(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abcab", encoding="utf-8")
    b.write_text("é春", encoding="utf-8")
    s = CO.scan([str(a), str(b)], chunk_size=2)
    assert list(s.vocab) == sorted(map(ord, "abcé春")) and s.chars == 7
    assert s.counts[ord("a")] == 2 and s.counts[ord("春")] == 1
    assert [(src.bytes, src.chars) for src in s.sources] == [(5, 5), (5, 2)]
    assert s.sources[1].sha256 == hashlib.sha256(b.read_bytes()).hexdigest()


def test_second_pass_finds_a_file_that_changed(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abcabc", encoding="utf-8")
    vocab = np.array([ord("a"), ord("b")], np.int32)  # as if 'c' had not been there in the first pass
    with pytest.raises(CharrnnError, match="changed while it was being read.*'c'"):
        list(CO.index_chunks([str(path)], vocab))
    with pytest.raises(CharrnnError, match="changed while it was being read.*grew"):
        CO._encode_into(np.empty(3, np.uint8), [str(path)], np.array([97, 98, 99], np.int32), "chars", "strict", 2)
    skipped = np.concatenate(list(CO.index_chunks([str(path)], vocab, skip_unknown=True)))
    assert list(skipped) == [0, 1, 0, 1]


def test_read_indices_skips_or_refuses_unknown_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abzé", encoding="utf-8")
    vocab = np.array([ord("a"), ord("b")], np.int32)
    with pytest.raises(CharrnnError,
                       match=r"2 character\(s\) not in the model's vocabulary: 'z' .*'é'.*--skip-unknown"):
        CO.read_indices(str(path), vocab)
    idx, skipped = CO.read_indices(str(path), vocab, skip_unknown=True)
    assert list(idx) == [0, 1] and skipped == 2


def make_tree(root):
    """A small source tree: nested folders, an empty file, hidden files, mixed extensions."""
    files = {
        "b.c": "int b;\n",
        "a.h": "#define A 1\n",
        "sub/z.c": "/* é */\n",
        "sub/deeper/y.c": "y();\n",
        "sub-x.c": "x\n",  # '-' sorts before '/', so sub-x.c comes before sub/...
        "empty.c": "",
        "notes.txt": "not code\n",
        ".hidden.c": "hidden\n",
        ".git/config.c": "git\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return files


def test_find_files_sorted_recursive_filtered(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    def names(paths):
        return [os.path.relpath(p, src).replace(os.sep, "/") for p in paths]

    assert names(CO.find_files([str(src)])) == [
        "a.h", "b.c", "empty.c", "notes.txt", "sub-x.c", "sub/deeper/y.c", "sub/z.c"]
    assert names(CO.find_files([str(src)], globs=["*.c"])) == ["b.c", "empty.c", "sub-x.c", "sub/deeper/y.c", "sub/z.c"]
    # fnmatch's * matches a / too: sub/*.c takes all of sub's tree.
    assert names(CO.find_files([str(src)], globs=["*.h", "sub/*.c"])) == ["a.h", "sub/deeper/y.c", "sub/z.c"]
    assert names(CO.find_files([str(src)], globs=["sub/deeper/*"])) == ["sub/deeper/y.c"]
    # Files named on the command line come as given, in the order given; the output is skipped.
    out = src / "sub"
    assert names(CO.find_files([str(src / "notes.txt"), str(src)], globs=["*.c"], exclude=str(out))) == [
        "notes.txt", "b.c", "empty.c", "sub-x.c"]


def test_find_files_errors(tmp_path):
    make_tree(tmp_path / "src")
    with pytest.raises(CharrnnError, match="missing: input not found"):
        CO.find_files([str(tmp_path / "missing")])
    with pytest.raises(CharrnnError, match=r"src: no file in this directory matches --glob '\*.rs'"):
        CO.find_files([str(tmp_path / "src")], globs=["*.rs"])
    (tmp_path / "only-hidden" / ".git").mkdir(parents=True)
    (tmp_path / "only-hidden" / ".git" / "HEAD").write_text("ref\n")
    with pytest.raises(CharrnnError, match="only-hidden: no files in this directory"):
        CO.find_files([str(tmp_path / "only-hidden")])
    with pytest.raises(UsageError):
        CO.find_files([])


def test_prepared_directory_round_trips_and_is_read_from_disk(tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    out = tmp_path / "prep"
    meta = CO.prepare([str(src)], str(out), globs=["*.c"], val_fraction=0.25, chunk_size=3)
    order = ["b.c", "empty.c", "sub-x.c", "sub/deeper/y.c", "sub/z.c"]
    text = "".join(files[f] for f in order)
    c = CO.open_corpus(str(out))
    assert isinstance(c.train, CO.DiskIndices) and isinstance(c.val, CO.DiskIndices)
    assert D.decode(np.concatenate([c.train, c.val]), c.vocab) == text
    assert np.array_equal(c.vocab, D.build_vocab(text))
    assert len(c.val) == int(len(text) * 0.25) and meta["split"]["val"] == len(c.val)
    assert meta["counts"] == [text.count(chr(v)) for v in meta["vocab"]]
    assert [s["path"] for s in meta["sources"]] == [str(src / f) for f in order]
    assert meta["sources"][1]["bytes"] == 0 and meta["chars"] == len(text)
    # The same directory through meta.json, and the same indices as the text read directly.
    joined = tmp_path / "joined.txt"
    joined.write_text(text, encoding="utf-8")
    direct = CO.open_corpus(str(joined), 0.25)
    via_meta = CO.open_corpus(str(out / "meta.json"))
    for a, b in ((direct.train, via_meta.train), (direct.val, via_meta.val)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_identity_records(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(UNICODE, encoding="utf-8")
    ident = CO.open_corpus(str(path), 0.1).identity
    assert ident == dict(kind="text", path=str(path), unit="chars", chars=len(UNICODE),
                         bytes=len(UNICODE.encode()), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    out = tmp_path / "prep"
    CO.prepare([str(path)], str(out))
    p = CO.open_corpus(str(out)).identity
    assert p["kind"] == "prepared" and p["path"] == str(out) and p["chars"] == len(UNICODE)
    assert p["sha256"] == hashlib.sha256((out / "meta.json").read_bytes()).hexdigest()
    files = json.loads((out / "meta.json").read_text())["files"]
    assert p["bytes"] == os.path.getsize(out / files["train"]) + os.path.getsize(out / files["val"])
    path.write_text(UNICODE + "more", encoding="utf-8")  # another text, prepared again: another identity
    CO.prepare([str(path)], str(out), overwrite=True)
    assert CO.open_corpus(str(out)).identity["sha256"] != p["sha256"]


def test_damaged_prepared_directories_are_one_line_errors(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello world\n" * 10, encoding="utf-8")
    out = tmp_path / "prep"
    CO.prepare([str(path)], str(out))
    train_bin = json.loads((out / "meta.json").read_text())["files"]["train"]
    with open(out / train_bin, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(CharrnnError, match=f"{train_bin}: is 109 bytes, but meta.json says 108 indices"):
        CO.open_corpus(str(out))
    (out / "meta.json").write_text('{"format": "something else"}')
    with pytest.raises(CharrnnError, match="not a valid prepared corpus"):
        CO.open_corpus(str(out))
    os.unlink(out / "meta.json")
    with pytest.raises(CharrnnError, match="not a prepared corpus \\(no meta.json\\); it holds only what an "
                       "unfinished prepare left; prepare the text into it again: charrnn prepare TEXT... --out"):
        CO.open_corpus(str(out))
    CO.prepare([str(path)], str(out))  # which works: the leftovers are removed
    assert sorted(os.listdir(out)) == [".lock", "meta.json", train_bin, train_bin.replace("train", "val")]


def test_remap_between_vocabularies():
    src_vocab = np.array([97, 98, 233], np.int32)  # a b é
    to_vocab = np.array([97, 98, 99], np.int32)  # a b c
    idx = np.array([0, 1, 2, 0], np.uint8)
    with pytest.raises(CharrnnError, match=r"val: 1 character\(s\) not in the model's vocabulary: 'é'"):
        CO.remap(idx, src_vocab, to_vocab, where="val")
    out, skipped = CO.remap(idx, src_vocab, to_vocab, skip_unknown=True, chunk=3)
    assert list(out) == [0, 1, 0] and skipped == 1
    same, none = CO.remap(idx, src_vocab, src_vocab)
    assert same is idx and none == 0


def test_shipped_corpora_have_todays_vocabulary_and_indices():
    for name in ("shakespeare_tiny.txt", "shakespeare.txt"):
        path = os.path.join(ROOT, "data", name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        vocab = D.build_vocab(text)
        c = CO.open_corpus(path, 0.1)
        assert np.array_equal(c.vocab, vocab)
        assert np.array_equal(np.concatenate([c.train, c.val]), D.encode(text, vocab))


def test_disk_indices_read_what_an_array_gives(tmp_path):
    data = np.random.default_rng(0).integers(0, 60000, 5000).astype(np.uint16)
    path = tmp_path / "x.bin"
    path.write_bytes(data.tobytes())
    disk = CO.DiskIndices(str(path), np.uint16, len(data))
    view, part = disk[1000:4000], data[1000:4000]
    assert len(view) == 3000 and np.array_equal(np.asarray(view), part)
    batch = np.arange(65)[:, None] + np.arange(32)[None, :] * 90  # a batch: columns of runs
    scattered = np.array([[5, 3, 3], [2999, 0, 7]])  # repeats, out of order
    for idx in (batch, batch + 7, scattered, np.array([42]), np.zeros((0, 3), np.int64)):
        got = view[idx]
        assert got.shape == idx.shape and got.dtype == part.dtype and np.array_equal(got, part[idx])
    with pytest.raises(IndexError):
        view[np.array([3000])]


def test_a_pipe_is_read_as_the_file_it_carries(tmp_path):
    """A corpus is read twice (count, then encode) and a pipe gives its bytes once:
    `--data <(zcat big.txt.gz)` must train on exactly what the file would give."""
    import threading

    path = tmp_path / "c.txt"
    path.write_text(corpus_text(20000) + "é€😀", encoding="utf-8")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    feeder = threading.Thread(target=lambda: pipe.write_bytes(path.read_bytes()))
    feeder.start()
    from_pipe = CO.read_text_corpus(str(pipe), 0.1, chunk_size=1000)
    feeder.join(timeout=30)
    from_file = CO.read_text_corpus(str(path), 0.1, chunk_size=1000)
    assert np.array_equal(from_pipe.vocab, from_file.vocab)
    assert np.array_equal(from_pipe.train, from_file.train) and np.array_equal(from_pipe.val, from_file.val)
    assert {k: v for k, v in from_pipe.identity.items() if k != "path"} == \
        {k: v for k, v in from_file.identity.items() if k != "path"}
    assert from_pipe.identity["path"] == str(pipe)
    assert not [n for n in os.listdir(tmp_path) if n not in ("c.txt", "pipe")]


def test_byte_counts_by_pairs_are_counts():
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 3, 1001, 2 * CO.COUNT_PIECE + 3):
        b = rng.integers(0, 256, n).astype(np.uint8)
        assert np.array_equal(CO._count_bytes(b), np.bincount(b, minlength=256)), n


def peak_rss_mb(args, cwd):
    """Peak resident memory (MB) of `python -m charrnn ARGS` in a fresh process."""
    wrapper = ("import resource, subprocess, sys\n"
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "charrnn", *map(str, args)],
                         capture_output=True, text=True, cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT), check=True)
    return int(out.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.slow
def test_memory_stays_flat_with_the_corpus_size(tmp_path):
    """Training from a prepared 30 MB corpus takes about the memory of a tiny one; a 30 MB
    text file trained directly costs its index array (30 MB) and a little more, not the
    25 copies of the text that reading it whole made."""
    text = corpus_text() * 30  # the 1 MB corpus, 30 times over
    size = 30_000_000
    big = tmp_path / "big.txt"
    big.write_text(text[:size], encoding="utf-8")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text(text[:100_000], encoding="utf-8")
    for path in (big, tiny):
        assert run("prepare", path, "--out", tmp_path / f"{path.stem}.prep", "-q").exit_code == 0
    train = ["train", "--data", None, "-q", "--steps", "20", "--set", "model.cell=lstm",
             "--set", "model.hidden_size=64", "--set", "train.eval_every=10", "--set", "train.eval_chars=20000",
             "--out", None]
    rss = {}
    for name in ("tiny.prep", "big.prep", "big.txt"):
        train[2], train[-1] = tmp_path / name, tmp_path / f"run-{name}"
        rss[name] = peak_rss_mb(train, tmp_path)
    assert rss["big.prep"] < rss["tiny.prep"] + 10, rss  # a copy of the corpus would be 30 MB more
    assert rss["big.txt"] < rss["tiny.prep"] + size / 1e6 + 40, rss  # the index array, uint8, and a few chunks


# ----------------------------------------------------------------------------- byte-order marks and CR LF

BOM = b"\xef\xbb\xbf"


def bom_and_plain(tmp_path, text=UNICODE, name="t"):
    """The same text written twice, with a UTF-8 byte-order mark at its start and without."""
    with_bom, plain = tmp_path / f"{name}-bom.txt", tmp_path / f"{name}.txt"
    with_bom.write_bytes(BOM + text.encode("utf-8"))
    plain.write_bytes(text.encode("utf-8"))
    return with_bom, plain


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 5, 1 << 20])
def test_a_byte_order_mark_is_left_out_of_a_text_but_not_of_its_identity(tmp_path, chunk_size):
    """Both passes, every chunk size (the mark's three bytes cut by the chunks): the text with a
    mark reads as the text without; its size and SHA-256 are the file's own bytes."""
    with_bom, plain = bom_and_plain(tmp_path)
    a = CO.read_text_corpus(str(with_bom), 0.1, chunk_size=chunk_size)
    b = CO.read_text_corpus(str(plain), 0.1, chunk_size=chunk_size)
    assert 0xFEFF not in a.vocab and np.array_equal(a.vocab, b.vocab)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert a.bom and not b.bom
    assert a.identity["chars"] == b.identity["chars"] == len(UNICODE)
    assert a.identity["bytes"] == with_bom.stat().st_size == b.identity["bytes"] + 3
    assert a.identity["sha256"] == hashlib.sha256(with_bom.read_bytes()).hexdigest()
    assert symbols_of(with_bom, chunk_size).tolist() == D.code_points(UNICODE).tolist()


def test_only_a_mark_at_the_very_start_is_left_out(tmp_path):
    """U+FEFF elsewhere is a character (a zero-width no-break space); and a text that holds one
    keeps its mark too, so that its vocabulary (with U+FEFF) reads it the same at every resume."""
    inner = tmp_path / "inner.txt"
    inner.write_bytes(b"ab" + BOM + b"cd\n" * 20)
    assert 0xFEFF in CO.read_text_corpus(str(inner), 0.1).vocab
    both = tmp_path / "both.txt"
    both.write_bytes(BOM + b"ab" + BOM + b"cd\n" * 20)
    c = CO.read_text_corpus(str(both), 0.1)
    assert not c.bom and c.vocab[np.concatenate([c.train, c.val])][:3].tolist() == [0xFEFF, ord("a"), ord("b")]
    only = tmp_path / "only.txt"
    only.write_bytes(BOM)
    with pytest.raises(CharrnnError, match="corpus is empty"):
        CO.read_text_corpus(str(only), 0.1)


def test_the_mark_is_kept_for_a_model_that_has_it_in_its_vocabulary(tmp_path):
    """A model trained before charrnn left the mark out has U+FEFF in its vocabulary: its text
    (a resume, eval's validation split or --text) reads as it did, the mark its first character;
    a model without U+FEFF reads the same file without the mark."""
    with_bom, plain = bom_and_plain(tmp_path)
    own = CO.read_text_corpus(str(plain), 0.1).vocab
    old = np.union1d(own, [0xFEFF]).astype(np.int32)
    c = CO.read_text_corpus(str(with_bom), 0.1, vocab=old)
    whole = old[np.concatenate([c.train, c.val])]
    assert not c.bom and whole.tolist() == [0xFEFF] + D.code_points(UNICODE).tolist()
    idx, skipped = CO.read_indices(str(with_bom), old)
    assert old[idx].tolist() == whole.tolist() and skipped == 0
    idx, _ = CO.read_indices(str(with_bom), own)
    assert own[idx].tolist() == D.code_points(UNICODE).tolist()


def test_a_byte_order_mark_through_a_pipe_is_left_out(tmp_path):
    import threading

    with_bom, plain = bom_and_plain(tmp_path)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    feeder = threading.Thread(target=lambda: pipe.write_bytes(with_bom.read_bytes()))
    feeder.start()
    from_pipe = CO.read_text_corpus(str(pipe), 0.1, chunk_size=2)
    feeder.join(timeout=30)
    from_file = CO.read_text_corpus(str(plain), 0.1)
    assert np.array_equal(from_pipe.vocab, from_file.vocab) and np.array_equal(from_pipe.train, from_file.train)
    assert from_pipe.identity["sha256"] == hashlib.sha256(with_bom.read_bytes()).hexdigest()


def test_the_bytes_unit_keeps_a_mark_as_bytes(tmp_path):
    with_bom, _ = bom_and_plain(tmp_path)
    s = CO.scan([str(with_bom)], unit="bytes")
    assert s.chars == with_bom.stat().st_size and all(s.counts[list(BOM)])


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1 << 20])
def test_cr_lf_line_endings_are_counted_not_converted(tmp_path, chunk_size):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nthree\rfour\n\r\r\n" + "é\r\n".encode() * 10)
    c = CO.read_text_corpus(str(path), 0.1, chunk_size=chunk_size)
    assert c.crlf == 14 and ord("\r") in c.vocab
    assert c.vocab[np.concatenate([c.train, c.val])].tolist() == D.code_points(path.read_bytes().decode()).tolist()
    assert CO.read_text_corpus(str(bom_and_plain(tmp_path)[1]), 0.1).crlf == 0


def test_visualize_and_short_texts_leave_the_mark_out(tmp_path):
    with_bom, plain = bom_and_plain(tmp_path)
    assert D.read_text(str(with_bom)) == D.read_text(str(plain)) == UNICODE


def _trained(out):
    from charrnn import checkpoint as ckpt_io

    return ckpt_io.load(str(out / "ckpt.npz"))


def _same_run(a, b):
    assert a.run.step == b.run.step and np.array_equal(a.vocab, b.vocab)
    for k in a.run.params:
        assert np.array_equal(a.run.params[k], b.run.params[k]), k
    for k in a.run.opt_state:
        assert np.array_equal(a.run.opt_state[k], b.run.opt_state[k]), k
    assert (a.run.position, a.run.rng.bit_generator.state) == (b.run.position, b.run.rng.bit_generator.state)


def test_training_on_a_text_with_a_mark_is_training_on_the_text(tmp_path, write_config):
    """train --data: a file with a mark trains bit for bit as the same text without one, the
    banner says the mark was left out and how many lines end in CR LF, and --resume works (the
    identity is the file's bytes, mark included)."""
    from conftest import small_config

    text = corpus_text(3000).replace("\n", "\r\n")
    with_bom, plain = bom_and_plain(tmp_path, text)
    crlf = text.count("\r\n")
    for corpus, out in ((with_bom, "a"), (plain, "b")):
        cfg = small_config(write_config, corpus, steps=12, checkpoint_every=6, log_every=3)
        r = run("train", "--config", cfg, "--out", tmp_path / out, "--stop-at", 6)
        assert r.exit_code == 0, r.output
        note = f"; {crlf:,} lines end in CR LF, so '\\r' is in the vocabulary (convert the text to LF line " \
               "endings first to leave it out)"
        first = r.stderr.splitlines()[0]
        assert first.endswith(note + ("; a UTF-8 byte-order mark at its start left out" if out == "a" else "")), first
        r = run("train", "--resume", tmp_path / out / "ckpt.npz", "-q")
        assert r.exit_code == 0, r.output
    a, b = _trained(tmp_path / "a"), _trained(tmp_path / "b")
    _same_run(a, b)
    assert a.corpus["sha256"] == hashlib.sha256(with_bom.read_bytes()).hexdigest()
    assert a.corpus["bytes"] == b.corpus["bytes"] + 3 and a.corpus["chars"] == b.corpus["chars"]


def test_a_run_trained_with_the_mark_as_a_character_resumes_as_it_was(tmp_path, write_config, monkeypatch):
    """A checkpoint written before charrnn left the mark out (the mark read as U+FEFF: made here
    by giving the reader a mark no file can start with, which is the code before the change)
    resumes on the same file bit for bit as if it had never stopped; eval reads its text with the
    mark too. A new run on that file leaves the mark out, and its resume does too."""
    from conftest import small_config

    with_bom, _ = bom_and_plain(tmp_path, corpus_text(3000))
    cfg = small_config(write_config, with_bom, steps=12, checkpoint_every=6)
    with monkeypatch.context() as m:
        m.setattr(CO, "BOM", b"\xff\xff\xff")  # never valid UTF-8: no mark is ever found
        assert run("train", "--config", cfg, "--out", tmp_path / "whole", "-q").exit_code == 0
        assert run("train", "--config", cfg, "--out", tmp_path / "half", "-q", "--stop-at", 6).exit_code == 0
        evaluated = [run("eval", "--checkpoint", tmp_path / "whole" / "ckpt.npz", "--json", *text).stdout
                     for text in ((), ("--text", with_bom))]
    old = _trained(tmp_path / "half")
    assert 0xFEFF in old.vocab and old.run.step == 6
    r = run("train", "--resume", tmp_path / "half" / "ckpt.npz", "-q")
    assert r.exit_code == 0, r.output
    _same_run(_trained(tmp_path / "whole"), _trained(tmp_path / "half"))
    assert [run("eval", "--checkpoint", tmp_path / "whole" / "ckpt.npz", "--json", *text).stdout
            for text in ((), ("--text", with_bom))] == evaluated  # its validation split and the file, as they were
    assert json.loads(evaluated[1])["chars"] == len(corpus_text(3000))  # the mark, then all but the last
    assert run("train", "--config", cfg, "--out", tmp_path / "new", "-q", "--stop-at", 6).exit_code == 0
    assert 0xFEFF not in _trained(tmp_path / "new").vocab
    assert run("train", "--resume", tmp_path / "new" / "ckpt.npz", "-q").exit_code == 0
    assert 0xFEFF not in _trained(tmp_path / "new").vocab and _trained(tmp_path / "new").run.step == 12


def test_eval_of_a_text_with_a_mark(tmp_path, write_config):
    """charrnn eval --text: the mark is not a character to predict (the same loss as without)."""
    from conftest import small_config

    text = corpus_text(3000)
    with_bom, plain = bom_and_plain(tmp_path, text)
    cfg = small_config(write_config, plain, steps=4)
    assert run("train", "--config", cfg, "--out", tmp_path / "r", "-q").exit_code == 0
    a = run("eval", "--checkpoint", tmp_path / "r" / "ckpt.npz", "--text", with_bom)
    b = run("eval", "--checkpoint", tmp_path / "r" / "ckpt.npz", "--text", plain)
    assert a.exit_code == b.exit_code == 0, a.output
    assert a.stdout.replace(str(with_bom), "T") == b.stdout.replace(str(plain), "T")
