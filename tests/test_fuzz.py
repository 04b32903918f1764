"""Fuzzing what a user hands charrnn: config files, ``--set`` values and checkpoints.

The oracle, for every generated input:

- never a traceback: the library raises charrnn's own one-line errors (UsageError for a
  config, CharrnnError for a checkpoint) and nothing else; the command line exits 0, 1 or 2
  with at most one ``Error:`` line naming the input;
- never success on an input that is broken by construction (an unknown key, a value of the
  wrong type or range, a duplicate key; a truncated file, a missing array, a wrong dtype or
  shape, a NaN weight, a pickle);
- where a mutation may leave the input valid, success is allowed only if what was loaded is
  what was saved (a flipped bit in a zip header that the reader ignores is harmless; one in
  the arrays is caught by the zip's CRC-32);
- never an executed pickle: the payload would create a marker file, which must not exist.

Example counts are per test, in ``EXAMPLES``; every fuzz test takes seconds, so all are
marked slow (``-m "not slow"`` skips them; CI runs them).
"""

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import CORPUS, Payload, first_chars
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from charrnn import checkpoint as ckpt_io
from charrnn import config as C
from charrnn.cli import cli
from charrnn.errors import CharrnnError, UsageError

EXAMPLES = {"config": 400, "set": 400, "bytes": 400, "arrays": 400, "cli": 300, "train": 200}
FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                   HealthCheck.data_too_large])


# CHARRNN_FUZZ_SCALE=10 runs ten times the examples, to hunt for bugs rather than guard.
SCALE = float(os.environ.get("CHARRNN_FUZZ_SCALE", "1"))


def fuzz(kind):
    return settings(max_examples=max(1, int(EXAMPLES[kind] * SCALE)), **FUZZ)


