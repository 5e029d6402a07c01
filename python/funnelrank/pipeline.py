"""`Pipeline`: stage 1 (BM25, dense, or both fused with RRF) then stage 2 (cross-encoder rerank + floor).

    >>> pipe = Pipeline(collection)                      # hybrid when the collection is dense, default reranker
    >>> resp = pipe.search("how do I parse JSON?", filter={"lang": "en"})
    >>> resp.no_evidence, [(r.id, round(r.score, 3)) for r in resp.results]

Stage 1 returns up to `candidates` documents (the metadata filter is resolved to an allow-list first, so
a filter never starves it); stage 2 re-scores them with the cross-encoder, keeps those whose sigmoid score
clears `floor`, orders them by a weighted fusion of the cross-encoder's order and the stage-1 order
(`fusion`, `stage1_weight`, see :mod:`funnelrank.rerank.fusion`; 0 = cross-encoder order alone), returns the
`top_k` first, and flags ``no_evidence`` when none clears the floor.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from funnelrank.collection import Collection

__all__ = ["RETRIEVERS", "Pipeline", "Result", "SearchResponse", "Stage1Hit", "default_reranker"]

RETRIEVERS: tuple[str, ...] = ("hybrid", "bm25", "dense")
"""Stage-1 retrievers a :class:`Pipeline` can use."""

MAX_BATCH_THREADS = 16
"""Most queries :meth:`Pipeline.search_batch` keeps in the rerank scheduler at once."""

DEFAULT = "default"
"""Sentinel for ``Pipeline(reranker=...)`` and ``floor=...``: the package's default reranker / floor."""


@dataclass(frozen=True)
class Stage1Hit:
    """A document's place in one stage-1 ranking: 1-based `rank` and that retriever's `score`."""

    rank: int
    score: float


