"""The package's shape (issue 26): a small front door, small modules, one home per idea (no import circles:
test_layers.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "funnelrank"


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
