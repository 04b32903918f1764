"""Tests of charrnn/layernorm.py: blockwise layer normalization against its formula written
directly, against torch's layer_norm, and its backward against finite differences."""

import numpy as np
import pytest

from charrnn import layernorm
from charrnn.gradcheck import max_relative_error, numerical_gradient


def direct(a, gain, blocks, eps=1e-5):
    """The formula, one row and one block at a time."""
    out = np.empty_like(a)
    rows = a.reshape(-1, a.shape[-1])
    o = out.reshape(rows.shape)
    H = a.shape[-1] // blocks
    for i, row in enumerate(rows):
        for k in range(blocks):
            x = row[k * H : (k + 1) * H]
            o[i, k * H : (k + 1) * H] = (x - x.mean()) / np.sqrt(x.var() + eps) * gain[k * H : (k + 1) * H]
    return out


@pytest.mark.parametrize("shape, blocks", [((6, 12), 4), ((3, 2, 15), 3), ((4, 5), 1)])
def test_forward_is_the_formula_block_by_block(shape, blocks):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape) * 3 + 1
    gain = rng.standard_normal(shape[-1])
    y, cache = layernorm.forward(a, gain, blocks)
    np.testing.assert_allclose(y, direct(a, gain, blocks), rtol=1e-12, atol=1e-12)
    n = cache.n.reshape(-1, blocks, shape[-1] // blocks)
    np.testing.assert_allclose(n.mean(axis=-1), 0, atol=1e-12)  # each block: mean 0, variance 1 (less ε's share)
    np.testing.assert_allclose(n.var(axis=-1), 1, atol=1e-4)


def test_forward_keeps_float32():
    a = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    y, _ = layernorm.forward(a, np.ones(8, dtype=np.float32), 2)
    assert y.dtype == np.float32


@pytest.mark.parametrize("shape, blocks", [((4, 12), 4), ((2, 3, 10), 2)])
def test_backward_matches_finite_differences(shape, blocks):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(shape)
    gain = rng.standard_normal(shape[-1])
    w = rng.standard_normal(shape)  # loss = Σ w ⊙ y

    def f():
        return float((w * layernorm.forward(a, gain, blocks)[0]).sum())

    _, cache = layernorm.forward(a, gain, blocks)
    da, dgain = layernorm.backward(w, cache)
    assert max_relative_error(da, numerical_gradient(f, a, 1e-4)) < 1e-8
    assert max_relative_error(dgain, numerical_gradient(f, gain, 1e-4)) < 1e-8


def test_matches_torch_layer_norm_per_block():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the cross-check is skipped")
    rng = np.random.default_rng(3)
    a, gain, w = rng.standard_normal((5, 12)), rng.standard_normal(12), rng.standard_normal((5, 12))
    ta, tg = torch.from_numpy(a).requires_grad_(), torch.from_numpy(gain).requires_grad_()
    ty = torch.cat([torch.nn.functional.layer_norm(ta[:, k * 4 : (k + 1) * 4], (4,), tg[k * 4 : (k + 1) * 4],
                                                   None, 1e-5) for k in range(3)], dim=1)
    (torch.from_numpy(w) * ty).sum().backward()
    y, cache = layernorm.forward(a, gain, 3)
    da, dgain = layernorm.backward(w, cache)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(da, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgain, tg.grad.numpy(), rtol=1e-10, atol=1e-12)