@dataclass(frozen=True)
class Result:
    """One search result.

    Attributes:
        id, text, metadata: the document.
        score: the rerank score (sigmoid of the cross-encoder logit, 0..1); without a reranker, the
            stage-1 score (BM25 score, cosine similarity, or RRF score). With rerank fusion
            (``stage1_weight`` > 0) results are in fused order, so this score need not decrease.
        logit: the cross-encoder's raw logit (None without a reranker).
        stage1: the document's rank and score per stage-1 ranking: keys ``"bm25"``, ``"dense"``,
            ``"fused"`` (present for the rankings the retriever ran; value None when the document was
            not in that ranking).
    """

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    logit: float | None
    stage1: dict[str, Stage1Hit | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stage-1 hits as ``{"rank", "score"}`` or null)."""
        out = asdict(self)
        out["stage1"] = {k: (None if v is None else {"rank": v.rank, "score": v.score}) for k, v in self.stage1.items()}
        return out


@dataclass(frozen=True)
class SearchResponse:
    """What :meth:`Pipeline.search` returns.

    Attributes:
        query: the query as given.
        results: best first, at most ``top_k``.
        no_evidence: True when nothing cleared the relevance floor (or stage 1 found nothing): the
            caller should answer "I don't know" rather than use junk.
        candidates: how many stage-1 candidates were considered.
        timings_ms: milliseconds per stage: ``embed``, ``bm25``, ``dense``, ``fusion``, ``rerank``,
            ``total`` (stages that did not run are absent).
    """

    query: str
    results: list[Result]
    no_evidence: bool
    candidates: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "query": self.query,
            "results": [r.to_dict() for r in self.results],
            "no_evidence": self.no_evidence,
            "candidates": self.candidates,
            "timings_ms": dict(self.timings_ms),
        }


@dataclass
class _Stage1:
    ids: list[str]
    scores: list[float]
    traces: list[dict[str, Stage1Hit | None]]
    timings_ms: dict[str, float]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _hits(ids: Sequence[str], scores: np.ndarray | Sequence[float]) -> dict[str, Stage1Hit]:
    return {doc_id: Stage1Hit(i + 1, float(s)) for i, (doc_id, s) in enumerate(zip(ids, scores))}


class Pipeline:
    """Retrieve-and-rerank over a :class:`~funnelrank.collection.Collection`.

    Args:
        collection: the documents and their indexes.
        retriever: ``"hybrid"`` (BM25 + dense fused with RRF), ``"bm25"`` or ``"dense"``; None picks
            hybrid for a dense collection and bm25 otherwise.
        candidates: stage-1 depth (documents handed to the reranker).
        reranker: a :class:`funnelrank.rerank.Reranker`, a model directory, ``"default"`` (the model
            shipped with funnelrank) or None (no stage 2: stage-1 order and scores).
        top_k: results returned.
        floor: minimum rerank score (0..1) a result needs; ``"default"`` uses the reranker's default,
            None or 0 keeps everything.
        rrf_k: the RRF constant for hybrid fusion.
        stage1_weight: rerank fusion weight w in [0, 1]: results are ordered by
            ``(1 - w) * minmax(logit) + w * minmax(stage-1 score)`` (fusion "convex") or
            ``(1 - w) / (60 + rerank rank) + w / (60 + stage-1 rank)`` ("rrf"); 0 = cross-encoder order alone.
            ``"default"`` is :data:`funnelrank.rerank.defaults.DEFAULT_STAGE1_WEIGHT` for the hybrid
            retriever (chosen on validation queries for the default reranker over hybrid candidates) and 0
            for bm25 or dense (no weight was chosen for them; see
            :func:`funnelrank.rerank.defaults.default_stage1_weight`). The floor still applies to each
            result's own rerank score.
        fusion: the rerank fusion method, ``"rrf"`` or ``"convex"`` (min-max normalised cross-encoder logits
            and stage-1 scores); ``"default"`` is :data:`funnelrank.rerank.defaults.DEFAULT_FUSION`.
    """

    def __init__(
        self,
        collection: Collection,
        retriever: str | None = None,
        *,
        candidates: int = 100,
        reranker: Any = DEFAULT,
        top_k: int = 10,
        floor: float | str | None = DEFAULT,
        rrf_k: float = 60.0,
        stage1_weight: float | str = DEFAULT,
        fusion: str = DEFAULT,
    ) -> None:
        if retriever is None:
            retriever = "hybrid" if collection.dense else "bm25"
        if retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {', '.join(RETRIEVERS)}, got {retriever!r}")
        if retriever in ("hybrid", "dense") and not collection.dense:
            raise ValueError(
                f"retriever={retriever!r} needs a dense collection; this one was built without embeddings "
                "(use retriever='bm25', or rebuild it with dense=True)"
            )
        if not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be a positive int, got {candidates!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        self.collection = collection
        self.retriever = retriever
        self.candidates = candidates
        self.top_k = top_k
        self.rrf_k = float(rrf_k)
        self.reranker = _make_reranker(reranker)
        self._owns_reranker = isinstance(reranker, (str, os.PathLike))
        self.floor = _resolve_floor(floor, self.reranker)
        self.stage1_weight = _resolve_stage1_weight(stage1_weight, retriever)
        self.fusion = _resolve_fusion(fusion)

    def close(self) -> None:
        """Stop the reranker's scheduler if this pipeline created it (from a path or ``"default"``); a
        reranker passed in is left open for its owner."""
        if self._owns_reranker and self.reranker is not None:
            self.reranker.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Pipeline(retriever={self.retriever!r}, candidates={self.candidates}, top_k={self.top_k}, "
            f"floor={self.floor}, stage1_weight={self.stage1_weight}, fusion={self.fusion!r}, "
            f"reranker={self.reranker!r}, collection={self.collection!r})"
        )

    # ------------------------------------------------------------------ stage 1

    def _check_query(self, query: Any) -> str:
        if not isinstance(query, str):
            raise ValueError(f"query must be str, got {type(query).__name__}")
        if not query.strip():
            raise ValueError("query is empty")
        return query

    def _fuse(
        self,
        bm25: tuple[list[str], np.ndarray] | None,
        dense: tuple[list[str], np.ndarray] | None,
        timings: dict[str, float],
    ) -> _Stage1:
        if self.retriever == "bm25":
            assert bm25 is not None
            ids, scores = list(bm25[0]), [float(s) for s in bm25[1]]
            traces: list[dict[str, Stage1Hit | None]] = [
                {"bm25": Stage1Hit(i + 1, s)} for i, s in enumerate(scores)
            ]
            return _Stage1(ids, scores, traces, timings)
        if self.retriever == "dense":
            assert dense is not None
            ids, scores = list(dense[0]), [float(s) for s in dense[1]]
            traces = [{"dense": Stage1Hit(i + 1, s)} for i, s in enumerate(scores)]
            return _Stage1(ids, scores, traces, timings)
        from funnelrank._core import rrf

        assert bm25 is not None and dense is not None
        t = time.perf_counter()
        fused = rrf([(list(bm25[0]), bm25[1]), (list(dense[0]), dense[1])], k=self.rrf_k, top_k=self.candidates)
        timings["fusion"] = _ms(t)
        ranks, in_scores = fused.ranks, fused.input_scores
        traces = []
        for i in range(len(fused.ids)):
            trace: dict[str, Stage1Hit | None] = {}
            for r, name in enumerate(("bm25", "dense")):
                trace[name] = Stage1Hit(int(ranks[i, r]), float(in_scores[i, r])) if ranks[i, r] > 0 else None
            trace["fused"] = Stage1Hit(i + 1, float(fused.scores[i]))
            traces.append(trace)
        return _Stage1(list(fused.ids), [float(s) for s in fused.scores], traces, timings)

    def _retrieve(self, query: str, filter: Mapping[str, Any] | None = None) -> _Stage1:
        """Stage 1 only: up to `candidates` ids with scores and traces."""
        query = self._check_query(query)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        allow = self.collection.allowed_ids(filter, sort=False)
        if filter is not None:
            timings["filter"] = _ms(t)
        bm25 = dense = None
        if self.retriever in ("bm25", "hybrid"):
            t = time.perf_counter()
            bm25 = self.collection.search_bm25(query, self.candidates, allow)
            timings["bm25"] = _ms(t)
        if self.retriever in ("dense", "hybrid"):
            t = time.perf_counter()
            vector = self.collection.embed_query(query)
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            dense = self.collection.search_dense(vector, self.candidates, allow)
            timings["dense"] = _ms(t)
        return self._fuse(bm25, dense, timings)

    def _retrieve_batch(self, queries: list[str], filter: Mapping[str, Any] | None) -> list[_Stage1]:
        allow = self.collection.allowed_ids(filter, sort=False)
        n = len(queries)
        bm25: list[Any] = [None] * n
        dense: list[Any] = [None] * n
        shared: dict[str, float] = {}
        if self.retriever in ("bm25", "hybrid"):
            t = time.perf_counter()
            bm25 = self.collection.search_bm25_batch(queries, self.candidates, allow)
            shared["bm25"] = _ms(t) / n
        if self.retriever in ("dense", "hybrid"):
            t = time.perf_counter()
            vectors = self.collection.embed_queries(queries)
            shared["embed"] = _ms(t) / n
            t = time.perf_counter()
            dense = self.collection.search_dense_batch(vectors, self.candidates, allow)
            shared["dense"] = _ms(t) / n
        return [self._fuse(bm25[i], dense[i], dict(shared)) for i in range(n)]

    # ------------------------------------------------------------------ stage 2

    def _finish(self, query: str, stage1: _Stage1, reranked: Any, rerank_ms: float | None, start: float) -> SearchResponse:
        docs = self.collection
        timings = stage1.timings_ms
        results: list[Result] = []
        if reranked is None:
            for doc_id, score, trace in list(zip(stage1.ids, stage1.scores, stage1.traces))[: self.top_k]:
                if doc_id not in docs:  # deleted since stage 1 ran
                    continue
                doc = docs.get(doc_id)
                results.append(Result(doc.id, doc.text, doc.metadata, score, None, trace))
            no_evidence = not results
        else:
            timings["rerank"] = float(rerank_ms or 0.0)
            for item in reranked.items:
                doc_id = stage1.ids[item.index]
                if doc_id not in docs:
                    continue
                doc = docs.get(doc_id)
                results.append(
                    Result(doc.id, doc.text, doc.metadata, float(item.score), float(item.logit), stage1.traces[item.index])
                )
            no_evidence = bool(reranked.no_evidence) or not results
        timings["total"] = _ms(start)
        return SearchResponse(query, results, no_evidence, len(stage1.ids), timings)

    def _candidates(self, stage1: _Stage1) -> list[dict[str, Any]]:
        docs = self.collection
        return [
            {"id": doc_id, "text": docs.text(doc_id) if doc_id in docs else "", "rank": i + 1, "score": score}
            for i, (doc_id, score) in enumerate(zip(stage1.ids, stage1.scores))
        ]

    def _rerank(self, query: str, stage1: _Stage1, timeout: float | None = None) -> tuple[Any, float]:
        t = time.perf_counter()
        result = self.reranker.rerank(
            query, self._candidates(stage1), top_k=self.top_k, floor=self.floor,
            stage1_weight=self.stage1_weight, fusion=self.fusion, timeout=timeout,
        )
        return result, _ms(t)

    def search(self, query: str, filter: Mapping[str, Any] | None = None) -> SearchResponse:
        """Retrieve `candidates` documents (matching `filter`, see :mod:`funnelrank.filters`), rerank them,
        and return the `top_k` best above the floor. Raises ValueError for an empty query or a bad filter."""
        start = time.perf_counter()
        stage1 = self._retrieve(query, filter)
        if self.reranker is None:
            return self._finish(query, stage1, None, None, start)
        reranked, rerank_ms = self._rerank(query, stage1)
        return self._finish(query, stage1, reranked, rerank_ms, start)

    async def asearch(
        self, query: str, filter: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> SearchResponse:
        """:meth:`search` for asyncio: stage 1 runs in the default executor (the core releases the GIL),
        stage 2 awaits the shared scheduler. Raises the scheduler's OverloadedError / TimeoutError."""
        import asyncio

        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        stage1 = await loop.run_in_executor(None, self._retrieve, query, filter)
        if self.reranker is None:
            return self._finish(query, stage1, None, None, start)
        t = time.perf_counter()
        reranked = await self.reranker.arerank(
            query, self._candidates(stage1), top_k=self.top_k, floor=self.floor,
            stage1_weight=self.stage1_weight, fusion=self.fusion, timeout=timeout,
        )
        return self._finish(query, stage1, reranked, _ms(t), start)

    def search_batch(self, queries: Sequence[str], filter: Mapping[str, Any] | None = None) -> list[SearchResponse]:
        """:meth:`search` for many queries: stage 1 batched (BM25 in parallel in the core), stage 2 submitted
        for all queries at once to the shared scheduler so their pairs share batches. Per-query timings
        of batched stages are the batch time divided by the number of queries."""
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of str, not a single string")
        queries = [self._check_query(q) for q in queries]
        if not queries:
            return []
        start = time.perf_counter()
        stage1 = self._retrieve_batch(queries, filter)
        if self.reranker is None:
            return [self._finish(q, s, None, None, start) for q, s in zip(queries, stage1)]
        from concurrent.futures import ThreadPoolExecutor

        # One thread per query in flight: the shared scheduler micro-batches their pairs together.
        with ThreadPoolExecutor(max_workers=min(len(queries), MAX_BATCH_THREADS)) as pool:
            reranked = list(pool.map(self._rerank, queries, stage1))
        return [self._finish(q, s, r, ms, start) for q, s, (r, ms) in zip(queries, stage1, reranked)]


