"""Loading a collection: every part verified, one whole generation, safe while another process saves.

A load takes no lock (unless it opens the collection for writing). It reads the manifest
(:mod:`funnelrank.store.manifest`), takes a reader lease on that commit (:mod:`funnelrank.store.readers`: the
writer keeps the files of a leased commit) and then reads the generation the manifest names. Without a lease
(none possible there), when a part of it is missing because saves meanwhile replaced the manifest and removed
that generation, it starts over on the new manifest (up to :data:`LOAD_ATTEMPTS` times). A reader sees one
whole generation, old or new, never a mix.

The documents file's sha256 and document count are verified, each index file verifies its own checksum, and a
data directory holding an HNSW index the manifest does not name (a dense collection whose ``"dense"`` was
edited to null) is refused. Anything missing or corrupt raises :class:`funnelrank.IndexFileError` naming the
file (``manifest.json``, ``docs.jsonl``, ...) and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank._core import BM25Index, HNSWIndex, IndexFileError
from funnelrank.store.docs_file import read_docs
from funnelrank.store.documents import Document
from funnelrank.store.embedders import find_embedder
from funnelrank.store.layout import HNSW_FILE, MANIFEST, open_regular
from funnelrank.store.lock import WriterLock
from funnelrank.store.manifest import manifest_bytes, read_manifest, segment_entries
from funnelrank.store.readers import ReaderLease

__all__ = ["LOAD_ATTEMPTS", "PIN_ATTEMPTS", "StoredCollection", "StoredSegment", "load_collection", "read_commit", "read_deletions"]

LOAD_ATTEMPTS = 5
"""How many manifests a load tries when saves keep replacing the generation it is reading."""
PIN_ATTEMPTS = 20
"""How many times a reader tries to lease the current commit while commits keep replacing it (then it loads the
last one it leased, as an unpinned reader would)."""


@dataclass
class StoredSegment:
    """One segment of a saved collection, read and verified.

    Attributes:
        entry: its manifest entry (:func:`~funnelrank.store.manifest.segment_entries`).
        file_ids: the ids of its documents file, in order.
        documents: its live documents, in order.
        bm25: its BM25 index, with the deleted documents deleted.
        hnsw: its HNSW index (None without one), likewise.
        deleted: the ids its deletion bitmap deletes.
    """

    entry: dict[str, Any]
    file_ids: list[str]
    documents: list[Document]
    bm25: Any
    hnsw: Any | None
    deleted: set[str]


@dataclass
class StoredCollection:
    """The parts of a saved collection, read and verified: what ``Collection.load`` is built from.

    Attributes:
        segments: its segments, in insertion order.
        embedder: the embedder of the HNSW indexes (None without them).
        dense: whether the collection has a dense index.
        lock: the directory's writer lock, when it was loaded for writing (its new owner releases it).
        checksum: the manifest checksum of the commit read (what the write-ahead log following it names).
        generation: the commit's number (0 for a version-2 manifest).
        lease: the reader lease that keeps the commit's files (None: a writer, or no lease was possible; see
            :mod:`funnelrank.store.readers`); its new owner releases it.
    """

    segments: list[StoredSegment]
    embedder: Any | None
    dense: bool
    lock: WriterLock | None = None
    checksum: str = ""
    generation: int = 0
    lease: ReaderLease | None = None

    @property
    def documents(self) -> list[Document]:
        """Every live document, in insertion order."""
        return [doc for seg in self.segments for doc in seg.documents]


def load_collection(
    path: str | os.PathLike[str], *, embedder: Any | None = None, writer: bool = False, pin: bool = True
) -> StoredCollection:
    """Read the collection in directory `path`; see the module docstring. A dense collection's embedder is
    `embedder`, checked by fingerprint, or else found from the manifest. With `writer`, the directory's writer
    lock is taken first (:class:`~funnelrank.store.lock.CollectionLockedError` at once when another writer
    holds it) and handed over in :attr:`StoredCollection.lock`; otherwise, with `pin`, the commit read is
    leased (:mod:`funnelrank.store.readers`) and the lease handed over in :attr:`StoredCollection.lease`."""
    root = Path(path)
    lock = None
    if writer:
        read_manifest(root)  # a collection directory (never drop a lock file anywhere else)
        lock = WriterLock.acquire(root)
    try:
        stored = _load_latest(root, embedder, pin and not writer)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    stored.lock = lock
    return stored


def read_commit(root: Path, manifest: dict[str, Any], errors: list[str] | None = None) -> list[StoredSegment]:
    """The segments of the commit `manifest` names, each part verified (checksums, counts, ids in order,
    dimension, deletion bitmap) and cross-checked; IndexFileError naming the file otherwise. Needs no embedder.
    With `errors`, every problem is appended there instead (a segment that could not be read is then left
    out), so that a check reports them all."""

    def problem(exc: Exception) -> None:
        if errors is None:
            raise exc
        errors.append(str(exc))

    out = []
    seen: set[str] = set()
    for entry in segment_entries(manifest):
        count = len(errors) if errors is not None else 0
        seg = _read_segment(root, entry, manifest, problem)
        if seg is None or (errors is not None and len(errors) > count):
            continue
        repeated = seen.intersection(seg.file_ids)
        if repeated:
            problem(IndexFileError(f"{root / entry['data'] / entry['docs_file']}: id {sorted(repeated)[0]!r} is "
                                   "also in an earlier segment"))
        seen.update(doc.id for doc in seg.documents)
        out.append(seg)
    return out


def _read_segment(root: Path, entry: dict[str, Any], manifest: dict[str, Any],
                  problem: Callable[[Exception], None]) -> StoredSegment | None:
    def load(path: Path, what: str, loader: Callable[[str], Any]) -> Any:
        if not path.is_file():
            problem(IndexFileError(f"{path}: missing {what} index file"))
            return None
        try:
            return loader(str(path))
        except (IndexFileError, ValueError) as exc:
            problem(exc)
            return None

    data = root / entry["data"]
    if not data.is_dir():
        problem(IndexFileError(f"{data}: the collection's data directory is missing"))
        return None
    docs: list[Document] | None = None
    try:
        docs = read_docs(data / entry["docs_file"], entry["docs_sha256"], entry["documents"])
    except IndexFileError as exc:
        problem(exc)
    bm25_path = data / entry["bm25_file"]
    bm25 = load(bm25_path, "BM25", BM25Index.load)
    if bm25 is not None and docs is not None:
        if len(bm25) != len(docs):
            problem(IndexFileError(f"{bm25_path}: holds {len(bm25)} documents, the collection {len(docs)}"))
        elif bm25.ids() != [doc.id for doc in docs]:  # a save writes both in insertion order
            problem(IndexFileError(f"{bm25_path}: its document ids are not those of {entry['docs_file']}, in order"))
    dense = manifest["dense"]
    hnsw = None
    if not dense:
        stray = data / HNSW_FILE
        if os.path.lexists(stray):  # a save writes it only for a dense collection: "dense" was edited away
            problem(IndexFileError(
                f"{root / MANIFEST}: says the collection has no dense index, but its data directory holds "
                f"{stray}; refusing to drop the dense index silently (restore the manifest, or re-index)"
            ))
    else:
        hnsw_path = data / entry["hnsw_file"]
        hnsw = load(hnsw_path, "HNSW", HNSWIndex.load)
        if hnsw is not None and docs is not None and len(hnsw) != len(docs):
            problem(IndexFileError(f"{hnsw_path}: holds {len(hnsw)} vectors, the collection {len(docs)} documents"))
        if hnsw is not None and int(hnsw.dim) != dense["embedder"]["dim"]:
            problem(IndexFileError(
                f"{hnsw_path}: holds {hnsw.dim}-dimensional vectors, the manifest says {dense['embedder']['dim']}"
            ))
    if docs is None or bm25 is None or (dense and hnsw is None):
        return None
    file_ids = [doc.id for doc in docs]
    deleted: set[str] = set()
    if entry["deleted"] is not None:
        try:
            deleted = read_deletions(data / entry["deleted"]["file"], entry["deleted"], file_ids)
        except IndexFileError as exc:
            problem(exc)
            return None
        gone = [i for i in file_ids if i in deleted]
        bm25.delete(gone)
        if hnsw is not None:
            hnsw.delete(gone)
        docs = [doc for doc in docs if doc.id not in deleted]
    return StoredSegment(entry, file_ids, docs, bm25, hnsw, deleted)


def read_deletions(path: Path, entry: dict[str, Any], file_ids: list[str]) -> set[str]:
    """The ids a deletion bitmap deletes, verified against its manifest `entry` (sha256, count) and the
    segment's documents (one bit per document, padding zero); IndexFileError naming the file otherwise."""
    try:
        with open_regular(path) as fh:
            raw = fh.read(len(file_ids) // 8 + 2)
    except OSError as exc:
        raise IndexFileError(f"{path}: missing or unreadable deletion bitmap ({exc.strerror or exc})") from None
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise IndexFileError(f"{path}: deletion bitmap is corrupt (checksum mismatch)")
    if len(raw) != (len(file_ids) + 7) // 8:
        raise IndexFileError(f"{path}: deletion bitmap has {len(raw)} bytes for {len(file_ids)} documents")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[len(file_ids):].any() or int(bits.sum()) != entry["count"]:
        raise IndexFileError(f"{path}: deletion bitmap does not delete the {entry['count']} documents the manifest "
                             "says")
    return {file_ids[i] for i in np.flatnonzero(bits[: len(file_ids)])}


def _load_generation(
    root: Path, manifest: dict[str, Any], embedder: Any | None, found: dict[str, Any]
) -> StoredCollection:
    """The collection commit `manifest` names (`found` caches embedders found from manifests)."""
    segments = read_commit(root, manifest)
    dense = manifest["dense"]
    if dense:
        identity = dense["embedder"]
        if embedder is None:
            key = json.dumps(identity, sort_keys=True)
            if key not in found:
                found[key] = find_embedder(identity, root / MANIFEST)
            embedder = found[key]
        elif identity["fingerprint"] and getattr(embedder, "fingerprint", None) != identity["fingerprint"]:
            raise ValueError(
                f"{root}: embedder {getattr(embedder, 'name', '?')!r} is not the one the collection was built "
                f"with ({identity['name']!r}); its vectors would not match the index"
            )
    return StoredCollection(segments=segments, embedder=embedder if dense else None, dense=bool(dense),
                            checksum=manifest["checksum"], generation=manifest.get("generation", 0))


def _load_latest(root: Path, embedder: Any | None, pin: bool) -> StoredCollection:
    """The generation of the latest manifest, pinned by a reader lease when `pin` (and leases are possible
    there); unpinned, it starts over when a save removed the one being read."""
    found: dict[str, Any] = {}
    attempt = 0
    while True:
        attempt += 1
        raw, manifest = read_manifest(root)
        lease = ReaderLease.take(root, raw, manifest.get("generation", 0)) if pin else None
        # Pinned only if the manifest is still the same once the lease exists: the cleanup after any later
        # commit then sees the lease. Otherwise a commit landed meanwhile: let go and lease the new one.
        if lease is not None and manifest_bytes(root) != raw and attempt < PIN_ATTEMPTS:
            lease.release()
            continue
        try:
            stored = _load_generation(root, manifest, embedder, found)
        except IndexFileError:
            if lease is not None:
                lease.release()
            # A save may have replaced the manifest and removed this generation while we read it: then the
            # new manifest names a complete generation; try it. An unchanged manifest means real damage.
            if attempt >= LOAD_ATTEMPTS or manifest_bytes(root) == raw:
                raise
            continue
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        stored.lease = lease
        return stored
