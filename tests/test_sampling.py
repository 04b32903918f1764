import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CONFIGS, ROOT, corpus_text, one_line_error, run

from charrnn import model as M
from charrnn import sampling
from charrnn.cells import CELLS, recurrent
from charrnn.cli import cli
from charrnn.errors import CharrnnError

SMOKE = f"{CONFIGS}/smoke.yaml"


def test_top_k_never_draws_outside_the_k_most_likely():
    rng = np.random.default_rng(0)
    for _ in range(200):
        logits = rng.standard_normal(30) * 3
        top3 = set(np.argsort(-logits)[:3])
        p = sampling.probabilities(logits, 1.0, top_k=3)
        assert set(np.flatnonzero(p)) == top3 and np.isclose(p.sum(), 1)
        for _ in range(20):
            assert sampling.next_index(logits, rng, top_k=3) in top3


def test_top_p_draws_only_from_the_nucleus():
    rng = np.random.default_rng(1)
    logits = np.log(np.array([0.5, 0.05, 0.3, 0.1, 0.05]))
    p = sampling.probabilities(logits, 1.0, top_p=0.75)
    assert set(np.flatnonzero(p)) == {0, 2}  # 0.5 + 0.3 reaches 0.75
    np.testing.assert_allclose(p[[0, 2]], [0.5 / 0.8, 0.3 / 0.8])
    assert {sampling.next_index(logits, rng, top_p=0.75) for _ in range(500)} == {0, 2}
    assert set(np.flatnonzero(sampling.probabilities(logits, 1.0, top_p=0.01))) == {0}  # at least one
    both = sampling.probabilities(logits, 1.0, top_k=3, top_p=0.75)
    assert set(np.flatnonzero(both)) == {0, 2}


def test_temperature_sharpens_and_flattens():
    logits = np.array([2.0, 1.0, 0.0])
    cold, warm = sampling.probabilities(logits, 0.5), sampling.probabilities(logits, 2.0)
    assert cold[0] > sampling.probabilities(logits, 1.0)[0] > warm[0]
    assert sampling.next_index(logits, None, temperature=0) == 0  # temperature 0 is argmax
    assert sampling.next_index(logits, None, greedy=True) == 0


def test_draw_follows_the_distribution():
    rng = np.random.default_rng(2)
    p = np.array([0.1, 0.0, 0.6, 0.3])
    counts = np.bincount([sampling.draw(p, rng) for _ in range(20000)], minlength=4) / 20000
    assert counts[1] == 0
    np.testing.assert_allclose(counts, p, atol=0.015)


def test_generate_continues_the_carried_state():
    spec = M.ModelSpec("rnn", 5, 8)
    params = M.init_params(spec, np.random.default_rng(0), np.float64, std=0.5)
    indices = [1, 2, 3, 4]
    state = sampling.prime(params, spec, indices)
    logits, _ = sampling.step(params, spec, indices[-1], state)
    full, _, _ = M.forward(params, spec, np.array(indices).reshape(-1, 1), M.zero_state(spec, 1, np.float64))
    np.testing.assert_allclose(logits, full[-1], rtol=1e-12)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run("train", "--config", SMOKE, "--out", out, "-q")
    return out / "ckpt.npz"


def test_greedy_is_deterministic_and_seeds_repeat(ckpt):
    a = run("sample", "--checkpoint", ckpt, "--greedy", "-n", 60).stdout
    b = run("sample", "--checkpoint", ckpt, "--temperature", "0", "-n", 60).stdout
    assert a == b
    s1 = run("sample", "--checkpoint", ckpt, "--seed", 5, "-n", 60, "--top-p", "0.9").stdout
    s2 = run("sample", "--checkpoint", ckpt, "--seed", 5, "-n", 60, "--top-p", "0.9").stdout
    s3 = run("sample", "--checkpoint", ckpt, "--seed", 6, "-n", 60, "--top-p", "0.9").stdout
    assert s1 == s2 != s3


