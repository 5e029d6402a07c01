"""`funnelrank serve DIR|--no-collection`: the HTTP service (see :mod:`funnelrank.service`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from funnelrank.service.limits import ServiceLimits

_DEFAULT_LIMITS = ServiceLimits()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `serve` sub-command."""
    p = sub.add_parser(
        "serve",
        help="serve /v1/rerank (Cohere-compatible), /v1/search, /health and /metrics over HTTP",
        description="Run the HTTP service. All requests share one dynamic batch scheduler; when it is full "
        "requests get 429 (or 503) with Retry-After instead of waiting forever.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("collection", nargs="?", metavar="DIR", help="collection directory for /v1/search")
    where.add_argument("--no-collection", action="store_true", help="serve /v1/rerank only")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", metavar="PATH", default=None, help="cross-encoder directory (default: shipped model)")
    p.add_argument("--max-queue-pairs", type=int, default=4096, help="rerank queue bound (pairs); beyond it 429")
    p.add_argument("--max-documents", type=int, default=_DEFAULT_LIMITS.max_documents)
    p.add_argument("--max-document-chars", type=int, default=_DEFAULT_LIMITS.max_document_chars)
    p.add_argument("--max-query-chars", type=int, default=_DEFAULT_LIMITS.max_query_chars)
    p.add_argument("--max-inflight", type=int, default=_DEFAULT_LIMITS.max_inflight)
    p.add_argument("--timeout", type=float, default=_DEFAULT_LIMITS.timeout_s, help="per-request rerank timeout (s)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model (and collection), then serve until interrupted."""
    from funnelrank.service import require_serve_extra

    require_serve_extra()
    import uvicorn

    from funnelrank.rerank import Reranker
    from funnelrank.service.app import create_app

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    limits = ServiceLimits(
        max_documents=args.max_documents,
        max_document_chars=args.max_document_chars,
        max_query_chars=args.max_query_chars,
        max_inflight=args.max_inflight,
        timeout_s=args.timeout,
    )
    collection = None
    if args.collection is not None:
        from funnelrank.collection import Collection

        collection = Collection.load(args.collection)
    if args.model is not None:
        model_path = Path(args.model)
        reranker = Reranker(model_path, max_queue_pairs=args.max_queue_pairs)
        name = model_path.resolve().name
    else:
        reranker = Reranker(max_queue_pairs=args.max_queue_pairs)
        name = "funnelrank-default"
    app = create_app(reranker, collection=collection, model_name=name, limits=limits)
    print(
        f"funnelrank serve: model {name}, "
        + (f"collection {args.collection} ({len(collection)} documents)" if collection is not None else "no collection")
        + f", listening on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        reranker.close()
    return 0
