"""Stage 1: retrievers behind one protocol, each returning :class:`~funnelrank.candidates.Candidate` objects.

    >>> from funnelrank import Collection
    >>> from funnelrank.retrieve.retrievers import BM25Retriever
    >>> c = Collection(dense=False); c.add(["a", "b"], ["cats sleep on mats", "dogs chase cats"])
    >>> [(x.id, x.rank) for x in BM25Retriever(c).retrieve("cats sleep", k=10).candidates]
    [('a', 1), ('b', 2)]

Every retriever has a ``name`` (the key of its hits in :attr:`Candidate.stage1`) and two calls:
``retrieve(query, k, *, filter=None, query_id=None)`` and ``retrieve_batch(queries, k, *, filter=None,
query_ids=None)``, returning :class:`Retrieved` (the candidates, best first, and per-stage milliseconds).

* :class:`BM25Retriever`, :class:`DenseRetriever`: a :class:`~funnelrank.store.collection.Collection`'s BM25 and
  HNSW indexes; a metadata filter is resolved to an allow-list once per call (once per batch).
* :class:`HybridRetriever`: the fusion (reciprocal-rank or min-max convex) of any two retrievers; over one
  collection the allow-list is shared by both.
* :class:`RunRetriever`: a precomputed run (query id -> ranked document ids), e.g. a dataset's BM25 run.

:func:`make_retriever` builds the collection retrievers by name (``"bm25"``, ``"dense"``, ``"hybrid"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from funnelrank.candidates import Candidate, CandidateList, Stage1Hit

Hits = tuple[Sequence[str], Any]
"""A retriever's raw top-k: (ids, scores as a float32 array), best first."""
from funnelrank.checks import check_k, check_text

__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "CollectionRetriever",
    "DenseRetriever",
    "HybridRetriever",
    "Retrieved",
    "Retriever",
    "RunRetriever",
    "make_retriever",
]

RETRIEVERS: tuple[str, ...] = ("hybrid", "bm25", "dense")
"""The retrievers :func:`make_retriever` builds over a collection."""

HYBRID_METHODS: tuple[str, ...] = ("rrf", "convex")
"""How :class:`HybridRetriever` fuses: reciprocal ranks, or min-max normalised scores."""

