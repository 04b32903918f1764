"""The command line: parse, validate, call the library, turn its errors into exit codes.

Exit codes: 0 success; 1 a problem with a file or the run (corpus, checkpoint,
divergence, failed gradient check); 2 a usage error (bad option, config key or value);
130 interrupted by Ctrl-C after saving a checkpoint.
"""

import itertools
import math
import os
import sys

import click
import numpy as np

from charrnn import __version__
from charrnn.distributed import ends_together
from charrnn.errors import CharrnnError, Interrupted


class _Failure(click.ClickException):
    """A one-line ``Error: ...`` on stderr with the given exit code, no traceback."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Interrupted as e:  # not an error: the run is saved and can be resumed
            click.echo(str(e), err=True)
            ctx.exit(e.exit_code)
        except CharrnnError as e:
            raise _Failure(str(e), e.exit_code) from None
        except OSError as e:  # e.g. a full disk or a read-only run directory while writing
            where = f"{e.filename}: " if e.filename else ""
            raise _Failure(f"{where}{e.strerror or e}", 1) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """charrnn: character-level RNN, LSTM and GRU training in plain NumPy."""
    from charrnn.runtime import tune_allocator

    tune_allocator()  # before any large array exists: see runtime.py for why


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (not needed with --resume).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory (default: train.out_dir of the config; with --resume, the checkpoint's directory).")
@click.option("--steps", type=click.IntRange(min=1), help="Stop at this total step count (default: train.steps); a run stopped early and resumed ends exactly as an uninterrupted one.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (overrides train.seed).")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="Continue the run saved in this checkpoint exactly.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), help="Start a new run from this checkpoint's weights (same vocabulary and model shape).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set optim.lr=0.05 (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no preview samples.")
@ends_together  # under mpiexec/srun: MPI starts, and an error on one rank ends every rank
def train(config_path, out_dir, steps, seed, resume, init_from, overrides, quiet):
    """Train a model from a YAML config (or resume a run from its checkpoint).

    Under an MPI launcher (mpiexec -n N charrnn train ...) the N processes share the
    batch's streams: see docs/cluster.md.
    """
    from charrnn import config as C
    from charrnn.train import train as run_training

    if resume and init_from:
        raise click.UsageError("--resume and --init-from exclude each other: resume continues a run, init-from starts a new one")
    if resume:
        if config_path or overrides or seed is not None:
            raise click.UsageError("--resume continues a run with its own stored config; --config, --set and --seed do not apply (use --init-from to start a new run from its weights)")
        cfg = None
    else:
        if not config_path:
            raise click.UsageError("give --config FILE (e.g. configs/default.yaml), or --resume CKPT")
        sets = list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
        cfg = C.load(config_path, sets)
    summary = run_training(cfg, resume=resume, init_from=init_from, steps=steps, quiet=quiet, out_dir=out_dir)
    val = "" if math.isnan(summary.val_loss) else (
        f", validation {summary.val_loss:.4f} nats/char ({summary.val_loss / math.log(2):.4f} bits/char)")
    why = "" if summary.stopped == "done" else f" ({summary.stopped})"
    click.echo(
        f"step {summary.step}{why}: training loss {summary.loss:.4f} nats/char{val}, "
        f"{summary.chars_per_s:,.0f} chars/s, {summary.elapsed_s:.0f} s; "
        f"checkpoint {os.path.join(summary.run_dir, 'ckpt.npz')}",
        err=True,
    )


def _write(text):
    """Write generated text to stdout at once; a closed pipe (``| head``) ends quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


