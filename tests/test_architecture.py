"""The import rules of docs/architecture.md, checked on the source (imports anywhere in a
module, function bodies included): a rule broken here is a layer crossed."""

import ast
import os

import pytest
from conftest import ROOT

CORE = ["cells/rnn.py", "cells/lstm.py", "cells/gru.py", "cells/__init__.py", "model.py", "optim.py",
        "gradcheck.py", "evaluate.py", "sampling.py", "device.py", "kernels.py", "data.py", "layernorm.py"]
RUN = ["runstate.py", "train.py", "checkpoint.py", "rundir.py", "progress.py", "signals.py", "distributed.py",
       "corpus.py", "identity.py", "config.py", "runtime.py", "errors.py", "portable.py"]


def imports(relpath):
    """Every module name that ``charrnn/relpath`` imports (``from charrnn import x`` as charrnn.x),
    but those under ``if TYPE_CHECKING:``: names for type hints, never imported when it runs."""
    with open(os.path.join(ROOT, "charrnn", relpath), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    hints = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test).endswith(
        "TYPE_CHECKING") for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "charrnn":
                names.update(f"charrnn.{a.name}" for a in node.names)
    return names


def all_modules():
    out = []
    for root, _, files in os.walk(os.path.join(ROOT, "charrnn")):
        out += [os.path.relpath(os.path.join(root, f), os.path.join(ROOT, "charrnn"))
                for f in files if f.endswith(".py")]
    return sorted(out)


def test_every_module_is_on_the_map():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        text = f.read()
    for rel in all_modules():
        name = rel if not rel.startswith(("cells/", "visualize/")) else rel.split("/")[0] + "/"
        if rel in ("__init__.py", "__main__.py"):
            continue
        assert f"`{name}" in text or f"`{os.path.basename(rel)}`" in text, (
            f"charrnn/{rel} is not in docs/architecture.md"
        )


@pytest.mark.parametrize("relpath", CORE)
def test_the_core_does_no_io_and_knows_nothing_of_the_run(relpath):
    allowed_charrnn = {f"charrnn.{m[:-3].replace('/', '.')}" for m in CORE} | {"charrnn.cells", "charrnn.errors",
                                                                                "charrnn"}
    if relpath == "evaluate.py":  # it takes the processes that share a text: distributed.SINGLE by default
        allowed_charrnn.add("charrnn.distributed")
    for name in imports(relpath):
        assert name.split(".")[0] not in ("click", "yaml", "tqdm"), f"charrnn/{relpath} imports {name}"
        if name.startswith("charrnn"):
            assert name in allowed_charrnn, f"core module charrnn/{relpath} imports {name} (not core)"


@pytest.mark.parametrize("relpath", [m for m in all_modules() if m != "cli.py"])
def test_only_the_cli_imports_click_the_trainer_and_itself(relpath):
    for name in imports(relpath):
        assert name.split(".")[0] != "click", f"charrnn/{relpath} imports click"
        if relpath != "__main__.py":
            assert name != "charrnn.cli", f"charrnn/{relpath} imports the CLI"
        assert relpath == "train.py" or name != "charrnn.train", f"charrnn/{relpath} imports the trainer"


@pytest.mark.parametrize("relpath", all_modules())
def test_the_package_never_imports_tests_or_benchmarks(relpath):
    for name in imports(relpath):
        assert name.split(".")[0] not in ("tests", "benchmarks", "conftest", "minchar_gist", "harness", "throughput",
                                        "torch_cells"), \
            f"charrnn/{relpath} imports {name}"


def test_the_benchmarks_do_not_import_the_tests():
    bench = os.path.join(ROOT, "benchmarks")
    test_modules = {f[:-3] for f in os.listdir(os.path.join(ROOT, "tests")) if f.endswith(".py")}
    for f in sorted(os.listdir(bench)):
        if not f.endswith(".py"):
            continue
        with open(os.path.join(bench, f), encoding="utf-8") as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] not in test_modules | {"tests"}, f"benchmarks/{f} imports {name} from tests/"
