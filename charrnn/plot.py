"""``charrnn plot``: loss curves of a run from its metrics.jsonl (matplotlib, optional)."""

from __future__ import annotations

import sys

from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError
from charrnn.progress import damage_warning, read_log


def read_metrics(path: str) -> tuple[list[dict], list[dict]]:
    """Training lines and evaluation lines of a metrics.jsonl (``progress.read_log``): damaged
    lines (a torn last line, bytes that are not UTF-8, NULs) are skipped with one warning on
    stderr, and the good ones plotted."""
    try:
        good, damaged = read_log(path)
    except FileNotFoundError:
        raise CharrnnError(f"{path}: no metrics file (is this a run directory?)") from None
    if damaged:
        print(damage_warning(path, damaged, "skipped"), file=sys.stderr)
    train, val = [], []
    for line in good:
        m = line.record
        if _number(m.get("loss")):
            train.append(m)
        elif _number(m.get("val_loss")):
            val.append(m)
    if not train and not val:
        raise CharrnnError(f"{path}: no metrics to plot yet")
    return train, val


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def plot_run(metrics_path: str, out_path: str, chars_per_step: float | None = None, title: str | None = None) -> None:
    """Draw training loss (each logged step's, and the mean over each log window) and
    validation loss against steps into the PNG ``out_path``.

    The window mean is the training loss to read: min-char-rnn's smoothed loss (also in
    metrics.jsonl) lags about 1,000 steps behind, and is not drawn. ``chars_per_step`` (B·T, or B
    times the mean length under ``train.variable_length``) adds a second axis with the characters
    seen; ``title`` (the run and its model) tops it.
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
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100, layout="constrained")  # room for the legend below
    if train:
        steps = [m["step"] for m in train]
        ax.plot(steps, [m["loss"] for m in train], lw=0.6, alpha=0.4, label="training loss (the logged step)")
        windows = [m for m in train if _number(m.get("window_loss"))]  # runs from before it was logged have none
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
    if ax.get_lines():  # below the axes, off the curves: a run's loss falls through every corner of the plot
        fig.legend(loc="outside lower center", ncol=3, fontsize="small", frameon=False)
    if chars_per_step:
        def millions(s: float) -> float:
            return s * chars_per_step / 1e6

        def steps(c: float) -> float:
            return c * 1e6 / chars_per_step

        top = ax.secondary_xaxis("top", functions=(millions, steps))
        top.set_xlabel("characters seen (millions)")
    try:
        atomic_write(out_path, lambda f: fig.savefig(f, format="png"))
    except OSError as e:  # a missing or read-only folder, a full disk: the file asked for, named
        raise CharrnnError(f"{out_path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
