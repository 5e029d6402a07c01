"""The stage-1 building blocks of a :class:`~funnelrank.store.collection.Collection` (a base class it inherits):
filters resolved to allow-lists, BM25 searches (alone, batched, or as one shard of a larger corpus with global
statistics) and dense searches over its HNSW index, with ``k`` and the beam capped at what the indexes hold."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from funnelrank.retrieve.filters import MetadataIndex
from funnelrank.store.documents import Document
from funnelrank.store.inputs import clamp_k, dense_limits

if TYPE_CHECKING:
    from funnelrank._core import BM25Index

__all__ = ["CollectionSearch"]


class CollectionSearch:
    """Searches over a collection's indexes (see :class:`~funnelrank.store.collection.Collection`, which sets
    the attributes below)."""

    embedder: Any | None
    _bm25: BM25Index
    _hnsw: Any | None
    _docs: dict[str, Document]
    _meta: MetadataIndex
    _write_lock: threading.Lock

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
