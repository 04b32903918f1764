"""The visualize page's live model: page sizes with and without the weights, and how fast
``window.charrnn.generate`` samples in headless Chromium (Debian's chromium and chromedriver).

Random weights (the numbers do not depend on their values) over the bundled corpus's
vocabulary (V = 76) and 2,000 characters of it (``charrnn visualize``'s default ``--chars``)::

    python benchmarks/live_page.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from charrnn import data as D  # noqa: E402
from charrnn import model as M  # noqa: E402
from charrnn import visualize as viz  # noqa: E402

MODELS = (("rnn", 256, 1), ("rnn", 512, 1), ("lstm", 512, 1), ("lstm", 512, 2))  # the first: configs/default.yaml
CHARS = 500  # generated per timing


def main() -> None:
    text = (ROOT / "data" / "shakespeare_tiny.txt").read_text(encoding="utf-8")
    vocab = D.build_vocab(text)
    shown = text[1000:3000]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for cell, H, L in MODELS:
                spec = M.ModelSpec(cell, len(vocab), H, L)
                params = M.init_params(spec, np.random.default_rng(0), np.float32, std=0.05)
                header = {"checkpoint": "x", "model": spec.describe(), "step": 0, "val_loss": None, "source": "t"}
                html, _ = viz.build(params, spec, vocab, shown, header)
                without, _ = viz.build(params, spec, vocab, shown, header, weight_limit=0)
                n = viz.weights.weight_bytes(spec)
                line = (f"{spec.describe()}, V={len(vocab)}: weights {n / 1e6:.2f} MB float32; page "
                        f"{len(html.encode()) / 1e6:.2f} MB with them, {len(without.encode()) / 1e6:.2f} MB without")
                if n <= viz.weights.LIMIT:
                    page = Path(tmp) / "p.html"
                    page.write_text(html, encoding="utf-8")
                    driver.get(page.as_uri())
                    secs = driver.execute_script(
                        f"const t = performance.now(); window.charrnn.generate('T', {CHARS}, 0.8, 1);"
                        "return (performance.now() - t) / 1000")
                    line += f"; generates {CHARS / secs:,.0f} chars/s"
                print(line, flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
