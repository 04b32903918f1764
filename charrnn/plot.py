"""``charrnn plot``: loss curves of a run from its metrics.jsonl (matplotlib, optional)."""

from __future__ import annotations

import json

from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError


def read_metrics(path: str) -> tuple[list[dict], list[dict]]:
    """Training lines and evaluation lines of a metrics.jsonl, skipping a torn last line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise CharrnnError(f"{path}: no metrics file (is this a run directory?)") from None
    train, val = [], []
    for line in lines:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if "loss" in m:
            train.append(m)
        elif "val_loss" in m:
            val.append(m)
    if not train and not val:
        raise CharrnnError(f"{path}: no metrics to plot yet")
    return train, val


def plot_run(metrics_path: str, out_path: str, chars_per_step: int | None = None, title: str | None = None) -> None:
    """Draw training loss (each logged step's, and the mean over each log window) and
    validation loss against steps into the PNG ``out_path``.

    The window mean is the training loss to read: min-char-rnn's smoothed loss (also in
    metrics.jsonl) lags about 1,000 steps behind, and is not drawn. ``chars_per_step`` (B·T)
    adds a second axis with the characters seen; ``title`` (the run and its model) tops it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharrnnError(
            "charrnn plot needs matplotlib: pip install 'charrnn[plot]' (or pip install matplotlib)"
        ) from None
    train, val = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        steps = [m["step"] for m in train]
        ax.plot(steps, [m["loss"] for m in train], lw=0.6, alpha=0.4, label="training loss (the logged step)")
        windows = [m for m in train if "window_loss" in m]  # runs from before it was logged have none
        if windows:
            ax.plot([m["step"] for m in windows], [m["window_loss"] for m in windows], lw=1.5,
                    label="training loss (mean of the steps since the previous point)")
    if val:
        ax.plot([m["step"] for m in val], [m["val_loss"] for m in val], "o-", lw=1.5, ms=3, label="validation loss")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend()
    if chars_per_step:
        def millions(s: float) -> float:
            return s * chars_per_step / 1e6

        def steps(c: float) -> float:
            return c * 1e6 / chars_per_step

        top = ax.secondary_xaxis("top", functions=(millions, steps))
        top.set_xlabel("characters seen (millions)")
    fig.tight_layout()
    try:
        atomic_write(out_path, lambda f: fig.savefig(f, format="png"))
    except OSError as e:  # a missing or read-only folder, a full disk: the file asked for, named
        raise CharrnnError(f"{out_path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
