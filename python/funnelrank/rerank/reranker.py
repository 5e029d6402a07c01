"""`Reranker` = a :class:`~funnelrank.rerank.scorer.Scorer` + a :class:`~funnelrank.rerank.policy.RankPolicy`.

The scorer gives every candidate an absolute (sigmoid, 0..1) score; the policy keeps the top-k that clear the
relevance floor, in the order its rerank fusion says. When no candidate clears the floor the result is empty
and flagged ``no_evidence=True``: a RAG system should then say it does not know rather than hand the LLM the
least-bad junk.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

from funnelrank.candidates import Candidate, as_candidates
from funnelrank.rerank.cascade import CascadeScorer, CascadeSpec
from funnelrank.rerank.cross_encoder import CrossEncoder
from funnelrank.rerank.default_model import default_parallelism, default_reranker_dir
from funnelrank.rerank.policy import RankPolicy, RerankResult
from funnelrank.rerank.scheduler import RerankScheduler
from funnelrank.rerank.scorer import Scorer, Scores
from funnelrank.rerank.traces import TraceWriter

__all__ = ["DEFAULT_CACHE_ENTRIES", "Reranker"]

DEFAULT_CACHE_ENTRIES = 65536
"""(query, passage) scores a `Reranker`'s scheduler keeps for repeats (``cache_entries=0`` turns it off)."""

_UNSET: Any = object()
_POLICY_FIELDS = ("floor", "top_k", "depth", "fusion", "stage1_weight")
_SCHEDULER_OPTIONS = frozenset(inspect.signature(RerankScheduler.__init__).parameters) - {"self", "model", "workers"}


