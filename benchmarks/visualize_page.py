"""How large the ``charrnn visualize`` page is, and how fast a browser opens and repaints it.

Builds the page for N characters of the bundled corpus with a model of random weights (the
page's size does not depend on the weights: the activations are 8-bit codes of fixed
length), prints its size and what makes it up, and, when Chromium is installed (Debian's
``chromium``), loads it headless three times and reads three timings the page records:

- ``ready``: from navigation start to the page painted with the first unit (its own
  ``data-ready-ms``, set at the end of its script);
- ``switch``: the mean time to colour the text by the next unit and lay it out again, over 20
  units (a probe script added to a copy of the page clicks "next" and forces layout);
- ``loss``: the same for switching to the per-character loss colouring.

    python benchmarks/visualize_page.py                       # GRU 512, 10,000 characters
    python benchmarks/visualize_page.py --cell lstm --layers 2
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from charrnn import model as M  # noqa: E402
from charrnn import visualize as viz  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402
from charrnn.data import build_vocab, read_text  # noqa: E402

PROBE = """<script>
(function () {
  const box = document.getElementById("text"), mode = document.getElementById("mode");
  let t = performance.now();
  for (let k = 0; k < 20; k++) { document.getElementById("next").click(); box.offsetHeight; }
  document.body.dataset.switchMs = ((performance.now() - t) / 20).toFixed(1);
  t = performance.now();
  mode.value = "loss"; mode.dispatchEvent(new Event("change")); box.offsetHeight;
  document.body.dataset.lossMs = (performance.now() - t).toFixed(1);
})();
</script>
</body>"""


def browser_timings(page, chromium, runs=3):
    """Median of ``runs`` headless loads of the page with the probe: (ready, switch, loss) in ms."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "probe.html")
        i = page.rindex("</body>")
        with open(path, "w", encoding="utf-8") as f:
            f.write(page[:i] + PROBE + page[i + len("</body>"):])
        got = []
        for _ in range(runs):
            cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "file://" + path]
            dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
            got.append([float(re.search(rf'data-{k}-ms="([0-9.]+)"', dom).group(1))
                        for k in ("ready", "switch", "loss")])
    return [statistics.median(col) for col in zip(*got, strict=True)], got


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", choices=list(CELLS), default="gru")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--chars", type=int, default=10_000)
    args = ap.parse_args(argv)
    text = read_text(ROOT / "data" / "shakespeare_tiny.txt")
    vocab = build_vocab(text)
    spec = M.ModelSpec(args.cell, len(vocab), args.hidden, args.layers)
    params = M.init_params(spec, np.random.default_rng(0), std=0.05)
    header = {"checkpoint": "(random weights)", "model": spec.describe(), "step": 0, "val_loss": None,
              "source": "data/shakespeare_tiny.txt"}
    page, data = viz.build(params, spec, vocab, text[:args.chars], header)
    size = len(page.encode("utf-8"))
    acts = sum(len(a["q"]) for a in data["arrays"])
    print(f"{spec.describe()}, {args.chars:,} characters: page {size:,} bytes ({size / 1e6:.2f} MB); "
          f"activations {acts:,} bytes of base64 for {len(data['arrays'])} array(s) of {args.hidden} x {args.chars:,}, "
          f"predictions and losses {len(data['top']['idx']) + len(data['top']['p']) + len(data['loss']):,}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("browser timings skipped: no chromium on PATH (apt-get install chromium)")
        return
    (ready, switch, loss), runs = browser_timings(page, chromium)
    print(f"headless Chromium, median of {len(runs)} loads: ready {ready:.0f} ms, next unit {switch:.1f} ms, "
          f"loss colouring {loss:.1f} ms (runs: {runs})")


if __name__ == "__main__":
    main()