def test_stop_text_ends_the_sample(ckpt):
    full = run("sample", "--checkpoint", ckpt, "--seed", 1, "-n", 300).stdout
    stop = full[10:12]
    cut = run("sample", "--checkpoint", ckpt, "--seed", 1, "-n", 300, "--stop", stop).stdout
    assert cut == full[: full.index(stop) + len(stop)] + "\n"


def test_num_samples(ckpt):
    out = run("sample", "--checkpoint", ckpt, "--seed", 1, "-n", 20, "--num-samples", 3, "--prime", "The").stdout
    parts = out.split("\n" + "-" * 40 + "\n")
    assert len(parts) == 3 and all(p.startswith("The") for p in parts)


def test_a_closed_pipe_exits_quietly(ckpt):
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(ckpt), "-n", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    first = proc.stdout.read(100)
    proc.stdout.close()  # like `| head -c 100`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert len(first) == 100 and err == ""


@pytest.mark.parametrize("option", ["--temperature", "--top-p"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_non_finite_sampling_values_are_usage_errors(ckpt, option, value):
    r = run("sample", "--checkpoint", ckpt, "-n", 5, option, value)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""  # nothing generated
    assert f"Invalid value for '{option}'" in r.stderr and "Traceback" not in r.stderr


def test_finite_sampling_values_are_still_range_checked(ckpt):
    assert run("sample", "--checkpoint", ckpt, "-n", 5, "--top-p", "0").exit_code == 2
    assert run("sample", "--checkpoint", ckpt, "-n", 5, "--temperature", "-1").exit_code == 2
    assert run("sample", "--checkpoint", ckpt, "-n", 5, "--temperature", "0.5", "--top-p", "1").exit_code == 0


def test_a_tiny_temperature_is_nearly_greedy_without_warnings():
    logits = np.array([1.0, 3.0, -2.0, 3.0 - 1e-9])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # overflow or inf - inf would raise
        p = sampling.probabilities(logits, 1e-310)
    assert np.isfinite(p).all() and p.sum() == 1.0
    assert p[1] == 1.0  # all of it on the largest logit


# --- contradictory or empty options ----------------------------------------------------------

@pytest.mark.parametrize("args, fragments", [
    (["--greedy", "-t", "0.7"], ["--greedy", "--temperature 0.7"]),
    (["--greedy", "--top-k", "3"], ["--greedy", "--top-k"]),
    (["--greedy", "--top-p", "0.5"], ["--greedy", "--top-p"]),
    (["-t", "0", "--top-k", "3"], ["--temperature 0", "--top-k"]),
    (["--stop", ""], ["--stop ''", "empty"]),
    (["--beam", "2", "-t", "0.5"], ["--beam", "--temperature"]),
    (["--beam", "2", "--top-k", "2"], ["--beam", "--top-k"]),
    (["--beam", "2", "--top-p", "0.5"], ["--beam", "--top-p"]),
    (["--beam", "2", "--greedy"], ["--beam", "--greedy"]),
    (["--beam", "2", "--seed", "1"], ["--beam", "--seed"]),
    (["--beam", "2", "--num-samples", "3"], ["--beam", "--num-samples"]),
    (["--beam", "2", "--interactive"], ["--beam", "--interactive"]),
    (["--prime", "a", "--prime-file", "x.txt"], ["--prime", "--prime-file"]),
    (["--interactive", "--num-samples", "2"], ["--interactive", "--num-samples"]),
    (["--interactive", "--prime", "-"], ["--interactive", "stdin"]),
])
def test_contradictory_or_empty_options_are_refused_in_one_line(ckpt, args, fragments):
    r = run("sample", "--checkpoint", ckpt, "-n", 5, *args)
    one_line_error(r, 2, *fragments)
    assert r.stdout == ""


def test_consistent_combinations_still_run(ckpt):
    assert run("sample", "--checkpoint", ckpt, "-n", 5, "--greedy", "-t", "0").exit_code == 0
    assert run("sample", "--checkpoint", ckpt, "-n", 5, "--beam", "2", "--num-samples", "1").exit_code == 0


# --- --checkpoint RUN_DIR ---------------------------------------------------------------------

def test_a_run_directory_samples_from_best_then_ckpt(ckpt, tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    shutil.copy(ckpt.parent / "ckpt.npz", d / "ckpt.npz")
    shutil.copy(ckpt.parent / "ckpt.npz", d / "best.npz")
    want = run("sample", "--checkpoint", ckpt, "-n", 30, "--seed", 2).stdout
    r = run("sample", "--checkpoint", d, "-n", 30, "--seed", 2)
    assert r.exit_code == 0 and r.stdout == want
    assert f"sampling from {d / 'best.npz'}" in r.stderr
    (d / "best.npz").unlink()
    r = run("sample", "--checkpoint", d, "-n", 30, "--seed", 2)
    assert r.stdout == want and f"sampling from {d / 'ckpt.npz'}" in r.stderr
    (d / "ckpt.npz").unlink()
    one_line_error(run("sample", "--checkpoint", d), 1, str(d), "best.npz", "ckpt.npz")
    one_line_error(run("eval", "--checkpoint", d), 1, str(d), "best.npz", "ckpt.npz")


def test_eval_and_visualize_take_a_run_directory(ckpt, tmp_path):
    e = run("eval", "--checkpoint", ckpt.parent, "--json")
    assert e.exit_code == 0 and f"evaluating {ckpt.parent / 'best.npz'}" in e.stderr
    assert e.stdout == run("eval", "--checkpoint", ckpt.parent / "best.npz", "--json").stdout
    v = run("visualize", "--checkpoint", ckpt.parent, "--out", tmp_path / "p.html", "--chars", 50)
    assert v.exit_code == 0 and (tmp_path / "p.html").exists(), v.output


# --- long primes ------------------------------------------------------------------------------

def _model(cell="lstm", layers=2, V=6, H=8, mult=True, seed=0):
    spec = M.ModelSpec(cell, V, H, layers, 0.0, mult)
    return spec, M.init_params(spec, np.random.default_rng(seed), np.float64, std=0.5)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
def test_priming_in_chunks_is_priming_character_by_character(cell, layers):
    spec, params = _model(cell, layers, mult=recurrent(CELLS[cell]))
    indices = np.random.default_rng(1).integers(0, 6, 1000)
    by_char = M.zero_state(spec, 1, np.float64)
    for i in indices[:-1]:
        _, by_char = sampling.step(params, spec, int(i), by_char)
    for chunk in (1, 7, 256, 5000):
        chunked = sampling.prime(params, spec, indices, chunk=chunk)
        for a, b in zip(chunked, by_char, strict=True):
            for x, y in zip(a, b, strict=True):
                if layers == 1 or chunk == 1:  # the same operations, one character at a time
                    np.testing.assert_array_equal(x, y)
                else:  # layer 2 reads layer 1's outputs as one (T, H) product: rounding differs in the last bit
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-14)
    # In chunks of 256 the state is the one a single forward over the whole prime gave (what
    # `sample --prime` did before chunks): a long prime's sample is the same text as before.
    whole = sampling.prime(params, spec, indices, chunk=len(indices))
    for a, b in zip(sampling.prime(params, spec, indices), whole, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_long_prime_goes_through_the_model_in_chunks(monkeypatch):
    spec, params = _model("rnn", 1)
    calls = []
    real = M.forward
    monkeypatch.setattr(M, "forward", lambda *a, **k: calls.append(a[2].shape) or real(*a, **k))
    sampling.prime(params, spec, np.zeros(100_001, dtype=np.int64))
    assert len(calls) == 391 and calls[0] == (sampling.PRIME_CHUNK, 1)  # ceil(100000 / 256)


def test_prime_file_and_stdin(ckpt, tmp_path):
    text = corpus_text(3000)
    (tmp_path / "p.txt").write_text(text, encoding="utf-8")
    want = run("sample", "--checkpoint", ckpt, "-n", 40, "--seed", 3, "--prime", text).stdout
    assert want.startswith(text) and len(want) == len(text) + 41
    assert run("sample", "--checkpoint", ckpt, "-n", 40, "--seed", 3, "--prime-file", tmp_path / "p.txt").stdout == want
    for args in (["--prime", "-"], ["--prime-file", "-"]):
        r = CliRunner().invoke(cli, ["sample", "--checkpoint", str(ckpt), "-n", "40", "--seed", "3", *args],
                               input=text)
        assert r.exit_code == 0 and r.stdout == want, r.output
    (tmp_path / "bad.txt").write_text("ok ☃", encoding="utf-8")
    one_line_error(run("sample", "--checkpoint", ckpt, "--prime-file", tmp_path / "bad.txt"), 2,
                   "'--prime-file'", "not in the model's vocabulary", "☃")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    one_line_error(run("sample", "--checkpoint", ckpt, "--prime-file", tmp_path / "latin1.txt"), 1,
                   "latin1.txt", "not UTF-8", "0xe9", "offset 3")


# --- batches of samples -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(ckpt):
    from charrnn import checkpoint
    ck = checkpoint.load(str(ckpt))
    return checkpoint.weights(ck), ck


def _texts(loaded, n, **kw):
    params, ck = loaded
    out = "".join(sampling.samples(params, ck.spec, ck.vocab, ck.unit, "Th", 120, None, n, **kw))
    return out.split("\n" + "-" * 40 + "\n")


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("kw", [dict(seed=11), dict(seed=4, stop="e ", top_p=0.9), dict(seed=2, temperature=1.5)])
def test_sample_i_of_a_batch_is_sample_i_alone(loaded, n, kw):
    batch = _texts(loaded, n, **kw)
    alone = [_texts(loaded, 1, first_index=i, **kw)[0] for i in range(n)]
    assert batch == alone and len(set(batch)) == n
    assert _texts(loaded, 1, **kw) == batch[:1]  # sample 0 is the seed's single sample, as it always was


def test_a_batch_of_any_cell_is_its_samples_alone():
    vocab = np.array([ord(c) for c in "\n abcd"], dtype=np.int32)
    for cell in CELLS:
        spec, params = _model(cell, mult=recurrent(CELLS[cell]))
        many = "".join(sampling.samples(params, spec, vocab, "chars", "ab", 200, None, 5, seed=9))
        one = ["".join(sampling.samples(params, spec, vocab, "chars", "ab", 200, None, 1, seed=9, first_index=i))
               for i in range(5)]
        assert many == ("\n" + "-" * 40 + "\n").join(one)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1e-3, 1e-300])
def test_draws_for_a_batch_are_each_rows_draw(temperature):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((64, 50)) * 4).astype(np.float32)
    logits[::5, :10] = -1e30  # rows with characters of probability 0
    batch = sampling.next_indices(logits, [np.random.default_rng([7, b]) for b in range(64)], temperature)
    rows = [sampling.next_index(logits[b], np.random.default_rng([7, b]), temperature) for b in range(64)]
    assert batch.tolist() == rows and len(set(rows)) > (1 if temperature < 1e-2 else 10)


