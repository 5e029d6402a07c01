"""`Reranker`: rerank stage-1 candidates, keep the top-k that clear an absolute relevance floor.

The cross-encoder's sigmoid score is absolute (0..1), so a floor means the same thing for every query. When
no candidate clears it, the result is empty and flagged ``no_evidence=True``: a RAG system should then say
it does not know rather than hand the LLM the least-bad junk.

``stage1_weight`` (0 by default here) orders the kept candidates by a weighted fusion (``fusion``: "rrf" or
"convex") of the cross-encoder's order and the stage-1 order (see :mod:`funnelrank.rerank.fusion`); which
candidates clear the floor is still decided by their own cross-encoder score.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnelrank.candidates import Candidate
from funnelrank.rerank.cascade import CascadeSpec, cascade_ascore, cascade_score
from funnelrank.rerank.cross_encoder import ChunkSpec, CrossEncoder
from funnelrank.rerank.defaults import default_parallelism
from funnelrank.rerank.fusion import check_fusion, check_stage1_weight, fused_order
from funnelrank.rerank.scheduler import RerankScheduler, Scores
from funnelrank.rerank.traces import TraceWriter

DEFAULT_FLOOR = 0.46
"""The default reranker's relevance floor, chosen on validation traces with ``funnelrank calibrate-floor
--min-kept 0.9`` (see the model card)."""
DEFAULT_TOP_K = 10
DEFAULT_CACHE_ENTRIES = 65536
"""(query, passage) scores a `Reranker`'s scheduler keeps for repeats (``cache_entries=0`` turns it off)."""


@dataclass(frozen=True)
class RerankedItem:
    """One kept candidate: the cross-encoder's `score` (sigmoid, 0..1) and `logit`, and its stage-1 place."""

    id: str
    text: str
    score: float
    logit: float
    stage1_rank: int | None
    stage1_score: float | None
    index: int
    """Position of the candidate in the input list."""
    fused_score: float | None = None
    """Its rerank-fusion score (the order of the items) when ``stage1_weight`` > 0, else None."""


@dataclass
class RerankResult:
    """The kept candidates, best first, and why the list may be short or empty."""

    items: list[RerankedItem]
    no_evidence: bool
    """True when candidates were given (or none were) and none cleared the floor."""
    floor: float | None
    top_k: int | None
    n_candidates: int
    max_score: float | None
    """Best score among all candidates, kept or not (None when there were none)."""
    query_truncated: bool = False
    all_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Every candidate's score, in input order."""
    stage1_weight: float = 0.0
    """The rerank-fusion weight that ordered the items (0: cross-encoder order alone)."""
    fusion: str = "rrf"
    """The rerank-fusion method ("rrf" or "convex"; irrelevant when ``stage1_weight`` is 0)."""

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __str__(self) -> str:
        """One line per kept item: score, ``[index]`` in the input, and the text's start."""
        lines = [f"RerankResult(no_evidence={self.no_evidence}, floor={self.floor}, items=["]
        for item in self.items:
            text = item.text if len(item.text) <= 72 else item.text[:69] + "..."
            lines.append(f"  {item.score:.3f}  [{item.index}] {text}")
        lines.append("])")
        return "\n".join(lines)


_UNSET: Any = object()


def as_candidates(candidates: Sequence[Any]) -> list[Candidate]:
    """Normalise candidates: plain strings (ids "0", "1", ... and stage-1 rank = position + 1), `Candidate`s,
    mappings with ``id``/``text`` (and optional ``rank``/``score``), or objects with those attributes."""
    if isinstance(candidates, (str, bytes)):
        raise TypeError("candidates must be a sequence of strings or candidate objects, not a single string")
    out: list[Candidate] = []
    seen: set[str] = set()
    for i, c in enumerate(candidates):
        if isinstance(c, Candidate):
            cand = c
        elif isinstance(c, str):
            cand = Candidate(str(i), c, i + 1, None)
        else:
            get = c.get if isinstance(c, Mapping) else (lambda k, _c=c: getattr(_c, k, None))
            cid, text = get("id"), get("text")
            if cid is None or text is None:
                raise TypeError(f"candidate {i} has no id/text (got {type(c).__name__})")
            rank = get("rank")
            score = get("score")
            cand = Candidate(str(cid), text, None if rank is None else int(rank), None if score is None else float(score))
        if cand.id in seen:
            raise ValueError(f"duplicate candidate id {cand.id!r}")
        seen.add(cand.id)
        out.append(cand)
    return out


