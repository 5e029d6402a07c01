"""`Collection`: documents (string id, text, optional JSON metadata) with the stage-1 indexes over them.

A collection holds a BM25 inverted index and, when dense retrieval is on, an HNSW index over the
documents' embeddings from a bi-encoder (:class:`funnelrank.embed.Embedder`). Metadata is indexed by
:class:`funnelrank.retrieve.filters.MetadataIndex` so that filters resolve to an allow-list of ids that both
stage-1 searches honour.

On disk a collection is one directory (see :mod:`funnelrank.store.layout`) of immutable segments named by one
manifest: a commit (:mod:`funnelrank.store.save`) writes only the new segment and the changed deletion bitmaps,
atomically (a load running meanwhile sees the old or the new commit, never a mix); ``load`` checks every part
(:mod:`funnelrank.store.load`) and raises :class:`funnelrank.IndexFileError` on a missing or corrupt one.
Searches run over every segment with global statistics (:mod:`funnelrank.store.segments`). A directory has one
writer at a time: the collection that saved into it (or loaded it with ``writer=True``) holds its writer lock
until ``close()``; another writer gets :class:`funnelrank.store.lock.CollectionLockedError` at once. That
writer logs every add and delete to the directory's write-ahead log before acknowledging it
(:mod:`funnelrank.store.wal`); readers see the last commit only, and keep its files alive until ``close()``
(:mod:`funnelrank.store.readers`).
"""

from __future__ import annotations

import os
import threading
from functools import partial
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.retrieve.filters import MetadataIndex
from funnelrank.store.documents import Document, copy_document
from funnelrank.store.embedders import default_embedder_or_none
from funnelrank.store.indexing import PROGRESS_MIN_DOCS, embed_documents
from funnelrank.store.inputs import check_additions, check_ids, document_columns
from funnelrank.store.load import StoredCollection, load_collection
from funnelrank.store.lock import lock_key
from funnelrank.store.readers import ReaderLease
from funnelrank.store.save import save_collection
from funnelrank.store.searching import CollectionSearch
from funnelrank.store.merge_policy import TieredMergePolicy
from funnelrank.store.segments import Segment, SegmentedBM25, SegmentedHNSW, Segments
from funnelrank.store.wal import LogCorruptError, LogRecord
from funnelrank.store.writer import WriterState

__all__ = ["Collection", "Document"]