def test_num_samples_and_sample_index_on_the_command_line(ckpt):
    three = run("sample", "--checkpoint", ckpt, "-n", 50, "--seed", 8, "--num-samples", 3).stdout
    parts = three.split("\n" + "-" * 40 + "\n")
    for i, part in enumerate(parts):
        alone = run("sample", "--checkpoint", ckpt, "-n", 50, "--seed", 8, "--sample-index", i).stdout
        assert alone == part
    two = run("sample", "--checkpoint", ckpt, "-n", 50, "--seed", 8, "--num-samples", 2, "--sample-index", 1).stdout
    assert two == ("\n" + "-" * 40 + "\n").join(parts[1:])


# --- beam search ------------------------------------------------------------------------------

def _log_prob(params, spec, indices, continuation):
    state = sampling.prime(params, spec, indices)
    total, last = 0.0, indices[-1]
    for c in continuation:
        logits, state = sampling.step(params, spec, last, state)
        z = logits.astype(np.float64)
        total += z[c] - z.max() - np.log(np.exp(z - z.max()).sum())
        last = c
    return total


@pytest.mark.parametrize("V, L", [(3, 5), (4, 4)])
def test_beam_search_finds_the_most_probable_continuation(V, L):
    import itertools
    for seed in range(3):
        spec, params = _model("gru", 1, V=V, H=6, mult=False, seed=seed)
        params = {k: v * 3 for k, v in params.items()}  # a peaked model, so that greedy is not optimal
        prime_ = [0, 1]
        scored = {c: _log_prob(params, spec, prime_, c) for c in itertools.product(range(V), repeat=L)}
        best = max(scored, key=scored.get)
        found = sampling.beam_search(params, spec, prime_, L, V ** (L - 1))
        assert tuple(found.indices) == best
        np.testing.assert_allclose(found.log_prob, scored[best], rtol=1e-10)
        wide = sampling.beam_search(params, spec, prime_, L, V ** L)
        assert wide == found
        greedy = sampling.beam_search(params, spec, prime_, L, 1)
        state = sampling.prime(params, spec, prime_)
        assert greedy.indices == list(sampling.generate(params, spec, 1, state, L, None, greedy=True))
        np.testing.assert_allclose(greedy.log_prob, scored[tuple(greedy.indices)], rtol=1e-10)
        assert found.log_prob >= greedy.log_prob - 1e-12  # the batch of beams rounds in its own order


