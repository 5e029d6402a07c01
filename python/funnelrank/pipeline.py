"""`Pipeline`: retriever -> reranker -> floor -> results, the one funnel every entry point runs.

    >>> pipe = Pipeline.from_texts(["Aspirin is not for children with a viral fever.",
    ...                             "Ibuprofen dosing for adults: 200-400 mg.",
    ...                             "Ibuprofen for children is dosed by body weight.",
    ...                             "Bananas are rich in potassium."])
    >>> resp = pipe.search("ibuprofen dose for a child", top_k=2)
    >>> resp.no_evidence, [(r.id, round(r.score, 3)) for r in resp.results]
    (False, [('2', 0.995), ('1', 0.985)])
    >>> pipe.search("a recipe for chocolate chip cookies").no_evidence
    True

Stage 1 (a :class:`~funnelrank.retrieve.retrievers.Retriever`: BM25, dense, their hybrid, a precomputed run) returns
up to `candidates` :class:`~funnelrank.candidates.Candidate` objects (a metadata filter is resolved to an
allow-list first, so a filter never starves it); stage 2 re-scores them with the cross-encoder, keeps those
whose sigmoid score clears `floor`, orders them by a weighted fusion of the cross-encoder's order and the
stage-1 order (`fusion`, `stage1_weight`, see :mod:`funnelrank.rerank.fusion`; 0 = cross-encoder order
alone), returns the `top_k` first, and flags ``no_evidence`` when none clears the floor. `top_k`, `floor`,
`candidates` and whether to rerank can be set per call.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from funnelrank.candidates import Candidate, Stage1Hit
from funnelrank.checks import check_k
from funnelrank.rerank.policy import DEFAULT_DEPTH, DEFAULT_TOP_K, RankPolicy
from funnelrank.retrieve.retrievers import RETRIEVERS, Retrieved, Retriever, check_query, make_retriever
from funnelrank.store.collection import Collection

__all__ = ["RETRIEVERS", "FunnelEntry", "Pipeline", "Result", "SearchResponse", "Stage1Hit"]

MAX_BATCH_THREADS = 16
"""Most queries :meth:`Pipeline.search_batch` keeps in the rerank scheduler at once."""

DEFAULT = "default"
"""Sentinel for ``Pipeline(reranker=...)`` and ``floor=...``: the package's default reranker / floor."""

_UNSET: Any = object()


