"""``POST /v1/search``: retrieve-and-rerank over the loaded collection, on the pipeline the service keeps per
retriever (:meth:`funnelrank.serve.state.ServiceState.pipeline`), admitted like a rerank of its candidates."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI

from funnelrank.pipeline import RETRIEVERS
from funnelrank.retrieve.sharded import ShardUnavailableError
from funnelrank.serve.errors import ServiceError
from funnelrank.serve.guards import check_query, run_admitted
from funnelrank.serve.schemas import SearchRequest
from funnelrank.serve.state import StateDep

__all__ = ["add_search_route", "search"]


async def search(body: SearchRequest, state: StateDep) -> dict[str, Any]:
    """Retrieve-and-rerank over the loaded collection."""
    collection, limits, defaults = state.collection, state.limits, state.defaults
    if collection is None:
        raise ServiceError(404, "no collection is loaded (the server runs with --no-collection)")
    check_query(state, body.query)
    if body.top_k > limits.max_top_k or (body.candidates or 0) > limits.max_top_k:
        raise ServiceError(400, f"top_k and candidates must be <= {limits.max_top_k}")
    retriever = body.retriever if body.retriever is not None else defaults["retriever"]
    if retriever is not None and retriever not in RETRIEVERS:
        raise ServiceError(400, f"retriever must be one of {', '.join(RETRIEVERS)}")
    try:
        pipe = state.pipeline(retriever)
        candidates = body.candidates or max(pipe.candidates, body.top_k)
        n_pairs = min(candidates, len(collection)) if body.rerank else 0
        response = await run_admitted(
            state,
            n_pairs,
            state.estimator.estimate_pairs(n_pairs),
            lambda: pipe.asearch(body.query, body.filter, top_k=body.top_k, candidates=candidates,
                                 floor=body.floor if body.floor is not None else defaults["floor"],
                                 rerank=body.rerank, timeout=limits.timeout_s, explain=body.explain),
        )
    except ValueError as exc:  # a bad setting, retriever or filter
        raise ServiceError(400, str(exc)) from None
    except ShardUnavailableError as exc:  # a sharded collection's shard died or timed out: no partial answer
        raise ServiceError(503, f"stage 1 unavailable: {exc}", state.retry) from None
    return {"id": str(uuid.uuid4()), "model": state.model_name if body.rerank else None, **response.to_dict()}


def add_search_route(app: FastAPI) -> None:
    """Register ``POST /v1/search`` on `app`."""
    app.add_api_route("/v1/search", search, methods=["POST"])
