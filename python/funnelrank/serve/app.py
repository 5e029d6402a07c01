"""The HTTP service: FastAPI app factory.

Endpoints:

* ``POST /v1/rerank`` -- Cohere-compatible rerank: ``{"query", "documents", "top_n"?, "return_documents"?,
  "model"?}`` -> ``{"id", "results": [{"index", "relevance_score", "document"?: {"text"}}], "meta",
  "usage": {"total_tokens"}}`` (also Jina's rerank shape). ``relevance_score`` is the cross-encoder's sigmoid score (absolute, 0..1). The ``model`` field is
  accepted for compatibility and ignored: the served model is named in ``meta.model``.
* ``POST /v2/rerank`` -- Cohere v2 rerank: ``{"query", "documents": [str], "top_n"?, "max_tokens_per_doc"?,
  "model"?}`` -> ``{"id", "results": [{"index", "relevance_score"}], "meta": {"api_version": {"version": "2"},
  "billed_units", "tokens": {"input_tokens"}, ...}, "usage": {"total_tokens"}}``. ``usage.total_tokens`` (Jina's
  name) and ``meta.tokens.input_tokens`` are the tokens the model read (query and documents, after truncation).
  The model reads at most its ``max_length`` tokens per pair, so a ``max_tokens_per_doc`` at or above what it
  reads of a document changes nothing; a smaller one cuts each document after that many tokens of the model's
  tokenizer (a model without one, such as a test double, answers 400).
* ``POST /rerank`` -- the text-embeddings-inference (TEI) shape: ``{"query", "texts", "raw_scores"?,
  "return_text"?, "truncate"?, "truncation_direction"?}`` -> ``[{"index", "score", "text"?}]``, every text, best
  first; ``score`` is the sigmoid score, or the logit with ``raw_scores``. Pairs are always truncated on the
  right to the model's ``max_length`` (``truncate: false`` does not make long inputs an error;
  ``truncation_direction: "left"`` is refused with 400).
* ``POST /v1/search`` -- retrieve-and-rerank over the loaded collection: ``{"query", "top_k"?, "filter"?,
  "floor"?, "candidates"?, "retriever"?, "rerank"?, "explain"?}`` -> :meth:`funnelrank.pipeline.SearchResponse.to_dict`
  (``explain``: also ``funnel``, every candidate with its stage-1 and rerank scores).
* ``GET /health`` -- liveness plus model, default floor, collection and queue state.
* ``GET /`` -- the playground page (:mod:`funnelrank.serve.playground`; ``playground=False`` turns it off).
* ``GET /metrics`` -- Prometheus text format (see :mod:`funnelrank.serve.metrics`).

The three rerank shapes run one code path (the same checks, limits, admission and scheduler call) and differ
only in how they read the request and write the response (:mod:`funnelrank.serve.routes_rerank`). Every
rerank goes through ONE shared scheduler (the reranker's), so concurrent requests share batches.
Overload is answered at once, never queued forever: 429 when the scheduler's queue is full or when the
measured throughput says the request would outlive 80% of ``timeout_s`` behind the work ahead of it
(:mod:`funnelrank.serve.admission`, which counts tokens), 503 when too many requests are in flight or a
request does outlive ``timeout_s``; both carry ``Retry-After``. Size limits
(:class:`~funnelrank.serve.limits.ServiceLimits`) answer 413, and so does a request that the measured
throughput says could not finish in time even alone; a body not received within ``body_timeout_s`` 408;
semantic problems 400; malformed JSON (not UTF-8, NaN/Infinity, numbers beyond float64 or integers beyond 64
bits, nesting too deep to parse, more than 64 top-level fields) and wrong types 422; a missing or wrong API key
401; unknown paths 404, wrong methods 405. Every error body is ``{"message": ...}``
(:class:`~funnelrank.serve.middleware.JSONErrors` rewrites the few plain-text ones Starlette's middleware
produces, and answers an unexpected exception with a JSON 500).

Access (all off by default; ``funnelrank serve`` binds 127.0.0.1): `api_key` (clients send
``Authorization: Bearer <key>``; ``/health`` stays open), `cors_origins` (Starlette's CORSMiddleware),
`trusted_hosts` (Starlette's TrustedHostMiddleware: requests whose Host header is not listed get 400, against
DNS rebinding), `docs` (False: no ``/docs`` or ``/openapi.json``) and `playground` (False: no page at ``/``; the
page's static files are answered without the key, its API calls need it).

The app is small route handlers over one state object: :func:`create_app` builds the
:class:`~funnelrank.serve.state.ServiceState` (kept on ``app.state.service``), registers the routes of
:mod:`~funnelrank.serve.routes_rerank`, :mod:`~funnelrank.serve.routes_search` and
:mod:`~funnelrank.serve.routes_status`, the error handlers (:mod:`funnelrank.serve.errors`) and the middleware.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from funnelrank.serve.errors import add_error_handlers
from funnelrank.serve.limits import ServiceLimits
from funnelrank.serve.middleware import JSONErrors, ServiceMiddleware
from funnelrank.serve.routes_rerank import add_rerank_routes
from funnelrank.serve.routes_search import add_search_route
from funnelrank.serve.routes_status import add_status_routes
from funnelrank.serve.routing import ParsedBodyRoute
from funnelrank.serve.state import ServiceState

__all__ = ["ENDPOINTS", "create_app"]

ENDPOINTS: tuple[str, ...] = ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/search", "/health", "/metrics")


def create_app(
    reranker: Any,
    *,
    collection: Any | None = None,
    model_name: str = "funnelrank-reranker",
    limits: ServiceLimits | None = None,
    pipeline_defaults: dict[str, Any] | None = None,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    trusted_hosts: Sequence[str] | None = None,
    docs: bool = True,
    playground: bool = True,
) -> FastAPI:
    """Build the service app.

    Args:
        reranker: a :class:`funnelrank.rerank.reranker.Reranker`; its scheduler is shared by every request.
        collection: a :class:`funnelrank.store.collection.Collection` or :class:`funnelrank.retrieve.sharded.ShardedCollection`
            for ``/v1/search`` (None: 404 there). A shard that cannot answer makes that request a 503.
        model_name: reported in responses and ``/health``.
        limits: request limits and overload behaviour.
        pipeline_defaults: default keyword arguments for :class:`funnelrank.pipeline.Pipeline`
            (``retriever``, ``candidates``, ``floor``).
        api_key: when set, every endpoint but ``/health`` needs ``Authorization: Bearer <api_key>`` (else 401).
        cors_origins: browser origins allowed to call the API (CORS); none by default.
        trusted_hosts: Host header values accepted (``"*.example.com"`` wildcards allowed); None: any.
        docs: serve the interactive docs at ``/docs`` and the schema at ``/openapi.json``.
        playground: serve the playground page at ``/`` (:mod:`funnelrank.serve.playground`).
    """
    state = ServiceState.create(reranker, collection=collection, model_name=model_name, limits=limits,
                                pipeline_defaults=pipeline_defaults)
    app = FastAPI(title="funnelrank", version="1", docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.router.route_class = ParsedBodyRoute  # every route below, the playground's included
    app.state.service = state
    add_error_handlers(app)
    add_rerank_routes(app)
    add_search_route(app)
    add_status_routes(app)
    open_paths: tuple[str, ...] = ("/health",)
    if playground:
        from funnelrank.serve.playground import PLAYGROUND_PATHS, add_playground

        add_playground(app)
        open_paths += PLAYGROUND_PATHS
    _add_middleware(app, state, open_paths, api_key=api_key, cors_origins=cors_origins, trusted_hosts=trusted_hosts)
    return app


def _add_middleware(
    app: FastAPI,
    state: ServiceState,
    open_paths: tuple[str, ...],
    *,
    api_key: str | None,
    cors_origins: Sequence[str],
    trusted_hosts: Sequence[str] | None,
) -> None:
    """Add the service's middleware to `app`. Starlette runs the middleware added LAST outermost: JSONErrors >
    trusted hosts > CORS > ServiceMiddleware. `open_paths` are answered without the API key: ``/health`` and
    the playground's files, which the metrics count by path."""
    limits = state.limits
    app.add_middleware(
        ServiceMiddleware,
        metrics=state.metrics,
        max_body_bytes=limits.max_body_bytes,
        max_inflight=limits.max_inflight,
        retry_after_s=limits.retry_after_s,
        endpoints=ENDPOINTS + open_paths[1:],  # the playground's files (if any) counted by path
        open_paths=open_paths,
        body_timeout_s=limits.body_timeout_s,
        max_receiving_bytes=limits.max_receiving_bytes,
        api_key=api_key or None,
        max_documents=limits.max_documents,
    )
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After"],
        )
    if trusted_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(trusted_hosts), www_redirect=False)
    app.add_middleware(JSONErrors)
