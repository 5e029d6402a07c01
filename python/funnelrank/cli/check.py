"""`funnelrank check PATH [--fix]`: verify a saved collection (or a raw index file) offline, like Lucene's
CheckIndex, and list (with --fix: remove) the files nothing references."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

_INDEX_MAGICS = {b"FRK-BM25": "BM25", b"FRK-HNSW": "HNSW"}
"""The first 8 bytes of each index file kind (cpp/core/bm25_format.cpp, hnsw_index.cpp)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `check` sub-command."""
    p = sub.add_parser(
        "check",
        help="verify a collection directory (or an index file): checksums, cross-references, unreferenced files",
        description="Verify a saved collection without loading it for search: the manifest's checksum and "
        "schema, the documents file's sha256, each index file's checksum, and their cross-references "
        "(document counts, ids in order, vector dimension); list every file the manifest does not reference. "
        "Given an index file (bm25.idx / hnsw.idx saved by BM25Index.save / HNSWIndex.save), verify it and list "
        "the temporary files that killed saves of it left. Exits 1 when a problem is found, 0 otherwise.",
    )
    p.add_argument("path", metavar="PATH", help="collection directory, or an index file")
    p.add_argument(
        "--fix",
        action="store_true",
        help="remove unreferenced files funnelrank wrote (never a referenced one, never a file of yours); "
        "takes the collection's writer lock, so it fails at once while a writer holds it",
    )
    p.add_argument(
        "--truncate-log",
        action="store_true",
        help="with --fix: cut a write-ahead log damaged in its middle back to the records before the damage "
        "(the writes logged from it on are lost; the whole damaged log is first set aside as "
        "wal.log.damaged-<hex>)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check PATH; print one line per finding; 1 when a problem remains."""
    path = Path(args.path)
    if args.truncate_log and not args.fix:
        raise ValueError("--truncate-log cuts the write-ahead log: give --fix as well")
    if path.is_dir():
        return _check_collection(path, args.fix, args.truncate_log)
    if path.is_file():
        return _check_index_file(path, args.fix)
    raise ValueError(f"{path}: no such collection directory or index file")


def _check_collection(root: Path, fix: bool, truncate_log: bool = False) -> int:
    from funnelrank.store.check import check_collection

    report = check_collection(root, fix=fix, truncate_log=truncate_log)
    if report.truncated:
        print(f"truncated: {report.truncated}")
    if report.log:
        print(f"log: {report.log}")
    removed = set(report.removed)
    for entry, why in report.unreferenced:
        if entry not in removed:
            print(f"unreferenced: {entry} ({why})")
    for entry in report.removed:
        print(f"removed: {entry}")
    for entry, why in report.kept:
        print(f"kept: {entry} ({why})")
    for entry, why in report.pinned:
        print(f"pinned: {entry} ({why})")
    return _verdict(root, report.problems)


def _check_index_file(path: Path, fix: bool) -> int:
    from funnelrank._core import BM25Index, HNSWIndex, IndexFileError, stale_temp_files

    problems: list[str] = []
    with open(path, "rb") as fh:
        kind = _INDEX_MAGICS.get(fh.read(8))
    if kind is None:
        problems.append(f"{path}: not a funnelrank index file (its first bytes are neither FRK-BM25 nor FRK-HNSW)")
    else:
        try:
            (BM25Index if kind == "BM25" else HNSWIndex).load(path)
        except (IndexFileError, ValueError) as exc:
            problems.append(str(exc))
    for leftover in stale_temp_files(path):
        if fix:
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                continue
            print(f"removed: {leftover}")
        else:
            print(f"unreferenced: {leftover} (a temporary file of a killed save; the next save removes it)")
            problems.append(f"{leftover}: unreferenced (a temporary file of a killed save of {path.name})")
    return _verdict(path, problems, what=f"{kind} index file" if kind else "file")


def _verdict(path: Path, problems: list[str], what: str = "collection") -> int:
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: ok ({what} verified)")
    return 0
