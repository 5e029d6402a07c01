"""Committing a collection: atomically, by the one writer that holds the directory's lock, writing only what
changed.

A collection on disk is a list of immutable segments (``data-<random>`` directories,
:mod:`funnelrank.store.layout`) named by ``manifest.json``. A commit into the collection's home writes only
the segments not yet written there (the documents added since the last commit, or segments a merge folded) and
a new deletion bitmap for each segment whose deletions changed, fsyncs every file and directory, and only then
replaces ``manifest.json`` atomically (temporary file + fsync + rename): the manifest is the commit point. A
crash or kill at any moment before it leaves the old manifest naming old, untouched files; after it, the new
commit is complete. A save into any other directory (an export) writes every segment afresh.

The files of the commit just replaced are *kept*, so that a reader that read the old manifest an instant
earlier can still finish, and so are the files of every commit a reader holds a lease on
(:mod:`funnelrank.store.readers`); older ones and the leftovers of failed or killed commits (data directories and
deletion bitmaps no manifest names, the manifest writer's and the write-ahead log's temporary files; only names
this package creates) are removed by the next successful commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.files import atomic_writer, atomic_writer_leftovers
from funnelrank.store.docs_file import write_docs
from funnelrank.store.documents import Document
from funnelrank.store.embedders import embedder_identity
from funnelrank.store.layout import (
    BM25_FILE,
    DATA_PREFIX,
    DATA_RE,
    DELETED_RE,
    DOCS_FILE,
    FORMAT,
    HNSW_FILE,
    LOCK_FILE,
    LOG_FILE,
    MANIFEST,
    READERS_DIR,
    fsync_dir,
    fsync_file,
    open_regular,
)
from funnelrank.store.lock import WriterLock, lock_key
from funnelrank.store.manifest import MANIFEST_MAX_BYTES, new_manifest
from funnelrank.store.readers import manifest_files, scan_leases
from funnelrank.store.segments import Segment, Segments

__all__ = ["save_collection"]


def save_collection(
    path: str | os.PathLike[str],
    *,
    segments: Segments,
    documents: Mapping[str, Document],
    embedder: Any | None,
    locks: dict[str, WriterLock],
    adopt: bool,
) -> str:
    """Commit a collection (its `segments`, the `documents` by id, and the `embedder` of its HNSW indexes, for
    a dense one) to directory `path` (created if needed), atomically; see the module docstring. Segments already
    written there (``segments.home`` is `path`) are reused. With `adopt` (`path` is, or becomes, the collection's
    home), the segments are marked written there afterwards.

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
        reuse = segments.home == key
        written: list[str] = []
        try:
            entries, updates = _write_segments(root, segments, documents, reuse, written)
            fsync_dir(root)
            identity = embedder_identity(embedder) if segments.make_hnsw is not None else None
            generation = _generation(previous) + 1
            manifest = new_manifest(entries, identity, generation)
            with atomic_writer(root / MANIFEST) as fh:
                fh.write(json.dumps(manifest, indent=2).encode("utf-8"))
        except BaseException:
            for name in written:
                shutil.rmtree(root / name, ignore_errors=True)
            raise
        if adopt:
            for update in updates:
                update()
            segments.list = [seg for seg in segments.list if len(seg) or seg.data is None] or [segments.new_segment()]
            segments.home = key
        _remove_stale(root, keep=manifest_files(manifest, previous))
    except BaseException:
        if fresh:
            assert lock is not None
            lock.release()
        raise
    assert lock is not None
    locks[key] = lock
    return str(manifest["checksum"])


