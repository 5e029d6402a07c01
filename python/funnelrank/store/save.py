"""Saving a collection: atomically as a whole, by the one writer that holds the directory's lock.

A save writes a fresh ``data-<random>`` directory (:mod:`funnelrank.store.layout`), fsyncs every file and the
directory, and only then replaces ``manifest.json`` atomically (temporary file + fsync + rename): the manifest
is the commit point. A crash or kill at any moment before it leaves the old manifest pointing at the old,
untouched data directory; after it, the new one is complete. The data directory of the generation just
replaced is *kept*, so that a reader that read the old manifest an instant earlier can still finish; older
generations and the leftovers of failed or killed saves (data directories no manifest points at, the manifest
writer's and the write-ahead log's temporary files; only names this package creates) are removed by the next
successful save. After a
successful save the directory holds at most two data directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from funnelrank.files import atomic_writer, atomic_writer_leftovers
from funnelrank.store.docs_file import write_docs
from funnelrank.store.documents import Document
from funnelrank.store.embedders import embedder_identity
from funnelrank.store.layout import (
    BM25_FILE,
    DATA_PREFIX,
    DATA_RE,
    DOCS_FILE,
    FORMAT,
    HNSW_FILE,
    LOCK_FILE,
    LOG_FILE,
    MANIFEST,
    fsync_dir,
    fsync_file,
    open_regular,
)
from funnelrank.store.lock import WriterLock, lock_key
from funnelrank.store.manifest import MANIFEST_MAX_BYTES, new_manifest

__all__ = ["save_collection"]


def save_collection(
    path: str | os.PathLike[str],
    *,
    documents: Sequence[Document],
    bm25: Any,
    hnsw: Any | None,
    embedder: Any | None,
    locks: dict[str, WriterLock],
) -> str:
    """Write a collection (its `documents` in order, its `bm25` index, and its `hnsw` index with the `embedder`
    that built it, for a dense one) to directory `path` (created if needed), atomically; see the module
    docstring.

    Refuses (ValueError) a non-empty directory that is not a collection, so user files are never mixed in.
    Takes the directory's writer lock unless `locks` (the writer's, by :func:`~funnelrank.store.lock.lock_key`)
    already holds it, and keeps it there after a successful save (a failed save releases a lock it took);
    raises :class:`~funnelrank.store.lock.CollectionLockedError` at once when another writer holds it.
    Returns the new manifest's checksum (what the write-ahead log started after this commit names).
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    _check_target(root)  # before creating the lock file: never drop one into a user's directory
    key = lock_key(root)
    lock = locks.get(key)
    fresh = lock is None or not lock.held
    if fresh:
        lock = WriterLock.acquire(root)
    try:
        previous = _check_target(root)  # again under the lock: the previous writer may have changed it
        data_name = _new_data_dir(root)
        try:
            sha256 = _write_generation(root / data_name, documents, bm25, hnsw)
            fsync_dir(root)
            identity = embedder_identity(embedder) if hnsw is not None else None
            manifest = new_manifest(data_name, len(documents), sha256, identity)
            with atomic_writer(root / MANIFEST) as fh:
                fh.write(json.dumps(manifest, indent=2).encode("utf-8"))
        except BaseException:
            shutil.rmtree(root / data_name, ignore_errors=True)
            raise
        _remove_stale(root, keep={data_name, previous})
    except BaseException:
        if fresh:
            assert lock is not None
            lock.release()
        raise
    assert lock is not None
    locks[key] = lock
    return str(manifest["checksum"])


def _new_data_dir(root: Path) -> str:
    """The name of a new, empty data directory created in `root`."""
    while True:
        data_name = DATA_PREFIX + secrets.token_hex(6)
        try:
            (root / data_name).mkdir()
            return data_name
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _write_generation(data: Path, documents: Sequence[Document], bm25: Any, hnsw: Any | None) -> str:
    """Write the documents file and the index files into data directory `data`, each and the directory flushed
    to disk; returns the documents file's sha256."""
    sha256 = write_docs(data / DOCS_FILE, documents)
    bm25.save(str(data / BM25_FILE))
    fsync_file(data / BM25_FILE)
    if hnsw is not None:
        hnsw.save(str(data / HNSW_FILE))
        fsync_file(data / HNSW_FILE)
    fsync_dir(data)
    return sha256


def _ours(name: str, manifest_leftovers: set[str]) -> bool:
    """Whether an entry of a collection directory has a name this package creates."""
    return name in (LOCK_FILE, LOG_FILE) or bool(DATA_RE.fullmatch(name)) or name in manifest_leftovers


def _check_target(root: Path) -> str | None:
    """Refuse (ValueError) a directory that holds something other than a funnelrank collection; returns the
    data directory the current manifest names (None when there is none or it cannot be read)."""
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            with open_regular(manifest_path) as fh:
                current = json.loads(fh.read(MANIFEST_MAX_BYTES + 1).decode("utf-8"))
            ours = isinstance(current, dict) and current.get("format") == FORMAT
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            ours = False
        if not ours:
            raise ValueError(f"{manifest_path} is not a funnelrank collection manifest; choose a new directory")
        data = current.get("data")
        return data if isinstance(data, str) and DATA_RE.fullmatch(data) else None
    leftovers = {p.name for p in atomic_writer_leftovers(manifest_path) + atomic_writer_leftovers(root / LOG_FILE)}
    if any(not _ours(p.name, leftovers) for p in root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no funnelrank collection; choose a new directory")
    return None


def _remove_stale(root: Path, keep: set[str | None]) -> None:
    """Remove data directories other than `keep` and the manifest writer's leftovers (call under the lock:
    then no other save is writing any of them)."""
    for entry in root.iterdir():
        if DATA_RE.fullmatch(entry.name) and entry.name not in keep and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    for leftover in atomic_writer_leftovers(root / MANIFEST) + atomic_writer_leftovers(root / LOG_FILE):
        with contextlib.suppress(OSError):
            leftover.unlink()
