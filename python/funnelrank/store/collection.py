"""`Collection`: documents (string id, text, optional JSON metadata) with the stage-1 indexes over them.

A collection holds a BM25 inverted index and, when dense retrieval is on, an HNSW index over the
documents' embeddings from a bi-encoder (:class:`funnelrank.embed.Embedder`). Metadata is indexed by
:class:`funnelrank.retrieve.filters.MetadataIndex` so that filters resolve to an allow-list of ids that both
stage-1 searches honour.

On disk a collection is one directory (see :mod:`funnelrank.store.format`): ``save`` is atomic as a
whole (a load running meanwhile sees the old or the new collection, never a mix), ``load`` checks every part
and raises :class:`funnelrank.IndexFileError` on a missing or corrupt one. A directory has one writer at a
time: the collection that saved into it (or loaded it with ``writer=True``) holds its writer lock until
``close()``; another writer gets :class:`funnelrank.store.format.CollectionLockedError` at once.
"""

from __future__ import annotations

import copy
import operator
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from funnelrank.checks import check_text
from funnelrank.retrieve.filters import MetadataIndex, validate_metadata
from funnelrank.store.documents import Document, copy_document

__all__ = ["Collection", "Document"]

PROGRESS_MIN_DOCS = 5000
"""Indexing at least this many documents at once shows progress bars (unless told otherwise)."""
_ADD_CHUNK = 2048
"""Documents per BM25 add call when showing progress (the index grows incrementally)."""


def _check_ids(ids: Any, what: str) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of str, not a single string")
    out = list(ids)
    seen: set[str] = set()
    for i, doc_id in enumerate(out):
        check_text(doc_id, f"{what}[{i}]", type_error=ValueError)
        if not doc_id:
            raise ValueError(f"{what}[{i}] is empty")
        if doc_id in seen:
            raise ValueError(f"{what} repeats {doc_id!r}")
        seen.add(doc_id)
    return out


def _clamp_k(k: Any, size: int) -> Any:
    """`k` capped at `size` (at least 1): asking for more hits than there are documents returns them all, and
    must not make the core allocate for 10**12 results. A `k` that is not an integer, or is below 1, is passed
    on unchanged for the core to refuse."""
    if isinstance(k, bool):
        return k
    try:
        value = operator.index(k)
    except TypeError:
        return k
    cap = max(int(size), 1)
    return cap if value > cap else k


def _default_embedder() -> Any | None:
    """The default bi-encoder, or None when it is not available on this machine."""
    try:
        from funnelrank.embed import Embedder
    except ImportError:
        return None
    try:
        return Embedder.default()
    except (FileNotFoundError, ValueError):
        return None


