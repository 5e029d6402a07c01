"""The demo's default corpus: the documentation of the installed Python standard library, built locally.

Nothing is downloaded. Pure-Python modules are read as source and parsed with :mod:`ast` (never imported,
so no module's import side effects run); compiled modules (``math``, ``itertools``, ``builtins``, ``posix``
shown as ``os``...) are imported and read with :mod:`inspect`. The docstrings of each public module, class,
function and method become passages, split at paragraph boundaries into chunks of at most :data:`MAX_WORDS` words. Passage ids
are qualified names (``json.dumps``, ``argparse.ArgumentParser.add_argument``; a long docstring's later
chunks get ``#2``, ``#3``...), titles are the qualified name with the signature.

Skipped: private names (leading underscore), tests, IDLE, Tkinter, lib2to3, the bundled pip, codec tables,
and docstrings shorter than :data:`MIN_WORDS` words.

The built corpus is cached as JSONL (BEIR corpus format: ``{"_id", "title", "text"}``) in
:func:`demo_cache_dir` (``~/.cache/funnelrank/demo`` unless ``$FUNNELRANK_CACHE`` or ``$XDG_CACHE_HOME`` say
otherwise; a temporary directory if that is not writable), keyed by the Python version and
the standard library's location, so a different interpreter builds its own.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import inspect
import json
import os
import re
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from funnelrank.files import atomic_writer, cache_dir

__all__ = [
    "MAX_WORDS",
    "MIN_WORDS",
    "Passage",
    "build_demo_corpus",
    "demo_cache_dir",
    "load_demo_corpus",
    "split_passages",
]

CORPUS_VERSION = 1  # bump when the way passages are built changes (invalidates caches)
MAX_WORDS = 200
MIN_WORDS = 5
_SKIP_TOP = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
     "site-packages", "dist-packages", "__pycache__", "this", "antigravity", "venv", "encodings"}
)
# Compiled modules never imported by the builder (terminal side effects, test or obsolete modules).
_SKIP_COMPILED = frozenset(
    {"readline", "xxsubtype", "xxlimited", "xxlimited_35", "ossaudiodev", "nis", "spwd", "audioop", "crypt"}
)
# Compiled modules shown under the name users know them by ("" = no prefix: "sorted", "str.split").
_COMPILED_ALIAS = {"builtins": "", "posix": "os"}
_MAX_TITLE = 120


@dataclass(frozen=True)
class Passage:
    """One demo passage: a qualified-name id, a title (name + signature) and docstring text."""

    id: str
    title: str
    text: str


def split_passages(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Split text into chunks of at most `max_words` words, at paragraph (blank-line) boundaries when
    possible; a paragraph longer than `max_words` is cut between words. Whitespace inside a paragraph is
    collapsed."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    chunks: list[str] = []
    current: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if not words:
            continue
        if current and len(current) + len(words) > max_words:
            chunks.append(" ".join(current))
            current = []
        while len(words) > max_words:
            chunks.append(" ".join(words[:max_words]))
            words = words[max_words:]
        current.extend(words)
    if current:
        chunks.append(" ".join(current))
    return chunks


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        sig = f"({ast.unparse(node.args)})"
    except (ValueError, AttributeError):  # pragma: no cover - ast.unparse handles all parsed arguments
        sig = "(...)"
    return sig if len(sig) <= _MAX_TITLE else sig[: _MAX_TITLE - 4] + "...)"


def _public_functions(prefix: str, body: list[ast.stmt]) -> Iterator[tuple[str, str, str]]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if doc:
                yield f"{prefix}.{node.name}", f"{prefix}.{node.name}{_signature(node)}", doc


def _documented(module: str, tree: ast.Module) -> Iterator[tuple[str, str, str]]:
    """(qualified name, title, docstring) for the module and its public classes, functions and methods,
    in source order."""
    doc = ast.get_docstring(tree)
    if doc:
        yield module, f"{module} (module)", doc
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _public_functions(module, [node])
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            cls = f"{module}.{node.name}"
            doc = ast.get_docstring(node)
            if doc:
                yield cls, f"class {cls}", doc
            yield from _public_functions(cls, node.body)


def _stdlib_sources(root: Path) -> Iterator[tuple[str, Path]]:
    """(module name, source path) of the public pure-Python stdlib modules under `root`, sorted."""
    for entry in sorted(root.iterdir()):
        name = entry.stem if entry.suffix == ".py" else entry.name
        if name.startswith("_") or name in _SKIP_TOP or not name.isidentifier():
            continue
        if entry.is_file() and entry.suffix == ".py":
            yield name, entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            for path in sorted(entry.rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if any(p.startswith("_") or p in _SKIP_TOP or not p.isidentifier() for p in parts[1:]):
                    continue
                yield ".".join(parts), path


def _compiled_modules() -> list[str]:
    """Public compiled stdlib modules: built into the interpreter or in lib-dynload."""
    names = set(sys.builtin_module_names)
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    if not dynload.is_dir():  # a virtual environment: look in the base interpreter's
        dynload = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "lib-dynload"
    if dynload.is_dir():
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        names.update(p.name.split(".", 1)[0] for p in dynload.iterdir() if p.name.endswith(suffixes))
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_") and n not in _SKIP_COMPILED)


def _text_signature(obj: object) -> str:
    sig = getattr(obj, "__text_signature__", None)
    if not isinstance(sig, str):
        return ""
    sig = re.sub(r"\$(module|self|type|cls)(, /)?(, )?", "", sig)
    return sig if len(sig) <= _MAX_TITLE else sig[: _MAX_TITLE - 4] + "...)"


def _compiled_documented(module: str) -> Iterator[tuple[str, str, str]]:
    """(qualified name, title, docstring) for a compiled module's own public routines and classes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a module that cannot load here is simply not in the demo corpus
        return
    shown = _COMPILED_ALIAS.get(module, module)
    prefix = f"{shown}." if shown else ""
    if shown and isinstance(mod.__doc__, str):
        yield shown, f"{shown} (module)", inspect.cleandoc(mod.__doc__)
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(obj, "__module__", module) != module:
            continue
        if inspect.isroutine(obj) and isinstance(obj.__doc__, str):
            yield f"{prefix}{name}", f"{prefix}{name}{_text_signature(obj)}", inspect.cleandoc(obj.__doc__)
        elif inspect.isclass(obj):
            if isinstance(obj.__doc__, str):
                yield f"{prefix}{name}", f"class {prefix}{name}", inspect.cleandoc(obj.__doc__)
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and inspect.isroutine(member) and isinstance(member.__doc__, str):
                    title = f"{prefix}{name}.{attr}{_text_signature(member)}"
                    yield f"{prefix}{name}.{attr}", title, inspect.cleandoc(member.__doc__)


