"""The service on Ray Serve: the same HTTP API, with reranker replicas and stage-1 shards as deployments.

    funnelrank shard COLLECTION --shards 3 --out SHARDS
    funnelrank serve SHARDS --ray --replicas 2            # or --replicas auto --min-replicas 1 --max-replicas 4

Three deployments (``pip install "funnelrank[ray]"``)::

    client --HTTP--> Serve proxy --> Ingress (thin) --handle--> Reranker replica 1..N ----+--> Shard 0 (R replicas)
                                       /health: every        (the whole funnelrank app:  +--> Shard 1
                                       shard's state          limits, admission, score    +--> ...
                                                              cache, scheduler, model)

* **Ingress** (:class:`Ingress`): caps the body, forwards each request (method, path, headers, body) to a
  reranker replica and returns its answer as is. A replica that dies while holding the request, or none being
  available, is answered with an explicit 503 and ``Retry-After``, never a dropped connection. Its
  ``/health`` reports each shard (up or down) besides a replica's own health.
* **Reranker** (:class:`RerankerServer`): one replica = :func:`funnelrank.serve.app.create_app` over its own
  :class:`funnelrank.rerank.Reranker` (its dynamic batch scheduler batches the requests that replica holds:
  ``max_ongoing_requests`` must be at least the requests a batch should gather) and a
  :class:`funnelrank.retrieve.sharded.ShardedCollection` whose shards are the shard deployments. ``/v1/rerank``,
  ``/v2/rerank``, ``/rerank``, ``/v1/search`` and ``/metrics`` (that replica's) behave exactly as under
  ``funnelrank serve``.
* **Shards** (:class:`ShardServer`): shard ``i`` of a directory written by ``funnelrank shard``, read-only,
  each its own deployment with R replicas. Global BM25 statistics make the sharded answers equal one
  collection's (:mod:`funnelrank.retrieve.sharded`). A shard that dies mid-request makes that request a 503
  (:class:`~funnelrank.retrieve.sharded.ShardUnavailableError`); Serve starts a replacement.

:func:`build_app` returns the Serve application; :func:`run` deploys it. Ray's proxy, not uvicorn, terminates
HTTP here, so ``funnelrank serve``'s header timeout does not apply (put the proxy behind a load balancer that
has one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from funnelrank.retrieve.sharded import (
    LocalShard,
    ShardHits,
    ShardInfo,
    ShardUnavailableError,
    is_shard_dir,
    read_manifest,
)
from funnelrank.serve.config import ServiceConfig, build_service

__all__ = ["ForwardedRequest", "ForwardedResponse", "Ingress", "RerankerServer", "ServeShard", "ServiceConfig",
           "ShardServer", "build_app", "run"]

RETRY_AFTER_S = 1


@dataclass
class ForwardedRequest:
    """One HTTP request as the ingress hands it to a reranker replica."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None = None


