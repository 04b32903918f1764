"""Recurrent cells. Each module holds one cell's recurrence over a chunk.

Every cell module exposes the same contract, so ``model.py`` can stack any of them:

- ``GATES``: how many H-sized blocks its input pre-activation has (rows of ``Wxh``).
- ``STATE``: the names of the arrays it carries from chunk to chunk (``("h",)`` or ``("h", "c")``).
- ``NORM``: the names of its layer-norm parameters of the recurrent part, in ``norm``'s order,
  each with its size in units of H (``{"gh": 3}`` for the GRU); empty: no layer normalization.
- ``RECURRENT`` (optional, True when absent): False for a cell whose gates read only the
  input (minGRU, minLSTM): it has no ``Whh``, takes ``Whh=None`` and returns ``dWhh = None``,
  and has no ``prepare``.
- ``BOUNDED_H`` (optional, True when absent): False where h is not kept in [-1, 1] (the page
  scales such an h per unit); ``kink_distance(cache)`` (optional): for a nonlinearity with a
  kink, how close the chunk's pre-activations came to it (``charrnn.gradcheck`` keeps its
  finite differences off it).
- ``forward(xa, state0, Whh, prepared=None, xm=None, norm=None) -> (hs, state, cache)``
- ``backward(dhs, dstate, cache) -> (dxa, dWhh, dstate0, dxm, dnorm)``

``xm`` (T, B, GATES*H), or None: the multipliers of multiplicative integration (see
``model.py``), by which the cell scales its recurrent products, block by block, before
adding ``xa``; ``dxm`` is their gradient (None without them).

``norm``, or None: the layer's parameters of layer normalization of the recurrent part
(``model.layer_norm``; ``charrnn.layernorm``): ``(gh,)`` for the GRU, ``(gh, gc, bc)`` for the
LSTM (whose cell is normalized too on its way to h_t). ``dnorm`` is a tuple of their gradients,
of the same shapes (None without them). ``xa`` then comes normalized already (gx ⊙ N(U x_t) +
b, from ``model.py``); the rnn's is ``(gh,)`` too. A cell without layer normalization
declares ``NORM = {}``: ``ModelSpec`` and the config then refuse ``model.layer_norm`` for it. The cache
keeps ``hs`` (and the LSTM's raw ``cs``), which ``charrnn.visualize.tracing`` reads by name.

``xa`` is the input pre-activation ``Wxh x_t + bh`` for all T steps at once, (T, B, GATES*H):
it does not depend on the recurrence, so the caller computes it in one gather or one matrix
product, and the time loop here holds only what truly is sequential.

The cells take their array module from their inputs (``charrnn.device.array_module``):
NumPy on the host, CuPy on a GPU, the same lines for both. On CuPy the LSTM and the GRU
run each step's gate arithmetic as one fused kernel (``charrnn.kernels``); their NumPy
step functions (``_forward_step`` and so on) are what those kernels are checked against.
"""

from types import ModuleType

from charrnn.cells import gru, lstm, mingru, minlstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mingru": mingru, "minlstm": minlstm}


def recurrent(cell: ModuleType) -> bool:
    """Whether a cell module has recurrent weights (``RECURRENT``, True when absent)."""
    return getattr(cell, "RECURRENT", True)
