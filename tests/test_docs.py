"""docs/ARCHITECTURE.md cannot rot: every repository path, every `edgeq.…` name and every
`module.name` it mentions exists, every `edgeq` command and option it shows is a real one, and
the import rule it states (deploy/ and learn/ never import each other) holds.

Paths and `edgeq.` names are checked anywhere on the page (diagram and examples included);
a placeholder such as `<board>` stands for any name. Short `module.name` references and
commands are checked in inline code spans and on the diagram's command lines."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import REPO

PAGE = REPO / "docs" / "ARCHITECTURE.md"
ROOTS = ("edgeq", "boards", "models", "firmware_templates", "tests", "benchmarks", "docs")
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(ROOTS) + r")/[\w./<>*-]*)")
NAME = re.compile(r"(?<![\w./])edgeq(?:\.\w+)+")
INLINE = re.compile(r"`([^`\n]+)`")
SHORT_NAME = re.compile(r"[a-z_]\w*(?:\.\w+)+")
FILE_SUFFIXES = {"py", "c", "h", "j2", "yaml", "json", "html", "md", "toml", "tflite", "elf",
                 "ld", "npz", "h5", "keras", "whl", "map", "o", "bin", "png"}


@cache
def page() -> str:
    return PAGE.read_text()


def _wheel_mapping() -> dict[str, str]:
    """edgeq/_data/<name> → the root folder pyproject.toml maps there at build time."""
    text = (REPO / "pyproject.toml").read_text()
    return dict(re.findall(r'"edgeq\._data\.(\w+)" = "([\w/-]+)"', text))


def _path_exists(path: str) -> bool:
    path = path.rstrip(".,;:)")
    if path.startswith("edgeq/_data/"):
        name, _, rest = path[len("edgeq/_data/"):].partition("/")
        mapped = _wheel_mapping().get(name)
        if mapped is None:
            return False
        path = f"{mapped}/{rest}".rstrip("/")
    pattern = re.sub(r"<[^>]*>", "*", path).rstrip("/")
    return any(REPO.glob(pattern)) if "*" in pattern else (REPO / pattern).exists()


def test_every_path_on_the_page_exists():
    paths = sorted(set(PATH.findall(page())))
    assert len(paths) >= 30, paths  # the pattern still finds the page's paths
    missing = [p for p in paths if not _path_exists(p)]
    assert not missing, f"{PAGE.name} names paths that do not exist: {missing}"


def _module_file(parts: list[str], root: Path = REPO) -> Path | None:
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defines(body: list[ast.stmt], name: str) -> ast.AST | None:
    """The top-level statement of `body` that binds `name` (def, class, assignment, import)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return node
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and node.target.id == name:
                return node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return node
    return None


def _resolves(module: Path, attrs: list[str]) -> bool:
    body = ast.parse(module.read_text()).body
    for attr in attrs:
        node = _defines(body, attr)
        if node is None:
            return False
        body = node.body if isinstance(node, ast.ClassDef) else []
    return True


def _resolve_dotted(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is not None:
            return _resolves(module, parts[cut:])
    return False


def test_every_edgeq_name_on_the_page_exists():
    names = sorted(set(NAME.findall(page())))
    assert len(names) >= 40, names
    missing = [n for n in names if not _resolve_dotted(n)]
    assert not missing, f"{PAGE.name} names things edgeq does not define: {missing}"


def _modules_by_basename() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in [*(REPO / "edgeq").rglob("*.py"), *(REPO / "tests").glob("*.py")]:
        if path.stem != "__init__":
            found.setdefault(path.stem, []).append(path)
    return found


def test_every_short_module_name_in_code_spans_exists():
    modules = _modules_by_basename()
    checked, problems = [], []
    for span in INLINE.findall(page()):
        if not SHORT_NAME.fullmatch(span) or span.startswith("edgeq."):
            continue
        first, *attrs = span.split(".")
        if attrs == ["py"] and "/" not in span:  # a module named by its file, e.g. `sim.py`
            checked.append(span)
            if first not in modules:
                problems.append(f"{span}: no such module in edgeq/ or tests/")
            continue
        if first not in modules or attrs[-1] in FILE_SUFFIXES:
            continue  # a file name such as `model.tflite`, or not a module reference
        checked.append(span)
        if len(modules[first]) > 1:
            problems.append(f"{span}: {first} is ambiguous, write the full edgeq. name")
        elif not _resolves(modules[first][0], attrs):
            problems.append(span)
    assert checked, "no `module.name` span found: has the pattern broken?"
    assert not problems, problems


def test_every_test_id_on_the_page_exists():
    ids = sorted(set(re.findall(r"(tests/test_\w+\.py)::(test_\w+)", page())))
    assert ids, "no tests/…py::test_… id found: has the pattern broken?"
    missing = [f"{path}::{name}" for path, name in ids
               if not (REPO / path).is_file() or not _resolves(REPO / path, [name])]
    assert not missing, missing


def _commands() -> list[list[str]]:
    """Each `edgeq …` command on the page, as words: inline spans and diagram lines."""
    lines = [span for span in INLINE.findall(page()) if span.startswith("edgeq ")]
    diagrams = "\n".join(re.findall(r"```text\n(.*?)```", page(), re.S))
    lines += [re.split(r"\s{2,}", line)[0] for line in diagrams.splitlines()
              if line.startswith("edgeq ")]
    return [line.split() for line in lines]


def test_every_command_and_option_on_the_page_exists():
    import click

    from edgeq.cli import main

    commands = _commands()
    assert len(commands) >= 8, commands
    problems = []
    for words in commands:
        command = main.commands.get(words[1])
        if command is None:
            problems.append(f"{' '.join(words)}: no command {words[1]!r}")
            continue
        rest = words[2:]
        if isinstance(command, click.Group) and rest and rest[0] in command.commands:
            command, rest = command.commands[rest[0]], rest[1:]
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        problems += [f"{' '.join(words)}: {word}" for word in rest
                     if word.startswith("--") and word not in options]
    assert not problems, f"commands or options that `edgeq` does not have: {problems}"


def _imports(path: Path) -> set[str]:
    """Absolute names of every module that `path` imports, at any depth of the file."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("half, other", [("deploy", "learn"), ("learn", "deploy")])
def test_the_two_halves_import_nothing_from_each_other(half, other):
    text = " ".join(page().split())
    assert f"`edgeq/{half}/` imports nothing from `edgeq/{other}/`" in text or \
        f"`edgeq/{half}/` nothing from `edgeq/{other}/`" in text
    files = sorted((REPO / "edgeq" / half).rglob("*.py"))
    assert files
    crossing = {str(f.relative_to(REPO)): sorted(n for n in _imports(f)
                                                  if n.startswith(f"edgeq.{other}"))
                for f in files}
    assert not {f: n for f, n in crossing.items() if n}


def test_the_readme_links_the_page():
    assert "(docs/ARCHITECTURE.md)" in (REPO / "README.md").read_text()
