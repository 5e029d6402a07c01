"""The package's shape (issue 26): no import circles, a small front door, small modules, one home per idea."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "funnelrank"
ROOT = PACKAGE.parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The funnelrank modules `path` imports at run time: at module level and inside functions alike (a lazy
    import still closes a circle), not under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
            for n in ast.walk(node) if n is not node}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circles() -> None:
    graph = import_graph()
    # a package's __init__ importing its own submodules is how a package exports; the circle that matters is
    # between modules, so a submodule's edge back to its own package's __init__ is left out
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    assert cycles(graph) == []


def test_the_front_door_is_small() -> None:
    import funnelrank

    assert len(funnelrank.__all__) <= 10
    assert all(hasattr(funnelrank, name) for name in funnelrank.__all__)


def test_the_package_root_holds_at_most_eight_modules() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 8


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"{path.relative_to(PACKAGE)} has {lines} lines"


def definitions(pattern: str) -> list[str]:
    """Where `pattern` (a regex on a source line) occurs in the package's sources."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}")
    return found


def test_one_definition_each_of_the_floor_rule_the_default_depth_and_the_default_fusion() -> None:
    assert [d.split(":")[0] for d in definitions(r"^DEFAULT_(DEPTH|FLOOR|TOP_K|FUSION|STAGE1_WEIGHT)\s*=")] == [
        "rerank/policy.py"] * 5
    # the floor comparison itself (a score against a floor) is written once, in clears_floor
    assert floor_comparisons() == ["rerank/policy.py:clears_floor"]


def floor_comparisons() -> list[str]:
    """Every ordering comparison in the package's code whose right side is a floor (``x >= floor``,
    ``s < self.floor``, ``v >= float(floor)``), as ``module:function``."""
    def is_floor(node: ast.expr) -> bool:
        if isinstance(node, ast.Call) and node.args:
            node = node.args[0]
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        return name == "floor" or name.endswith("_floor")

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Compare) and any(
                        isinstance(op, (ast.GtE, ast.Gt, ast.Lt, ast.LtE)) and is_floor(right)
                        for op, right in zip(node.ops, node.comparators)):
                    found.append(f"{path.relative_to(PACKAGE)}:{getattr(func, 'name', 'lambda')}")
    return sorted(set(found))
