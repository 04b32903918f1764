"""The state of a run: one object that a training step updates and a checkpoint holds whole.

``RunState`` is everything that changes while a run trains and that resuming needs (the
weights, the optimizer's state, the weight average, the carried hidden state, the
generator of the dropout masks, the step, the position in the streams, the losses the
loop keeps). Its constructors and moves live here too: ``new_run`` (step 0),
``on_device`` / ``on_host`` (where its arrays are), ``next_batch`` (the chunk at its
position, resetting the carried state when the streams wrap).

Letters: B streams, T characters per chunk, H hidden units, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from charrnn import device
from charrnn import model as M
from charrnn.data import Streams


@dataclass
class RunState:
    """Everything that changes while a run trains, and that resuming needs.

    Arrays live on the run's device (NumPy or CuPy); the carried state holds all B streams
    (under MPI, a rank's holds its own B/N, and ``distributed.Ranks.whole`` gathers all B for
    a checkpoint). ``checkpoint.save`` writes every field; ``checkpoint.load`` reads them back.
    """

    params: dict  # name -> array
    opt_state: dict  # "<slot>.<param>" -> array: the optimizer's state by parameter name
    ema: dict | None  # name -> array: the weights' moving average accumulator (optim.ema), or None
    state: list  # carried hidden state: per layer, a tuple of (B, H) arrays
    rng: Any  # draws the dropout masks: a NumPy Generator, or a device.CounterRNG (a GPU run)
    step: int = 0  # optimizer steps taken
    position: int = 0  # offset of the next chunk in every stream
    epoch: int = 0  # times the streams have wrapped
    smooth_loss: float = float("nan")  # min-char-rnn's smoothed loss (per chunk of T = seq_length, as it keeps it)
    elapsed_s: float = 0.0  # wall time of training so far, across resumes
    val_loss: float = float("nan")  # last validation loss, nats per character (nan: none yet)
    best_val_loss: float = float("inf")  # lowest validation loss seen (the one in best.npz)
    evals_since_best: int = 0  # evaluations since it, for early stopping
    first_loss: float = float("nan")  # the run's first step's loss per character (nan: none yet)
    loss_sum: float = 0.0  # the per-character training losses of the steps since the last log line, summed
    loss_steps: int = 0  # and how many steps that is


def new_run(cfg: Any, spec: M.ModelSpec, optimizer: Any, weights: dict | None = None) -> RunState:
    """The state of a run at step 0: min-char-rnn's initial weights (or ``weights``, those of
    ``--init-from``), fresh optimizer state, zero carried state, the generator seeded.

    The initial weights are drawn even when ``weights`` replaces them, so that the generator
    is in the same state either way."""
    tc, dtype = cfg.train, np.dtype(cfg.model.dtype)
    rng = np.random.default_rng(tc.seed)
    params = M.init_params(spec, rng, dtype, cfg.model.init_std)
    if weights is not None:
        params = {k: v.astype(dtype) for k, v in weights.items()}
    return RunState(
        params=params,
        opt_state=optimizer.init_state(params),
        ema={k: np.zeros_like(v) for k, v in params.items()} if cfg.optim.ema is not None else None,
        state=M.zero_state(spec, tc.batch_size, dtype),
        rng=rng,
        smooth_loss=-math.log(1.0 / spec.vocab_size) * tc.seq_length,  # min-char-rnn's start
    )


def on_device(run: RunState, xp: Any) -> RunState:
    """``run`` with its arrays in ``xp``'s memory (numpy: the host, cupy: the GPU), in place.

    A GPU run's dropout masks come from a ``device.CounterRNG`` (its state, seed and draws, is
    what the checkpoint keeps, so the run resumes exactly on the GPU); a run that reaches the
    GPU with NumPy's generator (a CPU checkpoint) starts one, seeded from that generator.
    """
    run.params, run.opt_state, run.ema = (device.to_device(t, xp) for t in (run.params, run.opt_state, run.ema))
    run.state = [tuple(device.to_device(list(s), xp)) for s in run.state]
    if isinstance(run.rng, device.CounterRNG):
        run.rng.xp = xp
    elif xp is not np:
        run.rng = device.CounterRNG(int(run.rng.integers(2**63)), xp=xp)
    return run


def on_host(run: RunState) -> RunState:
    """A copy of ``run`` whose arrays are on the host, for a checkpoint (the run itself stays)."""
    return replace(run, params=device.to_host(run.params), opt_state=device.to_host(run.opt_state),
                   ema=device.to_host(run.ema), state=[tuple(device.to_host(list(s))) for s in run.state])


def next_batch(run: RunState, streams: Streams, spec: M.ModelSpec,
               length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The chunk at the run's position, (X, Y) each (T, B), T = ``length`` (the step's, under
    ``train.variable_length``) or the streams' T; when the streams would run past their end,
    they start again (a new epoch) from a zero state (min-char-rnn's ``hprev`` reset when
    ``p + seq_length + 1`` passes the end of the data)."""
    if streams.wraps(run.position, length):
        run.position, run.epoch = 0, run.epoch + 1
        h = run.state[0][0]  # (B, H), or (B/N, H) under MPI, on the run's device
        run.state = M.zero_state(spec, len(h), h.dtype, device.array_module(h))
    return streams.batch(run.position, length)


def not_finite(run: RunState) -> str | None:
    """What of the run's arrays holds NaN or inf (a checkpoint of it would not load), or None."""
    kinds = (("weights", run.params), ("optimizer state", run.opt_state), ("weight average", run.ema or {}))
    for what, arrays in kinds:
        if not all(bool(device.array_module(a).isfinite(a).all()) for a in arrays.values()):
            return what
    return None
