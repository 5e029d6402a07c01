"""``GET /health`` (liveness, model, default floor, collection and queue state) and ``GET /metrics`` (the
Prometheus text format, :mod:`funnelrank.serve.metrics`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from funnelrank.retrieve.sharded import ShardedCollection
from funnelrank.serve.metrics import CONTENT_TYPE
from funnelrank.serve.state import StateDep

__all__ = ["add_status_routes", "health", "prometheus"]


async def health(state: StateDep) -> dict[str, Any]:
    """Liveness, model, collection and queue state; with a sharded collection, each shard's (``status`` is
    ``"degraded"`` while one is down)."""
    collection, scheduler = state.collection, state.scheduler
    out: dict[str, Any] = {
        "status": "ok",
        "model": state.model_name,
        "floor": state.reranker.floor,
        "collection": (
            None if collection is None else {"documents": len(collection), "dense": bool(collection.dense)}
        ),
        "queue": {"pending_pairs": scheduler.pending_pairs, "max_queue_pairs": scheduler.max_queue_pairs},
    }
    if isinstance(collection, ShardedCollection):
        shards = await asyncio.get_running_loop().run_in_executor(None, collection.health)
        out["collection"]["shards"] = shards
        if not all(s["up"] for s in shards):
            out["status"] = "degraded"
    return out


async def prometheus(state: StateDep) -> Response:
    """Prometheus text exposition."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def add_status_routes(app: FastAPI) -> None:
    """Register ``GET /health`` and ``GET /metrics`` on `app`."""
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metrics", prometheus, methods=["GET"])
