"""The run configuration: a typed schema of nested dataclasses, loaded from YAML.

Every field has a type, an allowed range and a one-line meaning (docs/config.md lists
them). Loading is strict: an unknown key is rejected with its dotted path and
the closest valid key, a wrong type or an out-of-range value with the key, the value and
what is allowed. Precedence: ``--set`` overrides > the YAML file > the defaults here.
Paths in the file are resolved relative to the file itself, so a config works from any
working directory; paths given with ``--set`` are relative to the working directory, as
any path typed on a command line is. A key given twice in one mapping of the file is an
error (YAML would silently keep the last), and an error in a ``--set`` value names that
``--set KEY=VALUE``, not the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from charrnn.cells import CELLS, recurrent
from charrnn.errors import UsageError
from charrnn.optim import DECAYING


def opt(default, kind, doc, *, lo=None, lo_open=False, hi=None, hi_open=False,
        choices=None, nullable=False, path=False, only=None, only_schedule=None):
    """A schema field: its default, type, allowed range and meaning.

    ``only`` / ``only_schedule``: the optimizers / schedules the key applies to; setting it
    for another one is an error rather than silently ignored.
    """
    meta = dict(kind=kind, doc=doc, lo=lo, lo_open=lo_open, hi=hi, hi_open=hi_open,
                choices=choices, nullable=nullable, path=path, only=only, only_schedule=only_schedule)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    path: str | None = opt(
        None, str,
        "UTF-8 text file, or directory made by `charrnn prepare` (or its meta.json), to train on (relative to the "
        "config file); required",
        path=True, nullable=True)
    val_fraction: float = opt(
        0.1, float,
        "the last fraction of a text file, held out for validation (0: none); a prepared directory keeps the split it "
        "was prepared with",
        lo=0.0, hi=0.5)


@dataclass
class ModelConfig:
    cell: str = opt(
        "rnn", str,
        "recurrent cell; mingru and minlstm (Feng et al. 2024) have gates that read only the input, no recurrent "
        "weights",
        choices=tuple(CELLS))
    hidden_size: int = opt(100, int, "hidden units per layer (H)", lo=1)
    layers: int = opt(1, int, "stacked recurrent layers", lo=1, hi=16)
    dropout: float = opt(
        0.0, float,
        "dropout between layers and before the output (0 disables)",
        lo=0.0, hi=1.0, hi_open=True)
    multiplicative: bool = opt(
        False, bool,
        "multiplicative integration (Wu et al. 2016): each recurrent product scaled unit by unit by Wmx x_t + bm, a "
        "gain chosen by the input character")
    # Ba, Kiros & Hinton 2016: each gate block of the input and the recurrent part normalized
    # on its own (charrnn.layernorm); refused in from_dict for a cell that declares no NORM.
    layer_norm: bool = opt(
        False, bool,
        "layer normalization (Ba et al. 2016): the input and the recurrent part of each gate normalized separately "
        "over its H units, times gains gx, gh (and the LSTM's cell, gc, bc)")
    # Feng et al. 2024 stack their minGRU and minLSTM layers this way; it works for any cell.
    residual: bool = opt(
        False, bool,
        "residual connections: layer l ≥ 1 outputs its h plus its input, before that layer's dropout (needs "
        "model.layers ≥ 2)")
    init_std: float = opt(
        0.01, float,
        "weights start as N(0, 1) · init_std (min-char-rnn: 0.01); biases start at 0",
        lo=0.0, lo_open=True)
    dtype: str = opt("float32", str, "floating-point type of parameters and training", choices=("float32", "float64"))
    device: str = opt(
        "cpu", str,
        "where training runs: cpu (NumPy), or gpu (the same code on CuPy; pip install 'charrnn[gpu]')",
        choices=("cpu", "gpu"))


# The learning rate each optimizer starts from when optim.lr is not given.
MIN_VARIABLE_T = 10  # train.variable_length's least seq_length (see from_dict)
DEFAULT_LR = {"adagrad": 0.1, "rmsprop": 2e-3, "adam": 2e-3, "sgd": 0.1}


@dataclass
class OptimConfig:
    name: str = opt(
        "adagrad", str,
        "optimizer: adagrad (min-char-rnn), rmsprop (char-rnn), adam (torch-rnn, nanoGPT), sgd (with momentum)",
        choices=("adagrad", "rmsprop", "adam", "sgd"))
    lr: float | None = opt(
        None, float,
        "learning rate; null: the optimizer's usual one (adagrad 0.1, rmsprop 0.002, adam 0.002, sgd 0.1)",
        lo=0.0, lo_open=True, nullable=True)
    eps: float = opt(
        1e-8, float,
        "epsilon of adagrad, rmsprop and adam",
        lo=0.0, lo_open=True, only=("adagrad", "rmsprop", "adam"))
    decay: float = opt(
        0.95, float,
        "rmsprop: decay of the mean square (char-rnn: 0.95)",
        lo=0.0, hi=1.0, hi_open=True, only=("rmsprop",))
    beta1: float = opt(0.9, float, "adam: decay of the first moment", lo=0.0, hi=1.0, hi_open=True, only=("adam",))
    beta2: float = opt(0.999, float, "adam: decay of the second moment", lo=0.0, hi=1.0, hi_open=True, only=("adam",))
    weight_decay: float = opt(
        0.0, float,
        "adam: decoupled weight decay of the weight matrices, not the biases (AdamW; nanoGPT: 0.1); 0: plain Adam",
        lo=0.0, only=("adam",))
    momentum: float = opt(0.9, float, "sgd: momentum (0: plain SGD)", lo=0.0, hi=1.0, hi_open=True, only=("sgd",))
    clip_value: float | None = opt(
        5.0, float,
        "clip every gradient element into [-v, v] (min-char-rnn: 5); 0 or null disables",
        lo=0.0, nullable=True)
    clip_norm: float | None = opt(
        None, float,
        "rescale gradients to this global L2 norm at most; 0 or null disables",
        lo=0.0, nullable=True)
    schedule: str = opt(
        "constant", str,
        "learning-rate schedule: constant, step (char-rnn: × decay_rate per epoch from decay_after on), cosine "
        "(nanoGPT: linear warm-up, then cosine to min_lr at train.steps), linear (linear warm-up, then a straight line"
        " to min_lr at train.steps)",
        choices=("constant", "step", "cosine", "linear"))
    decay_rate: float = opt(
        0.97, float,
        "step schedule: factor per epoch (char-rnn: 0.97)",
        lo=0.0, lo_open=True, hi=1.0, only_schedule=("step",))
    decay_after: int = opt(
        10, int,
        "step schedule: first epoch at whose end the rate decays (char-rnn: 10)",
        lo=0, only_schedule=("step",))
    warmup_steps: int = opt(
        0, int,
        "cosine and linear schedules: steps of linear warm-up from 0",
        lo=0, only_schedule=DECAYING)
    min_lr: float | None = opt(
        None, float,
        "cosine and linear schedules: final learning rate; null: lr / 10",
        lo=0.0, nullable=True, only_schedule=DECAYING)
    ema: float | None = opt(
        None, float,
        "decay of an exponential moving average of the weights (e.g. 0.999, about the last 1,000 steps), which "
        "validation, best.npz, sample and eval use; null: off",
        lo=0.0, lo_open=True, hi=1.0, hi_open=True, nullable=True)


@dataclass
class TrainConfig:
    seq_length: int = opt(25, int, "characters per chunk of truncated BPTT (T)", lo=1)
    variable_length: bool = opt(  # the rule: charrnn.data.chunk_length
        False, bool,
        "AWD-LSTM's variable truncated BPTT: each step's chunk length is drawn from (train.seed, step): around T "
        "(or T/2 on 5% of steps) with σ 5, at least 5, at most T + 20, and the step's learning rate is scaled by "
        "length / T (not sgd's: its gradient of the summed loss already is); needs seq_length ≥ 10")
    batch_size: int = opt(1, int, "parallel streams of the corpus (B)", lo=1)
    steps: int = opt(10000, int, "total optimizer steps of the run", lo=1)
    seed: int = opt(42, int, "seed for initialisation, dropout and preview samples", lo=0)
    out_dir: str | None = opt(
        None, str,
        "run directory (relative to the config file); null: runs/<config name> in the working directory",
        nullable=True, path=True)
    log_every: int = opt(100, int, "append a line to metrics.jsonl every this many steps", lo=1)
    log_seconds: float | None = opt(
        10.0, float,
        "when stderr is not a terminal (a file, SLURM, mpiexec): print a log step's progress line only if this many "
        "seconds have passed since the last one printed (the first and the last are always printed; metrics.jsonl "
        "still gets every log step); null: every log step",
        lo=0.0, lo_open=True, nullable=True)
    sample_every: int = opt(1000, int, "print a preview sample to stderr every this many steps; 0 disables", lo=0)
    checkpoint_every: int = opt(
        1000, int,
        "write RUN/ckpt.npz every this many steps (and always at the end); 0: only at the end",
        lo=0)
    eval_every: int = opt(
        1000, int,
        "evaluate the validation text every this many steps (and at the end); 0: only at the end",
        lo=0)
    eval_chars: int | None = opt(
        1_000_000, int,
        "characters each evaluation reads: the first eval_chars of the validation split, the same every time; null: "
        "all of it",
        lo=2, nullable=True)
    patience: int | None = opt(
        None, int,
        "stop early after this many evaluations without a new best validation loss; null: never",
        lo=1, nullable=True)
    max_minutes: float | None = opt(
        None, float,
        "stop (with a checkpoint and a final evaluation) after this much training time; null: no limit",
        lo=0.0, lo_open=True, nullable=True)
    fit_to_budget: bool = opt(  # the rule: charrnn.train.fitted_length
        False, bool,
        "with max_minutes and a cosine or linear schedule: every 50 steps, project from the speed of the last 500 "
        "where the budget will end, and make that the run's length (train.steps is then its upper bound), so that "
        "the schedule decays to min_lr in time instead of being cut off on a slower machine; each change is logged")
    diverge_factor: float | None = opt(
        3.0, float,
        "stop as diverged when min-char-rnn's smoothed training loss per character exceeds this multiple of the larger"
        " of log V (a uniform guess) and the first step's loss (a loss or gradient that is not finite always stops the"
        " run); null: only then",
        lo=1.0, lo_open=True, nullable=True)
    peer_timeout: float = opt(
        600.0, float,
        "under MPI: seconds a rank waits at a collective (a step's gradient sum, a checkpoint) for the other ranks "
        "before it ends the run, saying which rank did not answer; a run in one process never waits",
        lo=0.0, lo_open=True)
    progress_loss: str = opt(
        "window", str,
        "training loss on the progress bar and in the summary: window (the mean over the steps since the last log "
        "line) or smooth (min-char-rnn's 0.999-smoothed loss, which lags about 1,000 steps behind)",
        choices=("window", "smooth"))


@dataclass
class SampleConfig:
    length: int = opt(200, int, "characters in a preview sample (and the default of `charrnn sample --length`)", lo=1)
    temperature: float = opt(
        1.0, float,
        "softmax temperature of previews (and the default of `charrnn sample`)",
        lo=0.0, lo_open=True)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _describe(meta):
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[meta["kind"]]
    if meta["choices"]:
        kind = "one of " + ", ".join(meta["choices"])
    parts = []
    if meta["lo"] is not None:
        parts.append(("> " if meta["lo_open"] else "≥ ") + repr(meta["lo"]))
    if meta["hi"] is not None:
        parts.append(("< " if meta["hi_open"] else "≤ ") + repr(meta["hi"]))
    text = kind + (" " + " and ".join(parts) if parts else "")
    return text + (", or null" if meta["nullable"] else "")


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping; ``key`` is its dotted path in the document."""

    def __init__(self, key, first_line, line):
        super().__init__(f"duplicate key '{key}' at line {line} (first at line {first_line})")
        self.key, self.first_line, self.line = key, first_line, line


