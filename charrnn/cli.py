"""The command line: parse, validate, call the library, turn its errors into exit codes.

Exit codes: 0 success (and ``train --resume`` of a run already done: one line naming
``--steps`` or ``--minutes``, nothing written); 1 a problem with a file or the run (corpus, checkpoint,
divergence, failed gradient check); 2 a usage error (bad option, config key or value);
130 interrupted by Ctrl-C (training: after saving a checkpoint); 143 stopped by SIGTERM and
129 by SIGHUP (training: after saving a checkpoint; elsewhere quietly, every temporary file
removed). How a training run ended is also in RUN/status.json (docs/robustness.md).
"""

import itertools
import math
import os
import signal
import sys

import click
import numpy as np

from charrnn import __version__
from charrnn.cells import CELLS, recurrent
from charrnn.distributed import ends_together, speaks
from charrnn.errors import CharrnnError, Interrupted
from charrnn.portable import STOP_SIGNALS
from charrnn.signals import Signalled, raising_on_signals


class _Failure(click.ClickException):
    """A one-line ``Error: ...`` on stderr with the given exit code, no traceback."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (FloatRange lets nan through: every
    comparison with nan is false), as a usage error naming the option."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class _Stopped(click.ClickException):
    """A run stopped by a signal after saving: its message as it is (no "Error:"), and its code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo(self.message, err=True)


