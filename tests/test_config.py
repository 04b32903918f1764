import os

import pytest
import yaml
from conftest import CONFIGS

from charrnn import config as C
from charrnn.errors import UsageError

GOOD = """
data:
  path: corpus.txt
model:
  hidden_size: 16
"""


def test_paths_are_resolved_relative_to_the_config_file(write_config, tmp_path):
    cfg = C.load(write_config(GOOD))
    assert cfg.data.path == str(tmp_path / "corpus.txt")
    assert cfg.model.hidden_size == 16
    assert cfg.model.cell == "rnn" and cfg.optim.clip_value == 5.0  # defaults


@pytest.mark.parametrize("name", sorted(os.listdir(CONFIGS)))
def test_shipped_configs_load(name):
    cfg = C.load(os.path.join(CONFIGS, name))
    assert os.path.exists(cfg.data.path)


def test_minchar_config_is_min_char_rnn():
    cfg = C.load(os.path.join(CONFIGS, "minchar.yaml"))
    assert (cfg.model.cell, cfg.model.hidden_size, cfg.model.layers, cfg.model.dtype) == ("rnn", 100, 1, "float64")
    assert (cfg.train.seq_length, cfg.train.batch_size) == (25, 1)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.clip_value, cfg.optim.clip_norm) == ("adagrad", 0.1, 5.0, None)
    assert (cfg.train.sample_every, cfg.sample.length, cfg.model.init_std) == (100, 200, 0.01)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  hiden_size: 3\n", r"unknown key 'model.hiden_size' \(did you mean 'model.hidden_size'\?\)"),
        ("train:\n  zzz: 3\n",
         r"unknown key 'train.zzz'; valid keys: train.seq_length, train.variable_length, train.batch_size"),
        ("modle:\n  hidden_size: 3\n", r"unknown key 'modle' \(did you mean 'model'\?\)"),
        ("train:\n  learning_rate: 3\n", r"unknown key 'train.learning_rate' \(did you mean 'optim.lr'\?\)"),
        ("optim:\n  learning_rate: 3\n", r"unknown key 'optim.learning_rate' \(did you mean 'optim.lr'\?\)"),
        ("model:\n  hidden_size: lots\n", r"model.hidden_size must be an integer ≥ 1, got 'lots'"),
        ("model:\n  hidden_size: 2.5\n", r"model.hidden_size must be an integer"),
        ("model:\n  hidden_size: true\n", r"model.hidden_size must be an integer"),
        ("model:\n  hidden_size: 0\n", r"model.hidden_size must be an integer ≥ 1, got 0"),
        ("model:\n  dropout: 1.0\n", r"model.dropout must be a number ≥ 0.0 and < 1.0, got 1.0"),
        ("model:\n  cell: transformer\n",
         r"model.cell must be one of rnn, lstm, gru, mingru, minlstm, got 'transformer'"),
        ("model:\n  cell: mingru\n  multiplicative: true\n",
         r"model.multiplicative: true has no recurrent product to scale in model.cell mingru; use rnn, lstm or gru"),
        ("model:\n  cell: minlstm\n  multiplicative: true\n", r"in model.cell minlstm"),
        ("model:\n  residual: true\n", r"model.residual: true needs model.layers ≥ 2 .*, got 1"),
        ("model:\n  residual: 1\n", r"model.residual must be true or false, got 1"),
        ("model:\n  multiplicative: 1\n", r"model.multiplicative must be true or false, got 1"),
        ("model:\n  multiplicative: sometimes\n", r"model.multiplicative must be true or false, got 'sometimes'"),
        ("optim:\n  lr: -1\n", r"optim.lr must be a number > 0.0, or null, got -1"),
        ("optim:\n  lr: .nan\n", r"optim.lr must be a number"),
        ("optim:\n  ema: 1.0\n", r"optim.ema must be a number > 0.0 and < 1.0, or null, got 1.0"),
        ("model:\n  cell: rnn\n  layer_norm: yes please\n", r"model.layer_norm must be true or false"),
        ("train: 5\n", r"train must be a mapping"),
        ("- a\n- b\n", r"expected a mapping of sections"),
        ("model: [unclosed\n", r"not valid YAML at line \d+, column \d+"),
    ],
)
def test_bad_configs_give_one_line_errors(write_config, text, message):
    path = write_config("data:\n  path: x.txt\n" + text if not text.startswith("-") else text)
    with pytest.raises(UsageError, match=message) as e:
        C.load(path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(path)


def test_yaml_1_1_exponent_without_dot_is_accepted(write_config):
    cfg = C.load(write_config(GOOD + "optim:\n  eps: 1e-6\n"))
    assert cfg.optim.eps == 1e-6


def test_missing_data_path_and_missing_file(write_config, tmp_path):
    with pytest.raises(UsageError, match="data.path is required"):
        C.load(write_config("model:\n  hidden_size: 4\n"))
    with pytest.raises(UsageError, match="config file not found"):
        C.load(str(tmp_path / "nope.yaml"))


EPOCHS = ("It counts optimizer steps, another unit than epochs: an epoch is about "
          "N / (batch_size × seq_length) steps, for N training characters")


@pytest.mark.parametrize(
    "text, message",
    [
        # nanoGPT's eval_interval is how often it evaluates, not how often it saves.
        ("train:\n  eval_interval: 100\n", "unknown key 'train.eval_interval' (did you mean 'train.eval_every'?)"),
        ("train:\n  max_epochs: 50\n", f"unknown key 'train.max_epochs' (did you mean 'train.steps'? {EPOCHS})"),
        ("train:\n  epochs: 50\n", f"unknown key 'train.epochs' (did you mean 'train.steps'? {EPOCHS})"),
        ("max_epochs: 50\n", f"unknown key 'max_epochs' (did you mean 'train.steps'? {EPOCHS})"),
        ("epochs: 50\n", f"unknown key 'epochs' (did you mean 'train.steps'? {EPOCHS})"),
        ("optim:\n  max_epochs: 50\n", f"unknown key 'optim.max_epochs' (did you mean 'train.steps'? {EPOCHS})"),
        ("train:\n  max_iters: 50\n", "unknown key 'train.max_iters' (did you mean 'train.steps'?)"),
        ("optim:\n  grad_clip: 1\n", "unknown key 'optim.grad_clip' (did you mean 'optim.clip_value'? It clips each "
         "element, as char-rnn's grad_clip does; nanoGPT's grad_clip clips the global norm, which is optim.clip_norm)"),
    ],
)
def test_other_trainers_names_suggest_the_key_that_means_the_same(write_config, text, message):
    path = write_config("data:\n  path: x.txt\n" + text)
    with pytest.raises(UsageError) as e:
        C.load(path)
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize("key", ["train.eval_interval", "train.max_epochs", "max_epochs", "epochs"])
def test_set_gets_the_same_suggestions_as_the_file(write_config, key):
    path = write_config(GOOD)
    with pytest.raises(UsageError) as e:
        C.load(path, [f"{key}=5"])
    suggestion = "train.eval_every" if key.endswith("eval_interval") else "train.steps"
    assert str(e.value).startswith(f"--set {key}=5: unknown key '{key}' (did you mean '{suggestion}'?")
    assert ("another unit than epochs" in str(e.value)) == ("epochs" in key)


def test_every_alias_names_a_key_of_the_schema():
    """An alias wins over difflib, so a wrong or stale target misleads: each must exist, and
    no alias may shadow a real key (which would make it unreachable)."""
    leaves = {k.rpartition(".")[2] for k in C.all_keys()}
    assert not set(C.ALIASES) & leaves
    assert set(C.ALIASES.values()) <= leaves
    assert set(C.ALIAS_NOTES) <= set(C.ALIASES)


def test_overrides_are_validated_like_the_file(write_config):
    path = write_config(GOOD)
    cfg = C.load(path, ["optim.lr=0.002", "model.hidden_size=256", "model.cell=lstm"])
    assert (cfg.optim.lr, cfg.model.hidden_size, cfg.model.cell) == (0.002, 256, "lstm")
    with pytest.raises(UsageError, match=r"^--set optim.learning_rate=1: unknown key 'optim.learning_rate'"
                                         r".*did you mean 'optim.lr'"):
        C.load(path, ["optim.learning_rate=1"])
    with pytest.raises(UsageError,
                       match=r"^--set model.layers=two: model.layers must be an integer ≥ 1 and ≤ 16, got 'two'"):
        C.load(path, ["model.layers=two"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        C.load(path, ["optim.lr"])


def test_round_trip_through_dict():
    for raw in ({}, {"optim": {"name": "adam", "schedule": "cosine", "warmup_steps": 10}}, {"optim": {"name": "sgd"}}):
        cfg = C.from_dict(raw, "x")
        assert C.from_dict(C.to_dict(cfg), "x") == cfg



@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("train:\n  steps: 5\n  seed: 1\n  steps: 7\n", "train.steps", "at lines 2 and 4"),
        ("train:\n  steps: 5\nmodel:\n  hidden_size: 4\ntrain:\n  seed: 3\n", "train", "at lines 1 and 5"),
        ("model: {cell: rnn, cell: gru}\n", "model.cell", "twice on line 1"),
        ("optim:\n  lr: 0.1\n  'lr': 0.2\n", "optim.lr", "at lines 2 and 3"),  # the same key, quoted
        ("a:\n  b:\n    c:\n      - {d: 1}\n      - {e: 1,\n         e: 2}\n", "a.b.c[1].e", "at lines 5 and 6"),
    ],
)
def test_duplicate_keys_at_any_depth_are_refused(write_config, text, key, lines):
    path = write_config(text)
    with pytest.raises(UsageError) as e:
        C.load(path)
    assert str(e.value) == (f"{path}: duplicate key '{key}' {lines}; give each key once "
                            "(YAML would silently keep the last)")


def test_merge_keys_may_be_overridden_but_yaml_is_otherwise_safe_load(write_config, tmp_path):
    text = "data:\n  path: c.txt\nx-base: &base {hidden_size: 8, layers: 2}\nmodel:\n  <<: *base\n  layers: 3\n"
    assert C.yaml_load(text) == yaml.safe_load(text)
    assert C.yaml_load(text)["model"] == {"hidden_size": 8, "layers": 3}
    with pytest.raises(yaml.YAMLError):  # safe: no Python objects
        C.yaml_load("!!python/object/apply:os.system ['touch pwned']")


def test_deeply_nested_yaml_is_a_one_line_error(write_config):
    path = write_config("[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(UsageError, match="nested too deeply"):
        C.load(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=abc", "--set optim.lr=abc: optim.lr must be a number > 0.0, or null, got 'abc'"),
        ("optim.lr=1e999", "--set optim.lr=1e999: optim.lr must be a number > 0.0, or null, got '1e999'"),
        ("optim.lr=" + "9" * 400, "optim.lr must be a number > 0.0, or null, got 999999"),  # beyond float's range
        ("model.cell=[1, 2",
         "--set model.cell=[1, 2: model.cell must be one of rnn, lstm, gru, mingru, minlstm, got '[1, 2'"),
        ("train.steps=0", "--set train.steps=0: train.steps must be an integer ≥ 1, got 0"),
        ("data.path=", "--set data.path=: data.path is required"),
        ("data.path=a\0b", "--set data.path=a\\x00b: data.path must be a path, and a path cannot hold a NUL character"),
        ("optim.beta1=0.5", "--set optim.beta1=0.5: optim.beta1 applies to adam only, not to optim.name adagrad"),
        ("optim.name=sgd", "cfg.yaml: optim.eps applies to adagrad and rmsprop and adam only, not to optim.name sgd "
                           "(from --set optim.name=sgd)"),
        ("model.hidden_size=" + "x" * 500, "got 'xxxxxxxxx"),
        ("model.multiplicative=true", "--set model.multiplicative=true: model.multiplicative: true has no recurrent "
                                      "product to scale in model.cell minlstm; use rnn, lstm or gru, or "
                                      "multiplicative: false (model.cell from "),
        ("model.layers=1", "cfg.yaml: model.residual: true needs model.layers ≥ 2 (layer 0 has no input of size H to "
                           "add), got 1 (model.layers from --set model.layers=1)"),
    ],
)
def test_errors_in_set_values_name_the_set(write_config, override, message):
    model = "  cell: minlstm\n  layers: 2\n  residual: true\n" if override.startswith("model.") else ""  # GOOD's model
    path = write_config(GOOD + model + "optim:\n  eps: 1.0e-6\n")
    with pytest.raises(UsageError) as e:
        C.load(path, [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    if override.startswith(("optim.name", "model.layers")):
        assert str(e.value).startswith(path)
    elif override.startswith("model.multiplicative"):  # the other key's source is named too
        assert str(e.value).startswith("--set ") and str(e.value).endswith(f"(model.cell from {path})")
    else:
        assert str(e.value).startswith("--set ") and "cfg.yaml" not in str(e.value)


def test_file_errors_still_name_the_file_next_to_sets(write_config):
    path = write_config(GOOD + "train:\n  steps: -1\n")
    with pytest.raises(UsageError, match=r"cfg.yaml: train.steps must be an integer ≥ 1, got -1"):
        C.load(path, ["optim.lr=0.5"])
    path = write_config(GOOD + "train: 5\n")  # a --set into it does not hide the broken section
    with pytest.raises(UsageError, match=r"cfg.yaml: train must be a mapping of keys, got 5"):
        C.load(path, ["train.steps=3"])


def test_set_paths_are_relative_to_the_working_directory(write_config, tmp_path, monkeypatch):
    path = write_config("data:\n  path: corpus.txt\ntrain:\n  out_dir: runs/a\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = C.load(path)  # in the file: relative to the file
    assert (cfg.data.path, cfg.train.out_dir) == (str(tmp_path / "corpus.txt"), str(tmp_path / "runs" / "a"))
    cfg = C.load(path, ["data.path=corpus.txt", "train.out_dir=../out"])  # on the command line: to the cwd
    assert (cfg.data.path, cfg.train.out_dir) == (str(work / "corpus.txt"), str(tmp_path / "out"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert C.load(path, ["data.path=~/c.txt"]).data.path == str(tmp_path / "home" / "c.txt")


def test_built_in_default_config_is_configs_default_yaml():
    """`charrnn train --data PATH` without --config trains configs/default.yaml's settings."""
    shipped = C.to_dict(C.load(os.path.join(CONFIGS, "default.yaml")))
    built_in = C.to_dict(C.default_config(os.path.join(CONFIGS, "..", "data", "shakespeare_tiny.txt")))
    for d in (shipped, built_in):
        d["train"].pop("out_dir")
    assert built_in == shipped


# ----------------------------------------------------------------------------- hostile YAML

def bomb(levels=9, width=9):
    """The classic "billion laughs" as one YAML flow sequence: ``width ** levels`` strings
    (387 million here) in a few hundred bytes, each level nine aliases of the one before."""
    names = [chr(ord("a") + i) for i in range(levels)]
    parts = [f"&a [{', '.join(['lol'] * width)}]"]
    parts += [f"&{n} [{', '.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "[" + ", ".join(parts) + "]"


def refused_fast(*args):
    """``charrnn train ARGS`` through the command line: exit 2 with one line, in well under a
    second (5 s allowed for a loaded machine; before the bounds each ran past 60 s and 4 GB)."""
    import time

    from conftest import one_line_error, run

    start = time.perf_counter()
    r = run("train", *args)
    took = time.perf_counter() - start
    line = one_line_error(r, 2)
    assert took < 5, took
    assert len(line) < 400, line
    return line


@pytest.mark.parametrize("key", ["model.cell", "data.path", "optim.lr"])
def test_an_alias_bomb_as_a_value_is_refused_at_once(write_config, key):
    section, name = key.split(".")
    head = "" if section == "data" else "data:\n  path: c.txt\n"
    path = write_config(f"{head}{section}:\n  {name}: {bomb()}\n")
    line = refused_fast("--config", path)
    assert line.startswith(f"Error: {path}: line {2 if section == 'data' else 4}: the document stands for more than "
                           "10,000 values, its aliases expanded"), line


def test_an_alias_bomb_at_the_top_level_is_refused_at_once(write_config):
    path = write_config("".join(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
        [f"*{chr(96 + i)}" if i else "lol"] * 9) + "]\n" for i in range(9)))
    assert "an alias bomb?" in refused_fast("--config", path)


@pytest.mark.parametrize("key", ["model.cell", "data.path", "optim.lr"])
def test_an_alias_bomb_in_a_set_is_refused_at_once(write_config, tmp_path, key):
    path = write_config(GOOD)
    line = refused_fast("--config", path, "--set", f"{key}={bomb()}")
    assert line.startswith(f"Error: --set {key}=[&a"), line
    assert "more than 10,000 values, its aliases expanded" in line


def test_the_bounds_of_a_config(write_config, tmp_path):
    """Deep nesting, a recursive alias, an integer past Python's digit limit, a file of 2 MB
    and a --set of 2 MB: each one line, at once."""
    cases = {
        "[" * 10000 + "]" * 10000: "line 1: nested too deeply for a config file (more than 100 levels)",
        "model:\n  cell: &a [*a]\n": "line 2: the alias *a refers to a value that contains it",
        "train:\n  steps: " + "1" * 5000 + "\n": "an integer of 5,000 digits, far too long for a config value",
        "data:\n  path: '" + "x" * (2 << 20) + "'\n": "larger than 1 MiB, far larger than any config file",
    }
    for text, message in cases.items():
        assert message in refused_fast("--config", write_config(text)), message
    assert "a value of 2,097,152 characters, far longer than any config value" in refused_fast(
        "--config", write_config(GOOD), "--set", "data.path=" + "x" * (2 << 20))


def test_show_is_bounded_for_any_value():
    shared = ["lol"] * 9
    for _ in range(30):  # 9 ** 30 strings, were it walked whole
        shared = [shared] * 9
    deep = []
    for _ in range(100_000):
        deep = [deep]
    assert C._show(shared).endswith("... (a list of 9 items)") and len(C._show(shared)) < 100
    assert len(C._show(deep)) < 100
    assert C._show("x" * 10**8) == "'" + "x" * 59 + "... (100,000,000 characters)"
    assert C._show({"a": 1}) == "{'a': 1}" and C._show(0.5) == "0.5" and C._show("abc") == "'abc'"


def test_legitimate_anchors_and_aliases_still_load(write_config):
    cfg = C.load(write_config("data:\n  path: c.txt\ntrain:\n  seq_length: &t 16\n  batch_size: 4\n"
                              "sample:\n  length: *t\nmodel: &m\n  cell: lstm\n"), ["sample.length=32"])
    assert (cfg.train.seq_length, cfg.sample.length, cfg.model.cell) == (16, 32, "lstm")
    cfg = C.load(write_config("data:\n  path: c.txt\ntrain:\n  seq_length: &t 16\nsample:\n  length: *t\n"))
    assert cfg.sample.length == 16


# ----------------------------------------------------------------------------- shipped configs by name

def test_a_bare_name_is_the_shipped_config_and_its_run_goes_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert C.shipped_dir() == CONFIGS  # from the checkout: its own configs/, no copy
    assert C.find_config("lstm") == os.path.join(CONFIGS, "lstm.yaml")
    cfg = C.load(C.find_config("lstm"))
    assert cfg.model.cell == "lstm" and os.path.isfile(cfg.data.path)
    assert cfg.train.out_dir == str(tmp_path / "runs" / "lstm")  # never beside the shipped file


def test_a_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    """A file (or link) named as the user typed it is that file; only a bare name that is not
    there is looked up; names with a folder or a .yaml suffix are always paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lstm").write_text("data:\n  path: c.txt\n")
    assert C.find_config("lstm") == "lstm"
    (tmp_path / "gru.yaml").write_text("data:\n  path: c.txt\n")
    assert C.find_config("gru.yaml") == "gru.yaml" and C.find_config("gru") == os.path.join(CONFIGS, "gru.yaml")
    os.symlink("nowhere", tmp_path / "smoke")  # a dangling link is still the user's path, not the shipped one
    assert C.find_config("smoke") == "smoke"
    for path in ("./default", "sub/default", "default.yaml", "default.yml"):
        assert C.find_config(path) == path
    with pytest.raises(UsageError, match=r"^configs/lstm\.yaml: config file not found \(the shipped lstm\.yaml goes "
                                         r"by its name: --config lstm\)$"):
        C.load("configs/lstm.yaml")
    with pytest.raises(UsageError, match=r"^mine\.yaml: config file not found$"):
        C.load("mine.yaml")


def test_an_unknown_name_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as e:
        C.find_config("lstn")
    names = ", ".join(n[:-5] for n in sorted(os.listdir(CONFIGS)))
    assert str(e.value) == ("--config lstn: no such file, nor a shipped config (did you mean 'lstm'? "
                            f"shipped: {names}; `charrnn configs` describes them)")


def test_every_shipped_config_has_a_one_line_description():
    for name, path in C.shipped_configs().items():
        text = C.describe_config(path)
        assert text and len(text) <= 100 and text[0].isupper() and text.endswith("."), (name, text)
    assert set(C.shipped_configs()) == {n[:-5] for n in os.listdir(CONFIGS) if n.endswith(".yaml")}
    assert all(n.endswith(".yaml") for n in os.listdir(CONFIGS))  # a .yml would not be shipped


def test_every_shipped_config_and_its_corpus_are_package_data():
    """pyproject.toml installs configs/ as charrnn/shipped/configs and data/ beside it: each
    config and the corpus its data.path names (relative, so it resolves in both places) match
    the package-data patterns; without this a wheel's `--config NAME` would fail."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(os.path.dirname(CONFIGS), "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f)["tool"]["setuptools"]
    dirs = tool["package-dir"]
    assert dirs["charrnn.shipped.configs"] == "configs" and dirs["charrnn.shipped.data"] == "data"
    assert {"charrnn.shipped.configs", "charrnn.shipped.data"} <= set(tool["packages"])
    patterns = tool["package-data"]
    root = os.path.dirname(CONFIGS)
    for name in os.listdir(CONFIGS):
        assert any(fnmatch.fnmatch(name, p) for p in patterns["charrnn.shipped.configs"]), name
        with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
            data_path = yaml.safe_load(f)["data"]["path"]
        assert not os.path.isabs(data_path), (name, data_path)
        corpus = os.path.relpath(os.path.normpath(os.path.join(CONFIGS, data_path)), os.path.join(root, "data"))
        assert not corpus.startswith(".."), (name, data_path)  # in data/, shipped beside configs/
        assert any(fnmatch.fnmatch(corpus, p) for p in patterns["charrnn.shipped.data"]), (name, corpus)


def test_layer_norm_is_refused_for_a_cell_without_it_in_one_line(write_config, monkeypatch):
    from charrnn.cells import CELLS

    assert C.load(write_config(GOOD), ["model.layer_norm=true"]).model.layer_norm is True
    monkeypatch.setattr(CELLS["rnn"], "NORM", {})  # as a cell that declares no layer normalization
    with pytest.raises(UsageError, match=r"--set model.layer_norm=true: model.layer_norm applies to model.cell lstm "
                                         r"and gru only, not rnn") as e:
        C.load(write_config(GOOD), ["model.layer_norm=true"])
    assert "\n" not in str(e.value)
    assert C.load(write_config(GOOD), ["model.layer_norm=true", "model.cell=gru"]).model.layer_norm is True


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_layer_norm_is_refused_for_the_min_cells_in_one_line(write_config, cell):
    """The min cells declare ``NORM = {}`` (no recurrent part to normalize): the config and ModelSpec say so."""
    from charrnn import model as M

    with pytest.raises(UsageError, match=rf"--set model.layer_norm=true: model.layer_norm applies to model.cell rnn, "
                                         rf"lstm and gru only, not {cell}$") as e:
        C.load(write_config(GOOD), [f"model.cell={cell}", "model.layer_norm=true"])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=f"not {cell}"):
        M.ModelSpec(cell, 7, 5, layer_norm=True)
