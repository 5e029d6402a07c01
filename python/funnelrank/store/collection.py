"""`Collection`: documents (string id, text, optional JSON metadata) with the stage-1 indexes over them.

A collection holds a BM25 inverted index and, when dense retrieval is on, an HNSW index over the
documents' embeddings from a bi-encoder (:class:`funnelrank.embed.Embedder`). Metadata is indexed by
:class:`funnelrank.retrieve.filters.MetadataIndex` so that filters resolve to an allow-list of ids that both
stage-1 searches honour.

On disk a collection is one directory (see :mod:`funnelrank.store.layout`): ``save`` is atomic as a
whole (:mod:`funnelrank.store.save`: a load running meanwhile sees the old or the new collection, never a mix),
``load`` checks every part (:mod:`funnelrank.store.load`) and raises :class:`funnelrank.IndexFileError` on a
missing or corrupt one. A directory has one writer at a time: the collection that saved into it (or loaded it
with ``writer=True``) holds its writer lock until ``close()``; another writer gets
:class:`funnelrank.store.lock.CollectionLockedError` at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.retrieve.filters import MetadataIndex
from funnelrank.store.documents import Document, copy_document
from funnelrank.store.embedders import default_embedder_or_none
from funnelrank.store.indexing import PROGRESS_MIN_DOCS, add_to_bm25, embed_documents
from funnelrank.store.inputs import check_additions, check_ids, clamp_k, dense_limits, document_columns
from funnelrank.store.load import load_collection
from funnelrank.store.lock import WriterLock, lock_key
from funnelrank.store.save import save_collection

__all__ = ["Collection", "Document"]

class Collection:
    """Documents plus their stage-1 indexes (BM25, and HNSW over embeddings when `dense`).

    Args:
        dense: build the dense (HNSW) index. ``None`` (default) means "when an embedder is available":
            the given `embedder`, else the default all-MiniLM-L6-v2 if it is installed.
        embedder: the bi-encoder for documents and queries (anything with ``embed(texts, show_progress=)``,
            ``embed_query(text)``, ``dim``, ``name`` and ``fingerprint``).
        bm25: keyword arguments for :class:`funnelrank.core.BM25Index` (``k1``, ``b``, ``analyzer``).
        hnsw: keyword arguments for :class:`funnelrank.core.HNSWIndex` (``M``, ``ef_construction``, ``ef_search``,
            ``storage``: ``"f32"`` (default), ``"f16"`` or ``"int8"``; saved with the index and kept by ``load``).

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
    ) -> None:
        from funnelrank._core import BM25Index

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
        self._bm25 = BM25Index(**self._bm25_params)
        self._hnsw: Any | None = self._new_hnsw() if dense else None
        self._docs: dict[str, Document] = {}
        self._meta = MetadataIndex()
        self._write_lock = threading.Lock()
        self._writer_locks: dict[str, WriterLock] = {}  # lock_key(directory) -> its lock

    def _new_hnsw(self) -> Any:
        from funnelrank._core import HNSWIndex

        assert self.embedder is not None
        return HNSWIndex(int(self.embedder.dim), metric="cosine", **self._hnsw_params)

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
            add_to_bm25(self._bm25, ids, texts, progress=progress)
            if vectors is not None:
                try:
                    self._hnsw.add(ids, vectors)  # type: ignore[union-attr]
                except BaseException:
                    self._bm25.delete(ids)
                    raise
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
        if dense and self._hnsw is not None:
            try:
                self._hnsw.delete(ids)
            except Exception:  # noqa: BLE001
                pass
        try:
            self._bm25.delete(ids)
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
            self._bm25.delete(ids)
            if self._hnsw is not None:
                self._hnsw.delete(ids)
            for doc_id in ids:
                doc = self._docs.pop(doc_id)
                self._meta.remove(doc_id, doc.metadata)

    # ------------------------------------------------------------------ stage-1 building blocks

    def allowed_ids(self, filter: Mapping[str, Any] | None, *, sort: bool = True) -> list[str] | None:
        """The ids matching a metadata `filter` (see :mod:`funnelrank.retrieve.filters`), sorted unless `sort` is
        False; None when there is no filter or every document matches (no restriction needed).

        Searches treat an allow-list as a set, so its order changes no result: the pipeline skips the sort,
        which is most of the cost of a filter that matches many documents (2.1 of 2.3 ms for 10,000 ids).

        Raises ValueError for a malformed filter.
        """
        if filter is None:
            return None
        with self._write_lock:  # a consistent view while another thread adds or deletes
            allowed = self._meta.resolve(filter, self._docs)
            total = len(self._docs)
        if len(allowed) == total:
            return None
        return sorted(allowed) if sort else list(allowed)

    def search_bm25(
        self, query: str, k: int, allow: list[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """BM25 top-`k` (ids, scores), restricted to the ids in `allow` when given (ids not in the collection,
        e.g. deleted since `allow` was resolved, are ignored).

        `k` larger than the collection is capped at its size (every match is returned; ``k=10**12`` costs no
        more than ``k=len(collection)``); `k` below 1 is a ValueError."""
        return self._bm25.search(query, k=clamp_k(k, len(self._bm25)), allow=allow)

    def search_bm25_batch(
        self, queries: Sequence[str], k: int, allow: list[str] | None = None
    ) -> list[tuple[list[str], np.ndarray]]:
        """BM25 top-`k` for many queries (parallel in the core; `allow` is resolved once for all of them; `k` is
        capped at the collection's size as in :meth:`search_bm25`)."""
        return list(self._bm25.search_batch(list(queries), k=clamp_k(k, len(self._bm25)), allow=allow))

    def bm25_corpus_stats(self) -> tuple[int, int]:
        """(documents, their total length in analyzed terms): this collection's share of a sharded corpus's
        BM25 statistics (:mod:`funnelrank.retrieve.sharded`), e.g. ``(2, 7)``."""
        return self._bm25.corpus_stats()

    def bm25_doc_freqs(self, queries: Sequence[str]) -> dict[str, int]:
        """Every analyzed term of `queries` -> the documents here holding it (0 when none), e.g.
        ``{"cat": 2, "sleep": 1}``: what a shard reports for global BM25 statistics."""
        terms: dict[str, None] = {}
        for q in queries:
            terms.update(dict.fromkeys(self._bm25.query_terms(q)))
        names = list(terms)
        return dict(zip(names, self._bm25.doc_freqs(names)))

    def search_bm25_global(
        self, queries: Sequence[str], k: int, allow: list[str] | None = None, *, documents: int, total_length: int,
        df: Mapping[str, int],
    ) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
        """BM25 top-`k` for many queries scored with a whole corpus's statistics (this collection being one shard
        of it): ``BM25Index.search_global``. Each result is (ids, float32 scores, float64 exact scores)."""
        return list(self._bm25.search_global(list(queries), k=clamp_k(k, len(self._bm25)), documents=documents,
                                             total_length=total_length, df=dict(df), allow=allow))

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored (L2-normalised) embeddings of `ids`, ``[len(ids), dim]``; KeyError for an id without one.
        Adding them with ``add(..., vectors=)`` to a collection with the same embedder indexes the same vectors."""
        if self._hnsw is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        return np.asarray(self._hnsw.vectors(list(ids)), dtype=np.float32)

    def empty_like(self, *, storage: str | None = None) -> Collection:
        """A new, empty collection with this one's embedder and BM25 / HNSW parameters (`storage`: another HNSW
        vector storage for it, ``"f32"``, ``"f16"`` or ``"int8"``; default this one's)."""
        hnsw = self._hnsw_params if storage is None else {**self._hnsw_params, "storage": storage}
        return Collection(dense=self.dense, embedder=self.embedder, bm25=self._bm25_params, hnsw=hnsw)

    @property
    def hnsw_storage(self) -> str | None:
        """How the HNSW index stores its vectors (``"f32"``, ``"f16"`` or ``"int8"``); None without one."""
        return None if self._hnsw is None else str(self._hnsw.storage)

    def embed_query(self, query: str) -> np.ndarray:
        """The query's embedding (the collection must be dense)."""
        if self.embedder is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        return np.asarray(self.embedder.embed_query(query), dtype=np.float32)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embeddings of many queries, ``[n, dim]``."""
        if self.embedder is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        return np.asarray(self.embedder.embed(list(queries)), dtype=np.float32)

    def search_dense(
        self, vector: np.ndarray, k: int, allow: list[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """HNSW top-`k` (ids, cosine scores) for a query vector, restricted to the ids in `allow` when given
        (ids not in the collection are ignored, as in :meth:`search_bm25`).

        `k` is capped at the collection's size, and so is the search beam (``ef_search``, e.g. from
        ``Collection(hnsw={"ef_search": ...})``): a beam wider than the index holds nothing more, so the
        results are the same, without allocating for 2**40 entries."""
        if self._hnsw is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        k, ef = self._dense_limits(k)
        return self._hnsw.search(vector, k=k, ef=ef, allow=allow)  # type: ignore[no-any-return]

    def search_dense_batch(
        self, vectors: np.ndarray, k: int, allow: list[str] | None = None
    ) -> list[tuple[list[str], np.ndarray]]:
        """HNSW top-`k` for many query vectors (parallel in the core; `allow` is resolved once for all of them;
        `k` and the beam are capped as in :meth:`search_dense`)."""
        if self._hnsw is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        k, ef = self._dense_limits(k)
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        return list(self._hnsw.search_batch(matrix, k=k, ef=ef, allow=allow))

    def _dense_limits(self, k: Any) -> tuple[Any, int | None]:
        """(k, ef) for an HNSW search: both capped at the number of live vectors
        (:func:`~funnelrank.store.inputs.dense_limits`)."""
        assert self._hnsw is not None
        return dense_limits(k, len(self._hnsw), int(self._hnsw.ef_search))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save to directory `path`, atomically as a whole (see :mod:`funnelrank.store.save`).

        The first save into a directory takes its writer lock (``DIR/.save.lock``) and this collection keeps it
        until :meth:`close`: while it does, another writer (another process, or another collection object)
        saving into `path` or loading it with ``writer=True`` gets
        :class:`~funnelrank.store.lock.CollectionLockedError` at once, naming the directory and this
        process's pid. Processes loading from it meanwhile get the old or the new collection. The replaced
        generation's data is kept until the next save (for readers still on it), so the directory holds up to
        two copies of the data.

            >>> col.save("my-collection")      # doctest: +SKIP
            >>> col.close()                    # doctest: +SKIP  (another process may now write it)
        """
        with self._write_lock:
            save_collection(path, documents=list(self._docs.values()), bm25=self._bm25, hnsw=self._hnsw,
                            embedder=self.embedder, locks=self._writer_locks)

    def close(self) -> None:
        """Release the writer lock of every directory this collection saved into or was loaded from with
        ``writer=True`` (idempotent). The collection stays usable; a later :meth:`save` takes the lock again."""
        with self._write_lock:
            locks, self._writer_locks = list(self._writer_locks.values()), {}
        for lock in locks:
            lock.release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embedder: Any | None = None, writer: bool = False) -> Collection:
        """Load a collection saved with :meth:`save`.

        A dense collection needs the same embedder it was built with: pass it, or it is found from the
        manifest (the default all-MiniLM-L6-v2, or the model directory recorded at save time) and checked
        by fingerprint. Raises :class:`funnelrank.IndexFileError` for a missing or corrupt part (the manifest
        included: it is checksummed and strictly checked). Safe while another process saves into `path`.

        `writer=True` opens it for writing: the directory's writer lock is taken before reading (so no other
        writer can change it between this load and the next save) and kept until :meth:`close`; another
        writer holding it is a :class:`~funnelrank.store.lock.CollectionLockedError`. Readers
        (the default) take no lock and are never blocked.

            >>> with Collection.load("my-collection", writer=True) as col:   # doctest: +SKIP
            ...     col.add(["new"], ["a new document"])
            ...     col.save("my-collection")
        """
        stored = load_collection(path, embedder=embedder, writer=writer)
        try:
            collection = cls._from_parts(docs=stored.documents, bm25_index=stored.bm25, hnsw_index=stored.hnsw,
                                         embedder=stored.embedder, bm25_params={},
                                         hnsw_params={} if stored.hnsw is None else {"storage": stored.hnsw.storage})
        except BaseException:
            if stored.lock is not None:
                stored.lock.release()
            raise
        if stored.lock is not None:
            collection._writer_locks[lock_key(Path(path))] = stored.lock
        return collection

    @classmethod
    def _from_parts(
        cls,
        *,
        docs: list[Document],
        bm25_index: Any,
        hnsw_index: Any | None,
        embedder: Any | None,
        bm25_params: dict[str, Any],
        hnsw_params: dict[str, Any],
    ) -> Collection:
        self = cls.__new__(cls)
        self.embedder = embedder
        self._bm25_params = bm25_params
        self._hnsw_params = hnsw_params
        self._bm25 = bm25_index
        self._hnsw = hnsw_index
        self._docs = {}
        self._meta = MetadataIndex()
        self._write_lock = threading.Lock()
        self._writer_locks = {}
        for doc in docs:
            self._docs[doc.id] = doc
            self._meta.add(doc.id, doc.metadata)
        return self