def default_reranker(**options: Any) -> Any:
    """The default cross-encoder (:func:`funnelrank.rerank.defaults.default_reranker_dir`) as a
    :class:`funnelrank.rerank.floor.Reranker` with its default floor; `options` go to the Reranker (e.g.
    ``max_queue_pairs``). FileNotFoundError, saying what to do, when no default model is installed."""
    from funnelrank.rerank.defaults import default_reranker_dir
    from funnelrank.rerank.floor import Reranker

    return Reranker(default_reranker_dir(), **options)


def _make_reranker(reranker: Any) -> Any:
    if reranker is None:
        return None
    if isinstance(reranker, str) and reranker == DEFAULT:
        return default_reranker()
    if isinstance(reranker, (str, os.PathLike)):
        from funnelrank.rerank.floor import Reranker

        return Reranker(reranker)
    if not hasattr(reranker, "rerank"):
        raise ValueError(f"reranker must be a Reranker, a model directory, 'default' or None, got {reranker!r}")
    return reranker


def _resolve_stage1_weight(weight: float | str, retriever: str) -> float:
    from funnelrank.rerank.fusion import check_stage1_weight

    if isinstance(weight, str):
        if weight != DEFAULT:
            raise ValueError(f"stage1_weight must be a number in [0, 1] or 'default', got {weight!r}")
        from funnelrank.rerank.defaults import default_stage1_weight

        return default_stage1_weight(retriever)
    return check_stage1_weight(weight)


def _resolve_fusion(fusion: str) -> str:
    from funnelrank.rerank.fusion import check_fusion

    if fusion == DEFAULT:
        from funnelrank.rerank.defaults import DEFAULT_FUSION

        return DEFAULT_FUSION
    return check_fusion(fusion)


def _resolve_floor(floor: float | str | None, reranker: Any) -> float:
    if floor is None:
        return 0.0
    if isinstance(floor, str):
        if floor != DEFAULT:
            raise ValueError(f"floor must be a number in [0, 1], 'default' or None, got {floor!r}")
        return float(getattr(reranker, "floor", None) or 0.0) if reranker is not None else 0.0
    value = float(floor)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor!r}")
    return value
