"""charrnn's own cells written with torch operations: the PyTorch references of the throughput
rows whose cell torch does not ship (``benchmarks/throughput.py`` rows 7-11).

``CharModel`` computes the function of ``charrnn.model`` for the options those rows use, from
a copy of a charrnn parameter dict (the same names, shapes and block orders), time-major:

- ``gru`` as ``charrnn/cells/gru.py`` writes it (r applied to h_{t-1} *before* the product,
  blocks r, z, h̃; not ``nn.GRU``), optionally with multiplicative integration (Wu et al. 2016,
  "On Multiplicative Integration with Recurrent Neural Networks"; ``charrnn/model.py``'s
  docstring: each recurrent product scaled by m_t = Wmx x_t + bm before U x_t + b is added);
- ``gru`` and ``lstm`` with layer normalization (Ba, Kiros & Hinton 2016, "Layer
  Normalization"): the input part and the recurrent part of every gate block normalized
  separately over its H units (``torch.nn.functional.layer_norm`` per block, eps 1e-5), scaled
  by the gains gx, gh, and the LSTM's output h_t = o ⊙ tanh(gc ⊙ N(c_t) + bc);
- ``mingru`` and ``minlstm`` (Feng et al. 2024, "Were RNNs All We Needed?"): every gate from
  one product over the chunk, then the elementwise recurrence h_t = a_t ⊙ h_{t-1} + b_t, run
  either as a loop over T (``scan="loop"``) or as the paper's log-space parallel scan
  (``scan="log"``: Heinsen 2023, "Efficient Parallelization of a Ubiquitous Sequential
  Computation", as the authors' code writes it: a cumulative sum and a ``logcumsumexp``);
- ``residual``: layer l ≥ 1 outputs h_l + its input.

Layer 0's input is a lookup of the table Wxhᵀ + bh (gx ⊙ N(Wxhᵀ) + bh with layer norm), as
charrnn gathers it; layers above multiply. This module imports torch: ``harness`` imports it
only when a row asks for a reference.

Letters: T time steps, B streams, H hidden units, V vocabulary, G gate blocks, L layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)

GATES = {"gru": 3, "lstm": 4, "mingru": 2, "minlstm": 3}
EPS = 1e-5  # layer norm's, inside the square root (charrnn.layernorm.EPS, torch's default)


def _name(base: str, layer: int) -> str:
    return base if layer == 0 else f"{base}_{layer}"  # charrnn.model.pname


def _norm(a: torch.Tensor, gain: torch.Tensor, blocks: int) -> torch.Tensor:
    """gain ⊙ N(a), each of a's ``blocks`` blocks of H (last axis) normalized on its own."""
    shape = a.shape
    H = shape[-1] // blocks
    n = F.layer_norm(a.reshape(*shape[:-1], blocks, H), (H,), eps=EPS)
    return (n * gain.reshape(blocks, H)).reshape(shape)


def _g(a: torch.Tensor) -> torch.Tensor:
    """The minimal cells' g: a + 0.5 for a ≥ 0, σ(a) below."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def _log_g(a: torch.Tensor) -> torch.Tensor:
    """log g(a), as the authors' code: log(relu(a) + 0.5) for a ≥ 0, -softplus(-a) below."""
    return torch.where(a >= 0, (F.relu(a) + 0.5).log(), -F.softplus(-a))