@dataclass(frozen=True)
class Result:
    """One search result.

    Attributes:
        id, text, metadata: the document (the metadata is a copy: changing it changes nothing stored).
        score: the rerank score (sigmoid of the cross-encoder logit, 0..1); without reranking, the
            stage-1 score (BM25 score, cosine similarity, or fused score). With rerank fusion
            (``stage1_weight`` > 0) results are in fused order, so this score need not decrease.
        logit: the cross-encoder's raw logit (None without reranking).
        stage1: the document's rank and score per stage-1 ranking: keys ``"bm25"``, ``"dense"``,
            ``"fused"`` (present for the rankings the retriever ran; value None when the document was
            not in that ranking).
        fused_score: the rerank-fusion score that ordered the results (None without fusion).
    """

    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    logit: float | None
    stage1: dict[str, Stage1Hit | None]
    fused_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stage-1 hits as ``{"rank", "score"}`` or null)."""
        out = asdict(self)
        out["stage1"] = {k: (None if v is None else {"rank": v.rank, "score": v.score}) for k, v in self.stage1.items()}
        return out


@dataclass(frozen=True)
class FunnelEntry:
    """One stage-1 candidate as the funnel saw it (``search(..., explain=True)``: every candidate, kept or not).

        >>> funnel = pipe.search("ibuprofen dose for a child", top_k=1, explain=True).funnel
        >>> [(e.id, e.stage1_rank, round(e.score, 3), e.kept) for e in funnel]
        [('2', 1, 0.995, True), ('1', 2, 0.985, False), ('0', 3, 0.212, False), ('3', 4, 0.0, False)]

    Attributes:
        id, text: the document.
        stage1_rank: its 1-based rank in the ranking handed to the reranker.
        stage1_score: its stage-1 score there (BM25 score, cosine similarity, fused score; None when unknown).
        score: its rerank score (sigmoid of the cross-encoder logit, 0..1; None without reranking).
        kept: whether it is among the response's results (it cleared the floor and made the top k).
    """

    id: str
    text: str
    stage1_rank: int
    stage1_score: float | None
    score: float | None
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SearchResponse:
    """What :meth:`Pipeline.search` returns.

    Attributes:
        query: the query as given.
        results: best first, at most ``top_k``.
        no_evidence: True when nothing cleared the relevance floor (or stage 1 found nothing): the
            caller should answer "I don't know" rather than use junk.
        candidates: how many stage-1 candidates were considered.
        timings_ms: milliseconds per stage: ``filter``, ``embed``, ``bm25``, ``dense``, ``fusion``,
            ``rerank``, ``total`` (stages that did not run are absent).
        max_score: the best rerank score among all candidates, kept or not (None without reranking).
        floor: the relevance floor applied (None without reranking or with the floor off).
        funnel: with ``explain=True``, every stage-1 candidate in stage-1 order (:class:`FunnelEntry`: its
            stage-1 rank and score, its rerank score, whether it was kept); None otherwise.
    """

    query: str
    results: list[Result]
    no_evidence: bool
    candidates: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    max_score: float | None = None
    floor: float | None = None
    funnel: list[FunnelEntry] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``query``, ``results``, ``no_evidence``, ``candidates``, ``timings_ms``, ``floor``,
        and ``funnel`` (a list of :meth:`FunnelEntry.to_dict`) when it was asked for."""
        out: dict[str, Any] = {
            "query": self.query,
            "results": [r.to_dict() for r in self.results],
            "no_evidence": self.no_evidence,
            "candidates": self.candidates,
            "timings_ms": dict(self.timings_ms),
            "floor": self.floor,
        }
        if self.funnel is not None:
            out["funnel"] = [entry.to_dict() for entry in self.funnel]
        return out


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _funnel(cands: Sequence[Candidate], reranked: Any, kept: set[str]) -> list[FunnelEntry]:
    """Every candidate in stage-1 order with its rerank score (`reranked.all_scores`, input order)."""
    scores = None if reranked is None else reranked.all_scores
    return [
        FunnelEntry(c.id, c.text, c.rank if c.rank is not None else i + 1,
                    None if c.score is None else float(c.score),
                    None if scores is None or i >= len(scores) else float(scores[i]), c.id in kept)
        for i, c in enumerate(cands)
    ]


def _result(c: Candidate, score: float, logit: float | None, fused: float | None) -> Result:
    meta = copy.deepcopy(dict(c.metadata)) if c.metadata else {}
    return Result(c.id, c.text, meta, score, logit, dict(c.stage1), fused)