def stdlib_root() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def build_demo_corpus(
    root: Path | None = None, max_words: int = MAX_WORDS, *, include_compiled: bool = True
) -> list[Passage]:
    """Build the passages from the standard library sources under `root` (default: this interpreter's),
    plus this interpreter's compiled stdlib modules when `include_compiled`.

    Raises FileNotFoundError when no Python sources are found there (e.g. a stripped install)."""
    root = root or stdlib_root()
    passages: list[Passage] = []
    seen: set[str] = set()

    def add(documented: Iterator[tuple[str, str, str]]) -> None:
        for name, title, doc in documented:
            if name in seen or len(doc.split()) < MIN_WORDS:
                continue
            seen.add(name)
            for i, chunk in enumerate(split_passages(doc, max_words), start=1):
                passages.append(Passage(name if i == 1 else f"{name}#{i}", title, chunk))

    for module, path in _stdlib_sources(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError, UnicodeDecodeError, RecursionError, SystemError):
            # e.g. a file for another Python version, or one CPython 3.11's parser refuses ("AST constructor
            # recursion depth mismatch", CPython gh-106905); the demo corpus just lacks it
            continue
        add(_documented(module, tree))
    if include_compiled:
        for module in _compiled_modules():
            add(_compiled_documented(module))
    if not passages:
        raise FileNotFoundError(f"{root}: no Python standard library sources with docstrings found")
    return passages


def demo_cache_dir() -> Path:
    """Where the built demo corpus is cached (created if needed): ``funnelrank.files.cache_dir("demo")``
    (``$FUNNELRANK_CACHE``, else ``$XDG_CACHE_HOME/funnelrank``, else ``~/.cache/funnelrank``), or a
    temporary directory when that cannot be written."""
    for path in (cache_dir("demo"), Path(tempfile.gettempdir()) / "funnelrank-cache" / "demo"):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError(f"no writable directory for the demo corpus (tried {cache_dir('demo')} and the temp dir)")


def _cache_file(root: Path) -> Path:
    key = hashlib.sha256(f"{sys.version}|{root.resolve()}|{CORPUS_VERSION}".encode()).hexdigest()[:12]
    return demo_cache_dir() / f"corpus-py{sys.version_info.major}.{sys.version_info.minor}-{key}.jsonl"


def _read_cache(path: Path) -> list[Passage] | None:
    try:
        with path.open(encoding="utf-8") as fh:
            passages = [Passage(o["_id"], o["title"], o["text"]) for o in map(json.loads, fh)]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: rebuild
    return passages or None


def load_demo_corpus(*, rebuild: bool = False) -> tuple[list[Passage], Path, bool]:
    """The demo corpus, from the cache when present (else built and cached atomically).

    Returns (passages, cache file, whether it was built now)."""
    root = stdlib_root()
    path = _cache_file(root)
    if not rebuild:
        cached = _read_cache(path)
        if cached is not None:
            return cached, path, False
    passages = build_demo_corpus(root)
    with atomic_writer(path) as fh:
        for p in passages:
            fh.write((json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n").encode("utf-8"))
    return passages, path, True
