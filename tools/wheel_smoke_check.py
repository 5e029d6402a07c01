"""Checks for `make wheel-smoke` (tools/wheel-smoke.sh); every check exits non-zero when it fails.

    python tools/wheel_smoke_check.py contents WHEEL MODEL_DIR   # the wheel holds the .so and the default model
    python wheel_smoke_check.py installed [--dense] [--allow-compiler]   # by the fresh venv's python, offline
    python tools/wheel_smoke_check.py extra NAME                 # the installed funnelrank's extra NAME

`contents` runs in the checkout: MODEL_DIR is python/funnelrank/models/reranker-minilm-l6, and every file in it
must be in the wheel byte for byte, and so must every file of python/funnelrank/serve/playground (the page
`funnelrank serve` shows at /). `installed` runs from a scratch directory with PATH holding only the fresh
venv's bin/: it checks that funnelrank is imported from that venv (not the checkout) and that no compiler is
reachable (``--allow-compiler`` skips that: cibuildwheel tests inside its build container), then runs the
README's two quick-start examples and checks their results. `--dense` (after the ``models`` extra's packages
are installed) also runs a hybrid (BM25 + dense int8) search.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

COMPILERS = ("cc", "c++", "gcc", "g++", "clang", "clang++")
DOCS = ["Aspirin is not for children with a viral fever.", "Ibuprofen dosing for adults: 200-400 mg.",
        "Ibuprofen for children is dosed by body weight.", "Bananas are rich in potassium."]


def fail(message: str) -> None:
    print(f"wheel-smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check_contents(wheel: Path, model_dir: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        cores = [n for n in names if n.startswith("funnelrank/_core.") and n.endswith(".so")]
        if len(cores) != 1:
            fail(f"{wheel.name} should hold one funnelrank/_core*.so, has {cores}")
        model_files = sorted(p for p in model_dir.iterdir() if p.is_file())
        if not model_files:
            fail(f"no model files in {model_dir}")
        for path in model_files:
            name = f"funnelrank/models/{model_dir.name}/{path.name}"
            if name not in names:
                fail(f"{wheel.name} lacks {name}")
            if hashlib.sha256(zf.read(name)).digest() != hashlib.sha256(path.read_bytes()).digest():
                fail(f"{name} in {wheel.name} differs from {path}")
        # The playground page (funnelrank serve's /) is package data too: every file of it, byte for byte.
        page_dir = model_dir.parent.parent / "serve" / "playground"
        page_files = sorted(p for p in page_dir.iterdir() if p.is_file())
        if not page_files:
            fail(f"no playground files in {page_dir}")
        for path in page_files:
            name = f"funnelrank/serve/playground/{path.name}"
            if name not in names or zf.read(name) != path.read_bytes():
                fail(f"{wheel.name} lacks {name} or holds another version of it")
        stray = sorted(n for n in names if "__pycache__" in n or n.endswith(".pyc"))
        if stray:
            fail(f"{wheel.name} holds build leftovers: {stray[:5]}")
    print(f"wheel-smoke: {wheel.name} holds {cores[0]}, the default reranker ({len(model_files)} files) and the "
          f"playground page ({len(page_files)} files)")


def check_installed(dense: bool, allow_compiler: bool) -> None:
    import shutil

    found = {c: shutil.which(c) for c in COMPILERS if shutil.which(c)}
    if found and not allow_compiler:
        fail(f"a compiler is on PATH: {found}")
    import funnelrank
    from funnelrank import Pipeline, Reranker, _core

    venv = Path(sys.prefix).resolve()
    for module in (funnelrank, _core):
        where = Path(module.__file__ or "").resolve()
        if venv not in where.parents:
            fail(f"{module.__name__} imported from {where}, not from the fresh venv {venv}")
    print(f"wheel-smoke: funnelrank {funnelrank.__version__} from {Path(funnelrank.__file__ or '').parent}")

    with Reranker() as reranker:
        result = reranker.rank("compress data with gzip",
                               ["gzip.compress(data): compress data", "gzip.decompress(data): decompress data"])
    print(result)
    if result.no_evidence or result.items[0].index != 0:
        fail(f"the default reranker should put gzip.compress first: {result}")

    with Pipeline.from_texts(DOCS) as pipe:
        resp = pipe.search("ibuprofen dose for a child", top_k=2)
        refused = pipe.search("a recipe for chocolate chip cookies").no_evidence
        retriever = type(pipe.retriever).__name__
    print(retriever, resp.no_evidence, [(r.id, round(r.score, 3), r.text) for r in resp.results], refused)
    if [r.id for r in resp.results] != ["2", "1"] or not refused:
        fail("Pipeline.from_texts: expected ids ['2', '1'] and the off-topic query refused")
    if not dense:
        return

    from funnelrank import Collection
    from funnelrank.embed import default_embedder

    collection = Collection(embedder=default_embedder("int8"))
    collection.add([str(i) for i in range(len(DOCS))], DOCS)
    with Pipeline(collection) as pipe:
        resp = pipe.search("ibuprofen dose for a child", top_k=2)
        retriever = type(pipe.retriever).__name__
    print(retriever, [(r.id, round(r.score, 3), sorted(r.stage1)) for r in resp.results])
    if "Hybrid" not in retriever or [r.id for r in resp.results] != ["2", "1"]:
        fail(f"dense int8 (funnelrank[models]): expected a hybrid retriever and ids ['2', '1'], got {retriever}")
    if resp.results[0].stage1.get("dense") is None:
        fail("the hybrid result has no dense stage-1 hit")


def extra_requirements(name: str) -> list[str]:
    """The requirements funnelrank's installed metadata lists under extra `name` (markers dropped)."""
    import re
    from importlib.metadata import requires

    marker = re.compile(r"""^\s*extra\s*==\s*["']([^"']+)["']\s*$""")
    found = []
    for line in requires("funnelrank") or []:
        req, _, cond = line.partition(";")
        match = marker.match(cond)
        if match and match.group(1) == name:
            found.append(req.strip())
    if not found:
        fail(f"the installed funnelrank declares no extra {name!r}")
    return found


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "extra":
        print("\n".join(extra_requirements(argv[1])))
        return
    if len(argv) == 3 and argv[0] == "contents":
        check_contents(Path(argv[1]), Path(argv[2]))
    elif argv[:1] == ["installed"] and set(argv[1:]) <= {"--dense", "--allow-compiler"}:
        check_installed(dense="--dense" in argv, allow_compiler="--allow-compiler" in argv)
    else:
        sys.exit(__doc__)
    print("wheel-smoke: ok")


if __name__ == "__main__":
    main(sys.argv[1:])
