"""Layers that only point down: the import graph of python/funnelrank has no cycle, stage 2 (funnelrank.rerank)
never reaches the offline tools (funnelrank.eval), and importing the runtime API loads no training stack.

The graph is read statically with `ast`: every ``import funnelrank...`` / ``from funnelrank... import ...`` (and
relative import) in a module, at module level or inside functions and classes, except under
``if TYPE_CHECKING:``. ``from funnelrank.x import y`` is an edge to ``funnelrank.x.y`` when that is a module or
package, else to ``funnelrank.x``. A package is the node of its ``__init__.py``; importing ``pkg.sub`` is an edge
to ``pkg.sub`` only (no implicit edge to ``pkg``).
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "python"
PACKAGE = "funnelrank"


def _modules() -> dict[str, Path]:
    """Module name -> file, for every .py under python/funnelrank (packages named by their __init__.py), and
    the compiled ones by their .pyi stubs (leaves: a stub's imports are for types only)."""
    out: dict[str, Path] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")) + sorted((ROOT / PACKAGE).rglob("*.pyi")):
        if path.suffix == ".pyi" and path.with_suffix(".py").exists():
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # the ``else:`` branch does run
                if isinstance(other, (ast.Import, ast.ImportFrom)):
                    yield other
                else:
                    yield from _import_nodes(other)
        else:
            yield from _import_nodes(child)


def _resolve(name: str) -> str | None:
    """The funnelrank module `name` names, or its nearest enclosing module; None outside funnelrank."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported funnelrank module, line) for every import in `module`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target is not None:
                    yield target, node.lineno
            continue
        if node.level:
            base_parts = module.split(".")
            if not is_package:
                base_parts = base_parts[:-1]
            if node.level > 1:
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if _resolve(base) is None:
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            target = sub if alias.name != "*" and sub in MODULES else _resolve(base)
            if target is not None:
                yield target, node.lineno


@functools.cache
def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}, parsed in a child interpreter.

    CPython 3.11's ``ast`` keeps its recursion counter in state shared by every thread, so a background thread
    left by an earlier test (a server, a Ray driver) parsing at the same moment fails ``ast.parse`` with
    "AST constructor recursion depth mismatch" (cpython gh-106905). A fresh process has no such threads.
    """
    out = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    graph: dict[str, dict[str, int]] = json.loads(out.stdout)
    return graph


def _parse_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}, parsed in this process."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for target, line in _imports(module, path) if path.suffix == ".py" else ():
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                        out.append(sorted(component))
    return out


def _cycle_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """One cycle through the component's first module, as a path that ends where it starts."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle found in component {component}")


def _describe(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    hops = [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:])]
    return " -> ".join([*hops, path[-1]])


def test_the_graph_sees_the_imports() -> None:
    """Sanity: the parser finds known edges (module level and in-function ones), and skips TYPE_CHECKING."""
    graph = _graph()
    assert "funnelrank.store.save" in graph["funnelrank.store.collection"]
    assert "funnelrank.retrieve.filters" in graph["funnelrank.store.collection"]
    assert "funnelrank.embed.default_model" in graph["funnelrank.embed.embedder"]
    assert "funnelrank._core" in graph["funnelrank.core"]  # the compiled core is a node of its own
    assert "funnelrank.embed" in graph["funnelrank.store.embedders"]  # inside find_embedder
    snippet = "if TYPE_CHECKING:\n    import funnelrank.a\nelse:\n    import funnelrank.b\nimport funnelrank.c\n"
    seen = [alias.name for node in _import_nodes(ast.parse(snippet)) for alias in node.names]  # 5 lines: no race
    assert seen == ["funnelrank.b", "funnelrank.c"]


STORE_PARTS = ("check", "docs_file", "documents", "embedders", "indexing", "inputs", "layout", "load", "lock",
               "manifest", "save")
"""The modules Collection is built from (its on-disk format and its helpers)."""


def test_the_collection_uses_its_parts_and_they_never_reach_it() -> None:
    """One way only: funnelrank.store.collection imports its on-disk format and helpers, which never import
    it back, directly or through another module."""
    graph = _graph()
    uses = set(graph["funnelrank.store.collection"])
    assert {f"funnelrank.store.{m}" for m in ("save", "load", "lock", "inputs")} <= uses
    for part in STORE_PARTS:
        seen, frontier = {f"funnelrank.store.{part}"}, [f"funnelrank.store.{part}"]
        while frontier:
            frontier = [child for node in frontier for child in graph[node] if child not in seen]
            seen.update(frontier)
        assert "funnelrank.store.collection" not in seen, f"funnelrank.store.{part} reaches the collection"


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _describe(_cycle_in(["a", "b", "c"], graph), graph) == "a (line 1) -> b (line 1) -> c (line 1) -> a"
    assert _strongly_connected({"a": {"b": 1}, "b": {}}) == []


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = [_describe(_cycle_in(c, graph), graph) + f"  [component: {', '.join(c)}]"
              for c in _strongly_connected(graph)]
    assert not cycles, "import cycles in python/funnelrank:\n" + "\n".join(cycles)


def test_rerank_never_reaches_evaluation() -> None:
    graph = _graph()
    bad = []
    for module in sorted(m for m in graph if m == "funnelrank.rerank" or m.startswith("funnelrank.rerank.")):
        parent = {module: ""}
        frontier = [module]
        while frontier:
            nxt = []
            for node in frontier:
                for child in sorted(graph[node]):
                    if child in parent:
                        continue
                    parent[child] = node
                    if child == "funnelrank.eval" or child.startswith("funnelrank.eval."):
                        path = [child]
                        while parent[path[-1]]:
                            path.append(parent[path[-1]])
                        bad.append(_describe(path[::-1], graph))
                    else:
                        nxt.append(child)
            frontier = nxt
    assert not bad, "funnelrank.rerank reaches funnelrank.eval:\n" + "\n".join(bad)


def test_runtime_imports_load_no_training_or_evaluation_stack() -> None:
    code = (
        "import sys\n"
        "import funnelrank, funnelrank.rerank, funnelrank.store.collection\n"
        "heavy = ('torch', 'transformers', 'funnelrank.train', 'funnelrank.eval')\n"
        "print('\\n'.join(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    assert not loaded, f"importing the runtime API loaded {loaded}"


if __name__ == "__main__":
    print(json.dumps(_parse_graph()))