@dataclass
class Retrieved:
    """What a retriever returns for one query: `candidates` best first, and milliseconds per stage
    (``filter``, ``bm25``, ``embed``, ``dense``, ``fusion``; a batch call gives each query its share)."""

    candidates: Sequence[Candidate]
    timings_ms: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Stage 1: the top-`k` candidates for a query (see the module doc)."""

    name: str

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The top-`k` candidates for `query` (matching `filter`)."""
        ...

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for many queries."""
        ...


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def check_query(query: Any) -> str:
    """`query` if it is a non-blank, valid Unicode str; ValueError otherwise."""
    check_text(query, "query", type_error=ValueError)
    if not query.strip():
        raise ValueError("query is empty")
    return str(query)


def check_queries(queries: Sequence[str], query_ids: Sequence[str | None] | None) -> tuple[list[str], list[Any]]:
    """The checked queries (each as :func:`check_query`) and their ids (None each when `query_ids` is None);
    ValueError for a single string or a length mismatch.

        >>> check_queries(["cats", "dogs"], None)
        (['cats', 'dogs'], [None, None])
    """
    if isinstance(queries, str):
        raise ValueError("queries must be a sequence of str, not a single string")
    texts = [check_query(q) for q in queries]
    ids: list[Any] = [None] * len(texts) if query_ids is None else list(query_ids)
    if len(ids) != len(texts):
        raise ValueError(f"got {len(texts)} queries but {len(ids)} query ids")
    return texts, ids


class CollectionRetriever:
    """Base of the retrievers over one :class:`~funnelrank.store.collection.Collection`: resolves the filter to an
    allow-list (once per call or batch), runs :meth:`_search` / :meth:`_search_batch`, and turns the hits
    into candidates that carry their stored document. Ids deleted since the search ran are dropped."""

    name = "collection"

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.collection!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The top-`k` candidates for `query` among the documents matching `filter` (see
        :mod:`funnelrank.retrieve.filters`). ValueError for an empty query, a bad `k` or a malformed filter."""
        query, k = check_query(query), check_k(k)
        timings: dict[str, float] = {}
        allow = self._allow(filter, timings)
        return Retrieved(self._search(query, k, allow, timings), timings)

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for many queries, in parallel in the core; the filter is resolved once, and each
        query's timings are the batch's divided by the number of queries."""
        texts, _ = check_queries(queries, query_ids)
        k = check_k(k)
        if not texts:
            return []
        shared: dict[str, float] = {}
        allow = self._allow(filter, shared)
        lists = self._search_batch(texts, k, allow, shared)
        per_query = {name: ms / len(texts) for name, ms in shared.items()}
        return [Retrieved(cands, dict(per_query)) for cands in lists]

    def _allow(self, filter: Mapping[str, Any] | None, timings: dict[str, float]) -> list[str] | None:
        if filter is None:
            return None
        t = time.perf_counter()
        allow: list[str] | None = self.collection.allowed_ids(filter, sort=False)
        timings["filter"] = _ms(t)
        return allow

    def _hits(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Hits:
        """The raw top-`k` (ids, scores) of one query."""
        raise NotImplementedError

    def _hits_batch(self, queries: list[str], k: int, allow: list[str] | None, timings: dict[str, float]) -> list[Hits]:
        return [self._hits(q, k, allow, timings) for q in queries]

    def _search(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Sequence[Candidate]:
        return self._candidates(*self._hits(query, k, allow, timings))

    def _search_batch(
        self, queries: list[str], k: int, allow: list[str] | None, timings: dict[str, float]
    ) -> list[Sequence[Candidate]]:
        return [self._candidates(ids, scores) for ids, scores in self._hits_batch(queries, k, allow, timings)]

    def _candidates(self, ids: Sequence[str], scores: Any) -> CandidateList:
        name = self.name
        values = scores.tolist() if hasattr(scores, "tolist") else [float(s) for s in scores]
        docs = self.collection.stored_many(ids)
        if not all(docs):  # None: deleted since the search ran
            docs, values = [d for d in docs if d is not None], [s for d, s in zip(docs, values) if d is not None]

        def make(i: int) -> Candidate:
            doc, s = docs[i], values[i]
            return Candidate(doc.id, doc.text, i + 1, s, doc.metadata, {name: Stage1Hit(i + 1, s)})

        return CandidateList(len(docs), make)


class BM25Retriever(CollectionRetriever):
    """A collection's BM25 index (``stage1["bm25"]``)."""

    name = "bm25"

    def _hits(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Hits:
        t = time.perf_counter()
        hits: Hits = self.collection.search_bm25(query, k, allow)
        timings["bm25"] = _ms(t)
        return hits

    def _hits_batch(self, queries: list[str], k: int, allow: list[str] | None, timings: dict[str, float]) -> list[Hits]:
        t = time.perf_counter()
        hits: list[Hits] = self.collection.search_bm25_batch(queries, k, allow)
        timings["bm25"] = _ms(t)
        return hits


class DenseRetriever(CollectionRetriever):
    """A collection's HNSW index over its bi-encoder's embeddings (``stage1["dense"]``; the query is
    embedded first, ``timings_ms["embed"]``)."""

    name = "dense"

    def __init__(self, collection: Any) -> None:
        if not collection.dense:
            raise ValueError(
                "dense retrieval needs a dense collection; this one was built without embeddings "
                "(use retriever='bm25', or rebuild it with dense=True)"
            )
        super().__init__(collection)

    def _hits(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Hits:
        t = time.perf_counter()
        vector = self.collection.embed_query(query)
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        hits: Hits = self.collection.search_dense(vector, k, allow)
        timings["dense"] = _ms(t)
        return hits

    def _hits_batch(self, queries: list[str], k: int, allow: list[str] | None, timings: dict[str, float]) -> list[Hits]:
        t = time.perf_counter()
        vectors = self.collection.embed_queries(queries)
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        hits: list[Hits] = self.collection.search_dense_batch(vectors, k, allow)
        timings["dense"] = _ms(t)
        return hits


class HybridRetriever(CollectionRetriever):
    """The fusion of two retrievers' top-`k` lists into one top-`k` (``stage1["fused"]``, and each input's
    hit under its own name, None where a document was not in that input).

    Args:
        first: one retriever.
        second: the other, named differently; over one collection the two share the allow-list.
        method: ``"rrf"``, sum of ``weight / (rrf_k + rank)``, or ``"convex"``, sum of ``weight *
            minmax(score)`` (the core's :func:`funnelrank.core.rrf` / :func:`funnelrank.core.convex_fusion`).
        rrf_k: the RRF constant.
        weights: the two inputs' weights.
    """

    name = "hybrid"

    def __init__(
        self,
        first: Retriever,
        second: Retriever,
        *,
        method: str = "rrf",
        rrf_k: float = 60.0,
        weights: Sequence[float] = (1.0, 1.0),
    ) -> None:
        if first.name == second.name:
            raise ValueError(f"a hybrid needs two different retrievers, got two named {first.name!r}")
        if "fused" in (first.name, second.name):
            raise ValueError("a hybrid's inputs cannot be named 'fused' (the key of the fused hit)")
        if method not in HYBRID_METHODS:
            raise ValueError(f"hybrid fusion must be one of {', '.join(HYBRID_METHODS)}, got {method!r}")
        w = [float(x) for x in weights]
        if len(w) != 2 or any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"hybrid weights must be two non-negative numbers, not both 0, got {weights!r}")
        if method == "rrf" and not (np.isfinite(rrf_k) and rrf_k > 0):
            raise ValueError(f"rrf_k must be > 0, got {rrf_k!r}")
        self.first, self.second = first, second
        self.method, self.rrf_k, self.weights = method, float(rrf_k), w
        collection = getattr(first, "collection", None)
        self._shared = (
            isinstance(first, CollectionRetriever)
            and isinstance(second, CollectionRetriever)
            and second.collection is collection
        )
        super().__init__(collection)

    def __repr__(self) -> str:
        return f"HybridRetriever({self.first!r}, {self.second!r}, method={self.method!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        if self._shared:
            return super().retrieve(query, k, filter=filter, query_id=query_id)
        query, k = check_query(query), check_k(k)
        a = self.first.retrieve(query, k, filter=filter, query_id=query_id)
        b = self.second.retrieve(query, k, filter=filter, query_id=query_id)
        timings = {**a.timings_ms, **b.timings_ms}
        return Retrieved(self._fuse(a.candidates, b.candidates, k, timings), timings)

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        if self._shared:
            return super().retrieve_batch(queries, k, filter=filter, query_ids=query_ids)
        texts, ids = check_queries(queries, query_ids)
        k = check_k(k)
        a = self.first.retrieve_batch(texts, k, filter=filter, query_ids=ids)
        b = self.second.retrieve_batch(texts, k, filter=filter, query_ids=ids)
        out = []
        for x, y in zip(a, b):
            timings = {**x.timings_ms, **y.timings_ms}
            out.append(Retrieved(self._fuse(x.candidates, y.candidates, k, timings), timings))
        return out

    # Over one collection: the inputs' raw hits are fused, and only the fused list becomes candidates.
    def _search(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Sequence[Candidate]:
        a = self.first._hits(query, k, allow, timings)  # type: ignore[attr-defined]
        b = self.second._hits(query, k, allow, timings)  # type: ignore[attr-defined]
        t = time.perf_counter()
        out = self._fused_candidates(self._fuse_hits(a, b, k))
        timings["fusion"] = _ms(t)
        return out

    def _search_batch(
        self, queries: list[str], k: int, allow: list[str] | None, timings: dict[str, float]
    ) -> list[Sequence[Candidate]]:
        a = self.first._hits_batch(queries, k, allow, timings)  # type: ignore[attr-defined]
        b = self.second._hits_batch(queries, k, allow, timings)  # type: ignore[attr-defined]
        t = time.perf_counter()
        fused: list[Sequence[Candidate]] = [self._fused_candidates(self._fuse_hits(x, y, k)) for x, y in zip(a, b)]
        timings["fusion"] = _ms(t)
        return fused

    def _hits(self, query: str, k: int, allow: list[str] | None, timings: dict[str, float]) -> Hits:
        fused = self._fuse_hits(self.first._hits(query, k, allow, timings),  # type: ignore[attr-defined]
                                self.second._hits(query, k, allow, timings), k)  # type: ignore[attr-defined]
        return list(fused.ids), fused.scores

    def _fuse_hits(self, a: Hits, b: Hits, k: int) -> Any:
        from funnelrank._core import convex_fusion, rrf

        inputs = [(list(a[0]), a[1]), (list(b[0]), b[1])]
        if self.method == "rrf":
            return rrf(inputs, k=self.rrf_k, weights=self.weights, top_k=k)
        return convex_fusion(inputs, weights=self.weights, normalization="minmax", top_k=k)

    def _fused_candidates(self, fused: Any) -> CandidateList:
        names = (self.first.name, self.second.name)
        ranks, in_scores, scores = fused.ranks.tolist(), fused.input_scores.tolist(), fused.scores.tolist()
        docs = self.collection.stored_many(fused.ids)
        rows = range(len(docs)) if all(docs) else [r for r, d in enumerate(docs) if d is not None]  # None: deleted

        def make(i: int) -> Candidate:
            row = rows[i]
            doc = docs[row]
            trace: dict[str, Stage1Hit | None] = {
                name: Stage1Hit(ranks[row][r], in_scores[row][r]) if ranks[row][r] > 0 else None
                for r, name in enumerate(names)
            }
            s = scores[row]
            trace["fused"] = Stage1Hit(i + 1, s)
            return Candidate(doc.id, doc.text, i + 1, s, doc.metadata, trace)

        return CandidateList(len(rows), make)

    def _fuse(
        self, a: Sequence[Candidate], b: Sequence[Candidate], k: int, timings: dict[str, float] | None
    ) -> list[Candidate]:
        t = time.perf_counter()
        def hits(cands: Sequence[Candidate]) -> Hits:
            return [c.id for c in cands], np.fromiter((c.score or 0.0 for c in cands), np.float32, len(cands))

        fused = self._fuse_hits(hits(a), hits(b), k)
        by_id = [{c.id: c for c in cands} for cands in (a, b)]
        names = (self.first.name, self.second.name)
        ranks, in_scores, scores = fused.ranks, fused.input_scores, fused.scores
        out: list[Candidate] = []
        for i, doc_id in enumerate(fused.ids):
            trace: dict[str, Stage1Hit | None] = {}
            source: Candidate | None = None
            for r, name in enumerate(names):
                trace[name] = Stage1Hit(int(ranks[i, r]), float(in_scores[i, r])) if ranks[i, r] > 0 else None
                source = source or by_id[r].get(doc_id)
            s = float(scores[i])
            trace["fused"] = Stage1Hit(i + 1, s)
            assert source is not None
            out.append(Candidate(doc_id, source.text, i + 1, s, source.metadata, trace))
        if timings is not None:
            timings["fusion"] = _ms(t)
        return out


class RunRetriever:
    """A precomputed run as stage 1: each query id's ranked ``(doc_id, score)`` list, cut to `k`.

    Args:
        run: query id -> ``[(doc_id, score), ...]``, best first (e.g. a BEIR ``run.bm25.tsv``).
        documents: doc id -> text; run entries whose document is missing are skipped and counted in
            :attr:`missing`.
        query_ids: optional query text -> query id, for calls that give no `query_id`.
        name: the key of its hits in :attr:`Candidate.stage1`.
    """

    def __init__(
        self,
        run: Mapping[str, Sequence[tuple[str, float]]],
        documents: Mapping[str, str] | Callable[[str], str | None],
        *,
        query_ids: Mapping[str, str] | None = None,
        name: str = "run",
    ) -> None:
        self.run = run
        self._text: Callable[[str], str | None] = documents if callable(documents) else documents.get
        self.query_ids = dict(query_ids or {})
        self.name = name
        self.missing = 0
        """Run entries skipped so far because their document is missing."""

    def __repr__(self) -> str:
        return f"RunRetriever(queries={len(self.run)}, name={self.name!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The run's top-`k` for `query_id` (or the id `query_ids` gives for `query`); a query the run does
        not hold has no candidates. ValueError without a query id, or with a filter (a run has no
        metadata)."""
        query, k = check_query(query), check_k(k)
        if filter is not None:
            raise ValueError("a precomputed run cannot apply a metadata filter")
        qid = query_id if query_id is not None else self.query_ids.get(query)
        if qid is None:
            raise ValueError("a run retriever needs the query's id (query_id=...), or query_ids mapping its text")
        out: list[Candidate] = []
        for doc_id, score in self.run.get(qid, ())[:k]:
            text = self._text(doc_id)
            if text is None:
                self.missing += 1
                continue
            hit = Stage1Hit(len(out) + 1, float(score))
            out.append(Candidate(doc_id, text, hit.rank, hit.score, {}, {self.name: hit}))
        return Retrieved(out)

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for each query."""
        texts, ids = check_queries(queries, query_ids)
        return [self.retrieve(q, k, filter=filter, query_id=i) for q, i in zip(texts, ids)]


def make_retriever(
    collection: Any,
    name: str | None = None,
    *,
    hybrid_method: str = "rrf",
    rrf_k: float = 60.0,
    hybrid_weights: Sequence[float] = (1.0, 1.0),
) -> Retriever:
    """The retriever `name` over `collection` (a :class:`~funnelrank.store.collection.Collection` or a
    :class:`~funnelrank.retrieve.sharded.ShardedCollection`): ``"bm25"``, ``"dense"`` or ``"hybrid"`` (BM25 and dense
    fused, RRF with ``rrf_k`` by default); None picks hybrid for a dense collection, bm25 otherwise."""
    if name is None:
        name = "hybrid" if collection.dense else "bm25"
    # A sharded collection (funnelrank.retrieve.sharded) builds its own bm25 / dense retrievers.
    sharded: Callable[[str], Retriever] | None = getattr(collection, "stage1_retriever", None)
    if name in ("bm25", "dense") and sharded is not None:
        return sharded(name)
    if name == "bm25":
        return BM25Retriever(collection)
    if name == "dense":
        return DenseRetriever(collection)
    if name == "hybrid":
        if not collection.dense:
            raise ValueError(
                "retriever='hybrid' needs a dense collection; this one was built without embeddings "
                "(use retriever='bm25', or rebuild it with dense=True)"
            )
        first: Retriever = sharded("bm25") if sharded is not None else BM25Retriever(collection)
        second: Retriever = sharded("dense") if sharded is not None else DenseRetriever(collection)
        return HybridRetriever(first, second, method=hybrid_method, rrf_k=rrf_k, weights=hybrid_weights)
    raise ValueError(f"retriever must be one of {', '.join(RETRIEVERS)}, got {name!r}")