class Collection(CollectionSearch):
    """Documents plus their stage-1 indexes (BM25, and HNSW over embeddings when `dense`).

    Args:
        dense: build the dense (HNSW) index. ``None`` (default) means "when an embedder is available":
            the given `embedder`, else the default all-MiniLM-L6-v2 if it is installed.
        embedder: the bi-encoder for documents and queries (anything with ``embed(texts, show_progress=)``,
            ``embed_query(text)``, ``dim``, ``name`` and ``fingerprint``).
        bm25: keyword arguments for :class:`funnelrank.core.BM25Index` (``k1``, ``b``, ``analyzer``).
        hnsw: keyword arguments for :class:`funnelrank.core.HNSWIndex` (``M``, ``ef_construction``, ``ef_search``,
            ``storage``: ``"f32"`` (default), ``"f16"`` or ``"int8"``; saved with the index and kept by ``load``).
        durability: when the write-ahead log of the directory this collection commits into reaches the disk
            (:mod:`funnelrank.store.wal`): ``"fsync"`` (default: before every add or delete returns, so an
            acknowledged write survives a crash of the process or the machine), ``"interval"`` (at most every
            `sync_interval_ms`), ``"off"`` (when the operating system writes it back).
        sync_interval_ms: the flush interval of ``durability="interval"`` (1 to 3,600,000; default 100).

    ``merge_policy`` (an attribute, default :class:`~funnelrank.store.merge_policy.TieredMergePolicy()`) says
    which segments each commit merges, e.g. ``col.merge_policy = TieredMergePolicy(segments_per_tier=4)``.

    Reads (search, get, filters) may run from many threads at once, also while another thread adds or
    deletes; writes are serialized. A search racing a delete may find a just-deleted id in stage 1; the
    pipeline drops it.
    """

    def __init__(
        self,
        *,
        dense: bool | None = None,
        embedder: Any | None = None,
        bm25: Mapping[str, Any] | None = None,
        hnsw: Mapping[str, Any] | None = None,
        durability: str = "fsync",
        sync_interval_ms: int = 100,
    ) -> None:
        from funnelrank._core import BM25Index

        writer = WriterState(durability, sync_interval_ms)  # bad settings fail before anything else

        if dense is None:
            if embedder is None:
                embedder = default_embedder_or_none()
            dense = embedder is not None
        elif dense and embedder is None:
            embedder = default_embedder_or_none()
            if embedder is None:
                raise FileNotFoundError(
                    "dense=True needs an embedder and the default one is not available "
                    "(run `make build`, or pass embedder=funnelrank.embed.Embedder(<model dir>))"
                )
        self.embedder: Any | None = embedder if dense else None
        self._bm25_params = dict(bm25 or {})
        self._hnsw_params = dict(hnsw or {})
        self._docs: dict[str, Document] = {}
        self._meta = MetadataIndex()
        self._write_lock = threading.Lock()
        self._writer = writer
        self._lease: ReaderLease | None = None
        self.merge_policy = TieredMergePolicy()
        self._use_segments(Segments([], partial(BM25Index, **self._bm25_params), self._new_hnsw if dense else None))

    def _new_hnsw(self) -> Any:
        from funnelrank._core import HNSWIndex

        assert self.embedder is not None
        return HNSWIndex(int(self.embedder.dim), metric="cosine", **self._hnsw_params)

    def _use_segments(self, segments: Segments) -> None:
        self._segments = segments
        self._bm25: Any = SegmentedBM25(segments)
        self._hnsw: Any | None = SegmentedHNSW(segments) if segments.make_hnsw is not None else None

    # ------------------------------------------------------------------ contents

    @property
    def dense(self) -> bool:
        """Whether the collection has a dense (HNSW) index."""
        return self._hnsw is not None

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def __iter__(self) -> Iterator[Document]:
        """The documents in insertion order (copies: see :class:`Document`)."""
        return (copy_document(doc) for doc in list(self._docs.values()))

    def ids(self) -> list[str]:
        """Document ids, in insertion order."""
        return list(self._docs)

    def text(self, doc_id: str) -> str:
        """The text of document `doc_id` (what :meth:`get` gives, without copying the metadata); KeyError
        when there is none."""
        try:
            return self._docs[doc_id].text
        except KeyError:
            raise KeyError(f"no document with id {doc_id!r}") from None

    def stored(self, doc_id: str) -> Document | None:
        """The stored document `doc_id` itself, not a copy (None when there is none): for readers that
        only read, such as the retrievers, which hand its metadata on without copying it."""
        return self._docs.get(doc_id)

    def stored_many(self, ids: Iterable[str]) -> list[Document | None]:
        """:meth:`stored` for many ids at once (None for each id with no document)."""
        return list(map(self._docs.get, ids))

    def get(self, doc_id: str) -> Document:
        """The document with id `doc_id` (a copy: see :class:`Document`); KeyError when there is none."""
        try:
            return copy_document(self._docs[doc_id])
        except KeyError:
            raise KeyError(f"no document with id {doc_id!r}") from None

    def __repr__(self) -> str:
        embedder = getattr(self.embedder, "name", None)
        return f"Collection(documents={len(self)}, dense={self.dense}, embedder={embedder!r})"

    # ------------------------------------------------------------------ writes

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        show_progress: bool | None = None,
        embedding_cache: str | None = None,
        vectors: Any | None = None,
    ) -> None:
        """Add documents. All-or-nothing: every input is checked before anything changes.

        `embedding_cache` (a label, e.g. the dataset name) reuses document vectors cached on disk by
        :func:`funnelrank.embed.embed_corpus` for exactly these ids and texts and this embedder (the
        evaluation harness fills the same cache), and caches them otherwise.

        Raises ValueError for an empty, repeated or already present id, a text that is not a valid
        Unicode ``str``, mismatched lengths, or metadata that is not a storable JSON dict (see
        :func:`funnelrank.retrieve.filters.validate_metadata`: no lone surrogates in keys or strings, no NaN/inf or
        integer beyond a double's range, at most :data:`funnelrank.retrieve.filters.MAX_DEPTH` levels deep). A failure
        while indexing (an embedder error, a full disk, KeyboardInterrupt) rolls back whatever was added.
        `show_progress` (default: when adding at least
        :data:`~funnelrank.store.indexing.PROGRESS_MIN_DOCS` documents) shows progress bars for embedding and
        indexing.

        `vectors` (``[len(ids), dim]``, a dense collection only) are the documents' embeddings, already
        computed by this collection's embedder: they are indexed as given instead of embedding `texts`
        (ValueError for the wrong shape or a non-finite value).
        """
        dim = None if self._hnsw is None else int(self._hnsw.dim)
        ids, texts, metas, given = check_additions(ids, texts, metadata, vectors, dim)
        if not ids:
            return
        progress = len(ids) >= PROGRESS_MIN_DOCS if show_progress is None else show_progress

        with self._write_lock:
            present = [doc_id for doc_id in ids if doc_id in self._docs]
            if present:
                raise ValueError(
                    f"{len(present)} id(s) already in the collection, e.g. {present[0]!r} (delete them first)"
                )
            # Embed before touching any index: a failure here changes nothing.
            vectors = given
            if self._hnsw is not None and vectors is None:
                assert self.embedder is not None
                vectors = embed_documents(self.embedder, ids, texts, cache=embedding_cache, progress=progress)
            # Logged before it is applied: once add() returns, the write survives a crash (see durability).
            mark = self._writer.log(LogRecord("add", ids, texts, metas, vectors))
            try:
                self._apply_add(ids, texts, metas, vectors, progress=progress)
            except BaseException:
                self._writer.unlog(mark)
                raise

    def _apply_add(self, ids: list[str], texts: list[str], metas: list[dict[str, Any]], vectors: np.ndarray | None,
                   *, progress: bool) -> None:
        """Index checked new documents (caller holds the write lock); all or nothing."""
        self._segments.add(ids, texts, vectors, progress=progress)
        try:
            for doc_id, text, meta in zip(ids, texts, metas):
                self._docs[doc_id] = Document(doc_id, text, meta)
                self._meta.add(doc_id, meta)
        except BaseException:
            self._undo_add(ids, metas, dense=vectors is not None)
            raise

    def _undo_add(self, ids: list[str], metas: list[dict[str, Any]], *, dense: bool) -> None:
        """Take back a half-done add (caller holds the write lock): every step is tried, so that one
        failing does not leave the others behind; the caller re-raises the original error."""
        for doc_id, meta in zip(ids, metas):
            self._docs.pop(doc_id, None)
            try:
                self._meta.remove(doc_id, meta)
            except Exception:  # noqa: BLE001 - best effort; the original error is what the caller sees
                pass
        try:
            self._segments.delete([doc_id for doc_id in ids if doc_id in self._segments.where])
        except Exception:  # noqa: BLE001
            pass

    def add_documents(self, documents: Iterable[Document | Mapping[str, Any]], **kwargs: Any) -> None:
        """Add :class:`Document` objects or ``{"id", "text", "metadata"?}`` dicts (see :meth:`add`)."""
        ids, texts, metas = document_columns(documents)
        self.add(ids, texts, metas, **kwargs)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents by id. All-or-nothing: an unknown id raises KeyError, an empty or repeated one
        ValueError, and nothing is deleted."""
        ids = check_ids(ids, "ids")
        with self._write_lock:
            missing = [doc_id for doc_id in ids if doc_id not in self._docs]
            if missing:
                raise KeyError(f"{len(missing)} id(s) not in the collection, e.g. {missing[0]!r}")
            if not ids:
                return
            mark = self._writer.log(LogRecord("delete", ids))
            try:
                self._segments.delete(ids)
            except BaseException:
                self._writer.unlog(mark)
                raise
            self._forget(ids)

    def _forget(self, ids: list[str]) -> None:
        """Drop deleted documents' stored copies and metadata (caller holds the write lock)."""
        for doc_id in ids:
            doc = self._docs.pop(doc_id)
            self._meta.remove(doc_id, doc.metadata)

    def empty_like(self, *, storage: str | None = None) -> Collection:
        """A new, empty collection with this one's embedder and BM25 / HNSW parameters (`storage`: another HNSW
        vector storage for it, ``"f32"``, ``"f16"`` or ``"int8"``; default this one's)."""
        hnsw = self._hnsw_params if storage is None else {**self._hnsw_params, "storage": storage}
        return Collection(dense=self.dense, embedder=self.embedder, bm25=self._bm25_params, hnsw=hnsw)

    @property
    def hnsw_storage(self) -> str | None:
        """How the HNSW index stores its vectors (``"f32"``, ``"f16"`` or ``"int8"``); None without one."""
        return None if self._hnsw is None else str(self._hnsw_params.get("storage", "f32"))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Commit to directory `path`, atomically as a whole (see :mod:`funnelrank.store.save`).

        The first save into a directory takes its writer lock (``DIR/.save.lock``) and this collection keeps it
        until :meth:`close`: while it does, another writer (another process, or another collection object)
        saving into `path` or loading it with ``writer=True`` gets
        :class:`~funnelrank.store.lock.CollectionLockedError` at once, naming the directory and this
        process's pid. Processes loading from it meanwhile get the old or the new collection.

        That first directory becomes the collection's *home* (so does the directory of
        ``load(..., writer=True)``): every later add and delete is appended to its write-ahead log
        (``DIR/wal.log``, :mod:`funnelrank.store.wal`) before it returns, and a save into it (:meth:`commit`)
        makes them part of the committed state and starts an empty log. A save into another directory is an
        export (a full copy there, with no log).

            >>> col.save("my-collection")      # doctest: +SKIP
            >>> col.add(["x"], ["logged before add() returns"])   # doctest: +SKIP
            >>> col.commit()                   # doctest: +SKIP  (the same as col.save("my-collection"))
            >>> col.close()                    # doctest: +SKIP  (another process may now write it)
        """
        with self._write_lock:
            root = Path(path)
            key = lock_key(root)
            home = self._writer.home
            adopt = home is None or lock_key(home) == key
            if adopt and self._segments.home == key:
                self._segments.apply_policy(self.merge_policy, self.text)  # tiered: similar sizes together
            checksum = save_collection(root, segments=self._segments, documents=self._docs, embedder=self.embedder,
                                       locks=self._writer.locks, adopt=adopt)
            self._writer.committed(root, checksum)

    def commit(self) -> None:
        """Commit every write since the last commit into the collection's home directory (the one it was
        loaded from with ``writer=True``, or first saved into): ``save(home)``. ValueError when it has none.

            >>> col = Collection.load("my-collection", writer=True)   # doctest: +SKIP
            >>> col.delete(["old"]); col.commit()                     # doctest: +SKIP
        """
        home = self._writer.home
        if home is None:
            raise ValueError("this collection has no home directory to commit into: save(path) it first, or "
                             "open one with Collection.load(path, writer=True)")
        self.save(home)

    def merge(self, max_segments: int = 1) -> None:
        """Fold the collection's segments, the neighbouring pair with the fewest live documents first (so that
        insertion order, and every tie it breaks, is kept), until at most `max_segments` remain; segments whose
        documents were all deleted go first. With a home, the result is committed at once (:meth:`commit`
        writes the folded segments; searches answer the same before and after). Each commit also folds on its
        own what :attr:`merge_policy` asks for (a :class:`~funnelrank.store.merge_policy.TieredMergePolicy`:
        runs of neighbouring segments of similar size).

            >>> col.merge()            # doctest: +SKIP
            >>> col.segment_sizes()    # doctest: +SKIP
            [1000000]
        """
        with self._write_lock:
            changed = self._segments.merge(max_segments, self.text)
        if changed and self._writer.home is not None:
            self.commit()

    def segment_sizes(self) -> list[int]:
        """The live documents of each segment, in insertion order (the last one may be the unwritten segment
        of the documents added since the last commit), e.g. ``[1000000, 10000]``."""
        return [len(seg) for seg in list(self._segments.list) if len(seg) or seg.data is not None]

    @property
    def home(self) -> Path | None:
        """The directory this collection commits into and logs its writes to (None: it has none yet), e.g.
        ``PosixPath('my-collection')``."""
        return self._writer.home

    @property
    def pinned(self) -> int | None:
        """The generation of the commit this reader keeps alive (its lease, :mod:`funnelrank.store.readers`),
        until :meth:`close`; None when it holds none (a writer, a new collection, a closed reader, or a directory
        where no lease could be taken), e.g. ``7``."""
        lease = self._lease
        return lease.generation if lease is not None and lease.held else None

    def close(self) -> None:
        """Flush and close the write-ahead log and release the writer lock of every directory this collection
        saved into or was loaded from with ``writer=True``, and release a reader's lease on the commit it loaded
        (its files may then go at the writer's next commit) (idempotent). Writes not committed stay in the log,
        for the next writer to replay. The collection stays usable in memory, without a home: a later
        :meth:`save` takes a lock again and makes that directory its home."""
        with self._write_lock:
            self._writer.close()
            self._segments.home = None  # without the lock, the directory may change under its segments
            if self._lease is not None:
                self._lease.release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embedder: Any | None = None, writer: bool = False,
             durability: str = "fsync", sync_interval_ms: int = 100) -> Collection:
        """Load a collection saved with :meth:`save`.

        A dense collection needs the same embedder it was built with: pass it, or it is found from the
        manifest (the default all-MiniLM-L6-v2, or the model directory recorded at save time) and checked
        by fingerprint. Raises :class:`funnelrank.IndexFileError` for a missing or corrupt part (the manifest
        included: it is checksummed and strictly checked). Safe while another process saves into `path`.

        Readers (the default) take no lock, are never blocked, and see the last commit only: they never read
        the write-ahead log. A reader keeps the commit it loaded alive (Lucene's point-in-time reader): it holds a
        lease on it (``DIR/.readers/``, :mod:`funnelrank.store.readers`) until :meth:`close` (or the end of a
        ``with`` block, garbage collection, or its process's exit, a crash included), and the writer removes none
        of that commit's files meanwhile, however many commits and merges follow (:attr:`pinned`). Close readers
        you are done with: each open one keeps its commit's files on disk.

        `writer=True` opens it for writing: the directory's writer lock is taken before reading (so no other
        writer can change it meanwhile) and kept until :meth:`close`; another writer holding it is a
        :class:`~funnelrank.store.lock.CollectionLockedError`. The writes logged since the last commit are
        replayed (a torn last record, from a crash while it was being logged, is dropped: it was never
        acknowledged; any other damage to the log is a :class:`~funnelrank.store.wal.LogCorruptError`), and
        the directory becomes the collection's home, logged with `durability` (see :class:`Collection`).

            >>> with Collection.load("my-collection", writer=True) as col:   # doctest: +SKIP
            ...     col.add(["new"], ["a new document"])   # durable once it returns
            ...     col.commit()
            >>> with Collection.load("my-collection") as reader:   # doctest: +SKIP
            ...     reader.pinned                          # its commit's files stay until the block ends
            7
        """
        state = WriterState(durability, sync_interval_ms)
        root = Path(path)
        stored = load_collection(root, embedder=embedder, writer=writer)
        try:
            collection = cls._from_parts(stored, writer=state, home=lock_key(root) if stored.lock else None)
            if stored.lock is not None:
                state.locks[lock_key(root)] = stored.lock
                collection._replay(state.open_home(root, stored.checksum))
        except BaseException:
            state.close()
            if stored.lock is not None:
                stored.lock.release()
            raise
        return collection

    def _replay(self, records: list[LogRecord]) -> None:
        """Apply logged writes on top of the last commit (LogCorruptError when one does not fit it)."""
        with self._write_lock:
            for number, record in enumerate(records, start=1):
                where = f"{self._writer.home}: write-ahead log record {number}"
                if record.kind == "delete":
                    missing = [doc_id for doc_id in record.ids if doc_id not in self._docs]
                    if missing:
                        raise LogCorruptError(f"{where} deletes {missing[0]!r}, which is not in the collection")
                    self._segments.delete(record.ids)
                    self._forget(record.ids)
                    continue
                dim = None if self._hnsw is None else int(self._hnsw.dim)
                try:
                    ids, texts, metas, vectors = check_additions(record.ids, record.texts or [], record.metadata,
                                                                 record.vectors, dim)
                except ValueError as exc:
                    raise LogCorruptError(f"{where}: not an add this collection accepts ({exc})") from None
                present = [doc_id for doc_id in ids if doc_id in self._docs]
                if present or (self._hnsw is not None and vectors is None):
                    raise LogCorruptError(f"{where} does not fit the last commit (id {present[:1]} already there, "
                                          "or no vectors for the dense index)")
                self._apply_add(ids, texts, metas, vectors, progress=False)

    @classmethod
    def _from_parts(cls, stored: StoredCollection, *, writer: WriterState, home: str | None) -> Collection:
        from funnelrank._core import BM25Index, HNSWIndex

        self = cls.__new__(cls)
        self.embedder = stored.embedder
        self._bm25_params = {}
        self._docs = {}
        self._meta = MetadataIndex()
        self._write_lock = threading.Lock()
        self._writer = writer
        self._lease = stored.lease
        self.merge_policy = TieredMergePolicy()
        first = stored.segments[0]
        bm25, hnsw = first.bm25, first.hnsw
        self._hnsw_params = {} if hnsw is None else {"storage": str(hnsw.storage)}
        make_bm25 = partial(BM25Index, k1=bm25.k1, b=bm25.b, analyzer=bm25.analyzer)
        make_hnsw = None if hnsw is None else partial(
            HNSWIndex, int(hnsw.dim), metric=hnsw.metric, M=hnsw.M, ef_construction=hnsw.ef_construction,
            ef_search=hnsw.ef_search, storage=hnsw.storage)
        segments = [Segment(seg.bm25, seg.hnsw, data=seg.entry["data"], file_ids=seg.file_ids,
                            docs_sha256=seg.entry["docs_sha256"], deleted=seg.deleted,
                            deleted_entry=seg.entry["deleted"]) for seg in stored.segments]
        self._use_segments(Segments(segments, make_bm25, make_hnsw, home))
        for doc in stored.documents:
            self._docs[doc.id] = doc
            self._meta.add(doc.id, doc.metadata)
        return self