def _stopped_in(exc):
    """The _Stopped (or Interrupted) that ``exc`` interrupted, if any: a second Ctrl-C, SIGTERM or
    SIGHUP that arrives after a run has saved, while its message is on the way out, raises
    KeyboardInterrupt (or Signalled) there, with the stop it cut short as its context (or cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _Stopped):
            return exc
        if isinstance(exc, Interrupted):
            return _Stopped(str(exc), exc.exit_code)
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line(e: click.UsageError) -> "_Failure":
    """Click's usage error as one ``Error: ...`` line, exit 2, instead of its three (the usage,
    "Try 'charrnn train -h' for help.", a blank line, then the error): for an unknown option or
    command, a missing value, option or argument, or an extra argument, the line itself says
    where the list of them is (a bad value's line already names the option and what it takes)."""
    message = e.format_message()
    lost = isinstance(e, (click.NoSuchOption, click.BadOptionUsage, click.BadArgumentUsage, click.MissingParameter,
                          click.exceptions.NoSuchCommand)) or (
        type(e) is click.UsageError and message.startswith(("No such command", "Got unexpected extra argument")))
    if lost and e.ctx is not None:
        what = "commands" if isinstance(e.ctx.command, click.Group) else "options"
        message += f" ({e.ctx.command_path} --help lists the {what})"
    return _Failure(message, e.exit_code)


def _in_context(parse_args):
    """``parse_args`` that gives its context to the usage errors raised without one (Click's
    parser raises "Option '--steps' requires an argument." so), for ``_one_line``'s hint."""
    def parse(self, ctx, args):
        try:
            return parse_args(self, ctx, args)
        except click.UsageError as e:
            e.ctx = e.ctx or ctx
            raise
    return parse


class _Command(click.Command):
    parse_args = _in_context(click.Command.parse_args)


class _Group(click.Group):
    command_class = _Command
    parse_args = _in_context(click.Group.parse_args)

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the group's own options (charrnn --nope) are parsed here, before invoke
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # plain `charrnn`: the help, as Click shows it
        except click.UsageError as e:
            raise _one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # a command's options are parsed here (and its own usage errors raised)
            raise _one_line(e) from None
        except Interrupted as e:  # not an error: the run is saved and can be resumed
            raise _Stopped(str(e), e.exit_code) from None
        except KeyboardInterrupt as e:  # Ctrl-C outside a training loop (sample, eval, loading): quietly,
            stopped = _stopped_in(e)  # as a shell reports it, instead of click's "Aborted!" and exit 1
            if stopped is not None:
                raise stopped from None
            ctx.exit(130)
        except CharrnnError as e:
            raise _Failure(str(e), e.exit_code) from None
        except OSError as e:  # e.g. a full disk or a read-only run directory while writing
            where = f"{e.filename}: " if e.filename else ""
            raise _Failure(f"{where}{e.strerror or e}", 1) from None
        except MemoryError as e:  # e.g. a model.hidden_size far beyond the machine
            raise _Failure(f"out of memory: {e or 'an allocation failed'}", 1) from None


@click.group(name="charrnn", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """charrnn: character-level RNN, LSTM and GRU training in plain NumPy."""
    from charrnn.runtime import tune_allocator

    tune_allocator()  # before any large array exists: see runtime.py for why


class _ConfigOption(click.Option):
    """--config, whose help names the shipped configs (read when the help is shown, not at
    every start)."""

    def get_help_record(self, ctx):
        from charrnn.config import shipped_configs

        names = ", ".join(shipped_configs()) or "none in this installation"
        self.help = (f"YAML config: a file, or the name of a shipped one ({names}; `charrnn configs` describes "
                     "them). Default with --data: the built-in one, the default config's settings.")
        return super().get_help_record(ctx)


@cli.command()
@click.option("--config", "config_path", cls=_ConfigOption, type=click.Path(dir_okay=False), metavar="NAME|FILE")
@click.option("--data", "data_path", type=click.Path(),
              help="Corpus to train on, a UTF-8 text file or a directory made by `charrnn prepare` (overrides "
                   "data.path); with --resume, where the run's corpus is now, if it moved (the same text).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run directory (default: with --data, runs/<corpus name>, or runs/<corpus name>-<config name> with "
                   "--config; else train.out_dir of the config; with --resume, the checkpoint's directory).")
@click.option("--steps", type=click.IntRange(min=1),
              help="The run's length, its total step count (sets train.steps: the schedule, the final validation and "
                   "best.npz follow it); with --resume, the run's new length: more than its step extends a finished "
                   "run.")
@click.option("--stop-at", type=click.IntRange(min=1),
              help="Pause at this total step, below the run's length (no final validation); a plain --resume goes on "
                   "and ends exactly as an uninterrupted run.")
@click.option("--minutes", type=FiniteFloatRange(min=0, min_open=True),
              help="Train at most this many more minutes (sets train.max_minutes to the run's training time so far "
                   "plus this); with --resume, continues a run that stopped on its time budget.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (overrides train.seed).")
@click.option("--resume", type=click.Path(exists=True),
              help="Continue the run saved in this checkpoint exactly; a run directory: its ckpt.npz.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False),
              help="Start a new run from this checkpoint's weights (same vocabulary and model shape).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.lr=0.05 (repeatable).")
@click.option("--overwrite", is_flag=True,
              help="Start a new run in a directory that holds one: the old run's files are moved into "
                   "RUN/replaced-<time>/.")
@click.option("--quiet", "-q", is_flag=True,
              help="No banner, progress bar or preview samples (errors and the final summary still go to stderr).")
@click.option("--device", "device_name", type=click.Choice(["cpu", "gpu"]),
              help="Train on the CPU or on the GPU (overrides model.device; with --resume, continues the run there). "
                   "gpu needs CuPy: pip install 'charrnn[gpu]'.")
@ends_together  # under mpiexec/srun: MPI starts, and an error on one rank ends every rank
def train(config_path, data_path, out_dir, steps, stop_at, minutes, seed, resume, init_from, overrides, overwrite,
          quiet, device_name):
    """Train a model from a YAML config or on --data PATH (or resume a run from its checkpoint).

    Under an MPI launcher (mpiexec -n N charrnn train ...) the N processes share the
    batch's streams: see docs/cluster.md.
    """
    from charrnn import config as C
    from charrnn.errors import NothingToDo
    from charrnn.progress import summary_line
    from charrnn.rundir import RunDir, resumed_in, run_name
    from charrnn.train import train as run_training

    if resume and init_from:
        raise click.UsageError("--resume and --init-from exclude each other: resume continues a run, init-from starts "
                               "a new one")
    if resume:
        if config_path or overrides or seed is not None:
            raise click.UsageError("--resume continues a run with its own stored config and corpus; --config, --set "
                                   "and --seed do not apply (--steps N makes it N steps long, --minutes M gives it M "
                                   "more minutes; --data only says where its corpus is now; use --init-from to start "
                                   "a new run from its weights)")
        resume = resumed_in(resume)
        cfg = None
    else:
        if not config_path and not data_path:
            raise click.UsageError("give --data PATH (a text file or prepared directory), --config NAME or FILE "
                                   "(e.g. --config default: `charrnn configs` lists the shipped ones), or "
                                   "--resume CKPT")
        sets = list(overrides) + ([f"train.seed={seed}"] if seed is not None else [])
        cfg = C.load(C.find_config(config_path), sets, data_path) if config_path else C.default_config(data_path, sets)
        if data_path and config_path and not out_dir and not any(
                o.partition("=")[0].strip() == "train.out_dir" for o in overrides):
            # The config's own train.out_dir names the run of its own corpus: another corpus gets
            # a directory of its own (rundir.run_name), not the one the config's runs share.
            out_dir = run_name(data_path, config_path)
    try:
        summary = run_training(cfg, resume=resume, init_from=init_from, steps=steps, quiet=quiet, out_dir=out_dir,
                               overwrite=overwrite, device_name=device_name, data_path=data_path if resume else None,
                               stop_at=stop_at, minutes=minutes)
    except NothingToDo as e:  # a finished run resumed: one line, exit 0 (every rank: it is the same on each)
        if speaks():
            click.echo(str(e), err=True)
        return
    click.echo(summary_line(summary, RunDir(summary.run_dir).ckpt), err=True)


@cli.command()
def configs():
    """List the shipped configs, one a line: its name (what --config NAME takes) and what it trains."""
    from charrnn.config import describe_config, shipped_configs, shipped_dir

    shipped = shipped_configs()
    if not shipped:
        raise CharrnnError("no shipped configs in this installation (charrnn/shipped/configs is missing: reinstall "
                           "charrnn)")
    width = max(map(len, shipped))
    for name, path in shipped.items():
        click.echo(f"{name:<{width}}  {describe_config(path)}")
    click.echo(f"(in {shipped_dir()}; train one with: charrnn train --config NAME)", err=True)


def _write(text):
    """Write generated text (str, or bytes as they are) to stdout at once; a closed pipe
    (``| head``) ends quietly."""
    try:
        if isinstance(text, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _byte_writer():
    """For a model of bytes: write them as they are to a pipe or file, and decoded as UTF-8
    (an invalid byte as U+FFFD) to a terminal, which could not show them otherwise."""
    if not sys.stdout.isatty():
        return _write
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return lambda b: _write(decoder.decode(b))


def _checkpoint_file(path, doing):
    """The checkpoint ``--checkpoint PATH`` names: the file itself, or in a run directory its
    best.npz (else its ckpt.npz), said on stderr; one with neither is a one-line error."""
    from charrnn.rundir import checkpoint_in

    found = checkpoint_in(path)
    if found != path:
        click.echo(f"{doing} {found}", err=True)
    return found


def _read_prime(path):
    """The text of a prime file (``-``: stdin), UTF-8; one line when it cannot be read."""
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CharrnnError(f"{where}: the prime is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                           f"{e.start})") from None
    except OSError as e:
        raise CharrnnError(f"{where}: cannot read the prime ({e.strerror or e})") from None


def _check_sample_options(ctx, o):
    """Refuse, in one line, options that contradict each other or say nothing (exit 2)."""
    given = {name for name in o if ctx.get_parameter_source(name) not in
             (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP, None)}

    def refuse(message):
        raise click.UsageError(message)

    if o["stop_text"] == "":
        refuse("--stop '' is empty: give the text a sample ends after, or leave --stop out")
    if o["prime"] and o["prime_file"] is not None:
        refuse("--prime and --prime-file both give the prime: use one (--prime - or --prime-file - reads it "
               "from stdin)")
    if o["beam"] is not None:
        for name, flag in (("temperature", "--temperature"), ("top_k", "--top-k"), ("top_p", "--top-p"),
                           ("greedy", "--greedy"), ("seed", "--seed"), ("stop_text", "--stop"),
                           ("sample_index", "--sample-index"), ("interactive", "--interactive")):
            if name in given:
                refuse(f"--beam searches for the most probable text, deterministically: {flag} does not apply "
                       "(leave it out, or sample without --beam)")
        if o["num_samples"] > 1:
            refuse("--beam finds one text (the most probable): --num-samples must be 1 with it")
    if o["greedy"]:
        if o["temperature"] not in (None, 0):
            refuse(f"--greedy takes the most likely character, and --temperature {o['temperature']:g} draws: "
                   "use one (--greedy is --temperature 0)")
        for name, flag in (("top_k", "--top-k"), ("top_p", "--top-p")):
            if o[name] is not None:
                refuse(f"--greedy takes the most likely character: {flag} (which restricts a draw) does not apply")
    elif o["temperature"] == 0:
        for name, flag in (("top_k", "--top-k"), ("top_p", "--top-p")):
            if o[name] is not None:
                refuse(f"--temperature 0 takes the most likely character: {flag} (which restricts a draw) does "
                       "not apply")
    if o["interactive"]:
        if "num_samples" in given:
            refuse("--interactive continues one text line by line: --num-samples does not apply")
        if "sample_index" in given:
            refuse("--interactive continues one text line by line: --sample-index does not apply")
        if "-" in (o["prime"], o["prime_file"]):
            refuse("--interactive reads its lines from stdin: give the prime with --prime TEXT or --prime-file FILE, "
                   "not from stdin")


@cli.command()
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True),
              help="Checkpoint to sample from, e.g. RUN/ckpt.npz or RUN/best.npz; a run directory: its best.npz "
                   "(else its ckpt.npz).")
@click.option("--length", "-n", type=click.IntRange(min=0),
              help="Characters to generate per sample (default: sample.length of the run's config).")
@click.option("--temperature", "-t", type=FiniteFloatRange(min=0),
              help="Softmax temperature: below 1 more conservative, above 1 more varied, 0 greedy (default: the run's "
                   "sample.temperature).")
@click.option("--top-k", type=click.IntRange(min=1), help="Draw only from the k most likely characters.")
@click.option("--top-p", type=FiniteFloatRange(0, 1, min_open=True),
              help="Draw only from the smallest set of most likely characters whose probability reaches p (nucleus "
                   "sampling).")
@click.option("--greedy", is_flag=True, help="Always take the most likely character (same as --temperature 0).")
@click.option("--prime", default="", help="Text to feed the model first; it is printed before the continuation "
                                          "(-: read it from stdin).")
@click.option("--prime-file", type=click.Path(dir_okay=False, allow_dash=True),
              help="Read the prime from this UTF-8 file (-: stdin), for long primes.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent samples, each from the prime, generated as one batch, separated by a line of dashes.")
@click.option("--sample-index", type=click.IntRange(min=0), default=0, show_default=True,
              help="The index of the first sample: sample i of --seed S --num-samples N is --seed S "
                   "--sample-index i alone.")
@click.option("--stop", "stop_text", help="Stop a sample right after it produces this text.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed for the draws (default: fresh randomness).")
@click.option("--beam", type=click.IntRange(min=1),
              help="Beam search of this width: the most probable continuation it finds (deterministic); its total "
                   "log-probability goes to stderr.")
@click.option("--interactive", "-i", is_flag=True,
              help="Read lines from stdin, continue each (the state carried); /help lists the commands.")
@click.pass_context
def sample(ctx, ckpt_path, length, temperature, top_k, top_p, greedy, prime, prime_file, num_samples, sample_index,
           stop_text, seed, beam, interactive):
    """Generate text from a checkpoint, streamed to stdout (a model of bytes writes bytes;
    to a terminal, their UTF-8 decoding)."""
    from charrnn import checkpoint, sampling

    _check_sample_options(ctx, dict(ckpt_path=ckpt_path, length=length, temperature=temperature, top_k=top_k,
                                    top_p=top_p, greedy=greedy, prime=prime, prime_file=prime_file,
                                    num_samples=num_samples, sample_index=sample_index, stop_text=stop_text,
                                    seed=seed, beam=beam, interactive=interactive))
    ck = checkpoint.load(_checkpoint_file(ckpt_path, "sampling from"))
    source = "--prime"
    if prime == "-" or prime_file is not None:
        source = "--prime" if prime == "-" else "--prime-file"
        prime = _read_prime("-" if prime == "-" else prime_file)
    try:
        sampling.start_indices(prime, ck.vocab, ck.unit)  # an unknown character is the option's fault
    except CharrnnError as e:
        raise click.BadParameter(str(e), param_hint=f"'{source}'") from None
    emit = _byte_writer() if ck.unit == "bytes" else _write
    length = ck.config.sample.length if length is None else length
    temperature = ck.config.sample.temperature if temperature is None else temperature
    params = checkpoint.weights(ck)
    if interactive:
        _interactive(sampling.Session(params, ck.spec, ck.vocab, ck.unit, np.random.default_rng(seed), length,
                                      temperature, top_k, top_p, greedy, stop_text, prime), emit)
        return
    if beam is not None:
        found = sampling.beam_search(params, ck.spec, sampling.start_indices(prime, ck.vocab, ck.unit), length, beam)
        text = sampling.symbols(found.indices, ck.vocab, ck.unit)
        nl = b"\n" if ck.unit == "bytes" else "\n"
        emit((prime.encode("utf-8") if ck.unit == "bytes" else prime) + text + nl)
        per = f", {found.log_prob / length:.4f} nats/char" if length else ""
        click.echo(f"beam {beam}: log-probability {found.log_prob:.4f} nats over {length} characters{per}", err=True)
        return
    for piece in sampling.samples(params, ck.spec, ck.vocab, ck.unit, prime, length, None, num_samples, stop_text,
                                  temperature, top_k, top_p, greedy, seed=seed, first_index=sample_index):
        emit(piece)


INTERACTIVE_HELP = """\
Each line is fed to the model and continued; the state carries from line to line.
An empty line continues the text further. Commands:
  /length N        characters per continuation
  /temperature T   softmax temperature (0: greedy)
  /top-k K         draw from the K most likely (/top-k off: all)
  /top-p P         draw from the nucleus of probability P (/top-p off: all)
  /seed N          restart the draws from seed N
  /reset           forget the text so far (back to the prime)
  /help            this list
  /quit            end the session (as does end of input)"""


def _session_command(session, line):
    """Apply one /command to ``session``; its one-line reply (stderr), or None for /quit."""
    name, _, arg = line[1:].strip().partition(" ")
    arg = arg.strip()

    def number(kind, low, high=math.inf, low_open=False, off=False):
        if off and arg == "off":
            return None
        try:
            v = kind(arg)
        except ValueError:
            v = None
        if v is None or not math.isfinite(v) or v < low or v > high or (low_open and v == low):
            bound = f"> {low}" if low_open else f">= {low}"
            bound += f" and <= {high}" if high != math.inf else ""
            offs = " (or off)" if off else ""
            raise click.UsageError(f"/{name} {arg!r}: give a {'whole ' if kind is int else ''}number {bound}{offs}")
        return v

    if name == "quit":
        return None
    if name == "help":
        return INTERACTIVE_HELP
    if name == "reset":
        if arg:
            raise click.UsageError("/reset takes nothing after it")
        session.reset()
        return "state reset"
    if name == "length":
        session.length = number(int, 0)
        return f"length {session.length}"
    if name == "temperature":
        session.temperature, session.greedy = number(float, 0), False  # the temperature asked for, even after --greedy
        return f"temperature {session.temperature:g}"
    if name == "top-k":
        session.top_k = number(int, 1, off=True)
        return f"top-k {session.top_k or 'off'}"
    if name == "top-p":
        session.top_p = number(float, 0, 1, low_open=True, off=True)
        return f"top-p {session.top_p or 'off'}"
    if name == "seed":
        session.rng = np.random.default_rng(number(int, 0))
        return f"seed {arg}"
    raise click.UsageError(f"/{name}: no such command (/help lists them)")


def _interactive(session, emit):
    """``charrnn sample --interactive``: lines from stdin, each fed and continued (stdout);
    replies and prompts on stderr; a bad line or command is one line there and the session
    goes on. On a terminal (stdin and stdout), lines are edited with readline."""
    tty = sys.stdin.isatty()
    if tty:
        import readline  # noqa: F401  (importing it gives input() line editing and history)

        click.echo("charrnn interactive: a line to continue, /help for commands, /quit or Ctrl-D to end", err=True)
    nl = b"\n" if session.unit == "bytes" else "\n"
    while True:
        try:
            if tty and sys.stdout.isatty():  # readline edits the line and must know the prompt to redraw it
                line = input("> ")
            elif tty:  # stdout is a file or a pipe: it gets generated text only
                sys.stderr.write("> ")
                sys.stderr.flush()
                line = input()
            else:
                line = sys.stdin.readline()
                if not line:
                    break
                line = line[:-1] if line.endswith("\n") else line
        except EOFError:
            break
        try:
            if line.startswith("/"):
                reply = _session_command(session, line)
                if reply is None:
                    break
                click.echo(reply, err=True)
                continue
            session.feed(line)
        except (click.UsageError, CharrnnError) as e:
            click.echo(f"Error: {e.format_message() if isinstance(e, click.UsageError) else e}", err=True)
            continue
        emit(session.generate() + nl)


@cli.command(name="eval")
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True),
              help="Checkpoint to evaluate; a run directory: its best.npz (else its ckpt.npz).")