class Pipeline:
    """Retrieve-and-rerank: a retriever, a reranker and a relevance floor.

    Args:
        source: a :class:`~funnelrank.store.collection.Collection` or a
            :class:`~funnelrank.retrieve.sharded.ShardedCollection` (the retriever is built over it by name), or any
            :class:`~funnelrank.retrieve.retrievers.Retriever`.
        retriever: with a collection, ``"hybrid"`` (BM25 + dense fused with RRF), ``"bm25"`` or
            ``"dense"``; None picks hybrid for a dense collection and bm25 otherwise.
        candidates: stage-1 depth (documents handed to the reranker).
        reranker: a :class:`funnelrank.rerank.Reranker`, a model directory, ``"default"`` (the model
            shipped with funnelrank) or None (no stage 2: stage-1 order and scores).
        top_k: results returned.
        floor: minimum rerank score (0..1) a result needs; ``"default"`` uses the reranker's default,
            None or 0 keeps everything.
        rrf_k: the RRF constant for hybrid fusion (with a collection).
        stage1_weight: rerank fusion weight w in [0, 1]: results are ordered by
            ``(1 - w) * minmax(logit) + w * minmax(stage-1 score)`` (fusion "convex") or
            ``(1 - w) / (60 + rerank rank) + w / (60 + stage-1 rank)`` ("rrf"); 0 = cross-encoder order alone.
            ``"default"`` is :data:`funnelrank.rerank.policy.DEFAULT_STAGE1_WEIGHT` for the hybrid
            retriever (chosen on validation queries for the default reranker over hybrid candidates) and 0
            for any other (see :func:`funnelrank.rerank.policy.default_stage1_weight`). The floor still
            applies to each result's own rerank score.
        fusion: the rerank fusion method, ``"rrf"`` or ``"convex"`` (min-max normalised cross-encoder logits
            and stage-1 scores); ``"default"`` is :data:`funnelrank.rerank.policy.DEFAULT_FUSION`.

    A pipeline that loaded its reranker (``"default"`` or a directory) closes it in :meth:`close` or at the
    end of a ``with`` block.
    """

    def __init__(
        self,
        source: Collection | Retriever,
        retriever: str | None = None,
        *,
        candidates: int = DEFAULT_DEPTH,
        reranker: Any = DEFAULT,
        top_k: int = DEFAULT_TOP_K,
        floor: float | str | None = DEFAULT,
        rrf_k: float = 60.0,
        stage1_weight: float | str = DEFAULT,
        fusion: str = DEFAULT,
    ) -> None:
        from funnelrank.retrieve.sharded import ShardedCollection

        if isinstance(source, (Collection, ShardedCollection)):
            self.retriever: Retriever = make_retriever(source, retriever, rrf_k=rrf_k)
        elif isinstance(source, Retriever):
            if retriever is not None:
                raise ValueError("retriever= names a retriever over a collection; this pipeline was given one")
            self.retriever = source
        else:
            raise ValueError(f"a Pipeline needs a Collection or a Retriever, got {type(source).__name__}")
        self.collection: Any = getattr(self.retriever, "collection", None)
        self.reranker = _make_reranker(reranker)
        self._owns_reranker = isinstance(reranker, (str, os.PathLike))
        settings: dict[str, Any] = {"top_k": check_k(top_k, "top_k"), "depth": candidates,
                                    "floor": _resolve_floor(floor, self.reranker)}
        if isinstance(stage1_weight, str):
            if stage1_weight != DEFAULT:
                raise ValueError(f"stage1_weight must be a number in [0, 1] or 'default', got {stage1_weight!r}")
        else:
            settings["stage1_weight"] = stage1_weight
        if not (isinstance(fusion, str) and fusion == DEFAULT):
            settings["fusion"] = fusion
        self.policy: RankPolicy = RankPolicy.for_stage1(self.retriever.name, **settings)
        """Every ranking decision of this pipeline (floor, top_k, depth, rerank fusion): :meth:`search`
        applies it, with any per-call changes."""

    @property
    def candidates(self) -> int:
        """The stage-1 depth (``policy.depth``)."""
        return self.policy.depth

    @property
    def top_k(self) -> int:
        """Results returned (``policy.top_k``)."""
        return int(self.policy.top_k or 0)

    @property
    def floor(self) -> float | None:
        """The relevance floor (``policy.floor``)."""
        return self.policy.floor

    @property
    def stage1_weight(self) -> float:
        """The rerank-fusion weight (``policy.stage1_weight``)."""
        return self.policy.stage1_weight

    @property
    def fusion(self) -> str:
        """The rerank-fusion method (``policy.fusion``)."""
        return self.policy.fusion

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        dense: bool | None = None,
        embedder: Any | None = None,
        **options: Any,
    ) -> Pipeline:
        """A pipeline over a new collection of `texts` (ids ``"0"``, ``"1"``, ... unless given).

        `dense` and `embedder` go to :class:`~funnelrank.store.collection.Collection` (dense retrieval when the
        default bi-encoder is installed), `options` to :class:`Pipeline` (``retriever``, ``reranker``,
        ``top_k``, ``floor``, ...).

            >>> pipe = Pipeline.from_texts(["Cats sleep on mats.", "Dogs chase cats."], reranker=None)
            >>> [r.id for r in pipe.search("where do cats sleep").results]
            ['0', '1']
        """
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be a sequence of str, not a single string")
        texts = list(texts)
        collection = Collection(dense=dense, embedder=embedder)
        collection.add([str(i) for i in range(len(texts))] if ids is None else ids, texts, metadata)
        return cls(collection, **options)

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
            f"Pipeline(retriever={self.retriever!r}, policy={self.policy!r}, reranker={self.reranker!r})"
        )

    # ------------------------------------------------------------------ per-call settings

    def _settings(self, top_k: Any, floor: Any, candidates: Any, rerank: bool) -> tuple[RankPolicy, bool]:
        """This call's policy: the pipeline's with the per-call settings that were given."""
        changes: dict[str, Any] = {}
        if top_k is not None:
            changes["top_k"] = check_k(top_k, "top_k")
        if floor is not _UNSET:
            changes["floor"] = _resolve_floor(floor, self.reranker)
        if candidates is not None:
            changes["depth"] = candidates
        return self.policy.replace(**changes), bool(rerank) and self.reranker is not None

    # ------------------------------------------------------------------ results

    def _finish(self, query: str, stage1: Retrieved, reranked: Any, rerank_ms: float | None, policy: RankPolicy,
                start: float, explain: bool = False) -> SearchResponse:
        timings = stage1.timings_ms
        cands = stage1.candidates
        floor: float | None = None
        if reranked is None:
            results = [_result(c, float(c.score or 0.0), None, None) for c in cands[:policy.top_k]]
            no_evidence, max_score = not results, None
        else:
            timings["rerank"] = float(rerank_ms or 0.0)
            results = [_result(cands[item.index], item.score, item.logit, item.fused_score) for item in reranked.items]
            no_evidence, max_score = bool(reranked.no_evidence) or not results, reranked.max_score
            floor = None if reranked.floor is None else float(reranked.floor)
        funnel = _funnel(cands, reranked, {r.id for r in results}) if explain else None
        timings["total"] = _ms(start)
        return SearchResponse(query, results, no_evidence, len(cands), timings, max_score, floor, funnel)

    def _rerank(self, query: str, stage1: Retrieved, policy: RankPolicy, query_id: str | None = None,
                ) -> tuple[Any, float]:
        t = time.perf_counter()
        result = self.reranker.rerank(query, stage1.candidates, policy=policy, query_id=query_id)
        return result, _ms(t)

    # ------------------------------------------------------------------ the calls

    def search(
        self,
        query: str,
        filter: Mapping[str, Any] | None = None,
        *,
        top_k: int | None = None,
        floor: float | str | None = _UNSET,
        candidates: int | None = None,
        rerank: bool = True,
        query_id: str | None = None,
        explain: bool = False,
    ) -> SearchResponse:
        """Retrieve `candidates` documents (matching `filter`, see :mod:`funnelrank.retrieve.filters`), rerank them,
        and return the `top_k` best above the floor (each setting defaults to the pipeline's; ``rerank=False``
        returns stage 1's order). `query_id` names the query in score traces and for a run retriever;
        `explain` adds :attr:`SearchResponse.funnel` (every candidate, kept or not, with both scores).
        Raises ValueError for an empty query, a bad setting or a bad filter.

            >>> top = pipe.search("ibuprofen dose for a child", top_k=2).results[0]
            >>> top.id, round(top.score, 3), top.stage1["bm25"].rank, top.stage1["dense"].rank
            ('2', 0.995, 1, 1)
        """
        start = time.perf_counter()
        query = check_query(query)
        policy, do_rerank = self._settings(top_k, floor, candidates, rerank)
        stage1 = self.retriever.retrieve(query, policy.depth, filter=filter, query_id=query_id)
        if not do_rerank:
            return self._finish(query, stage1, None, None, policy, start, explain)
        reranked, rerank_ms = self._rerank(query, stage1, policy, query_id)
        return self._finish(query, stage1, reranked, rerank_ms, policy, start, explain)

    async def asearch(
        self,
        query: str,
        filter: Mapping[str, Any] | None = None,
        *,
        top_k: int | None = None,
        floor: float | str | None = _UNSET,
        candidates: int | None = None,
        rerank: bool = True,
        query_id: str | None = None,
        timeout: float | None = None,
        explain: bool = False,
    ) -> SearchResponse:
        """:meth:`search` for asyncio: stage 1 runs in the default executor (the core releases the GIL),
        stage 2 awaits the shared scheduler. Raises the scheduler's OverloadedError / TimeoutError."""
        import asyncio
        import functools

        start = time.perf_counter()
        query = check_query(query)
        policy, do_rerank = self._settings(top_k, floor, candidates, rerank)
        loop = asyncio.get_running_loop()
        retrieve = functools.partial(self.retriever.retrieve, query, policy.depth, filter=filter, query_id=query_id)
        stage1 = await loop.run_in_executor(None, retrieve)
        if not do_rerank:
            return self._finish(query, stage1, None, None, policy, start, explain)
        t = time.perf_counter()
        reranked = await self.reranker.arerank(query, stage1.candidates, policy=policy, query_id=query_id,
                                               timeout=timeout)
        return self._finish(query, stage1, reranked, _ms(t), policy, start, explain)

    def search_batch(
        self,
        queries: Sequence[str],
        filter: Mapping[str, Any] | None = None,
        *,
        top_k: int | None = None,
        floor: float | str | None = _UNSET,
        candidates: int | None = None,
        rerank: bool = True,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[SearchResponse]:
        """:meth:`search` for many queries: stage 1 batched (in parallel in the core), stage 2 submitted
        for all queries at once to the shared scheduler so their pairs share batches. Per-query timings
        of batched stages are the batch time divided by the number of queries."""
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of str, not a single string")
        queries = [check_query(q) for q in queries]
        policy, do_rerank = self._settings(top_k, floor, candidates, rerank)
        if not queries:
            return []
        ids: list[Any] = [None] * len(queries) if query_ids is None else list(query_ids)
        start = time.perf_counter()
        stage1 = self.retriever.retrieve_batch(queries, policy.depth, filter=filter, query_ids=ids)
        if not do_rerank:
            return [self._finish(q, s, None, None, policy, start) for q, s in zip(queries, stage1)]
        from concurrent.futures import ThreadPoolExecutor

        # One thread per query in flight: the shared scheduler micro-batches their pairs together.
        with ThreadPoolExecutor(max_workers=min(len(queries), MAX_BATCH_THREADS)) as pool:
            reranked = list(pool.map(lambda q, s, i: self._rerank(q, s, policy, i), queries, stage1, ids))
        return [self._finish(q, s, r, ms, policy, start) for q, s, (r, ms) in zip(queries, stage1, reranked)]


def _make_reranker(reranker: Any) -> Any:
    if reranker is None:
        return None
    from funnelrank.rerank.reranker import Reranker

    if isinstance(reranker, str) and reranker == DEFAULT:
        return Reranker()
    if isinstance(reranker, (str, os.PathLike)):
        return Reranker(reranker)
    if not hasattr(reranker, "rerank"):
        raise ValueError(f"reranker must be a Reranker, a model directory, 'default' or None, got {reranker!r}")
    return reranker


def _resolve_floor(floor: float | str | None, reranker: Any) -> float | None:
    """The floor a setting means: "default" is the reranker's (none without a reranker); None or 0 keeps
    everything; a number is checked by the policy."""
    if isinstance(floor, str):
        if floor != DEFAULT:
            raise ValueError(f"floor must be a number in [0, 1], 'default' or None, got {floor!r}")
        return getattr(reranker, "floor", None) if reranker is not None else None
    return floor