def apply_floor(
    candidates: Sequence[Candidate],
    scores: Scores,
    *,
    top_k: int | None,
    floor: float | None,
    stage1_weight: float = 0.0,
    fusion: str = "rrf",
) -> RerankResult:
    """Keep the candidates whose cross-encoder score >= floor (NaN never does), in fused order (see
    :func:`funnelrank.rerank.fusion.fused_order`; ``stage1_weight`` 0 = by score, ties in input order), and
    cut to the top-k. Candidates without a stage-1 rank come after the ranked ones in the stage-1 order, in
    input order (as in :func:`~funnelrank.rerank.fusion.fused_order` and ``funnelrank tune-fusion``, so a
    weight chosen from traces orders candidates the same way); "convex" fusion needs every candidate's
    stage-1 score."""
    s = scores.scores
    order, fused = fused_order(
        s, [c.rank for c in candidates], stage1_weight, fusion=fusion, logits=scores.logits, stage1_scores=[c.score for c in candidates]
    )
    kept: list[RerankedItem] = []
    for i in order:
        if top_k is not None and len(kept) >= top_k:
            break
        if floor is not None and not s[i] >= floor:  # NaN never clears the floor
            continue
        c = candidates[i]
        kept.append(
            RerankedItem(
                c.id, c.text, float(s[i]), float(scores.logits[i]), c.rank, c.score, i,
                None if fused is None else float(fused[i]),
            )
        )
    return RerankResult(
        items=kept,
        no_evidence=not kept,
        floor=floor,
        top_k=top_k,
        n_candidates=len(candidates),
        max_score=float(np.max(s)) if len(candidates) else None,
        query_truncated=scores.query_truncated,
        all_scores=s,
        stage1_weight=check_stage1_weight(stage1_weight),
        fusion=fusion,
    )


def _check_floor(floor: float | None) -> float | None:
    if floor is None:
        return None
    f = float(floor)
    if math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"floor must be a score in [0, 1] (or None for no floor), got {floor!r}")
    return f


def _check_top_k(top_k: int | None) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be a positive integer (or None for all), got {top_k!r}")
    return int(top_k)


