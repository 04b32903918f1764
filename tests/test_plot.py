import sys

import pytest
from conftest import CONFIGS, one_line_error, run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run("train", "--config", f"{CONFIGS}/smoke.yaml", "--out", out, "-q", "--set", "train.eval_every=20")
    return out


def test_plot_writes_a_png(run_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    out = tmp_path / "curve.png"
    r = run("plot", run_dir, "--out", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000


def test_plot_without_matplotlib_exits_1_with_an_install_hint(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    one_line_error(run("plot", run_dir), 1, "pip install 'charrnn[plot]'")


def test_plot_of_a_directory_without_metrics(tmp_path):
    one_line_error(run("plot", tmp_path), 1, "no metrics file")


def test_plot_titles_the_run_and_its_model_and_draws_the_window_mean(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    import json

    from matplotlib.figure import Figure

    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))[1])
    assert run("plot", run_dir, "--out", tmp_path / "p.png").exit_code == 0
    ax = drawn[0].axes[0]
    assert ax.get_title() == f"{run_dir}: rnn, 1 layer(s) of 32"  # configs/smoke.yaml's model
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert not any("smooth" in label for label in lines)  # min-char-rnn's lagging loss is not drawn
    window = lines["training loss (mean of the steps since the previous point)"]
    logged = [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "window_loss" in m]
    assert list(window.get_ydata()) == [m["window_loss"] for m in logged]
    assert list(window.get_xdata()) == [m["step"] for m in logged]


def _damaged_run(run_dir, tmp_path):
    """A copy of the run whose metrics.jsonl holds real damage between its lines; returns the
    copy and the good records."""
    import json
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(run_dir, copy)
    lines = (copy / "metrics.jsonl").read_bytes().splitlines()
    damaged = [lines[0], b"\x80\xff" + lines[1], b"\0" * 100, b"[]", b'{"loss": 3.0}'] + lines[2:] + [lines[-1][:9]]
    (copy / "metrics.jsonl").write_bytes(b"\n".join(damaged))
    return copy, [json.loads(line) for line in [lines[0]] + lines[2:]]


def test_plot_draws_the_good_lines_of_a_damaged_log(run_dir, tmp_path, monkeypatch):
    """Bytes that are not UTF-8, NULs, a JSON array, a record without a step and a torn last line
    in metrics.jsonl: plot warns once, naming the file and the lines, and draws the rest."""
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    from matplotlib.figure import Figure

    copy, good = _damaged_run(run_dir, tmp_path)
    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))[1])
    r = run("plot", copy)
    assert r.exit_code == 0, r.output
    n = len(good) + 5
    assert [line for line in r.stderr.splitlines() if "warning" in line] == [
        f"warning: {copy / 'metrics.jsonl'}: skipped 5 damaged lines (lines 2, 3, 4, 5, {n}: "
        "not a UTF-8 JSON record with a step)"]
    assert (copy / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = {line.get_label(): line for line in drawn[0].axes[0].get_lines()}
    logged = lines["training loss (the logged step)"]
    assert list(logged.get_xdata()) == [m["step"] for m in good if "loss" in m]
    assert list(lines["validation loss"].get_xdata()) == [m["step"] for m in good if "val_loss" in m]


def test_plot_of_an_unreadable_log_is_one_line(tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    one_line_error(run("plot", tmp_path), 1, str(tmp_path / "metrics.jsonl"), "cannot read the metrics log")


@pytest.mark.parametrize("where", ["missing", "a-file", "read-only"])
def test_plot_into_a_folder_that_cannot_take_it_names_the_file_asked_for(run_dir, tmp_path, request, where):
    """A missing folder (ENOENT), a regular file as the folder (ENOTDIR), a read-only tmpfs
    (EROFS: a chmod 0555 folder would not stop root): the message names --out, never the hidden
    temporary atomic_write makes beside it."""
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    if where == "read-only":
        out, reason = request.getfixturevalue("read_only_dir") / "x.png", "Read-only file system"
    elif where == "a-file":
        (tmp_path / "f").write_text("a file\n")
        out, reason = tmp_path / "f" / "x.png", "Not a directory"
    else:
        out, reason = tmp_path / "missing" / "x.png", "No such file or directory"
    line = one_line_error(run("plot", run_dir, "--out", out), 1, f"Error: {out}: cannot write ({reason})")
    assert ".tmp" not in line


BOMB = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize("damage", ["not UTF-8", "an alias bomb"])
def test_plot_of_a_run_whose_config_is_damaged_still_draws_without_the_title(run_dir, tmp_path, damage):
    """config.yaml only gives the plot its title and characters axis: not UTF-8, or a YAML alias
    bomb (which yaml.safe_load would expand into billions of values), costs the title, in
    well under a second, and never a traceback."""
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    import shutil
    import time

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "config.yaml").write_bytes(b"\xff\xfe model: \x80\n" if damage == "not UTF-8" else BOMB.encode())
    t0 = time.perf_counter()
    r = run("plot", copy)
    assert r.exit_code == 0, r.output
    assert time.perf_counter() - t0 < 20  # matplotlib's first import is most of it
    assert (copy / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_legend_is_below_the_axes_off_the_curves(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="matplotlib is the [plot] extra (and part of [test])")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))[1])
    assert run("plot", run_dir, "--out", tmp_path / "p.png").exit_code == 0
    fig = drawn[0]
    canvas = FigureCanvasAgg(fig)  # pyplot.close left the figure without one
    canvas.draw()  # laid out as savefig laid it out (the same size and dpi)
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    assert not ax.get_legend()  # no legend inside the axes, where the curves are
    (legend,) = fig.legends
    box, plotted = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.y1 < plotted.y0, (box, plotted)  # wholly below the data region: nothing drawn over a curve
    assert box.y1 < ax.xaxis.get_tightbbox(renderer).y0  # and below the step axis's ticks and label
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0  # on the picture
    assert [t.get_text() for t in legend.get_texts()] == [line.get_label() for line in ax.get_lines()]