@cli.command()
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Checkpoint to sample from, e.g. RUN/ckpt.npz or RUN/best.npz.")
@click.option("--length", "-n", type=click.IntRange(min=0), help="Characters to generate per sample (default: sample.length of the run's config).")
@click.option("--temperature", "-t", type=click.FloatRange(min=0), help="Softmax temperature: below 1 more conservative, above 1 more varied, 0 greedy (default: the run's sample.temperature).")
@click.option("--top-k", type=click.IntRange(min=1), help="Draw only from the k most likely characters.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Draw only from the smallest set of most likely characters whose probability reaches p (nucleus sampling).")
@click.option("--greedy", is_flag=True, help="Always take the most likely character (same as --temperature 0).")
@click.option("--prime", default="", help="Text to feed the model first; it is printed before the continuation.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True, help="Independent samples, each from the prime, separated by a line of dashes.")
@click.option("--stop", "stop_text", help="Stop a sample right after it produces this text.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed for the draws (default: fresh randomness).")
def sample(ckpt_path, length, temperature, top_k, top_p, greedy, prime, num_samples, stop_text, seed):
    """Generate text from a checkpoint, streamed to stdout."""
    from charrnn import checkpoint as ckpt_io
    from charrnn import data as D
    from charrnn import sampling

    ck = ckpt_io.load(ckpt_path)
    length = ck.config.sample.length if length is None else length
    temperature = ck.config.sample.temperature if temperature is None else temperature
    if prime:
        try:
            indices = D.encode(prime, ck.vocab)
        except CharrnnError as e:
            raise click.BadParameter(str(e), param_hint="'--prime'") from None
    else:
        # No prime: start as if after a newline (not printed), or the first character.
        nl = np.searchsorted(ck.vocab, ord("\n"))
        indices = [int(nl) if nl < len(ck.vocab) and ck.vocab[nl] == ord("\n") else 0]
    params = ckpt_io.weights(ck)  # the moving average of the weights, when the run keeps one
    state0 = sampling.prime(params, ck.spec, indices)
    rng = np.random.default_rng(seed)
    for n in range(num_samples):
        if n:
            _write("\n" + "-" * 40 + "\n")
        _write(prime)
        produced = ""
        for index in sampling.generate(params, ck.spec, int(indices[-1]), state0, length, rng,
                                       temperature, top_k, top_p, greedy):
            ch = chr(ck.vocab[index])
            _write(ch)
            if stop_text:
                produced = (produced + ch)[-len(stop_text):]
                if produced == stop_text:
                    break
        _write("\n")


@cli.command(name="eval")
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Checkpoint to evaluate.")
@click.option("--text", "text_path", type=click.Path(dir_okay=False), help="UTF-8 text file (default: the validation split of the run's corpus).")
@click.option("--skip-unknown", is_flag=True, help="Drop characters that are not in the model's vocabulary (and count them) instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def eval_(ckpt_path, text_path, skip_unknown, as_json):
    """Loss of a model on a text: nats and bits per character, perplexity."""
    import json

    from charrnn import checkpoint as ckpt_io
    from charrnn import data as D
    from charrnn.evaluate import evaluate
    from charrnn.train import load_corpus

    ck = ckpt_io.load(ckpt_path)
    skipped = 0
    if text_path is None:
        if ck.config.data.val_fraction == 0:
            raise click.UsageError(f"{ckpt_path}: the run has no validation split (data.val_fraction 0); give --text FILE")
        _, _, data = load_corpus(ck.config, ck.vocab, ckpt_path)
        source = f"validation split of {ck.config.data.path}"
    else:
        text = D.read_text(text_path)
        if skip_unknown:
            cps = D.code_points(text)
            known = np.isin(cps, ck.vocab)
            skipped = int((~known).sum())
            text = "".join(map(chr, cps[known]))
        try:
            data = D.encode(text, ck.vocab)
        except CharrnnError as e:
            raise CharrnnError(f"{text_path}: {e}; pass --skip-unknown to drop them") from None
        source = text_path
    if len(data) < 2:
        raise CharrnnError(f"{source}: fewer than 2 characters to evaluate")
    r = evaluate(ckpt_io.weights(ck), ck.spec, data)
    if as_json:
        click.echo(json.dumps({"text": source, "chars": r.chars, "skipped": skipped, "nats_per_char": r.nats,
                               "bits_per_char": r.bits, "perplexity": r.perplexity}))
    else:
        click.echo(f"{source}: {r.chars} characters predicted" + (f", {skipped} unknown skipped" if skipped else ""))
        click.echo(f"loss {r.nats:.4f} nats/char, {r.bits:.4f} bits/char, perplexity {r.perplexity:.3f}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="PNG file to write (default: RUN/loss.png).")
def plot(run_dir, out_path):
    """Plot training and validation loss of a run (needs matplotlib: pip install 'charrnn[plot]')."""
    import yaml

    from charrnn.plot import plot_run

    out_path = out_path or os.path.join(run_dir, "loss.png")
    chars_per_step = None
    try:  # B·T from the run's resolved config, for the characters-seen axis
        with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
            t = yaml.safe_load(f)["train"]
        chars_per_step = int(t["batch_size"]) * int(t["seq_length"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        pass
    plot_run(os.path.join(run_dir, "metrics.jsonl"), out_path, chars_per_step)
    click.echo(f"wrote {out_path}", err=True)


@cli.command()
@click.option("--cell", type=click.Choice(["rnn", "lstm", "gru"]), help="Check only this cell (default: every cell).")
@click.option("--layers", type=click.IntRange(min=1, max=4), help="Check only this depth (default: 1 and 2).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True, help="Dropout probability of a second, fixed-mask check (0: skip it).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True, help="Largest relative error that passes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def gradcheck(cell, layers, dropout, tol, seed):
    """Check analytic gradients against finite differences (float64)."""
    from charrnn.cells import CELLS
    from charrnn.gradcheck import check_gradients
    from charrnn.model import ModelSpec

    cells = [cell] if cell else list(CELLS)
    depths = [layers] if layers else [1, 2]
    drops = [0.0] + ([dropout] if dropout > 0 else [])
    worst = 0.0
    click.echo(f"{'model':<26} {'parameter':<14} {'shape':<10} {'max rel error':>14}")
    for c in cells:
        for n in depths:
            for d, mult in itertools.product(drops, (False, True)):
                label = f"{c} x{n}" + (" mult" if mult else "") + (f" dropout {d:g}" if d else "")
                for row in check_gradients(ModelSpec(c, 7, 5, n, d, mult), seed=seed):
                    flag = "" if row.max_rel_error <= tol else "  FAIL"
                    worst = max(worst, row.max_rel_error)
                    shape = "x".join(map(str, row.shape))
                    click.echo(f"{label:<26} {row.name:<14} {shape:<10} {row.max_rel_error:>14.2e}{flag}")
    verdict = "passed" if worst <= tol else "FAILED"
    click.echo(f"gradcheck {verdict}: largest relative error {worst:.2e} (tolerance {tol:g})")
    if worst > tol:
        sys.exit(1)


def main():
    cli(prog_name="charrnn")
