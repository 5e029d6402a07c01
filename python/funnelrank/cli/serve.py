"""`funnelrank serve DIR|--no-collection`: the HTTP service (see :mod:`funnelrank.serve`)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from funnelrank.serve.config import ServiceConfig
from funnelrank.serve.limits import ServiceLimits

_DEFAULT_LIMITS = ServiceLimits()

API_KEY_ENV = "FUNNELRANK_API_KEY"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""Host header values accepted by default when the server binds a loopback address (against DNS rebinding:
a web page whose name resolves to 127.0.0.1 cannot talk to the service under that name)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `serve` sub-command."""
    p = sub.add_parser(
        "serve",
        help="serve /v1/rerank (Cohere-compatible), /v1/search, /health and /metrics over HTTP",
        description="Run the HTTP service. All requests share one dynamic batch scheduler; when it is full "
        "requests get 429 (or 503) with Retry-After instead of waiting forever. By default it listens on "
        "127.0.0.1 only, accepts only loopback Host headers, and needs no API key.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("collection", nargs="?", metavar="DIR", help="collection directory for /v1/search")
    where.add_argument("--no-collection", action="store_true", help="serve /v1/rerank only")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", metavar="PATH", default=None, help="cross-encoder directory (default: shipped model)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads per reranker (default: ONNX Runtime's choice, every core)")
    p.add_argument("--max-queue-pairs", type=int, default=4096, help="rerank queue bound (pairs); beyond it 429")
    p.add_argument("--cache-entries", type=int, default=None,
                   help="(query, passage) scores kept to answer repeats (default: the Reranker's, 65536; 0: off)")
    p.add_argument("--max-documents", type=int, default=_DEFAULT_LIMITS.max_documents)
    p.add_argument("--max-document-chars", type=int, default=_DEFAULT_LIMITS.max_document_chars)
    p.add_argument("--max-query-chars", type=int, default=_DEFAULT_LIMITS.max_query_chars)
    p.add_argument("--max-request-tokens", type=int, default=_DEFAULT_LIMITS.max_request_tokens,
                   help="most model tokens one /v1/rerank call may need, estimated from its characters "
                   f"(default {_DEFAULT_LIMITS.max_request_tokens}, sized for a 2-core CPU; raise it on faster "
                   "hardware)")
    p.add_argument("--max-body-bytes", type=int, default=_DEFAULT_LIMITS.max_body_bytes)
    p.add_argument("--max-inflight", type=int, default=_DEFAULT_LIMITS.max_inflight)
    p.add_argument("--timeout", type=float, default=_DEFAULT_LIMITS.timeout_s, help="per-request rerank timeout (s)")
    p.add_argument("--body-timeout", type=float, default=_DEFAULT_LIMITS.body_timeout_s,
                   help="seconds a client has to send a request body (408 beyond)")
    p.add_argument("--header-timeout", type=float, default=_DEFAULT_LIMITS.header_timeout_s,
                   help="seconds a connection has to send a request's headers, after connecting or after its "
                   "previous response (408 and closed beyond)")
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every endpoint but /health (default: ${API_KEY_ENV} "
                   "if set; prefer the variable: a command line is visible to other users)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin, e.g. https://app.example.com (repeatable)")
    p.add_argument("--trusted-host", action="append", default=None, metavar="HOST",
                   help="accept only requests whose Host header is HOST ('*.example.com' wildcards, '*' for any; "
                   "repeatable). Default: 127.0.0.1, localhost and [::1] when --host is a loopback address, else any")
    p.add_argument("--no-docs", action="store_true", help="do not serve /docs and /openapi.json")
    p.add_argument("--no-playground", action="store_true",
                   help="do not serve the playground page at / (a browser view of search and rerank)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    ray = p.add_argument_group("Ray Serve (pip install 'funnelrank[ray]'; see funnelrank.serve.ray_serve)")
    ray.add_argument("--ray", action="store_true",
                     help="deploy on Ray Serve: an ingress, reranker replicas and one deployment per shard of DIR "
                     "(a directory from `funnelrank shard`, or a collection: one shard)")
    ray.add_argument("--ray-address", default=None, help="cluster to join (default: $RAY_ADDRESS, else a local one)")
    ray.add_argument("--replicas", type=_replicas, default=1, help="reranker replicas, or 'auto' (autoscaling)")
    ray.add_argument("--min-replicas", type=int, default=1, help="with --replicas auto")
    ray.add_argument("--max-replicas", type=int, default=4, help="with --replicas auto")
    ray.add_argument("--target-ongoing", type=float, default=8.0,
                     help="with --replicas auto: requests per replica the autoscaler aims at")
    ray.add_argument("--max-ongoing", type=int, default=64,
                     help="requests one reranker replica holds at once (its scheduler batches them)")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="Ray CPUs per reranker replica")
    ray.add_argument("--shard-replicas", type=int, default=1, help="replicas of each shard deployment")
    ray.add_argument("--shard-cpus", type=float, default=0.25, help="Ray CPUs per shard replica")
    p.set_defaults(func=run)


def _replicas(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--replicas must be a positive integer or 'auto', got {value!r}")
    return n


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Load the model (and collection), then serve until interrupted."""
    from funnelrank.serve import require_serve_extra

    require_serve_extra()
    import uvicorn

    from funnelrank.serve.server import server_config

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    limits = ServiceLimits(
        max_body_bytes=args.max_body_bytes,
        max_documents=args.max_documents,
        max_document_chars=args.max_document_chars,
        max_query_chars=args.max_query_chars,
        max_request_tokens=args.max_request_tokens,
        max_inflight=args.max_inflight,
        timeout_s=args.timeout,
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
        max_receiving_bytes=max(_DEFAULT_LIMITS.max_receiving_bytes, args.max_body_bytes),
    )
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    api_key = api_key or None
    if args.trusted_host is not None:
        trusted_hosts: list[str] | None = None if "*" in args.trusted_host else list(args.trusted_host)
    else:
        trusted_hosts = list(LOOPBACK_HOSTS) if is_loopback(args.host) else None
    from funnelrank.serve.config import build_service

    config = ServiceConfig(
        model=str(Path(args.model).resolve()) if args.model is not None else None,
        model_name=Path(args.model).resolve().name if args.model is not None else "funnelrank-default",
        max_queue_pairs=args.max_queue_pairs, cache_entries=args.cache_entries, limits=limits, api_key=api_key,
        cors_origins=tuple(args.cors_origin), trusted_hosts=tuple(trusted_hosts) if trusted_hosts is not None else None,
        docs=not args.no_docs, playground=not args.no_playground, intra_op_threads=args.threads,
    )
    if args.ray:
        return _run_on_ray(args, config)
    collection = None
    if args.collection is not None:
        from funnelrank.retrieve.sharded import is_shard_dir, load_shards
        from funnelrank.store.collection import Collection

        collection = load_shards(args.collection) if is_shard_dir(args.collection) else Collection.load(args.collection)
    reranker, app = build_service(config, collection)
    name = config.model_name
    access = "API key required" if api_key else "no API key"
    print(
        f"funnelrank serve: model {name}, "
        + (f"collection {args.collection} ({len(collection)} documents)" if collection is not None else "no collection")
        + f", listening on http://{args.host}:{args.port} ({access}"
        + ("" if args.no_playground else f"; playground at http://{args.host}:{args.port}/") + ")",
        file=sys.stderr,
        flush=True,
    )
    if not is_loopback(args.host) and not api_key:
        print(f"funnelrank serve: warning: --host {args.host} is reachable from other machines and no API key is "
              f"set (--api-key or ${API_KEY_ENV}): anyone who can reach it can use it", file=sys.stderr, flush=True)
    try:
        uvicorn.Server(server_config(app, host=args.host, port=args.port, limits=limits,
                                     log_level=args.log_level)).run()
    finally:
        reranker.close()
    return 0


def _run_on_ray(args: argparse.Namespace, config: ServiceConfig) -> int:
    """`serve --ray`: deploy on Ray Serve (funnelrank.serve.ray_serve) and wait until interrupted."""
    import time

    try:
        import ray
        from ray import serve
    except ImportError:
        raise SystemExit("funnelrank serve --ray needs Ray Serve: pip install 'funnelrank[ray]'") from None
    from funnelrank.serve.ray_serve import build_app
    from funnelrank.serve.ray_serve import run as deploy

    name = config.model_name
    source = str(Path(args.collection).resolve()) if args.collection is not None else None
    app = build_app(source, config, replicas=args.replicas, min_replicas=args.min_replicas,
                    max_replicas=args.max_replicas, target_ongoing_requests=args.target_ongoing,
                    max_ongoing_requests=args.max_ongoing, replica_cpus=args.replica_cpus,
                    shard_replicas=args.shard_replicas, shard_cpus=args.shard_cpus)
    ray.init(address=args.ray_address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    try:
        deploy(app, host=args.host, port=args.port)
        print(f"funnelrank serve --ray: model {name}, " + (f"shards of {source}" if source else "no collection")
              + f", {args.replicas} reranker replica(s), listening on http://{args.host}:{args.port}",
              file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0