def invoke(*args):
    """Run the CLI in-process; assert the part of the oracle every run shares."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    if result.exit_code == 0:
        assert not errors, result.stderr
    elif result.exit_code == 1:  # charrnn's own failure: exactly one line
        assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    else:  # a usage error: Click may print a usage line and a hint before its one Error line
        assert len(errors) == 1, result.stderr
    return result


# --- configs and --set values -------------------------------------------------------

def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


FIELDS = {f"{s}.{f.name}": f.metadata for s, cls in C.SECTIONS.items() for f in dataclasses.fields(cls)}
FLOAT_TEXT = st.text(max_size=8).filter(lambda s: not _is_float(s))  # never a number, even as text


def valid_value(meta):
    """Values the schema accepts for a field (range and type), by construction."""
    kind, lo, hi = meta["kind"], meta["lo"], meta["hi"]
    if meta["choices"]:
        s = st.sampled_from(meta["choices"])
    elif kind is bool:
        s = st.booleans()
    elif kind is int:
        s = st.integers(min_value=(lo or 0) + (1 if meta["lo_open"] else 0), max_value=hi if hi is not None else 10**6)
    elif kind is float:
        s = st.floats(min_value=lo if lo is not None else -1e6, max_value=hi if hi is not None else 1e6,
                      exclude_min=meta["lo_open"], exclude_max=meta["hi_open"], allow_nan=False, allow_infinity=False)
    else:
        s = st.text(min_size=1, max_size=20).filter(lambda t: "\0" not in t)
    return s | st.none() if meta["nullable"] else s


def invalid_value(meta):
    """Values the schema must refuse for a field, by construction."""
    kind, lo, hi = meta["kind"], meta["lo"], meta["hi"]
    wrong = [st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)]
    if not meta["nullable"]:
        wrong.append(st.none())
    if kind is int:
        wrong += [st.booleans(), st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()),
                  FLOAT_TEXT]
        if lo is not None:
            wrong.append(st.integers(max_value=lo - (0 if meta["lo_open"] else 1), min_value=lo - 10**30))
        if hi is not None:
            wrong.append(st.integers(min_value=hi + (0 if meta["hi_open"] else 1), max_value=10**30))
    elif kind is float:
        wrong += [st.booleans(), st.sampled_from([math.nan, math.inf, -math.inf, 10**400]), FLOAT_TEXT]
        # (hypothesis orders -0.0 below 0.0; the schema, like Python, does not: filter it)
        if lo is not None:
            below = st.floats(max_value=lo, exclude_max=not meta["lo_open"], allow_nan=False, min_value=-1e300)
            wrong.append(below.filter(lambda x: meta["lo_open"] or x != lo))
        if hi is not None:
            above = st.floats(min_value=hi, exclude_min=not meta["hi_open"], allow_nan=False, max_value=1e300)
            wrong.append(above.filter(lambda x: meta["hi_open"] or x != hi))
    elif kind is bool:
        wrong += [st.integers(), st.text(max_size=5)]
    else:
        wrong += [st.integers(), st.just("")]
        if meta["choices"]:
            wrong.append(st.text(max_size=8).filter(lambda t: t not in meta["choices"]))
    return st.one_of(wrong)


def applicable(key, doc):
    """Keys of another optimizer or schedule are refused; a valid document leaves them out."""
    meta = FIELDS[key]
    optim = doc.get("optim", {})
    name, schedule = optim.get("name", "adagrad"), optim.get("schedule", "constant")
    return ((not meta["only"] or name in meta["only"])
            and (not meta["only_schedule"] or schedule in meta["only_schedule"]))


@st.composite
def documents(draw):
    """(document, fault): a config mapping built from the schema, and the one fault put into
    it (None: every key known, every value valid, nothing else promised)."""
    doc = {"data": {"path": "corpus.txt"}}
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=8, unique=True)):
        section, name = key.split(".")
        if key in ("optim.name", "optim.schedule") or applicable(key, doc):
            doc.setdefault(section, {})[name] = draw(valid_value(FIELDS[key]))
    doc = {s: {k: v for k, v in sec.items() if applicable(f"{s}.{k}", doc)} for s, sec in doc.items()}
    fault = draw(st.sampled_from([None, None, "value", "value", "unknown key", "unknown section", "not a mapping"]))
    if fault == "value":
        key = draw(st.sampled_from(sorted(k for k in FIELDS if applicable(k, doc))))
        section, name = key.split(".")
        doc.setdefault(section, {})[name] = draw(invalid_value(FIELDS[key]))
    elif fault == "unknown key":
        section = draw(st.sampled_from(sorted(C.SECTIONS)))
        name = draw(st.text(min_size=1, max_size=12).filter(lambda n: f"{section}.{n}" not in FIELDS))
        doc.setdefault(section, {})[name] = draw(st.integers())
    elif fault == "unknown section":
        doc[draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in C.SECTIONS))] = {}
    elif fault == "not a mapping":
        section = draw(st.sampled_from(sorted(C.SECTIONS)))
        doc[section] = draw(st.integers() | st.text(min_size=1, max_size=5) | st.lists(st.integers(), min_size=1))
    return doc, fault


def load_or_usage_error(path, overrides=()):
    """C.load's result, or its UsageError as text after checking it is one clean line."""
    try:
        return C.load(path, overrides)
    except UsageError as e:
        message = str(e)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert len(message) < 600, message
        return message


@pytest.mark.slow
@fuzz("config")
@given(documents())
def test_random_config_documents(tmp_path, doc_fault):
    doc, fault = doc_fault
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    result = load_or_usage_error(str(path))
    event(f"fault: {fault}, " + ("refused" if isinstance(result, str) else "loaded"))
    if fault is not None:
        assert isinstance(result, str), f"accepted a config with a bad {fault}: {doc}"
        assert result.startswith(str(path))
        # The command line says it in one line, exit 2, before anything is trained.
        r = invoke("train", "--config", path, "--out", tmp_path / "run", "-q")
        assert r.exit_code == 2 and result in r.stderr
        assert not (tmp_path / "run").exists()
    if not isinstance(result, str):  # loaded: every value given is the one in the config
        for section, values in doc.items():
            for name, value in values.items():
                got = getattr(getattr(result, section), name)
                if value is None:  # null: a default filled in (optim.lr, optim.min_lr, train.out_dir)
                    continue
                if FIELDS[f"{section}.{name}"]["path"]:
                    assert os.path.isabs(got)
                else:
                    assert got == value, (section, name, got, value)