class Reranker:
    """Cross-encoder reranking with a relevance floor: a :class:`~funnelrank.rerank.scorer.Scorer` and a
    :class:`~funnelrank.rerank.policy.RankPolicy`.

        >>> with Reranker() as reranker:  # the default cross-encoder, shipped with funnelrank
        ...     result = reranker.rank("compress data with gzip", ["gzip.compress(data): compress data",
        ...                                                        "json.dumps(obj): serialize to JSON"])
        >>> [(item.index, round(item.score, 3)) for item in result], result.no_evidence
        ([(0, 1.0)], False)

    Args:
        model: a `CrossEncoder`, or a model directory / Hub id to load one from; None (the default) loads
            the default cross-encoder (:func:`funnelrank.rerank.default_model.default_reranker_dir`).
        scorer: score with this existing `Scorer` instead (e.g. a shared `RerankScheduler`); `close()`
            leaves it open.
        policy: the `RankPolicy` (default: ``RankPolicy()``, floor :data:`~funnelrank.rerank.policy.DEFAULT_FLOOR`,
            top 10, no stage-1 fusion); ``floor``, ``top_k``, ``stage1_weight``, ``fusion`` given as keywords
            override its fields.
        traces: a `TraceWriter` or a JSONL path: every call appends one line per candidate.
        workers: scheduler workers. Loading `model` from a path, each worker gets its own ONNX Runtime
            session; when neither `workers` nor ``intra_op_threads`` is given both come from
            `default_parallelism` (2 workers x 1 thread on 2 cores). A given `CrossEncoder` is replicated
            for `workers` > 1 when it was built by `CrossEncoder.from_pretrained`, else shared.
        cascade: a two-pass cascade (:mod:`funnelrank.rerank.cascade`), e.g. ``"int8-128@30"`` or a
            `CascadeSpec`: a cheap first pass (here int8 at 128 tokens, on its own scheduler) scores every
            candidate and the model rescores only its top 30 (a :class:`~funnelrank.rerank.cascade.CascadeScorer`);
            the pruned candidates get a score of about 1e-13. Needs `model`, not `scorer`. Measure it with
            ``funnelrank optimize --variants cascade-int8-128@30`` before using it.
        **options: `RankPolicy` fields (``floor``, ``top_k``, ``stage1_weight``, ``fusion``);
            `RerankScheduler` options (``max_batch_tokens``, ``cache_entries`` (default
            :data:`DEFAULT_CACHE_ENTRIES` here), ``timeout``, ...); the rest go to
            `CrossEncoder.from_pretrained` (``max_length``, ``intra_op_threads``, ``chunking``,
            ``reuse_passage_states``, ...).
    """

    def __init__(
        self,
        model: CrossEncoder | str | os.PathLike[str] | None = None,
        *,
        scorer: Scorer | None = None,
        policy: RankPolicy | None = None,
        traces: TraceWriter | str | os.PathLike[str] | None = None,
        workers: int | None = None,
        cascade: CascadeSpec | str | None = None,
        **options: Any,
    ) -> None:
        changes = {k: options.pop(k) for k in _POLICY_FIELDS if k in options}
        self.policy: RankPolicy = (policy or RankPolicy()).replace(**changes)
        spec = None if cascade is None else cascade if isinstance(cascade, CascadeSpec) else CascadeSpec.parse(cascade)
        self.cascade: CascadeSpec | None = spec
        if scorer is not None:
            if options or workers is not None or model is not None:
                raise ValueError("model or scheduler options given together with an existing scorer")
            if spec is not None:
                raise ValueError("cascade needs a model to derive its first pass from, not an existing scorer")
            self.scorer: Scorer = scorer
            self._owns_scorer = False
        else:
            self.scorer = self._make_scorer(model, workers, spec, options)
            self._owns_scorer = True
        if traces is None or isinstance(traces, TraceWriter):
            self.traces = traces
            self._owns_traces = False
        else:
            self.traces = TraceWriter(traces)
            self._owns_traces = True

    @staticmethod
    def _make_scorer(model: CrossEncoder | str | os.PathLike[str] | None, workers: int | None,
                     spec: CascadeSpec | None, options: dict[str, Any]) -> Scorer:
        sched = {k: options.pop(k) for k in list(options) if k in _SCHEDULER_OPTIONS}
        sched.setdefault("cache_entries", DEFAULT_CACHE_ENTRIES)
        if model is None:
            model = default_reranker_dir()
        if not isinstance(model, CrossEncoder):
            if workers is None and options.get("intra_op_threads") is None:
                workers, options["intra_op_threads"] = default_parallelism()
            model = CrossEncoder.from_pretrained(model, **options)
        elif options:
            raise ValueError(f"model options {sorted(options)} given with a loaded CrossEncoder")
        n = 1 if workers is None else workers

        def scheduler(m: CrossEncoder) -> RerankScheduler:
            if n > 1 and m.replicable:
                return RerankScheduler(m.replicas(n), **sched)
            return RerankScheduler(m, workers=n, **sched)

        exact = scheduler(model)
        if spec is None:
            return exact
        return CascadeScorer(scheduler(_first_pass_model(model, spec)), exact, spec.keep)

    @property
    def scheduler(self) -> RerankScheduler | None:
        """The `RerankScheduler` that runs the model (the exact pass of a cascade; None when the scorer is
        something else): its ``stats()`` and score ``cache``."""
        scorer = self.scorer.exact if isinstance(self.scorer, CascadeScorer) else self.scorer
        return scorer if isinstance(scorer, RerankScheduler) else None

    @property
    def first_pass(self) -> RerankScheduler | None:
        """A cascade's first-pass scheduler (None without a cascade): compute passage states for a
        ``states`` first pass with ``reranker.first_pass.model.precompute_passages(texts)``."""
        first = self.scorer.first if isinstance(self.scorer, CascadeScorer) else None
        return first if isinstance(first, RerankScheduler) else None

    @property
    def floor(self) -> float | None:
        """The policy's relevance floor."""
        return self.policy.floor

    @property
    def top_k(self) -> int | None:
        """The policy's ``top_k``."""
        return self.policy.top_k

    def rerank(
        self,
        query: str,
        candidates: Sequence[Any],
        *,
        policy: RankPolicy | None = None,
        timeout: float | None = None,
        query_id: str | None = None,
        **changes: Any,
    ) -> RerankResult:
        """Rerank `candidates` (see :func:`~funnelrank.candidates.as_candidates`) for `query`: score them
        with the scorer, keep them by `policy` (default: the reranker's) with `changes` to its fields
        (``top_k``, ``floor``, ``stage1_weight``, ``fusion``; None disables ``top_k`` or the floor).
        `query_id` is recorded in traces (for `funnelrank calibrate-floor --qrels`).
        Raises `OverloadedError` when the scheduler is full and `TimeoutError` after `timeout` seconds.
        """
        cands, pol = self._prepare(candidates, policy, changes)
        scores = self.scorer.score(query, [c.text for c in cands], timeout=timeout)
        return self._finish(query, query_id, cands, scores, pol)

    async def arerank(
        self,
        query: str,
        candidates: Sequence[Any],
        *,
        policy: RankPolicy | None = None,
        timeout: float | None = None,
        query_id: str | None = None,
        **changes: Any,
    ) -> RerankResult:
        """:meth:`rerank` for asyncio (the same scorer)."""
        cands, pol = self._prepare(candidates, policy, changes)
        scores = await self.scorer.ascore(query, [c.text for c in cands], timeout=timeout)
        return self._finish(query, query_id, cands, scores, pol)

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
            RerankResult(no_evidence=False, floor=0.46, items=[
              1.000  [0] gzip.compress(data): compress data
            ])

        The same as :meth:`rerank` with stage-1 fusion turned off (plain documents have no stage-1 order)."""
        changes: dict[str, Any] = {k: v for k, v in (("top_k", top_k), ("floor", floor)) if v is not _UNSET}
        return self.rerank(query, documents, timeout=timeout, stage1_weight=0.0, **changes)

    def _prepare(self, candidates: Sequence[Any], policy: RankPolicy | None,
                 changes: dict[str, Any]) -> tuple[list[Candidate], RankPolicy]:
        unknown = set(changes) - set(_POLICY_FIELDS)
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; policy fields are {_POLICY_FIELDS}")
        return as_candidates(candidates), (policy or self.policy).replace(**changes)

    def _finish(self, query: str, query_id: str | None, cands: list[Candidate], scores: Scores,
                policy: RankPolicy) -> RerankResult:
        result = policy.apply(cands, scores)
        if self.traces is not None:
            self.traces.record(query, query_id, cands, scores, result)
        return result

    def close(self) -> None:
        """Close the scorer (if this reranker made it) and the trace file (if it opened it)."""
        if self._owns_scorer:
            self.scorer.close()
        if self._owns_traces and self.traces is not None:
            self.traces.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reranker(scorer={type(self.scorer).__name__}, policy={self.policy!r})"


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
