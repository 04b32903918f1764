"""The command line: parse, validate, call the library, turn its errors into exit codes.

Exit codes: 0 success; 1 a problem with a file or the run (corpus, checkpoint,
divergence, failed gradient check); 2 a usage error (bad option, config key or value);
130 interrupted by Ctrl-C after saving a checkpoint.
"""

import os
import sys

import click
import numpy as np

from charrnn import __version__
from charrnn.errors import CharrnnError


class _Failure(click.ClickException):
    """A one-line ``Error: ...`` on stderr with the given exit code, no traceback."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise _Failure(str(e), e.exit_code) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """charrnn: character-level RNN, LSTM and GRU training in plain NumPy."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (not needed with --resume).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory (default: train.out_dir of the config; with --resume, the checkpoint's directory).")
@click.option("--steps", type=click.IntRange(min=1), help="Train until this total step count (a resumed run stops where an uninterrupted one would).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (overrides train.seed).")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="Continue the run saved in this checkpoint exactly.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), help="Start a new run from this checkpoint's weights (same vocabulary and model shape).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set optim.lr=0.05 (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no preview samples.")
def train(config_path, out_dir, steps, seed, resume, init_from, overrides, quiet):
    """Train a model from a YAML config (or resume a run from its checkpoint)."""
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
    click.echo(
        f"step {summary.step}: loss {summary.loss:.4f} nats/char, {summary.chars_per_s:,.0f} chars/s; "
        f"checkpoint {os.path.join(summary.run_dir, 'ckpt.npz')}",
        err=True,
    )


@cli.command()
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Checkpoint to sample from, e.g. RUN/ckpt.npz.")
@click.option("--length", "-n", type=click.IntRange(min=0), help="Characters to generate (default: sample.length of the run's config).")
@click.option("--temperature", "-t", type=click.FloatRange(min=0, min_open=True), help="Softmax temperature: < 1 more conservative, > 1 more varied (default: the run's sample.temperature).")
@click.option("--prime", default="", help="Text to feed the model first; it is printed before the continuation.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed for the draws (default: fresh randomness).")
def sample(ckpt_path, length, temperature, prime, seed):
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
    state = sampling.prime(ck.params, ck.spec, indices)
    rng = np.random.default_rng(seed)
    out = sys.stdout
    out.write(prime)
    out.flush()
    for index in sampling.generate(ck.params, ck.spec, int(indices[-1]), state, length, rng, temperature):
        out.write(chr(ck.vocab[index]))
        out.flush()
    out.write("\n")
    out.flush()


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
    click.echo(f"{'model':<22} {'parameter':<14} {'shape':<10} {'max rel error':>14}")
    for c in cells:
        for n in depths:
            for d in drops:
                label = f"{c} x{n}" + (f" dropout {d:g}" if d else "")
                for row in check_gradients(ModelSpec(c, 7, 5, n, d), seed=seed):
                    flag = "" if row.max_rel_error <= tol else "  FAIL"
                    worst = max(worst, row.max_rel_error)
                    shape = "x".join(map(str, row.shape))
                    click.echo(f"{label:<22} {row.name:<14} {shape:<10} {row.max_rel_error:>14.2e}{flag}")
    verdict = "passed" if worst <= tol else "FAILED"
    click.echo(f"gradcheck {verdict}: largest relative error {worst:.2e} (tolerance {tol:g})")
    if worst > tol:
        sys.exit(1)


def main():
    cli(prog_name="charrnn")