def test_beam_search_beats_greedy_somewhere():
    wins = 0
    for seed in range(10):
        spec, params = _model("rnn", 1, V=3, H=6, mult=False, seed=seed)
        params = {k: v * 3 for k, v in params.items()}
        b = sampling.beam_search(params, spec, [0], 6, 3 ** 5)
        g = sampling.beam_search(params, spec, [0], 6, 1)
        wins += b.log_prob > g.log_prob + 1e-9
    assert wins > 0  # otherwise the brute-force test would not tell beam search from greedy


def test_beam_on_the_command_line(ckpt, loaded):
    params, ck = loaded
    r = run("sample", "--checkpoint", ckpt, "--beam", 4, "-n", 30, "--prime", "The")
    found = sampling.beam_search(params, ck.spec, sampling.start_indices("The", ck.vocab), 30, 4)
    assert r.exit_code == 0 and r.stdout == "The" + sampling.symbols(found.indices, ck.vocab, "chars") + "\n"
    assert f"beam 4: log-probability {found.log_prob:.4f} nats over 30 characters" in r.stderr
    assert r.stdout == run("sample", "--checkpoint", ckpt, "--beam", 4, "-n", 30, "--prime", "The").stdout
    g = run("sample", "--checkpoint", ckpt, "--greedy", "-n", 30, "--prime", "The").stdout
    assert run("sample", "--checkpoint", ckpt, "--beam", 1, "-n", 30, "--prime", "The").stdout == g


