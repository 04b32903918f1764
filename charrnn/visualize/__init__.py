"""See inside a trained model: hidden units and predictions over a text, as one web page.

What Karpathy's "The Unreasonable Effectiveness of Recurrent Neural Networks" shows: the
text coloured by one hidden unit's activation (a unit that follows quotes, one that counts
the position in a line), and under every character the model's guesses for the next one.

- ``tracing``: running the model over a text (``trace``, from the cells' own caches) and
  ranking the units that follow simple features of it (``features``, ``correlations``,
  ``rank_units``); ``sample_text``.
- ``render``: the page's JSON document (``page_data``, with ``quantize``d activations) and
  the self-contained HTML file (``page``, ``build``), made of the package's ``page.html``,
  ``page.css`` and ``page.js`` with the document inlined: no network, no external script,
  font or style; user text only as data, shown as text.
- ``weights``: the model's weights packed into the page's document (``pack``, up to ``LIMIT``
  bytes of float32), for the page's own forward pass (``live.js``, ``window.charrnn``).
- ``checkpoint_page``: ``page_for``, the page of a checkpoint over a file, a sample or the
  run's validation split: what ``charrnn visualize`` writes.

Letters: N characters of text, H hidden units, V vocabulary, K predictions kept (5).
"""

from charrnn.visualize import weights
from charrnn.visualize.checkpoint_page import Visualization, page_for
from charrnn.visualize.render import build, json_for_script, page, page_data, page_files, quantize, state_scale
from charrnn.visualize.tracing import (
    FEATURES,
    NO_LOSS,
    TOP_K,
    Pick,
    Trace,
    correlations,
    features,
    rank_units,
    sample_text,
    trace,
)

__all__ = [
    "FEATURES", "NO_LOSS", "TOP_K", "Pick", "Trace", "Visualization", "build", "correlations", "features",
    "json_for_script", "page", "page_data", "page_files", "page_for", "quantize", "rank_units", "sample_text",
    "state_scale", "trace", "weights",
]