with open(os.path.join(os.path.dirname(CORPUS), "..", "configs", "smoke.yaml"), encoding="utf-8") as f:
    SMOKE_TEXT = f.read()


@pytest.mark.slow
@fuzz("config")
@given(st.data())
def test_mutated_and_random_config_text(tmp_path, data):
    path = tmp_path / "cfg.yaml"
    how = data.draw(st.sampled_from(["random text", "random bytes", "edit", "duplicate a line"]))
    must_fail = False
    if how == "random text":
        raw = data.draw(st.text(max_size=200)).encode("utf-8")
    elif how == "random bytes":
        raw = data.draw(st.binary(max_size=200))
    elif how == "edit":
        text = SMOKE_TEXT
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(text)))
            text = text[:i] + data.draw(st.text(max_size=3)) + text[i + data.draw(st.integers(0, 3)):]
        raw = text.encode("utf-8")
    else:  # the same key twice in one mapping: the file must be refused
        lines = SMOKE_TEXT.splitlines(keepends=True)
        keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
        i = data.draw(st.sampled_from(keyed))
        raw = "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]).encode("utf-8")
        must_fail = True
    path.write_bytes(raw)
    result = load_or_usage_error(str(path))
    if must_fail:
        assert isinstance(result, str) and "duplicate key" in result, result


SET_FILE = "data:\n  path: corpus.txt\n"


@pytest.mark.slow
@fuzz("set")
@given(st.data())
def test_random_set_values(tmp_path, data):
    path = tmp_path / "cfg.yaml"
    path.write_text(SET_FILE, encoding="utf-8")
    how = data.draw(st.sampled_from(["any text", "valid", "invalid", "unknown key", "no ="]))
    key = data.draw(st.sampled_from(sorted(FIELDS)))
    if how == "any text":
        text = f"{key}={data.draw(st.text(max_size=30))}"
    elif how in ("valid", "invalid"):
        meta = FIELDS[key]
        value = data.draw(valid_value(meta) if how == "valid" else invalid_value(meta))
        dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
        text = f"{key}={dumped.removesuffix(chr(10)).removesuffix('...').strip()}"
    elif how == "unknown key":
        text = data.draw(st.text(max_size=15).filter(lambda k: k.strip() not in FIELDS and "=" not in k)) + "=1"
    else:
        text = data.draw(st.text(max_size=15).filter(lambda t: "=" not in t))
    result = load_or_usage_error(str(path), [text])
    event(f"{how}: " + ("refused" if isinstance(result, str) else "loaded"))
    if isinstance(result, str):
        # The file is valid: every error comes from the --set and names it as typed.
        assert result.startswith("--set "), result
        assert text[:80].strip() in result or C._printable(text[:80]) in result or how == "no =", (text, result)
    must_fail = how in ("invalid", "unknown key", "no =")
    if how == "valid" and not applicable(key, {}):
        must_fail = True  # a key of another optimizer or schedule
    if must_fail:
        assert isinstance(result, str), f"accepted --set {text!r}"
        r = invoke("train", "--config", path, "--set", text, "--out", tmp_path / "run", "-q")
        assert r.exit_code == 2, r.output
        assert not (tmp_path / "run").exists()


# --- checkpoints ----------------------------------------------------------------------

BASES = {
    "rnn-adagrad": [],
    "lstm-adam-ema-2-layers": ["--set", "model.cell=lstm", "--set", "model.layers=2", "--set", "optim.name=adam",
                               "--set", "optim.ema=0.9", "--set", "model.dtype=float64"],
}


