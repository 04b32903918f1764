import subprocess
import sys

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, run

from charrnn import model as M
from charrnn import sampling

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
