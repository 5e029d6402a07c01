"""The one state a service app holds: :class:`ServiceState`, kept on ``app.state.service`` and handed to every
route handler by the :data:`StateDep` dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from funnelrank.pipeline import Pipeline
from funnelrank.serve.admission import WaitEstimator
from funnelrank.serve.limits import ServiceLimits
from funnelrank.serve.metrics import ServiceMetrics

__all__ = ["ServiceState", "StateDep", "service_state"]


@dataclass
class ServiceState:
    """What the route handlers of one service app share.

    Attributes:
        reranker: the :class:`funnelrank.rerank.reranker.Reranker`; its scheduler is shared by every request.
        collection: the collection ``/v1/search`` searches (None: 404 there).
        model_name: reported in responses and ``/health``.
        limits: request limits and overload behaviour.
        defaults: ``/v1/search``'s defaults: ``candidates``, ``floor`` and ``retriever``.
        metrics: the service's Prometheus metrics.
        estimator: admission control over the reranker's scheduler (:mod:`funnelrank.serve.admission`).
        retry: the ``Retry-After`` header sent with an overload or shutdown answer.
        doc_tokens_read: the most tokens of one document the model reads.
        pipelines: the one :class:`~funnelrank.pipeline.Pipeline` per retriever that every ``/v1/search``
            request shares (built on first use, see :meth:`pipeline`).
    """

    reranker: Any
    collection: Any | None
    model_name: str
    limits: ServiceLimits
    defaults: dict[str, Any]
    metrics: ServiceMetrics
    estimator: WaitEstimator
    retry: dict[str, str]
    doc_tokens_read: int
    pipelines: dict[str | None, Pipeline] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        reranker: Any,
        *,
        collection: Any | None = None,
        model_name: str = "funnelrank-reranker",
        limits: ServiceLimits | None = None,
        pipeline_defaults: dict[str, Any] | None = None,
    ) -> ServiceState:
        """The state of a service over `reranker` (see :func:`funnelrank.serve.app.create_app` for the
        arguments); ValueError when `limits` allow requests the scheduler could never admit."""
        limits = limits or ServiceLimits()
        scheduler = reranker.scheduler
        defaults = {"candidates": 100, "floor": "default", "retriever": None, **(pipeline_defaults or {})}
        metrics = ServiceMetrics(scheduler)
        estimator = WaitEstimator(scheduler)
        if limits.max_documents > scheduler.max_queue_pairs:
            raise ValueError(
                f"max_documents={limits.max_documents} exceeds the scheduler's max_queue_pairs="
                f"{scheduler.max_queue_pairs}: such requests could never be admitted"
            )
        return cls(
            reranker=reranker, collection=collection, model_name=model_name, limits=limits, defaults=defaults,
            metrics=metrics, estimator=estimator, retry={"Retry-After": str(limits.retry_after_s)},
            doc_tokens_read=_document_tokens_read(scheduler.model, estimator.max_length, estimator.chunking),
        )

    @property
    def scheduler(self) -> Any:
        """The reranker's scheduler, which every rerank goes through."""
        return self.reranker.scheduler

    def pipeline(self, retriever: str | None) -> Pipeline:
        """The one pipeline per retriever that every /v1/search request shares (per-call settings)."""
        pipe = self.pipelines.get(retriever)
        if pipe is None:
            assert self.collection is not None  # /v1/search answers 404 before asking for a pipeline without one
            pipe = Pipeline(self.collection, retriever, candidates=self.defaults["candidates"], reranker=self.reranker)
            self.pipelines[retriever] = pipe
        return pipe


def _document_tokens_read(model: Any, max_length: int, chunking: Any | None) -> int:
    """The most tokens of one document the model reads: ``max_length`` less the pair's special tokens (the
    query takes at least one more), or, when it chunks long documents, what its windows reach."""
    special = int(getattr(model, "n_special", None) or 3)
    if chunking is None:
        return max_length - special
    window = max(1, min(int(chunking.window), max_length - special - 1))
    return int(chunking.max_chunks) * max(1, window - int(chunking.stride)) + window


async def service_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` of the app serving `request` (a FastAPI dependency)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(service_state)]
"""A route handler's parameter annotation that FastAPI fills with the app's :class:`ServiceState`."""
