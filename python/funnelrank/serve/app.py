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
only in how they read the request and write the response. Every rerank goes through ONE shared scheduler (the
reranker's), so concurrent requests share batches.
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
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from funnelrank.retrieve.sharded import ShardedCollection, ShardUnavailableError
from funnelrank.serve.admission import WaitEstimator
from funnelrank.serve.limits import ServiceLimits
from funnelrank.serve.metrics import CONTENT_TYPE, ServiceMetrics
from funnelrank.serve.middleware import PARSED_JSON_KEY, JSONErrors, ServiceMiddleware
from funnelrank.serve.schemas import RerankRequest, RerankV2Request, SearchRequest, TEIRerankRequest

__all__ = ["ENDPOINTS", "ServiceError", "create_app"]

ENDPOINTS: tuple[str, ...] = ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/search", "/health", "/metrics")


class ServiceError(Exception):
    """An error answered with `status` and ``{"message": ...}`` (and optional headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class _ParsedBodyRequest(Request):
    """A request whose JSON body the middleware already parsed (strictly, off the event loop when large)."""

    async def json(self) -> Any:
        if PARSED_JSON_KEY in self.scope:
            return self.scope[PARSED_JSON_KEY]
        return await super().json()


class _ParsedBodyRoute(APIRoute):
    """Routes that hand FastAPI the middleware's parsed body instead of parsing it a second time."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed_body_handler(request: Request) -> Response:
            return await handler(_ParsedBodyRequest(request.scope, request.receive))

        return parsed_body_handler


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            position = err.get("loc", ("body", "?"))[-1]
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            parts.append(f"malformed JSON body at character {position}: {reason}")
            continue
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def _document_tokens_read(model: Any, max_length: int, chunking: Any | None) -> int:
    """The most tokens of one document the model reads: ``max_length`` less the pair's special tokens (the
    query takes at least one more), or, when it chunks long documents, what its windows reach."""
    special = int(getattr(model, "n_special", None) or 3)
    if chunking is None:
        return max_length - special
    window = max(1, min(int(chunking.window), max_length - special - 1))
    return int(chunking.max_chunks) * max(1, window - int(chunking.stride)) + window


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
    from funnelrank.pipeline import RETRIEVERS, Pipeline
    from funnelrank.rerank.scheduler import OverloadedError, SchedulerClosedError

    limits = limits or ServiceLimits()
    scheduler = reranker.scheduler
    defaults = {"candidates": 100, "floor": "default", "retriever": None, **(pipeline_defaults or {})}
    metrics = ServiceMetrics(scheduler)
    estimator = WaitEstimator(scheduler)
    retry = {"Retry-After": str(limits.retry_after_s)}
    if limits.max_documents > scheduler.max_queue_pairs:
        raise ValueError(
            f"max_documents={limits.max_documents} exceeds the scheduler's max_queue_pairs="
            f"{scheduler.max_queue_pairs}: such requests could never be admitted"
        )

    pipelines: dict[str | None, Pipeline] = {}

    def pipeline(retriever: str | None) -> Pipeline:
        """The one pipeline per retriever that every /v1/search request shares (per-call settings)."""
        pipe = pipelines.get(retriever)
        if pipe is None:
            assert collection is not None  # /v1/search answers 404 before asking for a pipeline without one
            pipe = Pipeline(collection, retriever, candidates=defaults["candidates"], reranker=reranker)
            pipelines[retriever] = pipe
        return pipe

    app = FastAPI(title="funnelrank", version="1", docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.router.route_class = _ParsedBodyRoute
    app.state.reranker = reranker
    app.state.collection = collection
    app.state.metrics = metrics
    app.state.limits = limits

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The message only: pydantic's error list echoes the input, which may be huge or hold NaN (not JSON).
        return JSONResponse({"message": _validation_message(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            message = f"not found: {where}"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method not allowed: {where}" + (f" (allowed: {allowed})" if allowed else "")
        elif exc.status_code == 400:
            message = f"invalid request: {exc.detail}"
        else:
            message = str(exc.detail)
        return JSONResponse({"message": message}, status_code=exc.status_code, headers=exc.headers)

    def check_query(query: str) -> None:
        if len(query) > limits.max_query_chars:
            raise ServiceError(413, f"query is {len(query)} characters; the limit is {limits.max_query_chars}")
        if not query.strip():
            raise ServiceError(400, "query is empty")
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:
            raise ServiceError(400, "query is not valid Unicode (lone surrogate)") from None

    async def run_rerank(n_pairs: int, n_tokens: int, make_call: Any) -> Any:
        refused = estimator.admit(n_tokens, limits.timeout_s) if n_pairs else None
        if refused is not None:
            r = refused
            what = f"this request ({n_pairs} pairs, about {r.tokens} tokens)"
            rate = f"at the measured {r.tokens_per_s:.0f} tokens/s"
            allowed = f"{estimator.headroom:.0%} of the {limits.timeout_s:g} s timeout ({r.limit_s:.1f} s)"
            if r.alone:
                raise ServiceError(
                    413,
                    f"request too large for this server: {what} needs about {r.tokens / r.tokens_per_s:.1f} s "
                    f"of model time {rate} even with nothing queued ahead, more than the {allowed} a request "
                    "may take; send fewer or shorter documents per request",
                )
            raise ServiceError(
                429,
                f"overloaded: behind the work queued ahead, {what} would finish in about {r.wait_s:.1f} s {rate}, "
                f"later than the {allowed} a request may take; retry later",
                {"Retry-After": str(r.retry_after_s)},
            )
        try:
            return await make_call()
        except OverloadedError as exc:
            raise ServiceError(429, f"overloaded: {exc}", retry) from None
        except TimeoutError as exc:
            raise ServiceError(503, f"timed out: {exc}", retry) from None
        except SchedulerClosedError as exc:
            raise ServiceError(503, f"shutting down: {exc}", retry) from None
        finally:
            if n_pairs:
                estimator.release(n_tokens)

    doc_tokens_read = _document_tokens_read(scheduler.model, estimator.max_length, estimator.chunking)

    def count_tokens(query: str, texts: list[str]) -> int:
        """Tokens the model reads for these pairs (query and documents, after truncation; every window when it
        chunks): the model's own tokenization, counted."""
        return int(scheduler.model.encode(query, texts).lengths.sum()) if texts else 0

    async def rerank_texts(
        query: str, texts: list[str], *, field: str, top_n: int | None, floor: float | None, tokens: bool = False
    ) -> tuple[Any, int | None]:
        """The one rerank path of /v1/rerank, /v2/rerank and /rerank: check `query` and `texts` (the request's
        `field`) against the limits, admit the request, rerank on the shared scheduler (plain documents: the
        cross-encoder's order, no stage-1 fusion). Returns the `RerankResult` and, with `tokens`, the tokens read."""
        check_query(query)
        if len(texts) > limits.max_documents:
            raise ServiceError(413, f"{len(texts)} {field}; the limit is {limits.max_documents} per request")
        for i, text in enumerate(texts):
            if len(text) > limits.max_document_chars:
                raise ServiceError(
                    413, f"{field}[{i}] is {len(text)} characters; the limit is {limits.max_document_chars}"
                )
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ServiceError(400, f"{field}[{i}] is not valid Unicode (lone surrogate)") from None
        n_tokens = estimator.estimate_tokens(len(query), [len(t) for t in texts])
        if n_tokens > limits.max_request_tokens:
            raise ServiceError(
                413,
                f"{len(texts)} {field} of {sum(len(t) for t in texts)} characters need about {n_tokens} model "
                f"tokens; the limit is {limits.max_request_tokens} per request (about "
                f"{estimator.chars_per_token:g} characters per token, at most {estimator.max_length} per "
                f"document); send fewer or shorter {field}",
            )

        async def call() -> tuple[Any, int | None]:
            scored = reranker.arerank(query, texts, top_k=top_n, floor=floor, stage1_weight=0.0,
                                      timeout=limits.timeout_s)
            if not tokens:
                return await scored, None
            counted = asyncio.get_running_loop().run_in_executor(None, count_tokens, query, texts)
            result, n_read = await asyncio.gather(scored, counted)
            return result, n_read

        # Admission counts only the work the model will do: pairs the score cache answers cost nothing, so a
        # repeated request is served even when the queue is too long for a fresh one.
        n_pairs = len(texts)
        cache = scheduler.cache
        if cache is not None and texts:
            missing = cache.missing(query, texts)
            if len(missing) < n_pairs:
                n_pairs = len(missing)
                n_tokens = estimator.estimate_tokens(len(query), [len(texts[i]) for i in missing]) if missing else 0
        return await run_rerank(n_pairs, n_tokens, call)

    def rerank_meta(version: str, result: Any, floor: float | None) -> dict[str, Any]:
        return {
            "api_version": {"version": version},
            "billed_units": {"search_units": 1},
            "model": model_name,
            "no_evidence": bool(result.no_evidence) if floor is not None else False,
        }

    @app.post("/v1/rerank")
    async def rerank(body: RerankRequest) -> dict[str, Any]:
        """Cohere-compatible (v1) rerank of `documents` against `query`."""
        texts = body.texts()
        result, n_read = await rerank_texts(body.query, texts, field="documents", top_n=body.top_n,
                                            floor=body.floor, tokens=True)
        results = []
        for item in result.items:
            entry: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if body.return_documents:
                entry["document"] = {"text": texts[item.index]}
            results.append(entry)
        return {"id": str(uuid.uuid4()), "results": results, "meta": rerank_meta("1", result, body.floor),
                "usage": {"total_tokens": n_read}}  # Jina's rerank API shape, which Jina clients read here

    @app.post("/v2/rerank")
    async def rerank_v2(body: RerankV2Request) -> dict[str, Any]:
        """Cohere v2 rerank of `documents` (strings) against `query`, with Jina-style ``usage.total_tokens``."""
        documents = body.documents
        if body.max_tokens_per_doc is not None and body.max_tokens_per_doc < doc_tokens_read:
            cut = getattr(scheduler.model, "truncate_text", None)
            if cut is None:
                raise ServiceError(
                    400,
                    f"max_tokens_per_doc={body.max_tokens_per_doc} is below the {doc_tokens_read} document tokens "
                    f"this model reads per pair (max_length {estimator.max_length}), and this model cannot cut "
                    f"documents by tokens: omit it or send at least {doc_tokens_read}",
                )
            if all(len(d) <= limits.max_document_chars for d in documents):  # else the limits answer 413
                documents = [cut(d, body.max_tokens_per_doc) for d in documents]
        result, n_read = await rerank_texts(body.query, documents, field="documents", top_n=body.top_n,
                                            floor=body.floor, tokens=True)
        meta = rerank_meta("2", result, body.floor)
        meta["tokens"] = {"input_tokens": n_read}
        return {
            "id": str(uuid.uuid4()),
            "results": [{"index": item.index, "relevance_score": item.score} for item in result.items],
            "meta": meta,
            "usage": {"total_tokens": n_read},
        }

    @app.post("/rerank")
    async def rerank_tei(body: TEIRerankRequest) -> list[dict[str, Any]]:
        """text-embeddings-inference's rerank: every text, best first, as ``{"index", "score", "text"?}``."""
        if body.truncation_direction.lower() != "right":
            raise ServiceError(400, "truncation_direction must be 'right': the model truncates pairs on the right")
        result, _ = await rerank_texts(body.query, body.texts, field="texts", top_n=None, floor=None)
        out = []
        for item in result.items:
            entry: dict[str, Any] = {"index": item.index, "score": item.logit if body.raw_scores else item.score}
            if body.return_text:
                entry["text"] = body.texts[item.index]
            out.append(entry)
        return out

    @app.post("/v1/search")
    async def search(body: SearchRequest) -> dict[str, Any]:
        """Retrieve-and-rerank over the loaded collection."""
        if collection is None:
            raise ServiceError(404, "no collection is loaded (the server runs with --no-collection)")
        check_query(body.query)
        if body.top_k > limits.max_top_k or (body.candidates or 0) > limits.max_top_k:
            raise ServiceError(400, f"top_k and candidates must be <= {limits.max_top_k}")
        retriever = body.retriever if body.retriever is not None else defaults["retriever"]
        if retriever is not None and retriever not in RETRIEVERS:
            raise ServiceError(400, f"retriever must be one of {', '.join(RETRIEVERS)}")
        try:
            pipe = pipeline(retriever)
            candidates = body.candidates or max(pipe.candidates, body.top_k)
            n_pairs = min(candidates, len(collection)) if body.rerank else 0
            response = await run_rerank(
                n_pairs,
                estimator.estimate_pairs(n_pairs),
                lambda: pipe.asearch(body.query, body.filter, top_k=body.top_k, candidates=candidates,
                                     floor=body.floor if body.floor is not None else defaults["floor"],
                                     rerank=body.rerank, timeout=limits.timeout_s, explain=body.explain),
            )
        except ValueError as exc:  # a bad setting, retriever or filter
            raise ServiceError(400, str(exc)) from None
        except ShardUnavailableError as exc:  # a sharded collection's shard died or timed out: no partial answer
            raise ServiceError(503, f"stage 1 unavailable: {exc}", retry) from None
        return {"id": str(uuid.uuid4()), "model": model_name if body.rerank else None, **response.to_dict()}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, model, collection and queue state; with a sharded collection, each shard's (``status`` is
        ``"degraded"`` while one is down)."""
        out: dict[str, Any] = {
            "status": "ok",
            "model": model_name,
            "floor": reranker.floor,
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

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    open_paths: tuple[str, ...] = ("/health",)
    if playground:
        from funnelrank.serve.playground import PLAYGROUND_PATHS, add_playground

        add_playground(app)
        open_paths += PLAYGROUND_PATHS
    # Starlette runs the middleware added LAST outermost: JSONErrors > trusted hosts > CORS > ServiceMiddleware.
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        max_body_bytes=limits.max_body_bytes,
        max_inflight=limits.max_inflight,
        retry_after_s=limits.retry_after_s,
        endpoints=ENDPOINTS + (open_paths[1:] if playground else ()),  # the page's files counted by path
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
    return app