# Bounds no real config comes near (a config is a few dozen keys of short values, two levels deep),
# which a hostile or broken file meets long before it costs time or memory: values counted with
# their aliases expanded, collections inside collections, and the file's bytes (or a --set's).
MAX_NODES = 10_000
MAX_DEPTH = 100
MAX_BYTES = 1 << 20


class TooLargeError(yaml.YAMLError):
    """A YAML document beyond the bounds above; ``problem`` says which, ``line`` where (from 1)."""

    def __init__(self, problem, mark):
        super().__init__(problem)
        self.problem, self.line = problem, mark.line + 1 if mark is not None else None


class StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one mapping, at any depth,
    raises DuplicateKeyError instead of the last one silently winning.

    Keys are compared as constructed values, as the dict they go into compares them (so
    ``steps`` and ``"steps"`` are the same key). Keys brought in by a merge (``<<: *base``)
    may be overridden, as YAML intends; two explicit keys may not.

    A document beyond the bounds (``MAX_NODES`` values with the aliases expanded, ``MAX_DEPTH``
    levels) raises TooLargeError while it is composed, before any value is built; an integer
    too long for Python to convert raises a ConstructorError at its line.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._paths = {}  # node -> dotted path of keys leading to it, for messages
        self._sizes = {}  # node -> how many nodes it stands for, its aliases expanded
        self._total = 0  # the nodes of the document so far, each alias counted as what it expands to
        self._depth = 0

    def compose_node(self, parent, index):
        # Count as composing, before anything is built: an alias bomb (a few lines whose aliases
        # expand to billions of values) is a handful of nodes until something walks it whole.
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)) and self._depth >= MAX_DEPTH:
            raise TooLargeError(f"nested too deeply for a config file (more than {MAX_DEPTH} levels)", mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(node)
            if size is None:  # the alias's anchor is still being composed: it contains itself
                raise TooLargeError(f"the alias *{event.anchor} refers to a value that contains it (a recursive "
                                    "value); no config value is one", mark)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
            size = self._sizes[node] = 1 + sum(self._sizes[c] for c in children)
        self._total += size if isinstance(event, yaml.AliasEvent) else 1  # children counted as they came
        if self._total > MAX_NODES:
            alias = f" (the alias *{event.anchor} brings in {size:,})" if isinstance(event, yaml.AliasEvent) else ""
            raise TooLargeError(f"the document stands for more than {MAX_NODES:,} values, its aliases expanded"
                                f"{alias}, far more than any config (an alias bomb?)", mark)
        return node

    def construct_document(self, node):
        # Name every collection by its path first (iteratively: documents may nest deeply,
        # and aliases may make them cyclic), so a duplicate is reported as train.steps.
        todo = [(node, "")]
        while todo:
            n, path = todo.pop()
            if n in self._paths:
                continue
            self._paths[n] = path
            if isinstance(n, yaml.MappingNode):
                for k, v in n.value:
                    name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                    todo.append((v, f"{path}.{name}" if path else name))
            elif isinstance(n, yaml.SequenceNode):
                todo.extend((v, f"{path}[{i}]") for i, v in enumerate(n.value))
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            path = self._paths.get(node, "")
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(f"{path}.{key}" if path else str(key),
                                            first.start_mark.line + 1, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # beyond Python's digit limit for int(str) (4,300 digits)
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {len(node.value):,} digits, far too long for a config value",
            node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def yaml_load(stream: Any) -> Any:
    """``yaml.safe_load`` with duplicate keys refused (StrictLoader)."""
    return yaml.load(stream, Loader=StrictLoader)  # a SafeLoader: no Python objects, as safe_load


def _printable(text):
    """``text`` as one printable line: control characters (a newline in a key) escaped."""
    text = str(text)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# A repr that walks at most 3 levels and 6 items of each: an alias bomb's value (a few nodes
# shared billions of times over) or a deep one must never be turned into text whole.
_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel = 3
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = _BOUNDED.maxfrozenset = 6
_BOUNDED.maxstring = _BOUNDED.maxlong = _BOUNDED.maxother = 200


def _show(value, limit=60):
    """A value as it appears in an error message: its repr, on one line, cut to ``limit``.

    Bounded whatever the value: strings are cut before repr, and containers are walked only
    a few levels and items deep (``reprlib``), so the text costs the same for any value."""
    if isinstance(value, str):
        text = repr(value[:limit + 1])
        return text if len(value) <= limit and len(text) <= limit else \
            f"{text[:limit]}... ({len(value):,} characters)"
    text = _BOUNDED.repr(value)
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "mapping"
        return text if len(text) <= limit else f"{text[:limit]}... (a {kind} of {len(value):,} items)"
    return text if len(text) <= limit else f"{text[:limit]}..."


def _check_value(key, value, meta, source):
    """The value converted to the field's type, or a UsageError naming key, value and rule."""
    def bad():
        return UsageError(f"{source}: {key} must be {_describe(meta)}, got {_show(value)}")

    if value is None:
        if meta["nullable"]:
            return None
        raise bad()
    kind = meta["kind"]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad()
        # PyYAML follows YAML 1.1, which reads 1e-8 (no dot) as a string: accept it.
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number, or an integer beyond float's range
            raise bad() from None
        if not math.isfinite(number):
            raise bad()
        value = number
    elif kind is str:
        if not isinstance(value, str) or not value:
            raise bad()
        if meta["path"] and "\0" in value:
            raise UsageError(f"{source}: {key} must be a path, and a path cannot hold a NUL character")
    elif kind is bool:
        if not isinstance(value, bool):
            raise bad()
    if meta["choices"] and value not in meta["choices"]:
        raise bad()
    lo, hi = meta["lo"], meta["hi"]
    if lo is not None and (value < lo or (meta["lo_open"] and value == lo)):
        raise bad()
    if hi is not None and (value > hi or (meta["hi_open"] and value == hi)):
        raise bad()
    return value


# Names other trainers use (char-rnn, torch-rnn, nanoGPT, PyTorch) for our keys. An alias
# wins over difflib's closest spelling, so every entry must be the key that means the same
# thing (tests/test_config.py checks that each target exists): nanoGPT's eval_interval is
# how often it evaluates, our eval_every, however close checkpoint_every may look.
ALIASES = {
    "learning_rate": "lr", "rnn_size": "hidden_size", "hidden": "hidden_size", "n_embd": "hidden_size",
    "num_layers": "layers", "n_layer": "layers", "model_type": "cell", "seq_len": "seq_length",
    "block_size": "seq_length", "batch": "batch_size", "grad_clip": "clip_value", "max_iters": "steps",
    "iterations": "steps", "max_epochs": "steps", "epochs": "steps", "eval_interval": "eval_every",
    "eval_val_every": "eval_every", "print_every": "log_every", "log_interval": "log_every",
    "checkpoint_every_steps": "checkpoint_every", "warmup_iters": "warmup_steps",
    "learning_rate_decay": "decay_rate", "learning_rate_decay_after": "decay_after",
    "input_file": "path", "data_dir": "path",
}

# Where an alias's value is not ours as it is, the suggestion says so: a count of epochs
# copied into train.steps would silently train for a much shorter run.
_EPOCHS = ("It counts optimizer steps, another unit than epochs: an epoch is about "
           "N / (batch_size × seq_length) steps, for N training characters")
ALIAS_NOTES = {
    "max_epochs": _EPOCHS, "epochs": _EPOCHS,
    "grad_clip": "It clips each element, as char-rnn's grad_clip does; nanoGPT's grad_clip clips the "
                 "global norm, which is optim.clip_norm",
}


def _closest(key, valid):
    """The valid key closest to unknown ``key``, or None: the alias's target in the same
    section, else in another (train.lr -> optim.lr), else difflib's closest spelling."""
    section, _, leaf = key.rpartition(".")
    leaves = {k.rpartition(".")[2]: k for k in valid if k.rpartition(".")[0] == section}
    target = ALIASES.get(leaf, leaf)
    if target in leaves:
        return leaves[target]
    elsewhere = [k for k in valid if k.rpartition(".")[2] == target and "." in k]
    if elsewhere:
        return elsewhere[0]
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    if close:
        return leaves[close[0]]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.75)
    return close[0] if close else None


def _unknown(key, valid, source):
    """An error for an unknown key, suggesting the closest valid one (and, for another
    trainer's name whose meaning differs from that key's, how)."""
    section, _, leaf = key.rpartition(".")
    same_section = [k for k in valid if k.rpartition(".")[0] == section]
    close = _closest(key, valid)
    if close:
        note = ALIAS_NOTES.get(leaf) if close.rpartition(".")[2] == ALIASES.get(leaf) else None
        hint = f" (did you mean '{close}'? {note})" if note else f" (did you mean '{close}'?)"
    elif same_section:
        hint = f"; valid keys: {', '.join(same_section)}"
    else:  # not even the section is known: name the sections rather than every key
        hint = f"; keys are SECTION.KEY, with SECTION one of {', '.join(SECTIONS)}"
    return UsageError(f"{source}: unknown key '{key}'{hint}")


def all_keys() -> list[str]:
    """Every dotted key of the schema: ``model.hidden_size``, ..."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def from_dict(data: Any, source: str, base_dir: str | None = None, origins: dict | None = None) -> Config:
    """Validate a nested mapping into a ``Config``.

    ``source`` names where the data came from (the file) in every error message;
    ``origins`` maps dotted keys whose values came from elsewhere to the name to give
    instead (``apply_overrides`` gives ``--set optim.lr=abc`` for ``optim.lr``);
    ``base_dir`` is where relative paths are resolved (None: leave them as they are).
    """
    origins = origins or {}

    def where(key):
        return origins.get(key, source)

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    sections, given = {}, {}
    for sname, section in data.items():
        if sname not in SECTIONS:
            raise _unknown(_printable(sname), list(SECTIONS) + all_keys(), source)
        cls = SECTIONS[sname]
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise UsageError(f"{source}: {sname} must be a mapping of keys, got {_show(section)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in section.items():
            dotted = f"{sname}.{_printable(key)}"
            if key not in fields:
                raise _unknown(dotted, all_keys(), where(dotted))
            meta = fields[key].metadata
            value = _check_value(dotted, value, meta, where(dotted))
            if meta["path"] and value is not None and base_dir is not None:
                value = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
            values[key] = value
        sections[sname] = cls(**values)
        given[sname] = values
    model = sections.get("model")
    if model is not None and model.layer_norm and not CELLS[model.cell].NORM:
        key, names = "model.layer_norm", [c for c, m in CELLS.items() if m.NORM]
        cells = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)  # "rnn, lstm and gru"
        raise UsageError(f"{where(key)}: {key} applies to model.cell {cells} only, not {model.cell}")
    sections["optim"] = _resolve_optim(sections.get("optim", OptimConfig()), given.get("optim", {}), where)
    tc = sections.get("train", TrainConfig())
    if tc.variable_length and tc.seq_length < MIN_VARIABLE_T:
        # Below 10, T/2 falls under the floor of 5 and σ 5 is as wide as T: the rule no longer holds.
        named = "seq_length" in given.get("train", {}) and where("train.seq_length") != where("train.variable_length")
        raise UsageError(f"{where('train.variable_length')}: train.variable_length needs train.seq_length ≥ "
                         f"{MIN_VARIABLE_T} (its half-length draws are around T/2, floored at 5), got {tc.seq_length}"
                         + (f" (from {where('train.seq_length')})" if named else ""))
    if tc.fit_to_budget:
        key = "train.fit_to_budget"
        if tc.max_minutes is None:
            raise UsageError(f"{where(key)}: {key} fits the run's length to train.max_minutes, which is null"
                             f"{_from(where, key, 'train.max_minutes')}: give a budget, or {key}: false")
        if sections["optim"].schedule not in DECAYING:
            raise UsageError(f"{where(key)}: {key} ends a cosine or linear schedule within train.max_minutes; "
                             f"optim.schedule is {sections['optim'].schedule}"
                             f"{_from(where, key, 'optim.schedule')}, which the budget alone stops in time")
    _check_model(sections.get("model", ModelConfig()), given.get("model", {}), where)
    return Config(**sections)


def _from(where, key, other):
    """`` (from SOURCE)`` when ``other``'s value came from another source than ``key``'s."""
    return f" (from {where(other)})" if where(other) != where(key) else ""


def _check_model(m, given, where):
    """Refuse model settings that do not go together: multiplicative integration of a cell with
    no recurrent product, residual connections of a single layer. The message names the source
    of the first key, and of the second where that differs (a ``--set`` over a file)."""

    def also(key, other):
        named = other.partition(".")[2] in given and where(other) != where(key)
        return f" ({other} from {where(other)})" if named else ""

    if m.multiplicative and not recurrent(CELLS[m.cell]):
        key = "model.multiplicative"
        raise UsageError(f"{where(key)}: model.multiplicative: true has no recurrent product to scale in model.cell "
                         f"{m.cell}; use rnn, lstm or gru, or multiplicative: false{also(key, 'model.cell')}")
    if m.residual and m.layers < 2:
        key = "model.residual"
        raise UsageError(f"{where(key)}: model.residual: true needs model.layers ≥ 2 (layer 0 has no input of size H "
                         f"to add), got {m.layers}{also(key, 'model.layers')}")


def _resolve_optim(o, given, where):
    """Refuse settings of another optimizer or schedule; fill in the per-optimizer defaults.

    ``where(key)`` names the source of a key's value; when the conflict comes from two
    sources (the file and a ``--set``), the message names both.
    """

    def also(key, other):
        named = other.partition(".")[2] in given and where(other) != where(key)
        return f" (from {where(other)})" if named else ""

    for f in dataclasses.fields(OptimConfig):
        if f.name not in given:
            continue
        if _applies(f.metadata, o):
            continue
        key = f"optim.{f.name}"
        only = f.metadata["only"]
        if only and o.name not in only:
            raise UsageError(f"{where(key)}: {key} applies to {' and '.join(only)} only, "
                             f"not to optim.name {o.name}{also(key, 'optim.name')}")
        schedules = " and ".join(f.metadata["only_schedule"])
        raise UsageError(f"{where(key)}: {key} applies to optim.schedule {schedules} only, "
                         f"not {o.schedule}{also(key, 'optim.schedule')}")
    if o.lr is None:
        o = dataclasses.replace(o, lr=DEFAULT_LR[o.name])
    if o.schedule in DECAYING and o.min_lr is None:
        o = dataclasses.replace(o, min_lr=o.lr / 10)
    if o.schedule in DECAYING and o.min_lr > o.lr:
        key = "optim.min_lr" if "min_lr" in given else "optim.lr"
        other = "optim.lr" if key == "optim.min_lr" else "optim.min_lr"
        raise UsageError(f"{where(key)}: optim.min_lr ({o.min_lr}) must not exceed optim.lr ({o.lr}){also(key, other)}")
    return o


def _applies(meta, o):
    return (not meta["only"] or o.name in meta["only"]) and (
        not meta["only_schedule"] or o.schedule in meta["only_schedule"])


def to_dict(cfg: Config) -> dict:
    """The config as plain data, without the settings of optimizers and schedules not chosen."""
    d = dataclasses.asdict(cfg)
    for f in dataclasses.fields(OptimConfig):
        if not _applies(f.metadata, cfg.optim):
            del d["optim"][f.name]
    return d


def _named(text: str) -> str:
    """A ``--set KEY=VALUE`` as errors name it: as typed, cut to 80 characters."""
    return f"--set {_printable(text if len(text) <= 80 else text[:80] + '...')}"


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.002"`` -> ``("optim.lr", 0.002)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {_show(text)}: expected KEY=VALUE, e.g. --set optim.lr=0.002")
    if len(raw) > MAX_BYTES:
        raise UsageError(f"--set {_printable(key[:80])}=...: a value of {len(raw):,} characters, far longer than any "
                         f"config value (at most {MAX_BYTES:,})")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except TooLargeError as e:  # YAML, but a bomb: refused, not taken as a text of its own
        raise UsageError(f"{_named(text)}: {e.problem}") from None
    except (yaml.YAMLError, RecursionError):
        value = raw  # not YAML: the text itself, which validation then judges
    return key.strip(), value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Merge ``KEY=VALUE`` overrides into the raw mapping (validation happens after).

    Returns ``(data, origins)``: the merged mapping, and for every overridden dotted key the
    ``--set KEY=VALUE`` that set it, as the user typed it, for ``from_dict`` to name in errors.
    A path given with ``--set`` is relative to the working directory, as any path on a
    command line is (paths in the file are relative to the file).
    """
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    origins = {}
    for text in overrides:
        key, value = parse_override(text)
        source = _named(text)
        section, dot, name = key.partition(".")
        if not dot or section not in SECTIONS:
            raise _unknown(_printable(key), all_keys(), source)
        fields = {f.name: f.metadata for f in dataclasses.fields(SECTIONS[section])}
        if name not in fields:
            raise _unknown(_printable(key), all_keys(), source)
        if fields[name]["path"] and isinstance(value, str) and value and "\0" not in value:
            value = os.path.abspath(os.path.expanduser(value))
        sec = data.get(section)
        if sec is None:
            sec = data[section] = {}
        if isinstance(sec, dict):  # otherwise from_dict reports the file's section as it is
            sec[name] = value
            origins[key] = source
    return data, origins


def _set_data_path(data, data_path):
    """Put ``data_path`` (``--data``, relative to the working directory) into the raw mapping."""
    section = data.get("data")
    data["data"] = dict(section if isinstance(section, dict) else {}, path=os.path.abspath(data_path))


def load(path: str, overrides: Iterable[str] = (), data_path: str | None = None) -> Config:
    """Read, merge overrides into and validate a YAML config file.

    ``data_path`` (``charrnn train --data``) replaces ``data.path``; like a path given with
    ``--set``, it is relative to the working directory.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never more: a config file is a few hundred bytes
        if len(raw) > MAX_BYTES:
            raise UsageError(f"{path}: larger than {MAX_BYTES >> 20} MiB, far larger than any config file "
                             "(is this the config?)")
        data = yaml_load(raw.decode("utf-8"))
    except FileNotFoundError:
        stem, suffix = os.path.splitext(os.path.basename(path))
        shipped = f" (the shipped {stem}{suffix} goes by its name: --config {stem})" if (
            suffix in CONFIG_SUFFIXES and stem in shipped_configs()) else ""
        raise UsageError(f"{path}: config file not found{shipped}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read config file: {e}") from None
    except TooLargeError as e:
        raise UsageError(f"{path}: line {e.line}: {e.problem}") from None
    except DuplicateKeyError as e:
        lines = f"twice on line {e.line}" if e.line == e.first_line else f"at lines {e.first_line} and {e.line}"
        raise UsageError(f"{path}: duplicate key '{_printable(e.key)}' {lines}; give each key once "
                         "(YAML would silently keep the last)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}: not valid YAML{where}: {_printable(problem)}") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid YAML: nested too deeply for a config file") from None
    if data is not None and not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    data, origins = apply_overrides(data, overrides)
    if data_path is not None:
        _set_data_path(data, data_path)
    base = os.path.dirname(os.path.abspath(path))
    cfg = from_dict(data, str(path), base_dir=base, origins=origins)
    if cfg.data.path is None:
        raise UsageError(f"{origins.get('data.path', path)}: data.path is required (the UTF-8 text file to train on)")
    if cfg.train.out_dir is None:
        stem = os.path.splitext(os.path.basename(path))[0]
        cfg.train.out_dir = os.path.abspath(os.path.join("runs", stem))
    return cfg


# ----------------------------------------------------------------------------- shipped configs

CONFIG_SUFFIXES = (".yaml", ".yml")


def shipped_dir() -> str | None:
    """The folder of the shipped configs: ``charrnn/shipped/configs`` in an installed wheel
    (pyproject.toml installs the checkout's ``configs/`` there, and ``data/`` beside it), or the
    checkout's own ``configs/`` when charrnn runs from its source tree; None if neither is there."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "shipped", "configs")
    if os.path.isdir(installed):
        return installed
    root = os.path.dirname(package)
    checkout = os.path.join(root, "configs")
    if os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isdir(checkout):
        return checkout
    return None


def shipped_configs() -> dict[str, str]:
    """The shipped configs, by name (the file's name without ``.yaml``), sorted: name -> path."""
    folder = shipped_dir()
    if folder is None:
        return {}
    return {name[:-5]: os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".yaml")}


def describe_config(path: str) -> str:
    """A config's one-line description: the first line of the comment at the top of the file."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline(1000)
    except (OSError, UnicodeDecodeError):
        return ""
    return first[1:].strip() if first.startswith("#") else ""


def is_bare_name(value: str) -> bool:
    """``lstm``, not ``configs/lstm.yaml``, ``./lstm`` or ``lstm.yaml``: what --config looks up
    among the shipped configs (when no file of that name is there)."""
    seps = [os.sep] + ([os.altsep] if os.altsep else []) + ["/"]
    return bool(value) and not any(sep in value for sep in seps) and not value.endswith(CONFIG_SUFFIXES)


def find_config(value: str) -> str:
    """The file ``--config VALUE`` means: VALUE itself when something of that name is there (a
    path, relative to the working directory, always wins: a file ``lstm`` in the working
    directory is that file); otherwise, for a bare name (``lstm``), the shipped config of that
    name; otherwise VALUE (``load`` then says it is not found). Raises UsageError for a bare
    name that is neither."""
    if os.path.lexists(value) or not is_bare_name(value):
        return value
    shipped = shipped_configs()
    if value in shipped:
        return shipped[value]
    close = difflib.get_close_matches(value, list(shipped), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    names = ", ".join(shipped) or "none in this installation"
    raise UsageError(f"--config {_printable(value)}: no such file, nor a shipped config ({hint}shipped: {names}; "
                     "`charrnn configs` describes them)")


# What `charrnn train --data PATH` trains without --config: configs/default.yaml without its
# data and run directory (tests/test_config.py keeps the two equal). It is built in, rather
# than read from configs/, because an installed charrnn has no configs/ directory.
DEFAULT_RUN = {
    "model": {"cell": "rnn", "hidden_size": 256, "layers": 1, "dropout": 0.0, "init_std": 0.01, "dtype": "float32"},
    "optim": {"name": "adam", "lr": 0.002, "clip_value": 5.0, "clip_norm": None, "schedule": "constant"},
    "train": {"seq_length": 64, "batch_size": 32, "steps": 19000, "max_minutes": 5, "seed": 42, "log_every": 25,
              "sample_every": 500, "eval_every": 500, "checkpoint_every": 500},
    "sample": {"length": 300, "temperature": 0.8},
}


def default_config(data_path: str, overrides: Iterable[str] = ()) -> Config:
    """The built-in default config (``DEFAULT_RUN``) for the corpus at ``data_path``, with
    overrides; its run directory is runs/<the corpus's name> in the working directory."""
    data, origins = apply_overrides(DEFAULT_RUN, overrides)
    _set_data_path(data, data_path)
    cfg = from_dict(data, "the built-in default config", origins=origins)
    if cfg.train.out_dir is None:
        stem = os.path.splitext(os.path.basename(os.path.normpath(cfg.data.path)))[0]
        if stem == "meta":  # DIR/meta.json: the run is named after the directory
            stem = os.path.basename(os.path.dirname(cfg.data.path))
        cfg.train.out_dir = os.path.abspath(os.path.join("runs", stem))
    return cfg


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
