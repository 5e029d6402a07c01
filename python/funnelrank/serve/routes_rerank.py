"""The rerank routes: ``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2) and ``POST /rerank``
(text-embeddings-inference). They run one code path (:func:`rerank_texts`: the same checks, limits, admission
and scheduler call) and differ only in how they read the request and write the response."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import FastAPI

from funnelrank.serve.errors import ServiceError
from funnelrank.serve.guards import check_query, run_admitted
from funnelrank.serve.schemas import RerankRequest, RerankV2Request, TEIRerankRequest
from funnelrank.serve.state import ServiceState, StateDep

__all__ = ["add_rerank_routes", "rerank", "rerank_texts", "rerank_tei", "rerank_v2"]


def _count_tokens(state: ServiceState, query: str, texts: list[str]) -> int:
    """Tokens the model reads for these pairs (query and documents, after truncation; every window when it
    chunks): the model's own tokenization, counted."""
    return int(state.scheduler.model.encode(query, texts).lengths.sum()) if texts else 0


def _check_texts(state: ServiceState, query: str, texts: list[str], field: str) -> int:
    """The estimated tokens of reranking `texts` (the request's `field`) against `query`; ServiceError unless
    each and all of them fit the limits."""
    limits, estimator = state.limits, state.estimator
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
    return n_tokens


async def rerank_texts(
    state: ServiceState, query: str, texts: list[str], *, field: str, top_n: int | None, floor: float | None,
    tokens: bool = False,
) -> tuple[Any, int | None]:
    """The one rerank path of /v1/rerank, /v2/rerank and /rerank: check `query` and `texts` (the request's
    `field`) against the limits, admit the request, rerank on the shared scheduler (plain documents: the
    cross-encoder's order, no stage-1 fusion). Returns the `RerankResult` and, with `tokens`, the tokens read."""
    check_query(state, query)
    n_tokens = _check_texts(state, query, texts, field)

    async def call() -> tuple[Any, int | None]:
        scored = state.reranker.arerank(query, texts, top_k=top_n, floor=floor, stage1_weight=0.0,
                                        timeout=state.limits.timeout_s)
        if not tokens:
            return await scored, None
        counted = asyncio.get_running_loop().run_in_executor(None, _count_tokens, state, query, texts)
        result, n_read = await asyncio.gather(scored, counted)
        return result, n_read

    # Admission counts only the work the model will do: pairs the score cache answers cost nothing, so a
    # repeated request is served even when the queue is too long for a fresh one.
    n_pairs = len(texts)
    cache = state.scheduler.cache
    if cache is not None and texts:
        missing = cache.missing(query, texts)
        if len(missing) < n_pairs:
            n_pairs = len(missing)
            n_tokens = state.estimator.estimate_tokens(len(query), [len(texts[i]) for i in missing]) if missing else 0
    return await run_admitted(state, n_pairs, n_tokens, call)


def _rerank_meta(state: ServiceState, version: str, result: Any, floor: float | None) -> dict[str, Any]:
    return {
        "api_version": {"version": version},
        "billed_units": {"search_units": 1},
        "model": state.model_name,
        "no_evidence": bool(result.no_evidence) if floor is not None else False,
    }


async def rerank(body: RerankRequest, state: StateDep) -> dict[str, Any]:
    """Cohere-compatible (v1) rerank of `documents` against `query`."""
    texts = body.texts()
    result, n_read = await rerank_texts(state, body.query, texts, field="documents", top_n=body.top_n,
                                        floor=body.floor, tokens=True)
    results = []
    for item in result.items:
        entry: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
        if body.return_documents:
            entry["document"] = {"text": texts[item.index]}
        results.append(entry)
    return {"id": str(uuid.uuid4()), "results": results, "meta": _rerank_meta(state, "1", result, body.floor),
            "usage": {"total_tokens": n_read}}  # Jina's rerank API shape, which Jina clients read here


async def rerank_v2(body: RerankV2Request, state: StateDep) -> dict[str, Any]:
    """Cohere v2 rerank of `documents` (strings) against `query`, with Jina-style ``usage.total_tokens``."""
    documents = body.documents
    if body.max_tokens_per_doc is not None and body.max_tokens_per_doc < state.doc_tokens_read:
        cut = getattr(state.scheduler.model, "truncate_text", None)
        if cut is None:
            raise ServiceError(
                400,
                f"max_tokens_per_doc={body.max_tokens_per_doc} is below the {state.doc_tokens_read} document "
                f"tokens this model reads per pair (max_length {state.estimator.max_length}), and this model "
                f"cannot cut documents by tokens: omit it or send at least {state.doc_tokens_read}",
            )
        if all(len(d) <= state.limits.max_document_chars for d in documents):  # else the limits answer 413
            documents = [cut(d, body.max_tokens_per_doc) for d in documents]
    result, n_read = await rerank_texts(state, body.query, documents, field="documents", top_n=body.top_n,
                                        floor=body.floor, tokens=True)
    meta = _rerank_meta(state, "2", result, body.floor)
    meta["tokens"] = {"input_tokens": n_read}
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": item.index, "relevance_score": item.score} for item in result.items],
        "meta": meta,
        "usage": {"total_tokens": n_read},
    }


async def rerank_tei(body: TEIRerankRequest, state: StateDep) -> list[dict[str, Any]]:
    """text-embeddings-inference's rerank: every text, best first, as ``{"index", "score", "text"?}``."""
    if body.truncation_direction.lower() != "right":
        raise ServiceError(400, "truncation_direction must be 'right': the model truncates pairs on the right")
    result, _ = await rerank_texts(state, body.query, body.texts, field="texts", top_n=None, floor=None)
    out = []
    for item in result.items:
        entry: dict[str, Any] = {"index": item.index, "score": item.logit if body.raw_scores else item.score}
        if body.return_text:
            entry["text"] = body.texts[item.index]
        out.append(entry)
    return out


def add_rerank_routes(app: FastAPI) -> None:
    """Register ``POST /v1/rerank``, ``POST /v2/rerank`` and ``POST /rerank`` on `app`."""
    app.add_api_route("/v1/rerank", rerank, methods=["POST"])
    app.add_api_route("/v2/rerank", rerank_v2, methods=["POST"])
    app.add_api_route("/rerank", rerank_tei, methods=["POST"])