@click.option("--text", "text_path", type=click.Path(),
              help="A UTF-8 text file (bytes, for a model of bytes), or a prepared directory (its validation split); "
                   "default: the validation split of the run's corpus.")
@click.option("--skip-unknown", is_flag=True,
              help="Drop characters that are not in the model's vocabulary (and count them) instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--device", "device_name", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Evaluate on the CPU or on the GPU (gpu needs CuPy: pip install 'charrnn[gpu]').")
def eval_(ckpt_path, text_path, skip_unknown, as_json, device_name):
    """Loss of a model on a text: nats and bits per character, perplexity.

    The whole text is read (with a progress bar on stderr when it is long), unlike the
    bounded evaluations during training (train.eval_chars).
    """
    import json

    from tqdm import tqdm

    from charrnn import checkpoint
    from charrnn.corpus import evaluation_text
    from charrnn.device import get_xp, to_device
    from charrnn.evaluate import evaluate

    xp = get_xp(device_name)  # first: no GPU to use is said before anything is read
    ckpt_path = _checkpoint_file(ckpt_path, "evaluating")
    ck = checkpoint.load(ckpt_path)
    text = evaluation_text(ck, ckpt_path, text_path, skip_unknown)
    with tqdm(total=len(text.data) - 1, desc="evaluating", unit="char", unit_scale=True, file=sys.stderr,
              disable=len(text.data) < EVAL_BAR_CHARS, dynamic_ncols=True, mininterval=0.5, leave=False) as bar:
        r = evaluate(to_device(checkpoint.weights(ck), xp), ck.spec, text.data, progress=bar.update)
    if as_json:
        click.echo(json.dumps({"text": text.source, "chars": r.chars, "skipped": text.skipped,
                               "nats_per_char": r.nats, "bits_per_char": r.bits, "perplexity": r.perplexity}))
    else:
        skipped = f", {text.skipped} unknown skipped" if text.skipped else ""
        click.echo(f"{text.source}: {r.chars} characters predicted{skipped}")
        click.echo(f"loss {r.nats:.4f} nats/char, {r.bits:.4f} bits/char, perplexity {r.perplexity:.3f}")


EVAL_BAR_CHARS = 1_000_000  # `charrnn eval` shows a progress bar for texts longer than this


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Directory to write the corpus into (new, empty, or with --overwrite a prepared one).")
@click.option("--glob", "globs", multiple=True, metavar="PATTERN",
              help="Take only the files in directories whose name matches PATTERN, e.g. '*.c' (repeatable; a pattern "
                   "with a / is matched against the path below the directory).")
@click.option("--val-fraction", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="The last fraction of the text, held out for validation (0: none).")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="Invalid UTF-8: strict stops with the file and byte offset, replace makes each invalid byte U+FFFD.")
@click.option("--bytes", "as_bytes", is_flag=True,
              help="A vocabulary of byte values instead of characters: for text that is not UTF-8, or not text.")