class Bases(dict):
    def __repr__(self):  # hypothesis prints the arguments of a failing example: keep it short
        return "bases"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two small trained runs (checkpoint bytes and config path), and a marker directory."""
    root = tmp_path_factory.mktemp("fuzz")
    corpus = first_chars(root, 3000, "corpus.txt")
    cfg = root / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\nmodel:\n  hidden_size: 6\ntrain:\n  seq_length: 8\n  batch_size: 2\n"
                   "  steps: 4\n  log_every: 1\n  sample_every: 0\n  eval_every: 2\n", encoding="utf-8")
    out = Bases()
    for name, extra in BASES.items():
        r = invoke("train", "--config", cfg, "--out", root / name, "-q", *extra)
        assert r.exit_code == 0, r.output
        shutil.copy(cfg, root / name / "fuzz_cfg.yaml")
        out[name] = dict(path=root / name / "ckpt.npz", raw=(root / name / "ckpt.npz").read_bytes(),
                         ckpt=ckpt_io.load(str(root / name / "ckpt.npz")), extra=extra, cfg=cfg)
    out["marker_dir"] = root / "markers"
    out["marker_dir"].mkdir()
    return out


def same_content(a, b):
    """Two loaded checkpoints hold the same arrays and values."""
    ra, rb = a.run, b.run
    if sorted(ra.params) != sorted(rb.params) or a.config != b.config or not np.array_equal(a.vocab, b.vocab):
        return False
    pairs = [(ra.params, rb.params), (ra.opt_state, rb.opt_state)] + ([(ra.ema, rb.ema)] if ra.ema else [])
    if not all(np.array_equal(x[k], y[k]) for x, y in pairs for k in x):
        return False
    layers = zip(ra.state, rb.state, strict=True)
    if not all(np.array_equal(p, q) for sa, sb in layers for p, q in zip(sa, sb, strict=True)):
        return False
    scalars = [getattr(ra, k) for k in ckpt_io.SCALARS], [getattr(rb, k) for k in ckpt_io.SCALARS]
    return (np.array_equal(np.array(scalars[0]), np.array(scalars[1]), equal_nan=True)
            and ra.rng.bit_generator.state == rb.rng.bit_generator.state)


def load_or_error(path):
    """checkpoint.load's result, or its CharrnnError as text after checking it is one clean line."""
    try:
        return ckpt_io.load(str(path))
    except CharrnnError as e:
        message = str(e)
        assert message.startswith(str(path)), message
        assert "\n" not in message and len(message) < 1000, message
        return message


def byte_mutation(data, raw):
    """(new bytes, must_fail)."""
    how = data.draw(st.sampled_from(["flip", "flip", "truncate", "append", "splice"]))
    if how == "flip":
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            b[data.draw(st.integers(0, len(b) - 1))] ^= data.draw(st.integers(1, 255))
        return bytes(b), False  # a flip in a header field the reader ignores is harmless
    if how == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))], True
    if how == "append":
        return raw + data.draw(st.binary(min_size=1, max_size=64)), False
    i, j = sorted(data.draw(st.tuples(st.integers(0, len(raw)), st.integers(0, len(raw)))))
    return raw[:i] + data.draw(st.binary(max_size=32)) + raw[j:], False


# Arrays whose dtype and shape the checkpoint fixes exactly, and the scalars with their kinds.
INT_SCALARS = ("step", "position", "epoch", "evals_since_best", "loss_steps", "format_version")
FLOAT_SCALARS = ("smooth_loss", "elapsed_s", "val_loss", "best_val_loss", "first_loss", "loss_sum")
DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint16", "bool", "complex64", "<U4", "S4"]


def declarable(arrays):
    """The format versions that a file of the newest layout may declare and still load: its own,
    1 (what charrnn wrote before the layouts were numbered: read as the layout its keys show), and
    3, whose keys are the same, unless its rng is a GPU run's generator (which came in 4)."""
    gpu = json.loads(str(arrays["rng"])).get("bit_generator") == "charrnn.CounterRNG"
    return {1, ckpt_io.FORMAT_VERSION} | (set() if gpu else {3})