# --- interactive ------------------------------------------------------------------------------

def test_a_session_carries_its_state_from_line_to_line(loaded):
    params, ck = loaded
    a = sampling.Session(params, ck.spec, ck.vocab, ck.unit, np.random.default_rng(0), 10)
    a.feed("The ki")
    a.feed("ng")
    b = sampling.Session(params, ck.spec, ck.vocab, ck.unit, np.random.default_rng(0), 10)
    b.feed("The king")
    np.testing.assert_array_equal(a.state[0][0], b.state[0][0])
    assert a.generate() == b.generate()
    a.reset()
    c = sampling.Session(params, ck.spec, ck.vocab, ck.unit, np.random.default_rng(5), 10)
    assert a.pending == c.pending and np.array_equal(a.state[0][0], c.state[0][0])
    with pytest.raises(CharrnnError, match="not in the model's vocabulary"):
        a.feed("ok ☃")
    assert np.array_equal(a.state[0][0], c.state[0][0])  # nothing fed


INTERACTIVE_LINES = ["To be", "/length 5", "", "/temperature 0.5", "/bogus", "/length -3", "And ☃", "/top-k 3",
                     "/top-p 2", "nor", "/reset", "/seed 4", "ab", "/help", "/quit", "never read"]


def _interactive_expected(loaded, lines, length, seed):
    """What ``--interactive`` prints for ``lines``, through the library."""
    params, ck = loaded
    s = sampling.Session(params, ck.spec, ck.vocab, ck.unit, np.random.default_rng(seed), length)
    out = []
    for line in lines:
        if line == "/quit":
            break
        if line.startswith("/"):
            name, _, arg = line[1:].partition(" ")
            if name == "length" and int(arg) >= 0:
                s.length = int(arg)
            elif name == "temperature":
                s.temperature = float(arg)
            elif name == "top-k":
                s.top_k = int(arg)
            elif name == "reset":
                s.reset()
            elif name == "seed":
                s.rng = np.random.default_rng(int(arg))
            continue
        try:
            s.feed(line)
        except CharrnnError:
            continue
        out.append(s.generate() + "\n")
    return "".join(out)