def _write_segments(root: Path, segments: Segments, documents: Mapping[str, Document], reuse: bool,
                    written: list[str]) -> tuple[list[dict[str, Any]], list[Callable[[], None]]]:
    """Write what the commit needs: the manifest entries of its segments and, for the caller to run once it is
    committed, the updates that mark the segments written (`written` collects new data directories)."""
    entries: list[dict[str, Any]] = []
    updates: list[Callable[[], None]] = []
    for seg in list(segments.list):
        if reuse and seg.data is not None:
            if not len(seg):
                continue  # every document deleted: the segment leaves the commit
            entry = {"data": seg.data, "documents": len(seg.file_ids), "docs_sha256": seg.docs_sha256,
                     "deleted": seg.deleted_entry}
            if seg.deletions_changed:
                bitmap = _write_deletions(root / seg.data, seg)
                entry["deleted"] = bitmap
                updates.append(partial(_mark_deletions, seg, bitmap))
            entries.append(entry)
        elif len(seg) or (seg is segments.list[-1] and not entries):
            name = _new_data_dir(root)
            written.append(name)
            ids = seg.bm25.ids()
            sha256 = _write_generation(root / name, [documents[i] for i in ids], seg.bm25, seg.hnsw)
            entries.append({"data": name, "documents": len(ids), "docs_sha256": sha256, "deleted": None})
            updates.append(partial(_mark_written, seg, name, ids, sha256))
    if not entries:  # no live document at all: one empty segment
        empty = Segment(segments.make_bm25(), segments.make_hnsw() if segments.make_hnsw else None)
        name = _new_data_dir(root)
        written.append(name)
        entries.append({"data": name, "documents": 0, "deleted": None,
                        "docs_sha256": _write_generation(root / name, [], empty.bm25, empty.hnsw)})
    return entries, updates


def _mark_written(seg: Segment, name: str, ids: list[str], sha256: str) -> None:
    seg.data, seg.file_ids, seg.docs_sha256 = name, ids, sha256
    seg.deleted, seg.deleted_entry, seg.deletions_changed = set(), None, False


def _mark_deletions(seg: Segment, entry: dict[str, Any] | None) -> None:
    seg.deleted_entry, seg.deletions_changed = entry, False


def _write_deletions(data: Path, seg: Segment) -> dict[str, Any] | None:
    """Write `seg`'s deletion bitmap as a new file in its data directory, flushed; its manifest entry."""
    bits = seg.deletion_bits()
    count = int(bits.sum())
    if not count:
        return None
    raw = np.packbits(bits).tobytes()
    name = f"del-{secrets.token_hex(6)}.bits"
    with open(data / name, "xb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(data)
    return {"file": name, "sha256": hashlib.sha256(raw).hexdigest(), "count": count}


def _generation(manifest: dict[str, Any] | None) -> int:
    value = manifest.get("generation") if manifest else 0
    return value if type(value) is int and value >= 0 else 0


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
    return name in (LOCK_FILE, LOG_FILE, READERS_DIR) or bool(DATA_RE.fullmatch(name)) or name in manifest_leftovers


def _check_target(root: Path) -> dict[str, Any] | None:
    """Refuse (ValueError) a directory that holds something other than a funnelrank collection; returns the
    current manifest, unchecked (None when there is none)."""
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
        return current  # type: ignore[no-any-return]
    leftovers = {p.name for p in atomic_writer_leftovers(manifest_path) + atomic_writer_leftovers(root / LOG_FILE)}
    if any(not _ours(p.name, leftovers) for p in root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no funnelrank collection; choose a new directory")
    return None


def _remove_stale(root: Path, keep: dict[str, set[str]]) -> None:
    """Remove data directories other than those in `keep` or pinned by a reader's lease
    (:mod:`funnelrank.store.readers`), deletion bitmaps in them that neither lists, stale leases, and the
    manifest and log writers' leftovers (call under the lock: then no other save is writing any)."""
    leases = scan_leases(root, remove_stale=True)
    keep = {name: set(files) for name, files in keep.items()}
    for name, bitmaps in leases.pinned.items():
        keep.setdefault(name, set()).update(bitmaps)
    # A live reader pinning a commit we cannot read: keep every older file until it lets go.
    for entry in [] if leases.unreadable else root.iterdir():
        if DATA_RE.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                continue
            for bitmap in entry.iterdir():
                if DELETED_RE.fullmatch(bitmap.name) and bitmap.name not in keep[entry.name]:
                    with contextlib.suppress(OSError):
                        bitmap.unlink()
    for leftover in atomic_writer_leftovers(root / MANIFEST) + atomic_writer_leftovers(root / LOG_FILE):
        with contextlib.suppress(OSError):
            leftover.unlink()
