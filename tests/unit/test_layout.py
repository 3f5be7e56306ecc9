"""The house rules of issue 16, checked on the source tree: no import loops among package modules, no module
over 400 lines outside generated code, and dependencies pointing down
(attribution ← lenses/backends ← explain ← server; monitor depends on attribution only).

Imports are read with ``ast`` at every depth (module level, inside functions, under ``TYPE_CHECKING``): a
loop hidden behind a lazy import or a type-checking block is still a loop for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "spex_monitor"
GENERATED = ("protocol",)
MAX_LINES = 400

# room -> rooms it must never import (directly or through a lazy import)
FORBIDDEN = {
    "attribution": {"lenses", "backends", "monitor", "explain", "server", "config", "bench", "cli", "demo"},
    "lenses": {"backends", "monitor", "explain", "server", "config", "bench", "cli", "demo"},
    "backends": {"lenses", "monitor", "explain", "server", "config", "bench", "cli", "demo"},
    "monitor": {"lenses", "backends", "explain", "server", "bench", "cli", "demo"},
    "explain": {"monitor", "server", "bench", "cli", "demo"},
    "server": {"bench", "cli", "demo"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[1] in GENERATED:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules ``name`` imports, at any depth, leaving out its own parent packages."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in out if m in modules and m != name and not name.startswith(m + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    loops.append(sorted(component))
    return loops


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_loop_finder_finds_a_planted_loop():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _loops(graph) == [["a", "b", "c"]]


def test_no_import_loops_among_package_modules():
    loops = _loops(_graph())
    assert not loops, f"import loops: {loops}"


def test_dependencies_point_down():
    wrong = sorted(
        f"{module} imports {dependency}"
        for module, dependencies in _graph().items()
        for dependency in dependencies
        if _room(dependency) in FORBIDDEN.get(_room(module), set())
    )
    assert not wrong, "\n".join(wrong)


def test_no_module_over_the_size_limit():
    over = sorted(
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    )
    assert not over, f"split these modules (limit {MAX_LINES} lines): {over}"
