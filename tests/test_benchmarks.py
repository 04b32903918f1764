"""The throughput benchmark's own arithmetic and references (``benchmarks/harness.py``,
``benchmarks/torch_cells.py``): the FLOPs it counts per character, the GEMM peak it measures,
and the torch references of charrnn's cells, which must compute charrnn's function (loss and
every gradient) before their timings mean anything.
"""

import math
import sys

import numpy as np
import pytest
from conftest import ROOT

from charrnn import model as M
from charrnn.cells import CELLS

sys.path.insert(0, f"{ROOT}/benchmarks")  # the benchmarks' harness, as tests/test_minchar_parity.py does
import harness as HN  # noqa: E402

V = 65  # the bundled corpus's vocabulary size, for the figures written out below


def weight_products(spec: M.ModelSpec) -> int:
    """2 × the entries of every weight that a forward pass multiplies by, from the parameter
    shapes alone: each recurrent ``Whh``, ``Wxh`` and ``Wmx`` of the layers above 0 (layer 0's
    are lookups), and ``Why``. The count that ``forward_flops`` must agree with."""
    total = 0
    for name, shape in M.param_shapes(spec).items():
        base, _, layer = name.partition("_")
        if base in ("Whh", "Why") or (base in ("Wxh", "Wmx") and layer):
            total += 2 * math.prod(shape)
    return total


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("multiplicative", [False, True])
def test_the_flops_count_every_product_of_the_model(cell, layers, multiplicative):
    if multiplicative and not HN.recurrent(cell):
        pytest.skip(f"{cell} has no recurrent product to scale")
    spec = M.ModelSpec(cell, V, 48, layers, 0.0, multiplicative)
    fwd = weight_products(spec)
    assert HN.sample_flops_per_char(cell, 48, V, layers, multiplicative) == fwd
    assert HN.train_flops_per_char(cell, 48, V, layers, multiplicative) == 3 * fwd


@pytest.mark.parametrize("what, args, forward", [
    # configs/shakespeare.yaml's model: one recurrent product of 3 blocks (Wmx at layer 0 is a lookup)
    ("gru 448 multiplicative", (3, 448, V, 1, True, True), 2 * 3 * 448 * 448 + 2 * 448 * V),
    # layer 1: recurrent, input and Wmx products
    ("lstm 2×512 multiplicative", (4, 512, V, 2, True, True), 4 * 2 * 4 * 512 * 512 + 2 * 512 * V),
    # no recurrent product: only layer 1's input GEMM and the output
    ("mingru 2×512", (2, 512, V, 2, False, False), 2 * 2 * 512 * 512 + 2 * 512 * V),
    ("minlstm 2×512", (3, 512, V, 2, False, False), 2 * 3 * 512 * 512 + 2 * 512 * V),
    ("minlstm 1×512", (3, 512, V, 1, False, False), 2 * 512 * V),
])
def test_the_flops_of_the_new_rows(what, args, forward):
    assert HN.forward_flops(*args) == forward, what


def test_the_gemm_peak_is_measured():
    peak = HN.gemm_peak_gflops(128, repeats=2)
    assert math.isfinite(peak) and peak > 0.01, f"a 128 × 128 float32 product at {peak} GFLOP/s"


CASES = {  # id: cell, model options, the minimal cells' scan
    "gru": ("gru", {}, "loop"),
    "gru-mi-2": ("gru", {"multiplicative": True, "layers": 2}, "loop"),
    "lstm-2": ("lstm", {"layers": 2}, "loop"),
    "gru-ln-mi-2": ("gru", {"layer_norm": True, "multiplicative": True, "layers": 2}, "loop"),
    "lstm-ln": ("lstm", {"layer_norm": True}, "loop"),
    "lstm-ln-mi-2": ("lstm", {"layer_norm": True, "multiplicative": True, "layers": 2}, "loop"),
    "lstm-res-3": ("lstm", {"residual": True, "layers": 3}, "loop"),
    "mingru-res-2-loop": ("mingru", {"residual": True, "layers": 2}, "loop"),
    "mingru-res-2-log": ("mingru", {"residual": True, "layers": 2}, "log"),
    "minlstm-res-2-loop": ("minlstm", {"residual": True, "layers": 2}, "loop"),
    "minlstm-res-2-log": ("minlstm", {"residual": True, "layers": 2}, "log"),
    "minlstm-log": ("minlstm", {}, "log"),
}


def charrnn_side(cell, options):
    data, vocab = HN.read_corpus()
    return HN.trainer(data, vocab, cell, 12, 7, 3, dtype="float64", init_std=0.4, **options)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_torch_reference_computes_charrnns_loss_and_gradients(case):
    """From a carried state that is not zero (the second chunk), in float64: the loss and every
    gradient of ``torch_cells.CharModel`` against ``model.loss_and_grads``."""
    torch = pytest.importorskip("torch")
    cell, options, scan = CASES[case]
    cr = charrnn_side(cell, options)
    ref = HN.torch_reference(cr, scan)
    params, spec = cr.run.params, cr.spec
    (X0, _), (X, Y) = cr.streams.batch(0), cr.streams.batch(cr.streams.T)
    _, state = M.loss_only(params, spec, X0, X0, M.zero_state(spec, 3, np.float64))
    ours = M.loss_and_grads(params, spec, X, Y, state)
    logits, _ = ref(torch.from_numpy(X.astype(np.int64)), [tuple(torch.from_numpy(a) for a in s) for s in state])
    y = torch.from_numpy(Y.astype(np.int64)).reshape(-1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(len(y), -1), y, reduction="sum") / 3
    loss.backward()
    assert loss.item() == pytest.approx(ours.loss, rel=1e-10), f"loss: charrnn {ours.loss}, torch {loss.item()}"
    assert set(ref.w) == set(ours.grads)
    for name, g in ours.grads.items():
        np.testing.assert_allclose(ref.w[name].grad.numpy(), g, rtol=1e-7, atol=1e-10,
                                   err_msg=f"d{name}: torch (actual) against charrnn (desired)")


@pytest.mark.slow
def test_a_reference_of_another_function_is_refused():
    torch = pytest.importorskip("torch")
    cr = charrnn_side("gru", {"multiplicative": True})
    ref = HN.torch_reference(cr)
    assert HN.same_loss(cr, ref)
    with torch.no_grad():
        ref.w["bm"] += 0.05  # the multipliers' bias a little off: another function
    with pytest.raises(AssertionError, match="the torch reference's"):
        HN.same_loss(cr, ref)
