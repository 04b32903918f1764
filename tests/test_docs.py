"""The documentation: links that resolve, a README that stays short, and references that
match the code they describe."""

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from charrnn import config as C
from charrnn.cli import cli

ROOT = Path(ROOT)
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def prose(text):
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"(?ms)^```.*?^```[^\n]*$", "", text)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text):
    """Targets of Markdown links and images, and of HTML href/src attributes."""
    text = prose(text)
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text) + re.findall(r"(?:href|src)=\"([^\"]+)\"", text)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", h).replace(" ", "-")


def anchors(path):
    text = re.sub(r"(?ms)^```.*?^```[^\n]*$", "", path.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for h in re.findall(r"(?m)^#{1,6} +(.+?) *#*$", text):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        found.add(s if n == 0 else f"{s}-{n}")
    return found | set(re.findall(r"<a id=\"([^\"]+)\"", text))


def test_slug_is_githubs():
    assert slug("`charrnn eval`") == "charrnn-eval"
    assert slug("The README's picture") == "the-readmes-picture"
    assert slug("Shipped configs and what they reach") == "shipped-configs-and-what-they-reach"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading or <a id> '{anchor}' in {dest.name}")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not Markdown")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Title\n[ok](#title) [bad](missing.md) [gone](#nowhere) `[code](not-a-link)`\n")
    assert links(page.read_text()) == ["#title", "missing.md", "#nowhere"]
    assert anchors(page) == {"title"}


def test_the_throughput_table_has_one_home():
    """benchmarks/results.md is the benchmark's record, replaced when it runs again; a copy of
    its rows in the README or docs/ would go stale (the three copies had already drifted)."""
    record = (ROOT / "benchmarks" / "results.md").read_text(encoding="utf-8")
    rows = [line for line in record.splitlines() if line.startswith("| ") and " chars/s |" in line]
    assert len(rows) >= 5, "benchmarks/results.md has lost its throughput table"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for row in rows:
            figure = row.split("|")[3].strip()  # charrnn's rate, e.g. "62,176 chars/s"
            copies = [line for line in text.splitlines() if line.startswith("|") and figure in line]
            assert not copies, f"{page.name} copies a row of benchmarks/results.md: {copies[0]}; link to it instead"


def test_readme_is_at_most_300_lines():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; move detail into docs/"


def test_readme_and_commands_page_cover_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"### `charrnn {name}`" in readme, f"README.md has no section for charrnn {name}"
        assert f"## `charrnn {name}`" in reference, f"docs/commands.md has no section for charrnn {name}"


def _default_and_allowed(key, f):
    if key == "data.path":  # null in the schema only until the file is read; required there
        return "(required)", "a string"
    value = f.default
    shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return shown, C._describe(f.metadata)


def test_config_reference_matches_the_schema():
    rows = {}
    for line in (ROOT / "docs" / "config.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and "." in cells[0]:
            rows[cells[0].strip("`")] = cells[1:]
    for section, factory in C.SECTIONS.items():
        for f in dataclasses.fields(factory):
            key = f"{section}.{f.name}"
            assert key in rows, f"docs/config.md has no row for {key}"
            default, allowed, meaning = rows[key]
            assert (default, allowed) == _default_and_allowed(key, f), key
            assert meaning.startswith(f.metadata["doc"]), (key, meaning)
    assert sorted(rows) == sorted(C.all_keys()), "docs/config.md lists keys the schema does not have"


def test_readme_config_example_is_a_valid_config():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"(?ms)^```yaml\n(.*?)^```", readme)
    cfg = C.from_dict(yaml.safe_load(block), "README.md", base_dir=str(ROOT / "configs"))
    assert os.path.exists(cfg.data.path) and cfg.model.cell == "lstm"
