"""Every public definition of the package has a docstring (issue 16 item 8).

Public: a module-level function or class whose name does not start with ``_``, and the methods and nested
classes of a public class whose names do not start with ``_`` (functions nested in functions are not
counted). Generated code (``spex_monitor/protocol``), the shipped examples (``spex_monitor/examples``),
modules or packages whose own name starts with ``_`` (``__init__.py`` aside) and ``@overload`` stubs are
left out. Read with ``ast``: nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "spex_monitor"
SKIPPED = ("protocol", "examples")
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _modules() -> list[Path]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIPPED for part in parts):
            continue
        if any(part.startswith("_") and part != "__init__.py" for part in parts):
            continue
        found.append(path)
    return found


def _is_overload(node: Definition) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == "overload") or (
            isinstance(target, ast.Attribute) and target.attr == "overload"
        ):
            return True
    return False


def _public(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, Definition]]:
    """``(qualified name, node)`` of every public definition in ``body``, nested classes included."""
    for node in body:
        if not isinstance(node, Definition) or node.name.startswith("_") or _is_overload(node):
            continue
        yield prefix + node.name, node
        if isinstance(node, ast.ClassDef):
            yield from _public(node.body, f"{prefix}{node.name}.")


def _undocumented(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT)
    found = _public(tree.body)
    return [f"{where}:{node.lineno} {name}" for name, node in found if ast.get_docstring(node) is None]


def test_the_walk_finds_what_it_should():
    source = '''
class Public:
    """Documented."""

    def method(self): ...

    def _private(self): ...

    class Nested:
        def inner(self):
            """Documented."""


def function():
    def helper(): ...


@overload
def stub(x: int) -> int: ...


@typing.overload
def stub(x: str) -> str: ...


def _hidden(): ...
'''
    tree = ast.parse(source)
    names = {name: ast.get_docstring(node) is not None for name, node in _public(tree.body)}
    assert names == {
        "Public": True,
        "Public.method": False,
        "Public.Nested": False,
        "Public.Nested.inner": True,
        "function": False,
    }


def test_the_walk_covers_the_package():
    modules = _modules()
    assert PACKAGE / "monitor" / "worker.py" in modules
    assert not [m for m in modules if "protocol" in m.parts or "examples" in m.parts]


def test_every_public_definition_has_a_docstring():
    missing = [entry for path in _modules() for entry in _undocumented(path)]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)
