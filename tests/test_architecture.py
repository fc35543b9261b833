"""The house (issue 14): no import cycle between modules or between the top-level rooms of
``sepclr_med``, imports found by reading the source (function-level imports included)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sepclr_med"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own parents excluded)."""

    def owner(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sepclr_med":
                found |= {owner(f"{node.module}.{a.name}") for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "sepclr_med"}
        graph[name] = {d for d in found if d != name and not name.startswith(d + ".")}
    return graph


def _room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def test_no_import_cycle_between_modules():
    assert _cycle(_imports(_modules())) is None


def test_no_import_cycle_between_rooms():
    rooms: dict[str, set[str]] = {}
    for module, deps in _imports(_modules()).items():
        rooms.setdefault(_room(module), set()).update(_room(d) for d in deps if _room(d) != _room(module))
    assert _cycle(rooms) is None


@pytest.mark.parametrize("cycle", [{"a": {"b"}, "b": {"a"}}])
def test_the_cycle_finder_finds_one(cycle):
    assert _cycle(cycle) is not None and _cycle({"a": {"b"}, "b": set()}) is None


MAX_LINES = 80  # of code, the docstring not counted


def _long_functions() -> list[str]:
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node) or ""
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if doc and isinstance(first, ast.Expr):
                lines -= first.end_lineno - first.lineno + 1
            if lines > MAX_LINES and "(Long " not in doc:
                found.append(f"{module}.{node.name}: {lines} lines")
    return found


def test_no_long_function_without_a_stated_reason():
    cli = Path(__file__).resolve().parents[1] / "cli"
    assert _long_functions() == []
    for path in cli.glob("*.py"):  # the command line too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > MAX_LINES + 30:
                assert "(Long " in (ast.get_docstring(node) or ""), f"{path.name}:{node.name}"
