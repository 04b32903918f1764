"""The model's weights inside the page, for the page's own forward pass (``live.js``).

``pack`` writes every parameter of ``model.param_shapes`` as float32, little-endian, base64,
row-major in its NumPy shape, with the spec the script needs to run them (cell, layers, H, V,
multiplicative, residual). Dropout is not packed: it is off at inference, as in ``charrnn eval`` and
``charrnn sample``. The result goes into the page's JSON document (``render.build``), so the
weights are data like the text: never script, never markup.

Size: 4 bytes per parameter, 4/3 of that in base64. Above ``LIMIT`` bytes of float32 weights
the page leaves them out and says why (``{"omitted": reason}``): a page of tens of MB is slow
to open and to mail, and its forward pass would be too slow to type into.
"""

import base64
import math

import numpy as np

from charrnn import model as M

LIMIT = 8_000_000  # bytes of float32 weights a page carries at most (8 MB; 10.7 MB in base64)


def weight_bytes(spec: M.ModelSpec) -> int:
    """Bytes of ``spec``'s parameters as float32."""
    return 4 * sum(math.prod(shape) for shape in M.param_shapes(spec).values())


def pack(params: dict, spec: M.ModelSpec, limit: int = LIMIT) -> dict:
    """The ``live`` entry of the page's document: the spec and the weights, or why they are left out.

    Returns ``{"cell", "layers", "H", "V", "multiplicative", "layer_norm", "residual", "bytes", "params": {name:
    {"shape", "f32"}}}``
    or, when the float32 weights take more than ``limit`` bytes, ``{"omitted": reason, "bytes", "limit"}``.
    """
    n = weight_bytes(spec)
    if n > limit:
        return {"omitted": (f"the model's weights take {n / 1e6:.1f} MB as float32, over the page's limit of "
                            f"{limit / 1e6:g} MB: this page shows the traced text only"),
                "bytes": n, "limit": limit}
    packed = {}
    for name, shape in M.param_shapes(spec).items():
        a = np.ascontiguousarray(np.asarray(params[name]), dtype="<f4")
        if a.shape != shape:
            raise ValueError(f"parameter {name} has shape {a.shape}, expected {shape}")
        packed[name] = {"shape": list(shape), "f32": base64.b64encode(a.tobytes()).decode("ascii")}
    return {"cell": spec.cell, "layers": spec.layers, "H": spec.hidden_size, "V": spec.vocab_size,
            "multiplicative": spec.multiplicative, "layer_norm": spec.layer_norm, "residual": spec.residual,
            "bytes": n, "params": packed}
