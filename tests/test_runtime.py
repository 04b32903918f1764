import platform
import subprocess
import sys

import pytest
from conftest import run

# Steps of a model whose per-chunk arrays (0.2 to 1.6 MB) are above glibc's default mmap
# threshold, counting the minor page faults of the steps after the first few.
SCRIPT = """
import resource, sys
import numpy as np
from charrnn import model as M
from charrnn.runtime import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else None
spec = M.ModelSpec("gru", 50, 256)
rng = np.random.default_rng(0)
params = M.init_params(spec, rng)
X, Y = rng.integers(0, 50, (2, 32, 32))
state = M.zero_state(spec, 32)
for _ in range(3):
    M.loss_and_grads(params, spec, X, Y, state)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    M.loss_and_grads(params, spec, X, Y, state)
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(mode):
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned, float(faults)


@pytest.mark.slow  # many steps, and its page-fault count is what a loaded machine disturbs most
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the allocator setting is for glibc on Linux",
)
def test_tuned_allocator_reuses_mapped_memory_across_steps():
    _, default_faults = faults_per_step("default")
    tuned, tuned_faults = faults_per_step("tuned")
    assert tuned == "True"
    # glibc's defaults map each step's large arrays afresh: hundreds of faults per step
    assert default_faults > 200
    assert tuned_faults < 10


def test_cli_tunes_the_allocator(monkeypatch):
    calls = []
    monkeypatch.setattr("charrnn.runtime.tune_allocator", lambda: calls.append(1))
    run("--help")  # the group callback does not run for --help alone
    run("gradcheck", "--cell", "rnn", "--layers", "1", "--dropout", "0")
    assert calls == [1]