class Collection:
    """Documents plus their stage-1 indexes (BM25, and HNSW over embeddings when `dense`).

    Args:
        dense: build the dense (HNSW) index. ``None`` (default) means "when an embedder is available":
            the given `embedder`, else the default all-MiniLM-L6-v2 if it is installed.
        embedder: the bi-encoder for documents and queries (anything with ``embed(texts, show_progress=)``,
            ``embed_query(text)``, ``dim``, ``name`` and ``fingerprint``).
        bm25: keyword arguments for :class:`funnelrank.core.BM25Index` (``k1``, ``b``, ``analyzer``).
        hnsw: keyword arguments for :class:`funnelrank.core.HNSWIndex` (``M``, ``ef_construction``, ``ef_search``).

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
                embedder = _default_embedder()
            dense = embedder is not None
        elif dense and embedder is None:
            embedder = _default_embedder()
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
        self._writer_locks: dict[str, Any] = {}  # directory -> collection_store.WriterLock

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
        `show_progress` (default: when adding at least :data:`PROGRESS_MIN_DOCS` documents) shows
        progress bars for embedding and indexing.

        `vectors` (``[len(ids), dim]``, a dense collection only) are the documents' embeddings, already
        computed by this collection's embedder: they are indexed as given instead of embedding `texts`
        (ValueError for the wrong shape or a non-finite value).
        """
        ids = _check_ids(ids, "ids")
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be a sequence of str, not a single string")
        texts = list(texts)
        if len(texts) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(texts)} texts")
        for i, text in enumerate(texts):
            check_text(text, f"texts[{i}] (id {ids[i]!r})", type_error=ValueError)
        metas: list[dict[str, Any]]
        if metadata is None:
            metas = [{} for _ in ids]
        else:
            metadata = list(metadata)
            if len(metadata) != len(ids):
                raise ValueError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
            metas = [
                {} if m is None else copy.deepcopy(validate_metadata(m, where=f"metadata[{i}] (id {ids[i]!r})"))
                for i, m in enumerate(metadata)
            ]
        given = None
        if vectors is not None:
            if self._hnsw is None:
                raise ValueError("vectors given, but this collection has no dense index (dense=False)")
            given = np.ascontiguousarray(vectors, dtype=np.float32)
            if given.ndim != 2 or given.shape != (len(ids), int(self._hnsw.dim)):
                raise ValueError(f"vectors must have shape ({len(ids)}, {self._hnsw.dim}), got {given.shape}")
            if not np.isfinite(given).all():
                raise ValueError("vectors hold a NaN or infinite value")
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
                if embedding_cache is not None:
                    from funnelrank.embed import embed_corpus

                    raw, _ = embed_corpus(self.embedder, ids, texts, label=embedding_cache, show_progress=progress)
                else:
                    raw = self.embedder.embed(texts, show_progress=progress, desc="embed documents")
                vectors = np.ascontiguousarray(raw, dtype=np.float32)
            self._add_bm25(ids, texts, progress)
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

    def _add_bm25(self, ids: list[str], texts: list[str], progress: bool) -> None:
        if not progress:
            self._bm25.add(ids, texts)
            return
        from tqdm import tqdm

        done = 0
        try:
            with tqdm(total=len(ids), desc="index BM25", unit="doc", file=sys.stderr) as bar:
                for start in range(0, len(ids), _ADD_CHUNK):
                    self._bm25.add(ids[start : start + _ADD_CHUNK], texts[start : start + _ADD_CHUNK])
                    done = start + len(ids[start : start + _ADD_CHUNK])
                    bar.update(len(ids[start : start + _ADD_CHUNK]))
        except BaseException:
            if done:
                self._bm25.delete(ids[:done])
            raise

    def add_documents(self, documents: Iterable[Document | Mapping[str, Any]], **kwargs: Any) -> None:
        """Add :class:`Document` objects or ``{"id", "text", "metadata"?}`` dicts (see :meth:`add`)."""
        ids: list[str] = []
        texts: list[str] = []
        metas: list[Mapping[str, Any] | None] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, Document):
                ids.append(doc.id)
                texts.append(doc.text)
                metas.append(doc.metadata)
            elif isinstance(doc, Mapping):
                if "id" not in doc or "text" not in doc:
                    raise ValueError(f"document {i} needs 'id' and 'text' fields, has {sorted(doc)}")
                ids.append(doc["id"])
                texts.append(doc["text"])
                metas.append(doc.get("metadata"))
            else:
                raise ValueError(f"document {i} must be a Document or a dict, got {type(doc).__name__}")
        self.add(ids, texts, metas, **kwargs)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents by id. All-or-nothing: an unknown id raises KeyError, an empty or repeated one
        ValueError, and nothing is deleted."""
        ids = _check_ids(ids, "ids")
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
        return self._bm25.search(query, k=_clamp_k(k, len(self._bm25)), allow=allow)

    def search_bm25_batch(
        self, queries: Sequence[str], k: int, allow: list[str] | None = None
    ) -> list[tuple[list[str], np.ndarray]]:
        """BM25 top-`k` for many queries (parallel in the core; `allow` is resolved once for all of them; `k` is
        capped at the collection's size as in :meth:`search_bm25`)."""
        return list(self._bm25.search_batch(list(queries), k=_clamp_k(k, len(self._bm25)), allow=allow))

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
        return list(self._bm25.search_global(list(queries), k=_clamp_k(k, len(self._bm25)), documents=documents,
                                             total_length=total_length, df=dict(df), allow=allow))

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored (L2-normalised) embeddings of `ids`, ``[len(ids), dim]``; KeyError for an id without one.
        Adding them with ``add(..., vectors=)`` to a collection with the same embedder indexes the same vectors."""
        if self._hnsw is None:
            raise ValueError("this collection has no dense index (it was built with dense=False)")
        return np.asarray(self._hnsw.vectors(list(ids)), dtype=np.float32)

    def empty_like(self) -> Collection:
        """A new, empty collection with this one's embedder and BM25 / HNSW parameters."""
        return Collection(dense=self.dense, embedder=self.embedder, bm25=self._bm25_params, hnsw=self._hnsw_params)

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
        """(k, ef) for an HNSW search: both capped at the number of live vectors (ef None: the index's own
        ef_search, when that is no wider than the index)."""
        assert self._hnsw is not None
        size = len(self._hnsw)
        k = _clamp_k(k, size)
        widest = max(size, k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else 1)
        return k, (widest if int(self._hnsw.ef_search) > widest else None)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save to directory `path`, atomically as a whole (see :mod:`funnelrank.store.format`).

        The first save into a directory takes its writer lock (``DIR/.save.lock``) and this collection keeps it
        until :meth:`close`: while it does, another writer (another process, or another collection object)
        saving into `path` or loading it with ``writer=True`` gets
        :class:`~funnelrank.store.format.CollectionLockedError` at once, naming the directory and this
        process's pid. Processes loading from it meanwhile get the old or the new collection. The replaced
        generation's data is kept until the next save (for readers still on it), so the directory holds up to
        two copies of the data.

            >>> col.save("my-collection")      # doctest: +SKIP
            >>> col.close()                    # doctest: +SKIP  (another process may now write it)
        """
        from funnelrank.store.format import save_collection

        with self._write_lock:
            save_collection(self, path, self._writer_locks)

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
        writer holding it is a :class:`~funnelrank.store.format.CollectionLockedError`. Readers
        (the default) take no lock and are never blocked.

            >>> with Collection.load("my-collection", writer=True) as col:   # doctest: +SKIP
            ...     col.add(["new"], ["a new document"])
            ...     col.save("my-collection")
        """
        from funnelrank.store.format import load_collection

        return load_collection(cls, path, embedder=embedder, writer=writer)

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
