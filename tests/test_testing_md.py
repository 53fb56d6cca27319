"""TESTING.md's tables cannot rot: a row for every command and option of the CLI, each naming a
test that exists and uses that option with that command; every test the page names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from edgeq.cli import main

TESTS = Path(__file__).parent
PAGE = (TESTS.parent / "TESTING.md").read_text()


def _cli_rows() -> set[tuple[str, str]]:
    rows = set()

    def walk(group, prefix=""):
        for name, cmd in group.commands.items():
            full = f"{prefix}{name}"
            rows.add((full, "(run)"))
            if isinstance(cmd, click.Group):
                walk(cmd, full + " ")
            else:
                rows.update((full, o) for p in cmd.params for o in p.opts if o.startswith("--"))

    walk(main)
    return rows


def _test_sources() -> dict[str, str]:
    """{"test_file::test_name": source with decorators} of every test function."""
    found = {}
    for path in TESTS.glob("test_*.py"):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                found[f"{path.stem}::{node.name}"] = "\n".join(lines[start - 1:node.end_lineno])
    return found


def test_every_command_and_option_has_a_row_with_a_test_that_uses_it():
    rows = re.findall(r"^\| `([a-z ]+)` \| `([^`]+)` \| `([^`]+)` \|$", PAGE, re.M)
    assert {(command, option) for command, option, _ in rows} == _cli_rows()
    sources = _test_sources()
    for command, option, test in rows:
        assert test in sources, f"{command} {option}: no test {test}"
        source = sources[test]
        assert re.search(rf"[\"']{re.escape(command.split()[-1])}[\"']", source), (command, test)
        assert option == "(run)" or option in source, (command, option, test)


def test_every_test_the_page_names_exists():
    sources = _test_sources()
    named = set(re.findall(r"`(test_\w+)::(test_\w+)`", PAGE))
    assert len(named) > 40
    for module, name in named:
        assert f"{module}::{name}" in sources, f"{module}::{name}"
    for module in re.findall(r"`(test_\w+)`(?!::)", PAGE):
        assert (TESTS / f"{module}.py").is_file(), module
