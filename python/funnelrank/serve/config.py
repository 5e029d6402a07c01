"""What a service is built from (:class:`ServiceConfig`) and the one place that builds it (:func:`build_service`):
``funnelrank serve`` in one process and every Ray Serve reranker replica (:mod:`funnelrank.serve.ray_serve`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funnelrank.serve.limits import ServiceLimits

__all__ = ["ServiceConfig", "build_service"]


@dataclass(frozen=True)
class ServiceConfig:
    """The settings of ``funnelrank serve``: the model, its scheduler and score cache, the request limits and
    access rules, and (sharded collections) how long a shard may take to answer."""

    model: str | None = None
    model_name: str = "funnelrank-default"
    max_queue_pairs: int = 4096
    cache_entries: int | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] | None = None
    docs: bool = True
    playground: bool = True
    shard_timeout_s: float = 10.0
    intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        if self.cache_entries is not None and self.cache_entries < 0:
            raise ValueError(f"--cache-entries must be >= 0, got {self.cache_entries}")


def build_service(config: ServiceConfig, collection: Any | None = None) -> tuple[Any, Any]:
    """(the :class:`funnelrank.rerank.Reranker`, the FastAPI app over it and `collection`) for `config`.
    The caller closes the reranker when the app stops."""
    from funnelrank.rerank import Reranker
    from funnelrank.rerank.reranker import DEFAULT_CACHE_ENTRIES
    from funnelrank.serve.app import create_app

    cache = DEFAULT_CACHE_ENTRIES if config.cache_entries is None else config.cache_entries
    options: dict[str, Any] = {"max_queue_pairs": config.max_queue_pairs, "cache_entries": cache,
                               "intra_op_threads": config.intra_op_threads}
    reranker = Reranker(Path(config.model), **options) if config.model else Reranker(**options)
    app = create_app(
        reranker, collection=collection, model_name=config.model_name, limits=config.limits,
        api_key=config.api_key, cors_origins=config.cors_origins,
        trusted_hosts=list(config.trusted_hosts) if config.trusted_hosts is not None else None, docs=config.docs,
        playground=config.playground,
    )
    return reranker, app