def array_mutation(data, arrays, marker):
    """Change the dict of arrays in one way: (arrays, must_fail)."""
    arrays = dict(arrays)
    key = data.draw(st.sampled_from(sorted(arrays)))
    a = arrays[key]
    fixed = key not in INT_SCALARS + FLOAT_SCALARS + ("config", "rng", "corpus", "unit")
    how = data.draw(st.sampled_from(["delete", "extra", "dtype", "shape", "nan", "value", "pickle", "text"]))
    if how == "delete":
        del arrays[key]
        # The bases are of the newest format version, which has every key it declares: without
        # one (even one that older versions lack, like corpus or unit) it is damaged.
        assert int(a if key == "format_version" else arrays["format_version"]) == ckpt_io.FORMAT_VERSION
        return arrays, True
    if how == "extra":
        name = data.draw(st.text(min_size=1, max_size=10).filter(
            lambda n: n not in arrays and "/" not in n and "\0" not in n))
        arrays[name] = np.zeros(data.draw(st.integers(0, 5)), dtype=data.draw(st.sampled_from(DTYPES[:7])))
        return arrays, False
    if how == "dtype":
        dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
        assume(dtype != a.dtype)
        with np.errstate(all="ignore"):
            try:
                arrays[key] = a.astype(dtype)
            except (ValueError, TypeError, UnicodeEncodeError):
                return arrays, False  # not convertible: nothing changed
        if fixed or key in ("config", "rng", "corpus", "unit"):
            must = True
        elif key in INT_SCALARS:
            must = dtype.kind not in "iu"
        else:
            must = dtype.kind != "f"
        return arrays, must
    if how == "shape":
        shapes = [a.reshape(-1)[:0], a[None], a.reshape(-1)[: max(a.size - 1, 0)]]
        if a.ndim == 2:
            shapes.append(a.T)
        new = data.draw(st.sampled_from(range(len(shapes))))
        arrays[key] = shapes[new]
        return arrays, arrays[key].shape != a.shape
    if how == "nan":
        if a.dtype.kind != "f" or a.size == 0:
            return arrays, False
        b = a.copy().reshape(-1)
        b[data.draw(st.integers(0, b.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        arrays[key] = b.reshape(a.shape)
        # val_loss may be nan (no evaluation yet), best_val_loss inf (none yet), first_loss nan (no step yet)
        return arrays, key not in ("val_loss", "best_val_loss", "first_loss")
    if how == "value":
        if a.dtype.kind in "iu" and a.size:
            b = a.copy().reshape(-1)
            value = data.draw(st.integers(np.iinfo(a.dtype).min, np.iinfo(a.dtype).max))
            b[data.draw(st.integers(0, b.size - 1))] = value
            arrays[key] = b.reshape(a.shape)
            broken_vocab = key == "vocab" and (np.any(np.diff(b) <= 0) or b.min() < 0 or b.max() > 0x10FFFF
                                                or np.any((b >= 0xD800) & (b <= 0xDFFF)))
            negative = key in INT_SCALARS and int(b[0]) < 0
            relabelled = key == "format_version" and b[0] not in declarable(arrays)
            return arrays, bool(broken_vocab or negative or relabelled)
        return arrays, False
    if how == "pickle":
        arrays[key] = np.array([Payload(marker)], dtype=object)
        return arrays, True
    # text: the JSON (or any array) replaced by random text, maybe not UTF-8
    if data.draw(st.booleans()):
        arrays[key] = np.array(data.draw(st.text(max_size=40)))
    else:
        arrays[key] = np.array(data.draw(st.binary(max_size=40)))
    return arrays, key not in ("config", "rng", "unit")  # random text is rarely a valid config or unit


def files_in(d):
    """The files of directory ``d`` (and of its subdirectories) with their bytes, less the lock files
    that a run takes before it reads anything (they hold no data)."""
    found = {}
    for root, _, names in os.walk(d):
        for n in names:
            if n != ".lock":
                p = os.path.join(root, n)
                found[os.path.relpath(p, d)] = Path(p).read_bytes()
    return found


def write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def check_case(path, base, must_fail, marker=None):
    """The library's verdict on checkpoint ``path`` against the oracle; returns it."""
    result = load_or_error(path)
    if marker is not None:
        assert not os.path.exists(marker), "a pickle in the checkpoint was executed"
    if must_fail:
        assert isinstance(result, str), "a broken checkpoint was accepted"
    return result


@pytest.mark.slow
@fuzz("bytes")
@given(st.data())
def test_byte_mutations_of_checkpoints(bases, data):
    base = bases[data.draw(st.sampled_from(sorted(BASES)))]
    raw, must_fail = byte_mutation(data, base["raw"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.npz")
        with open(path, "wb") as f:
            f.write(raw)
        result = check_case(path, base, must_fail)
        event("refused" if isinstance(result, str) else "loaded")
        if not isinstance(result, str):
            assert same_content(result, base["ckpt"]), "a damaged checkpoint loaded with other content"


@pytest.mark.slow
@fuzz("arrays")
@given(st.data())
def test_array_mutations_of_checkpoints(bases, data):
    base = bases[data.draw(st.sampled_from(sorted(BASES)))]
    with np.load(base["path"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    marker = str(bases["marker_dir"] / "pickle-ran")
    arrays, must_fail = array_mutation(data, arrays, marker)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.npz")
        write_npz(path, arrays)
        result = check_case(path, base, must_fail, marker)
        event("refused" if isinstance(result, str) else "loaded")


def mutated_checkpoint(data, base, path, marker):
    """Write a byte or an array mutation of checkpoint ``base`` to ``path``; the library's
    verdict on it, checked against the oracle (``check_case``)."""
    if data.draw(st.booleans()):
        raw, must_fail = byte_mutation(data, base["raw"])
        with open(path, "wb") as f:
            f.write(raw)
    else:
        with np.load(base["path"], allow_pickle=False) as z:
            arrays, must_fail = array_mutation(data, {k: z[k] for k in z.files}, marker)
        write_npz(path, arrays)
    verdict = check_case(path, base, must_fail, marker)
    event("refused" if isinstance(verdict, str) else "loaded")  # --hypothesis-show-statistics
    return verdict


@pytest.mark.slow
@fuzz("cli")
@given(st.data())
def test_damaged_checkpoints_through_sample_and_eval(bases, data):
    """sample and eval on mutated checkpoints: what loads must also sample and evaluate."""
    base = bases[data.draw(st.sampled_from(sorted(BASES)))]
    marker = str(bases["marker_dir"] / "pickle-ran-cli")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.npz")
        verdict = mutated_checkpoint(data, base, path, marker)
        command = data.draw(st.sampled_from(["sample", "eval"]))
        if command == "sample":
            r = invoke("sample", "--checkpoint", path, "-n", 20, "--seed", 0)
        else:
            r = invoke("eval", "--checkpoint", path)
        assert not os.path.exists(marker)
        event(f"{command}: exit {r.exit_code}")
        if isinstance(verdict, str):
            assert r.exit_code == 1 and verdict in r.stderr, (verdict, r.output)
        elif command == "sample" or same_content(verdict, base["ckpt"]):
            assert r.exit_code == 0, r.output
        # else: a checkpoint that loads but whose vocabulary or stored corpus path was changed
        # may be refused by eval (the corpus does not fit it) -- in one line, as checked


@pytest.mark.slow
@fuzz("train")
@given(st.data())
def test_damaged_checkpoints_through_resume_and_init_from(bases, data):
    """train --resume and --init-from on mutated checkpoints: refused in one line with
    nothing written, or (a checkpoint that loads) trained on."""
    name = data.draw(st.sampled_from(sorted(BASES)))
    base = bases[name]
    marker = str(bases["marker_dir"] / "pickle-ran-train")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt.npz")
        verdict = mutated_checkpoint(data, base, path, marker)
        before = files_in(d)
        out = os.path.join(d, "new")
        if data.draw(st.booleans()):
            r = invoke("train", "--resume", path, "--steps", 5, "-q")
        else:
            r = invoke("train", "--config", base["cfg"], "--init-from", path, "--out", out, "--steps", 1, "-q",
                       *base["extra"])
        assert not os.path.exists(marker)
        event(f"exit {r.exit_code}")
        if isinstance(verdict, str):
            assert r.exit_code == 1 and verdict in r.stderr, (verdict, r.output)
        elif same_content(verdict, base["ckpt"]):
            assert r.exit_code == 0, r.output
        if r.exit_code != 0:  # refused before anything was written (the run directory's lock aside)
            assert files_in(d) == before
        elif os.path.exists(out):
            assert ckpt_io.load(os.path.join(out, "ckpt.npz")).run.step == 1
        else:
            ckpt_io.load(path)  # what --resume left loads