def _log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for all t at once, in log space: (T, B, H).

    log_a, log_b : (T, B, H); h0 : (B, H), positive (the minimal cells' h is: g > 0), or zero
    at a stream's start, held at the smallest normal float so that its log is finite
    (it adds at most 1e-38 to h).
    """
    a_star = F.pad(torch.cumsum(log_a, dim=0), (0, 0, 0, 0, 1, 0))  # (T+1, B, H), a_star[0] = 0
    log_h0 = h0.clamp_min(torch.finfo(h0.dtype).tiny).log()[None]
    log_h = a_star + torch.logcumsumexp(torch.cat([log_h0, log_b]) - a_star, dim=0)
    return torch.exp(log_h)[1:]


def _loop_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t, one elementwise step per t: (T, B, H)."""
    hs, h = [], h0
    for a_t, b_t in zip(a.unbind(0), b.unbind(0), strict=True):
        h = a_t * h + b_t
        hs.append(h)
    return torch.stack(hs)


class CharModel(torch.nn.Module):
    """charrnn's model (``charrnn.model.forward`` up to the logits) in torch operations.

    params: a charrnn parameter dict (name -> NumPy array), copied; cell: gru, lstm, mingru or
    minlstm; layers, multiplicative, layer_norm, residual: as ``model.*`` of a config; scan:
    the minimal cells' recurrence, "loop" or "log".
    """

    def __init__(self, params: dict[str, np.ndarray], cell: str, layers: int = 1, multiplicative: bool = False,
                 layer_norm: bool = False, residual: bool = False, scan: str = "loop"):
        super().__init__()
        self.cell, self.layers, self.G = cell, layers, GATES[cell]
        self.multiplicative, self.layer_norm, self.residual = multiplicative, layer_norm, residual
        self.scan = {"loop": _loop_scan, "log": _log_scan}[scan]
        self.w = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(torch.tensor(np.array(v, copy=True))) for k, v in params.items()})
        self.H = self.w["Why"].shape[1]

    def zero_state(self, B: int, dev: Any = "cpu") -> list:
        """The state at a stream's start: per layer (h,) or (h, c), each (B, H) zeros."""
        n, dtype = (2 if self.cell == "lstm" else 1), self.w["Why"].dtype
        return [tuple(torch.zeros(B, self.H, device=dev, dtype=dtype) for _ in range(n)) for _ in range(self.layers)]

    def forward(self, X: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """X (T, B) indices, state per layer -> logits (T, B, V), the state after the chunk."""
        w, G, T, B = self.w, self.G, X.shape[0], X.shape[1]
        x, out = None, []
        for layer in range(self.layers):
            W = w[_name("Wxh", layer)]
            if layer == 0:
                table = _norm(W.T, w["gx"], G) if self.layer_norm else W.T  # (V, G·H)
                xa = F.embedding(X, table + w["bh"])  # (T, B, G·H)
            else:
                xa = x @ W.T
                if self.layer_norm:
                    xa = _norm(xa, w[_name("gx", layer)], G)
                xa = xa + w[_name("bh", layer)]
            xm = None
            if self.multiplicative:
                Wm, bm = w[_name("Wmx", layer)], w[_name("bm", layer)]
                xm = F.embedding(X, Wm.T + bm) if layer == 0 else x @ Wm.T + bm
            step = {"gru": self._gru, "lstm": self._lstm, "mingru": self._mingru, "minlstm": self._minlstm}[self.cell]
            hs, s = step(layer, xa, xm, state[layer])
            out.append(s)
            x = hs + x if self.residual and layer > 0 else hs
        logits = x.reshape(T * B, -1) @ w["Why"].T + w["by"]
        return logits.reshape(T, B, -1), out

    def _gru(self, layer, xa, xm, state):
        """charrnn/cells/gru.py: r, z = σ(·); h̃ = tanh(W_h (r ⊙ h) ·); h = h̃ + z ⊙ (h - h̃)."""
        H = self.H
        Whh = self.w[_name("Whh", layer)]
        Wrz, Wh = Whh[: 2 * H].T, Whh[2 * H :].T
        gh = self.w[_name("gh", layer)] if self.layer_norm else None
        (h,) = state
        hs = []
        # Per-step views made once (unbind): indexing xa[t] in the loop would make its
        # backward write a zeroed (T, B, 3H) gradient per step.
        xrz, xh = xa[..., : 2 * H].unbind(0), xa[..., 2 * H :].unbind(0)
        mrz, mh = (xm[..., : 2 * H].unbind(0), xm[..., 2 * H :].unbind(0)) if xm is not None else (None, None)
        for t in range(xa.shape[0]):
            arz = h @ Wrz  # (B, 2H)
            if xm is not None:
                arz = arz * mrz[t]
            if gh is not None:
                arz = _norm(arz, gh[: 2 * H], 2)
            rz = torch.sigmoid(arz + xrz[t])
            r, z = rz[:, :H], rz[:, H:]
            ah = (r * h) @ Wh
            if xm is not None:
                ah = ah * mh[t]
            if gh is not None:
                ah = _norm(ah, gh[2 * H :], 1)
            hc = torch.tanh(ah + xh[t])
            h = hc + z * (h - hc)
            hs.append(h)
        return torch.stack(hs), (h,)

    def _lstm(self, layer, xa, xm, state):
        """charrnn/cells/lstm.py, blocks i, f, g, o; with layer norm h = o ⊙ tanh(gc ⊙ N(c) + bc)."""
        H = self.H
        WhhT = self.w[_name("Whh", layer)].T
        ln = self.layer_norm
        if ln:
            gh, gc, bc = (self.w[_name(n, layer)] for n in ("gh", "gc", "bc"))
        h, c = state
        hs = []
        xs, ms = xa.unbind(0), (xm.unbind(0) if xm is not None else None)  # per-step views, made once
        for t in range(xa.shape[0]):
            a = h @ WhhT  # (B, 4H)
            if xm is not None:
                a = a * ms[t]
            if ln:
                a = _norm(a, gh, 4)
            a = a + xs[t]
            i, f, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H]), torch.sigmoid(a[:, 3 * H :])
            g = torch.tanh(a[:, 2 * H : 3 * H])
            c = f * c + i * g
            h = o * torch.tanh(_norm(c, gc, 1) + bc if ln else c)
            hs.append(h)
        return torch.stack(hs), (h, c)

    def _mingru(self, layer, xa, xm, state):
        """charrnn/cells/mingru.py: z = σ(·), h̃ = g(·), h = (1 - z) ⊙ h + z ⊙ h̃."""
        H = self.H
        (h0,) = state
        k, ah = xa[..., :H], xa[..., H:]
        if self.scan is _log_scan:  # log(1 - z) = -softplus(k), log z = -softplus(-k)
            hs = _log_scan(-F.softplus(k), -F.softplus(-k) + _log_g(ah), h0)
        else:
            z = torch.sigmoid(k)
            hs = _loop_scan(1 - z, z * _g(ah), h0)
        return hs, (hs[-1],)

    def _minlstm(self, layer, xa, xm, state):
        """charrnn/cells/minlstm.py: f' = f / (f + i) = σ(log f - log i), i' = 1 - f'."""
        H = self.H
        (h0,) = state
        af, ai, ah = xa[..., :H], xa[..., H : 2 * H], xa[..., 2 * H :]
        d = F.softplus(-ai) - F.softplus(-af)  # log f - log i
        if self.scan is _log_scan:  # log f' = -softplus(-d), log i' = -softplus(d)
            hs = _log_scan(-F.softplus(-d), -F.softplus(d) + _log_g(ah), h0)
        else:
            fn = torch.sigmoid(d)
            hs = _loop_scan(fn, (1 - fn) * _g(ah), h0)
        return hs, (hs[-1],)