def test_interactive_through_a_pipe(ckpt, loaded):
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(ckpt), "--interactive",
                           "-n", "20", "--seed", "1"], input="\n".join(INTERACTIVE_LINES) + "\n",
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _interactive_expected(loaded, INTERACTIVE_LINES, 20, 1)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert errors == ["Error: /bogus: no such command (/help lists them)",
                      "Error: /length '-3': give a whole number >= 0",
                      "Error: 1 character(s) not in the model's vocabulary: '☃' (U+2603)",
                      "Error: /top-p '2': give a number > 0 and <= 1 (or off)"]
    for reply in ("length 5", "temperature 0.5", "top-k 3", "state reset", "seed 4", "/quit"[1:]):
        assert reply in proc.stderr
    assert "Traceback" not in proc.stderr


def test_interactive_edits_lines_with_readline_on_a_terminal(ckpt):
    """A real pseudo-terminal: Ctrl-B (back one character), which only readline knows,
    turns the typed "/length 5<Ctrl-B>1" into /length 15."""
    import pty
    import select

    pytest.importorskip("readline")

    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        os.chdir(ROOT)
        os.environ["PYTHONPATH"] = ROOT
        os.execv(sys.executable, [sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(ckpt),
                                  "--interactive", "-n", "10", "--seed", "1"])
    seen = b""

    def read_until(marker, times=1, timeout=30):
        nonlocal seen
        import time
        end = time.monotonic() + timeout
        while seen.count(marker) < times and time.monotonic() < end:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return seen.count(marker) >= times

    try:
        assert read_until(b"> "), seen
        os.write(fd, b"/length 5\x021\r")
        assert read_until(b"length 15"), seen
        os.write(fd, b"The\r")
        assert read_until(b"> ", times=3), seen  # the continuation was written, and the next prompt
        os.write(fd, b"/quit\r")
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, seen
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_interactive_on_a_terminal_with_stdout_to_a_pipe_keeps_prompts_off_stdout(ckpt, loaded):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(ckpt), "--interactive",
                             "-n", "12", "--seed", "2"], stdin=slave, stderr=slave, stdout=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    os.close(slave)
    try:
        os.write(master, b"The\n/quit\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0
    assert out.decode() == _interactive_expected(loaded, ["The"], 12, 2)  # no prompt, no banner
