"""Loading a collection: every part verified, one whole generation, safe while another process saves.

A load takes no lock (unless it opens the collection for writing). It reads the manifest
(:mod:`funnelrank.store.manifest`), then the generation the manifest names; when a part of it is missing because
saves meanwhile replaced the manifest and removed that generation, it starts over on the new manifest (up to
:data:`LOAD_ATTEMPTS` times). A reader sees one whole generation, old or new, never a mix.

The documents file's sha256 and document count are verified, each index file verifies its own checksum, and a
data directory holding an HNSW index the manifest does not name (a dense collection whose ``"dense"`` was
edited to null) is refused. Anything missing or corrupt raises :class:`funnelrank.IndexFileError` naming the
file (``manifest.json``, ``docs.jsonl``, ...) and what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnelrank._core import BM25Index, HNSWIndex, IndexFileError
from funnelrank.store.docs_file import read_docs
from funnelrank.store.documents import Document
from funnelrank.store.embedders import find_embedder
from funnelrank.store.layout import HNSW_FILE, MANIFEST
from funnelrank.store.lock import WriterLock
from funnelrank.store.manifest import manifest_bytes, read_manifest

__all__ = ["LOAD_ATTEMPTS", "StoredCollection", "load_collection", "read_generation"]

LOAD_ATTEMPTS = 5
"""How many manifests a load tries when saves keep replacing the generation it is reading."""


@dataclass
class StoredCollection:
    """The parts of a saved collection, read and verified: what ``Collection.load`` is built from.

    Attributes:
        documents: the documents, in insertion order.
        bm25: the BM25 index (:class:`funnelrank.core.BM25Index`).
        hnsw: the HNSW index (:class:`funnelrank.core.HNSWIndex`), or None for a collection without one.
        embedder: the embedder of the HNSW index (None without one).
        lock: the directory's writer lock, when it was loaded for writing (its new owner releases it).
        checksum: the manifest checksum of the commit read (what the write-ahead log following it names).
    """

    documents: list[Document]
    bm25: Any
    hnsw: Any | None
    embedder: Any | None
    lock: WriterLock | None = None
    checksum: str = ""


def load_collection(
    path: str | os.PathLike[str], *, embedder: Any | None = None, writer: bool = False
) -> StoredCollection:
    """Read the collection in directory `path`; see the module docstring. A dense collection's embedder is
    `embedder`, checked by fingerprint, or else found from the manifest. With `writer`, the directory's writer
    lock is taken first (:class:`~funnelrank.store.lock.CollectionLockedError` at once when another writer
    holds it) and handed over in :attr:`StoredCollection.lock`."""
    root = Path(path)
    lock = None
    if writer:
        read_manifest(root)  # a collection directory (never drop a lock file anywhere else)
        lock = WriterLock.acquire(root)
    try:
        stored = _load_latest(root, embedder)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    stored.lock = lock
    return stored


def read_generation(
    root: Path, manifest: dict[str, Any], errors: list[str] | None = None
) -> tuple[list[Document], Any, Any | None]:
    """(documents, BM25 index, HNSW index or None) of the generation `manifest` names, each part verified
    (checksums, counts, ids in order, dimension) and cross-checked; IndexFileError naming the file otherwise.
    Needs no embedder. With `errors`, every problem is appended there instead (the parts that could not be
    read are then None / empty), so that a check reports them all."""

    def problem(exc: Exception) -> None:
        if errors is None:
            raise exc
        errors.append(str(exc))

    def load(path: Path, what: str, loader: Callable[[str], Any]) -> Any:
        if not path.is_file():
            problem(IndexFileError(f"{path}: missing {what} index file"))
            return None
        try:
            return loader(str(path))
        except (IndexFileError, ValueError) as exc:
            problem(exc)
            return None

    data = root / manifest["data"]
    if not data.is_dir():
        problem(IndexFileError(f"{data}: the collection's data directory is missing"))
        return [], None, None
    docs: list[Document] | None = None
    try:
        docs = read_docs(data / manifest["docs"]["file"], manifest["docs"]["sha256"], manifest["documents"])
    except IndexFileError as exc:
        problem(exc)
    bm25_path = data / manifest["bm25"]["file"]
    bm25 = load(bm25_path, "BM25", BM25Index.load)
    if bm25 is not None and docs is not None:
        if len(bm25) != len(docs):
            problem(IndexFileError(f"{bm25_path}: holds {len(bm25)} documents, the collection {len(docs)}"))
        elif bm25.ids() != [doc.id for doc in docs]:  # a save writes both in insertion order
            problem(IndexFileError(
                f"{bm25_path}: its document ids are not those of {manifest['docs']['file']}, in order"
            ))
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
        hnsw_path = data / dense["file"]
        hnsw = load(hnsw_path, "HNSW", HNSWIndex.load)
        if hnsw is not None and docs is not None and len(hnsw) != len(docs):
            problem(IndexFileError(
                f"{hnsw_path}: holds {len(hnsw)} vectors, the collection {len(docs)} documents"
            ))
        if hnsw is not None and int(hnsw.dim) != dense["embedder"]["dim"]:
            problem(IndexFileError(
                f"{hnsw_path}: holds {hnsw.dim}-dimensional vectors, the manifest says {dense['embedder']['dim']}"
            ))
    return docs or [], bm25, hnsw


def _load_generation(
    root: Path, manifest: dict[str, Any], embedder: Any | None, found: dict[str, Any]
) -> StoredCollection:
    """The collection generation `manifest` names (`found` caches embedders found from manifests)."""
    docs, bm25, hnsw = read_generation(root, manifest)
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
    return StoredCollection(documents=docs, bm25=bm25, hnsw=hnsw, embedder=embedder if hnsw is not None else None,
                            checksum=manifest["checksum"])


def _load_latest(root: Path, embedder: Any | None) -> StoredCollection:
    """The generation of the latest manifest, starting over when a save removed the one being read."""
    found: dict[str, Any] = {}
    attempt = 0
    while True:
        attempt += 1
        raw, manifest = read_manifest(root)
        try:
            return _load_generation(root, manifest, embedder, found)
        except IndexFileError:
            # A save may have replaced the manifest and removed this generation while we read it: then the
            # new manifest names a complete generation; try it. An unchanged manifest means real damage.
            if attempt >= LOAD_ATTEMPTS or manifest_bytes(root) == raw:
                raise