class Reranker:
    """Cross-encoder reranking with a relevance floor, on a shared `RerankScheduler`.

        >>> with Reranker() as reranker:  # the default cross-encoder, shipped with funnelrank
        ...     result = reranker.rank("compress data with gzip", ["gzip.compress(data): compress data",
        ...                                                        "json.dumps(obj): serialize to JSON"])
        >>> [(item.index, round(item.score, 3)) for item in result], result.no_evidence
        ([(0, 1.0)], False)

    Args:
        model: a `CrossEncoder`, or a model directory / Hub id to load one from; None (the default) loads
            the default cross-encoder (:func:`funnelrank.rerank.defaults.default_reranker_dir`).
        scheduler: share an existing scheduler (then `model` may be None and `close()` leaves it open).
        floor: default relevance floor (0..1; None disables it).
        top_k: default number of results (None: all that clear the floor).
        stage1_weight: default rerank-fusion weight in [0, 1] (:mod:`funnelrank.rerank.fusion`): 0 orders
            by cross-encoder score alone; :class:`funnelrank.Pipeline` and `funnelrank eval` use the tuned
            :data:`funnelrank.rerank.defaults.DEFAULT_STAGE1_WEIGHT`.
        fusion: default rerank-fusion method, "rrf" or "convex" (:data:`funnelrank.rerank.fusion.FUSION_METHODS`).
        traces: a `TraceWriter` or a JSONL path: every call appends one line per candidate.
        workers: scheduler workers. Loading `model` from a path, each worker gets its own ONNX Runtime
            session; when neither `workers` nor `intra_op_threads` is given both come from
            `default_parallelism` (2 workers x 1 thread on 2 cores). A given `CrossEncoder` is replicated
            for `workers` > 1 when it was built by `CrossEncoder.from_pretrained`, else shared.
        reuse_passage_states: load the model with reused passage states (a segment cross-encoder such as the
            default one: see `CrossEncoder.from_pretrained`); its workers share one state store.
        cascade: a two-pass cascade (:mod:`funnelrank.rerank.cascade`), e.g. ``"int8-128@30"`` or a
            `CascadeSpec`: a cheap first pass (here int8 at 128 tokens, on its own scheduler in `first_pass`)
            scores every candidate and the model rescores only its top 30; the pruned candidates get a score
            of about 1e-13 and rank below the rescored ones. Needs `model` (a path, or a `CrossEncoder`
            built by `from_pretrained`), not `scheduler`. A ``states``/``states-prefix`` first pass reuses
            passage states: compute them at index time with
            ``reranker.first_pass.model.precompute_passages(texts)``. Measure a cascade with ``funnelrank
            optimize --variants cascade-int8-128@30`` before using it.
        **scheduler_options: passed to `RerankScheduler` when this reranker makes its own; its score cache
            (``cache_entries``) defaults to :data:`DEFAULT_CACHE_ENTRIES` pairs here.
    """

    def __init__(
        self,
        model: CrossEncoder | str | os.PathLike[str] | None = None,
        *,
        scheduler: RerankScheduler | None = None,
        floor: float | None = DEFAULT_FLOOR,
        top_k: int | None = DEFAULT_TOP_K,
        stage1_weight: float = 0.0,
        fusion: str = "rrf",
        traces: TraceWriter | str | os.PathLike[str] | None = None,
        max_length: int | None = None,
        intra_op_threads: int | None = None,
        chunking: ChunkSpec | None = None,
        workers: int | None = None,
        reuse_passage_states: bool | str = False,
        cascade: CascadeSpec | str | None = None,
        **scheduler_options: Any,
    ) -> None:
        self.floor = _check_floor(floor)
        self.top_k = _check_top_k(top_k)
        self.stage1_weight = check_stage1_weight(stage1_weight)
        self.fusion = check_fusion(fusion)
        self.cascade: CascadeSpec | None = (
            None if cascade is None else cascade if isinstance(cascade, CascadeSpec) else CascadeSpec.parse(cascade))
        self.first_pass: RerankScheduler | None = None
        """The cascade's first-pass scheduler (None without a cascade)."""
        if scheduler is not None:
            if scheduler_options or workers is not None:
                raise ValueError("scheduler options given together with an existing scheduler")
            if self.cascade is not None:
                raise ValueError("cascade needs a model to derive its first pass from, not an existing scheduler")
            self.scheduler = scheduler
            self._owns_scheduler = False
        else:
            if model is None:
                from funnelrank.rerank.defaults import default_reranker_dir

                model = default_reranker_dir()
            if not isinstance(model, CrossEncoder):
                if workers is None and intra_op_threads is None:
                    workers, intra_op_threads = default_parallelism()
                model = CrossEncoder.from_pretrained(
                    model, max_length=max_length, intra_op_threads=intra_op_threads, chunking=chunking,
                    reuse_passage_states=reuse_passage_states,
                )
            workers = 1 if workers is None else workers
            scheduler_options.setdefault("cache_entries", DEFAULT_CACHE_ENTRIES)
            first = None if self.cascade is None else self._first_pass_model(model, self.cascade)
            if workers > 1 and model.replicable:
                self.scheduler = RerankScheduler(model.replicas(workers), **scheduler_options)
            else:
                self.scheduler = RerankScheduler(model, workers=workers, **scheduler_options)
            if first is not None:
                self.first_pass = RerankScheduler(first.replicas(workers) if workers > 1 else first,
                                                  workers=workers, **scheduler_options)
            self._owns_scheduler = True
        if traces is None or isinstance(traces, TraceWriter):
            self.traces = traces
            self._owns_traces = False
        else:
            self.traces = TraceWriter(traces)
            self._owns_traces = True

    def rerank(
        self,
        query: str,
        candidates: Sequence[Any],
        *,
        top_k: int | None = _UNSET,
        floor: float | None = _UNSET,
        stage1_weight: float = _UNSET,
        fusion: str = _UNSET,
        timeout: float | None = None,
        query_id: str | None = None,
    ) -> RerankResult:
        """Rerank `candidates` (see `as_candidates`) for `query`; keep the top-k with score >= floor.

        `top_k` and `floor` default to the reranker's (10 and :data:`DEFAULT_FLOOR` unless set); None disables each.
        `stage1_weight` (default: the reranker's, 0 unless set) fuses the order with the candidates'
        stage-1 ranks by `fusion` (default: the reranker's, "rrf" unless set; see :func:`apply_floor`).
        `query_id` is recorded in traces (for `funnelrank calibrate-floor --qrels`).
        Raises `OverloadedError` when the scheduler is full and `TimeoutError` after `timeout` seconds.
        """
        cands, k, f, w, m = self._prepare(candidates, top_k, floor, stage1_weight, fusion)
        texts = [c.text for c in cands]
        if self.first_pass is not None and self.cascade is not None:
            scores = cascade_score(self.first_pass, self.scheduler, query, texts, self.cascade.keep, timeout=timeout)
        else:
            scores = self.scheduler.score(query, texts, timeout=timeout)
        return self._finish(query, query_id, cands, scores, k, f, w, m)

    def rank(
        self,
        query: str,
        documents: Sequence[Any],
        *,
        top_k: int | None = _UNSET,
        floor: float | None = _UNSET,
        timeout: float | None = None,
    ) -> RerankResult:
        """Rank `documents` (strings, or candidates as in :meth:`rerank`) for `query`: the top-k that clear
        the floor, best first, each with its ``index`` in `documents`, ``score`` (sigmoid, 0..1) and
        ``text``; ``no_evidence`` is True when none clears the floor.

            >>> result = reranker.rank("compress data with gzip", ["gzip.compress(data): compress data",
            ...                                                    "json.dumps(obj): serialize to JSON"])
            >>> print(result)
            RerankResult(no_evidence=False, floor=0.4, items=[
              1.000  [0] gzip.compress(data): compress data
            ])

        The same as :meth:`rerank` with the reranker's stage-1 fusion turned off (plain documents have no
        stage-1 order to fuse with)."""
        return self.rerank(query, documents, top_k=top_k, floor=floor, stage1_weight=0.0, timeout=timeout)

    async def arerank(
        self,
        query: str,
        candidates: Sequence[Any],
        *,
        top_k: int | None = _UNSET,
        floor: float | None = _UNSET,
        stage1_weight: float = _UNSET,
        fusion: str = _UNSET,
        timeout: float | None = None,
        query_id: str | None = None,
    ) -> RerankResult:
        """`rerank` for asyncio (the same shared scheduler)."""
        cands, k, f, w, m = self._prepare(candidates, top_k, floor, stage1_weight, fusion)
        texts = [c.text for c in cands]
        if self.first_pass is not None and self.cascade is not None:
            scores = await cascade_ascore(self.first_pass, self.scheduler, query, texts, self.cascade.keep,
                                          timeout=timeout)
        else:
            scores = await self.scheduler.ascore(query, texts, timeout=timeout)
        return self._finish(query, query_id, cands, scores, k, f, w, m)

    @staticmethod
    def _first_pass_model(model: CrossEncoder, spec: CascadeSpec) -> CrossEncoder:
        """The cascade's first pass: `model` reloaded as `spec` says (same source, threads, chunking)."""
        if not model.replicable or model._load_args is None:
            raise ValueError("cascade needs a model path or a CrossEncoder built by CrossEncoder.from_pretrained")
        name, kwargs = model._load_args
        options = {**kwargs, "reuse_passage_states": False, "state_store": None, "precision": "fp32",
                   **spec.first_pass_options()}
        if spec.first_max_length is not None:
            options["max_length"] = spec.first_max_length
        return CrossEncoder.from_pretrained(name, **options)

    def _prepare(
        self, candidates: Sequence[Any], top_k: int | None, floor: float | None, stage1_weight: float, fusion: str
    ) -> tuple[list[Candidate], int | None, float | None, float, str]:
        k = self.top_k if top_k is _UNSET else _check_top_k(top_k)
        f = self.floor if floor is _UNSET else _check_floor(floor)
        w = self.stage1_weight if stage1_weight is _UNSET else check_stage1_weight(stage1_weight)
        m = self.fusion if fusion is _UNSET else check_fusion(fusion)
        return as_candidates(candidates), k, f, w, m

    def _finish(
        self,
        query: str,
        query_id: str | None,
        cands: list[Candidate],
        scores: Scores,
        top_k: int | None,
        floor: float | None,
        stage1_weight: float,
        fusion: str,
    ) -> RerankResult:
        result = apply_floor(cands, scores, top_k=top_k, floor=floor, stage1_weight=stage1_weight, fusion=fusion)
        if self.traces is not None:
            self.traces.record(query, query_id, cands, scores, result)
        return result

    def close(self) -> None:
        """Close the scheduler (if this reranker made it) and the trace file (if it opened it)."""
        if self._owns_scheduler:
            self.scheduler.close()
            if self.first_pass is not None:
                self.first_pass.close()
        if self._owns_traces and self.traces is not None:
            self.traces.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