@click.option("--overwrite", is_flag=True,
              help="Replace the corpus of a prepared DIR; the old one is moved into DIR/replaced-<time>/ once the new "
                   "one is complete.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def prepare(inputs, out_dir, globs, val_fraction, errors, as_bytes, overwrite, quiet):
    """Read text files and folders of them (INPUT...) into a directory to train on.

    Files are joined as they are, in the order given; a folder's files, found recursively
    (skipping names that begin with a dot), in the sorted order of their paths.
    """
    import time

    from charrnn import corpus as CO

    if as_bytes and errors != "strict":
        raise click.UsageError("--errors applies to decoding UTF-8, and --bytes reads bytes without decoding")
    t0 = time.perf_counter()
    meta = CO.prepare(list(inputs), out_dir, globs, val_fraction, errors, "bytes" if as_bytes else "chars",
                      overwrite, quiet=quiet)
    secs = time.perf_counter() - t0
    size = sum(src["bytes"] for src in meta["sources"])
    what = "bytes" if as_bytes else "characters"
    click.echo(
        f"{out_dir}: {meta['chars']:,} {what} from {len(meta['sources'])} file(s) ({size / 1e6:,.1f} MB in "
        f"{secs:.1f} s, {size / 1e6 / max(secs, 1e-9):,.0f} MB/s), vocabulary of {len(meta['vocab'])}, "
        f"{meta['split']['train']:,} for training and {meta['split']['val']:,} for validation", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="PNG file to write (default: RUN/loss.png).")
def plot(run_dir, out_path):
    """Plot training and validation loss of a run (needs matplotlib: pip install 'charrnn[plot]')."""
    from charrnn import config as C
    from charrnn.model import ModelSpec
    from charrnn.plot import plot_run
    from charrnn.rundir import RunDir

    files = RunDir(run_dir)
    out_path = out_path or files.plot
    chars_per_step, title = None, os.path.abspath(run_dir)
    try:  # B·T for the characters-seen axis, and the model for the title, from the run's config
        cfg = C.load(files.config)  # bounded and strict: a damaged config.yaml only costs the title
        chars_per_step = cfg.train.batch_size * cfg.train.seq_length
        if cfg.train.variable_length:  # the axis is a line: the lengths' mean over (at most) the first 1,000 steps
            from charrnn.data import mean_chunk_length

            T = mean_chunk_length(cfg.train.seed, cfg.train.seq_length, min(cfg.train.steps, 1000))
            chars_per_step = cfg.train.batch_size * T
        title += ": " + ModelSpec.of(cfg.model, vocab_size=0).describe()  # describe() does not use V
    except CharrnnError:
        pass
    plot_run(files.metrics, out_path, chars_per_step, title)
    click.echo(f"wrote {out_path}", err=True)


@cli.command()
@click.option("--cell", type=click.Choice(list(CELLS)), help="Check only this cell (default: every cell).")
@click.option("--layers", type=click.IntRange(min=1, max=4), help="Check only this depth (default: 1 and 2).")
@click.option("--dropout", type=FiniteFloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="Dropout probability of a second, fixed-mask check (0: skip it).")
@click.option("--tol", type=FiniteFloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="Largest relative error that passes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random model and chunk.")
@click.option("--verbose", "-v", is_flag=True, help="A row per parameter and initial state, not a line per model.")
def gradcheck(cell, layers, dropout, tol, seed, verbose):
    """Check analytic gradients against finite differences (float64): every cell, plain, with
    multiplicative integration (cells with a recurrent product), layer norm (cells with a NORM), both, and
    residual (2 layers or more; with layer norm too)."""
    from charrnn.gradcheck import check_gradients
    from charrnn.model import ModelSpec

    cells = [cell] if cell else list(CELLS)
    depths = [layers] if layers else [1, 2]
    drops = [0.0] + ([dropout] if dropout > 0 else [])
    worst = 0.0
    if verbose:
        click.echo(f"{'model':<32} {'parameter':<14} {'shape':<10} {'max rel error':>14}")
    else:
        click.echo(f"{'model':<32} {'arrays':>6} {'max rel error':>14}  worst array")
    for c in cells:
        for n in depths:
            mults = (False, True) if recurrent(CELLS[c]) else (False,)  # where the cell has a recurrent product
            norms = (False, True) if CELLS[c].NORM else (False,)  # layer_norm where the cell has it
            variants = [(mult, ln, False) for mult in mults for ln in norms]
            if n >= 2:  # residual needs a layer with an input of size H; with layer norm too where there is one
                variants += [(False, ln, True) for ln in norms]
            for d, (mult, ln, res) in itertools.product(drops, variants):
                label = (f"{c} x{n}" + (" mult" if mult else "") + (" ln" if ln else "")
                         + (" residual" if res else "") + (f" dropout {d:g}" if d else ""))
                rows = check_gradients(ModelSpec(c, 7, 5, n, d, mult, ln, res), seed=seed)
                worst = max([worst] + [row.max_rel_error for row in rows])
                if verbose:
                    for row in rows:
                        flag = "" if row.max_rel_error <= tol else "  FAIL"
                        shape = "x".join(map(str, row.shape))
                        click.echo(f"{label:<32} {row.name:<14} {shape:<10} {row.max_rel_error:>14.2e}{flag}")
                else:
                    top = max(rows, key=lambda row: row.max_rel_error)
                    flag = "" if top.max_rel_error <= tol else "  FAIL"
                    click.echo(f"{label:<32} {len(rows):>6} {top.max_rel_error:>14.2e}  {top.name}{flag}")
    verdict = "passed" if worst <= tol else "FAILED"
    click.echo(f"gradcheck {verdict}: largest relative error {worst:.2e} (tolerance {tol:g})")
    if worst > tol:
        sys.exit(1)


@cli.command()
@click.option("--checkpoint", "ckpt_path", required=True, type=click.Path(exists=True),
              help="Checkpoint whose model to look into; a run directory: its best.npz (else its ckpt.npz).")
@click.option("--text", "text_path", type=click.Path(dir_okay=False),
              help="UTF-8 text to run the model over (default: the start of the run's validation split).")
@click.option("--prime", help="Sample the text instead, from this prime (with --length).")
@click.option("--length", "-n", type=click.IntRange(min=1),
              help="Characters to sample after --prime (or after a line break).")
@click.option("--temperature", "-t", type=FiniteFloatRange(min=0),
              help="Temperature of the sampled text (default: the run's sample.temperature).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed of the sampled text.")
@click.option("--chars", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Use at most this many characters of the text.")
@click.option("--skip-unknown", is_flag=True,
              help="Drop characters of --text that are not in the model's vocabulary (and count them) instead of "
                   "failing.")
@click.option("--layers",
              help="Layers to show, counted from 1, e.g. 1,2 (default: all); each adds about 1.33·chars·H bytes to the "
                   "page (twice for the LSTM's h and c).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="HTML page to write (default: visualize.html beside the checkpoint, in its run directory).")
def visualize(ckpt_path, text_path, prime, length, temperature, seed, chars, skip_unknown, layers, out_path):
    """Write a web page showing hidden units and predictions over a text."""
    from charrnn import visualize as viz
    from charrnn.atomic import atomic_write

    try:
        layer_list = None if layers is None else [int(x) for x in layers.split(",")]
    except ValueError:
        raise click.BadParameter(f"{layers!r}: give layer numbers separated by commas, e.g. 1,2",
                                 param_hint="'--layers'") from None
    ckpt_path = _checkpoint_file(ckpt_path, "visualizing")
    if out_path is None:  # the run's own page, as loss.png is its plot
        from charrnn.rundir import RunDir

        out_path = RunDir(os.path.dirname(ckpt_path) or ".").visualize
    shown = viz.page_for(ckpt_path, text_path=text_path, prime=prime, length=length, temperature=temperature,
                         seed=seed, chars=chars, layers=layer_list, skip_unknown=skip_unknown)
    body = shown.html.encode("utf-8")
    try:
        atomic_write(out_path, lambda f: f.write(body))
    except OSError as e:  # a missing or read-only folder, a full disk: the page asked for, named
        raise CharrnnError(f"{out_path}: cannot write ({e.strerror or e})") from None
    skipped = f", {shown.skipped:,} unknown skipped" if shown.skipped else ""
    unit = "bytes" if isinstance(shown.text, bytes) else "characters"  # a model of bytes: its page counts bytes
    click.echo(f"wrote {out_path}: {len(shown.text):,} {unit}{skipped}, {len(body) / 1e6:.2f} MB", err=True)


def main():
    """The ``charrnn`` program: Click's standalone handling, except that Ctrl-C is exit 130
    wherever it lands (never "Aborted!" and 1), SIGTERM 143 and SIGHUP 129 (raised as
    ``signals.Signalled``, so that every ``finally`` runs: a pipe's temporary copy is removed),
    and that once the command is over further Ctrl-C, SIGTERM or SIGHUP are ignored, so that a
    late one cannot turn a clean end (a run that has saved and says so) into a traceback or a
    silent exit while the interpreter shuts down.

    A run stopped by a signal says where its checkpoint is even when a second signal lands
    while that message is on its way out: the KeyboardInterrupt it raises carries the stop
    as its context, and the stop's message is what is shown."""
    try:
        try:
            raising_on_signals()  # SIGTERM, SIGHUP (unless nohup ignores it): as KeyboardInterrupt for Ctrl-C
            code = cli.main(prog_name="charrnn", standalone_mode=False)
        finally:  # the first thing on the way out, whatever happened
            for s in STOP_SIGNALS:  # those the platform has (no SIGHUP on Windows)
                signal.signal(s, signal.SIG_IGN)
    except (click.exceptions.Abort, KeyboardInterrupt, Signalled) as e:  # Abort: a KeyboardInterrupt Click caught
        stopped = _stopped_in(e)
        code = e.exit_code if isinstance(e, Signalled) else 130
        if stopped is not None:
            stopped.show()
            code = stopped.exit_code
    except click.ClickException as e:
        # Under mpiexec every rank parses the same command line: rank 0 alone says what is wrong
        # (an error in parsing comes before MPI starts, so the launcher's variable tells the rank;
        # when rank 0 stopped answering, the lowest rank that can act: distributed.speaks).
        if speaks():
            e.show()
        code = e.exit_code
    sys.exit(code if isinstance(code, int) else 0)