@dataclass
class ForwardedResponse:
    """A replica's answer: status, raw headers and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _json_error(status: int, message: str) -> ForwardedResponse:
    body = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (429, 503):
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    return ForwardedResponse(status, headers, body)


async def call_asgi(app: Any, request: ForwardedRequest) -> ForwardedResponse:
    """Run one request through an ASGI `app` in this process and collect its response (no network)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
        "scheme": "http", "path": request.path, "raw_path": request.path.encode(), "root_path": "",
        "query_string": request.query_string, "headers": list(request.headers),
        "client": request.client, "server": ("funnelrank-replica", 80),
    }
    done = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    status, headers, chunks = 500, [], []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = int(message["status"]), [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return ForwardedResponse(status, headers, b"".join(chunks))


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The Ray errors that mean "that replica (or every replica) could not answer", not a bad request."""
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError

    return (RayActorError, ActorUnavailableError, GetTimeoutError, TimeoutError, BackPressureError,
            DeploymentUnavailableError, RequestCancelledError)


def _with_storage(shard: LocalShard, storage: str | None) -> LocalShard:
    """`shard` with its HNSW index in `storage` (``"f32"``, ``"f16"``, ``"int8"``): itself when it already is (or
    `storage` is None or it has no dense index), else a copy re-indexed from its stored vectors."""
    from funnelrank.retrieve.sharded import split_collection

    current = shard.collection.hnsw_storage
    if storage is None or current is None or current == storage:
        return shard
    return LocalShard(split_collection(shard.collection, 1, storage=storage)[0].collection, shard.ordinals)


class ShardServer:
    """Deployment body of one shard: shard `index` of directory `path` (written by ``funnelrank shard``; a
    plain collection directory serves as shard 0 of 1), loaded once per replica, read-only. Its HNSW vectors
    are stored as saved (``funnelrank shard --storage``), or as `storage` says (``"f32"``, ``"f16"``,
    ``"int8"``: re-indexed from the stored vectors when the files hold another storage)."""

    def __init__(self, path: str, index: int = 0, storage: str | None = None) -> None:
        from funnelrank.retrieve.sharded import load_shard
        from funnelrank.store.collection import Collection

        if is_shard_dir(path):
            shard = load_shard(path, index)
        else:
            collection = Collection.load(path)
            shard = LocalShard(collection, range(len(collection)))
        self.shard = _with_storage(shard, storage)
        self.index = index

    def info(self) -> ShardInfo:
        return self.shard.info()

    def doc_freqs(self, queries: Sequence[str]) -> dict[str, int]:
        return self.shard.doc_freqs(queries)

    def bm25(self, queries: Sequence[str], k: int, documents: int, total_length: int, df: dict[str, int],
             filter: dict[str, Any] | None) -> list[ShardHits]:
        return self.shard.bm25(queries, k, documents=documents, total_length=total_length, df=df, filter=filter)

    def dense(self, vectors: Any, k: int, filter: dict[str, Any] | None) -> list[ShardHits]:
        return self.shard.dense(vectors, k, filter=filter)


class ServeShard:
    """A :class:`funnelrank.retrieve.sharded.Shard` answered by a shard deployment through its handle (blocking
    calls, made from the stage-1 threads). A dead, unreachable or slower-than-`timeout_s` shard raises
    :class:`~funnelrank.retrieve.sharded.ShardUnavailableError`; a bad request (e.g. a filter) raises its own error."""

    def __init__(self, handle: Any, index: int, timeout_s: float = 10.0) -> None:
        self.handle, self.index, self.timeout_s = handle, index, float(timeout_s)
        self._unavailable = _unavailable_errors()

    def __repr__(self) -> str:
        return f"ServeShard({self.index})"

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.handle, method).remote(*args).result(timeout_s=self.timeout_s)
        except self._unavailable as exc:
            raise ShardUnavailableError(f"shard {self.index} did not answer ({type(exc).__name__})") from None

    def info(self) -> ShardInfo:
        info: ShardInfo = self._call("info")
        return info

    def doc_freqs(self, queries: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = self._call("doc_freqs", list(queries))
        return out

    def bm25(self, queries: Sequence[str], k: int, *, documents: int, total_length: int, df: Any,
             filter: Any = None) -> list[ShardHits]:
        out: list[ShardHits] = self._call("bm25", list(queries), k, documents, total_length, dict(df), filter)
        return out

    def dense(self, vectors: Any, k: int, *, filter: Any = None) -> list[ShardHits]:
        out: list[ShardHits] = self._call("dense", vectors, k, filter)
        return out


class RerankerServer:
    """Deployment body of a reranker replica: the whole funnelrank service app (see the module doc) over its
    own reranker and, given shard handles, a sharded collection for ``/v1/search``."""

    def __init__(self, config: ServiceConfig, shards: Sequence[Any] = ()) -> None:
        from funnelrank.retrieve.sharded import ShardedCollection

        self.collection = (
            ShardedCollection([ServeShard(h, i, config.shard_timeout_s) for i, h in enumerate(shards)])
            if shards else None
        )
        self.reranker, self.app = build_service(config, self.collection)

    async def forward(self, request: ForwardedRequest) -> ForwardedResponse:
        """Answer one forwarded HTTP request with this replica's app."""
        return await call_asgi(self.app, request)


class Ingress:
    """Deployment body of the HTTP ingress (wrapped with ``serve.ingress`` by :func:`build_app`)."""

    def __init__(self, reranker: Any, shards: Sequence[Any], max_body_bytes: int) -> None:
        self.reranker, self.shards, self.max_body_bytes = reranker, list(shards), int(max_body_bytes)

    def __serve_build_asgi_app__(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        unavailable = _unavailable_errors()
        probe_errors: tuple[type[BaseException], ...] = (asyncio.TimeoutError, *unavailable)

        def respond(r: ForwardedResponse) -> Response:
            out = Response(content=r.body, status_code=r.status)
            out.raw_headers = [(k, v) for k, v in r.headers]
            return out

        async def forward(request: Request) -> Response:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:
                    return respond(_json_error(413, f"request body exceeds {self.max_body_bytes} bytes"))
            fwd = ForwardedRequest(request.method, request.url.path, request.scope.get("query_string", b""),
                                   list(request.scope.get("headers", [])), bytes(body),
                                   tuple(request.scope["client"]) if request.scope.get("client") else None)
            try:
                return respond(await self.reranker.forward.remote(fwd))
            except unavailable as exc:
                return respond(_json_error(503, f"no reranker replica could answer ({type(exc).__name__}); retry"))

        async def shard_state(i: int, handle: Any) -> dict[str, Any]:
            try:
                async def ask() -> Any:
                    return await handle.info.remote()

                info = await asyncio.wait_for(ask(), timeout=5.0)
                return {"shard": i, "up": True, "documents": info.documents}
            except probe_errors as exc:
                return {"shard": i, "up": False, "error": type(exc).__name__}

        async def health(request: Request) -> Response:
            # A replica's /health has already asked every shard; ask them here only when no replica answers.
            try:
                replica = await self.reranker.forward.remote(
                    ForwardedRequest("GET", "/health", b"", list(request.scope.get("headers", [])), b""))
                state: dict[str, Any] = json.loads(replica.body) if replica.status == 200 else {"status": "down"}
            except unavailable as exc:
                state = {"status": "down", "error": type(exc).__name__}
            shards = (state.get("collection") or {}).get("shards")
            if shards is None:
                shards = list(await asyncio.gather(*(shard_state(i, h) for i, h in enumerate(self.shards))))
            state["shards"] = shards
            return JSONResponse(state, status_code=200 if state["status"] in ("ok", "degraded") else 503)

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
        return Starlette(routes=[Route("/health", health, methods=["GET"]),
                                 Route("/{path:path}", forward, methods=methods)])


def build_app(
    source: str | None,
    config: ServiceConfig,
    *,
    replicas: int | str = 1,
    min_replicas: int = 1,
    max_replicas: int = 4,
    target_ongoing_requests: float = 8.0,
    max_ongoing_requests: int = 64,
    replica_cpus: float = 1.0,
    shard_replicas: int = 1,
    shard_cpus: float = 0.25,
    ingress_replicas: int = 1,
    shard_storage: str | None = None,
) -> Any:
    """The Ray Serve application: ingress, reranker deployment and one deployment per shard of `source` (a
    shard directory, a plain collection directory, or None for rerank only).

    Args:
        replicas: reranker replicas, or ``"auto"``: autoscaling between `min_replicas` and `max_replicas`,
            aiming at `target_ongoing_requests` per replica.
        max_ongoing_requests: requests one reranker replica holds at once (its scheduler batches them).
        replica_cpus / shard_cpus: Ray CPUs reserved per reranker / shard replica.
        shard_replicas: replicas of each shard deployment.
        shard_storage: the shards' HNSW vector storage (``"f32"``, ``"f16"``, ``"int8"``); None: as saved.
    """
    from ray import serve

    if replicas != "auto" and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise ValueError(f"replicas must be a positive int or 'auto', got {replicas!r}")
    if not 1 <= min_replicas <= max_replicas:
        raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {min_replicas}, {max_replicas}")
    if max_ongoing_requests < 1 or shard_replicas < 1 or ingress_replicas < 1:
        raise ValueError("max_ongoing_requests, shard_replicas and ingress_replicas must be >= 1")
    if shard_storage not in (None, "f32", "f16", "int8"):
        raise ValueError(f"shard_storage must be 'f32', 'f16', 'int8' or None, got {shard_storage!r}")
    shards: list[Any] = []
    if source is not None:
        count = len(read_manifest(source)["parts"]) if is_shard_dir(source) else 1
        for i in range(count):
            dep = serve.deployment(name=f"shard-{i}", num_replicas=shard_replicas,
                                   ray_actor_options={"num_cpus": shard_cpus}, max_ongoing_requests=256)(ShardServer)
            shards.append(dep.bind(str(source), i, shard_storage))
    scaling: dict[str, Any] = (
        {"num_replicas": "auto", "autoscaling_config": {"min_replicas": min_replicas, "max_replicas": max_replicas,
                                                        "target_ongoing_requests": target_ongoing_requests}}
        if replicas == "auto" else {"num_replicas": replicas}
    )
    reranker = serve.deployment(name="reranker", max_ongoing_requests=max_ongoing_requests,
                                ray_actor_options={"num_cpus": replica_cpus}, **scaling)(RerankerServer).bind(config, shards)
    ingress_cls = serve.ingress()(Ingress)
    ingress = serve.deployment(name="ingress", num_replicas=ingress_replicas,
                               ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)(ingress_cls)
    return ingress.bind(reranker, shards, config.limits.max_body_bytes)


def run(app: Any, *, name: str = "funnelrank", host: str = "127.0.0.1", port: int = 8000,
        blocking: bool = False) -> Any:
    """Deploy `app` (from :func:`build_app`) on the connected Ray cluster, HTTP on `host`:`port`; returns the
    ingress handle (blocks until interrupted with `blocking`)."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    return serve.run(app, name=name, route_prefix="/", blocking=blocking)
