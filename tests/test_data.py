import numpy as np
import pytest

from charrnn import data as D
from charrnn.errors import CharrnnError


def test_vocab_is_sorted_code_points_and_round_trips():
    text = "héllo wörld 你好\n"
    vocab = D.build_vocab(text)
    assert list(vocab) == sorted(set(map(ord, text)))
    idx = D.encode(text, vocab)
    assert idx.dtype == np.uint8
    assert D.decode(idx, vocab) == text


def test_encode_lists_unknown_characters():
    vocab = D.build_vocab("abc")
    with pytest.raises(CharrnnError, match=r"'z' \(U\+007A\).*'é' \(U\+00E9\)"):
        D.encode("abzé", vocab)


def test_read_text_errors(tmp_path):
    with pytest.raises(CharrnnError, match="not found"):
        D.read_text(str(tmp_path / "missing.txt"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CharrnnError, match="not UTF-8.*0xe9 at offset 3"):
        D.read_text(str(bad))


def test_streams_are_contiguous_and_continue_row_by_row():
    data = np.arange(100)
    s = D.Streams(data, batch_size=4, seq_length=5)
    X0, Y0 = s.batch(0)
    X1, _ = s.batch(5)
    assert X0.shape == (5, 4)
    assert list(X0[:, 1]) == [25, 26, 27, 28, 29]  # stream 1 starts at 1 * 100 // 4
    assert list(Y0[:, 1]) == [26, 27, 28, 29, 30]
    assert list(X1[:, 1]) == [30, 31, 32, 33, 34]  # row 1 continues row 1


def test_wrap_rule_is_min_char_rnns_for_one_stream():
    data = np.arange(60)
    T = 25
    s = D.Streams(data, batch_size=1, seq_length=T)
    for p in range(0, 60):
        assert s.wraps(p) == (p + T + 1 >= len(data))


def test_too_short_corpus_is_a_clear_error():
    with pytest.raises(CharrnnError, match="needs|needed"):
        D.Streams(np.arange(20), batch_size=2, seq_length=10)


def test_bytes_unit_encodes_and_decodes_utf8_bytes():
    vocab = np.array(sorted(set(b"caf") | set("é".encode())), np.int32)
    idx = D.encode("café", vocab, unit="bytes")
    assert list(vocab[idx]) == list("café".encode())
    assert D.decode(idx, vocab, unit="bytes") == "café"
    assert D.decode(idx[:-1], vocab, unit="bytes") == "caf\ufffd"  # a cut character shows as U+FFFD
    with pytest.raises(CharrnnError, match=r"1 byte value\(s\) not in the model's vocabulary: 0x7a"):
        D.encode("z", vocab, unit="bytes")


def test_index_dtype_is_the_smallest_unsigned_type():
    assert [D.index_dtype(n) for n in (1, 256, 257, 65536, 65537)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]


# ----------------------------------------------------------------------------- variable chunk lengths


def test_chunk_lengths_are_awd_lstms_draw():
    T, n = 64, 4000
    lengths = np.array([D.chunk_length(7, k, T) for k in range(1, n + 1)])
    half = lengths < 0.75 * T  # T/2 and T are 6 σ apart: each draw is plainly one or the other
    assert 0.04 < half.mean() < 0.06, f"share of half-length draws {half.mean():.4f}, expected about 0.05"
    assert abs(lengths[~half].mean() - (T - 0.5)) < 0.5  # int() truncates: a mean of T - ½
    assert abs(lengths[~half].std() - 5) < 0.3 and abs(lengths[half].mean() - (T / 2 - 0.5)) < 1.5
    assert lengths.min() >= 5 and lengths.max() <= T + 20
    assert [D.chunk_length(7, k, T) for k in range(1, 50)] == list(lengths[:49])  # a pure function of (seed, step)
    assert [D.chunk_length(8, k, T) for k in range(1, 50)] != list(lengths[:49])  # another seed, other lengths


def test_chunk_lengths_are_held_between_5_and_t_plus_20(monkeypatch):
    T = 10  # half-length draws around 5: many under the floor
    assert min(D.chunk_length(1, k, T) for k in range(1, 2000)) == 5
    monkeypatch.setattr(D, "LENGTH_SIGMA", 60.0)  # wide enough to reach both bounds often
    lengths = [D.chunk_length(1, k, T) for k in range(1, 500)]
    assert min(lengths) == 5 and max(lengths) == T + 20 == D.longest_chunk(T)


def test_streams_read_a_chunk_of_any_length_and_wrap_by_it():
    data = np.arange(100)
    s = D.Streams(data, batch_size=4, seq_length=5, longest=9)
    X, Y = s.batch(3, 9)
    assert X.shape == Y.shape == (9, 4)
    assert list(X[:, 1]) == list(range(28, 37)) and list(Y[:, 1]) == list(range(29, 38))
    for a, b in zip(s.batch(3, 5), s.batch(3), strict=True):  # the length T is the fixed path
        assert np.array_equal(a, b)
    for p in range(25):
        for length in (5, 7, 9):
            assert s.wraps(p, length) == (p + length + 1 >= 25), (p, length)
    assert not s.wraps(17, 5) and s.wraps(17, 7)  # where T still fits, a longer chunk wraps


def test_a_corpus_too_short_for_the_longest_chunk_is_a_clear_error():
    D.Streams(np.arange(60), batch_size=2, seq_length=10)
    with pytest.raises(CharrnnError, match=r"longest chunk, seq_length 10 \+ 20, \+ 1\) = 62 are needed"):
        D.Streams(np.arange(60), batch_size=2, seq_length=10, longest=30)
