"""ASGI middleware of the HTTP service: request-body size limit, admission control, and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from funnelrank.service.metrics import ServiceMetrics

__all__ = ["ServiceMiddleware", "send_json"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Endpoints admitted through the in-flight limit (cheap ones -- health, metrics -- always answer).
_HEAVY = ("/v1/rerank", "/v1/search")


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response through a raw ASGI `send`."""
    payload = json.dumps(body).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class ServiceMiddleware:
    """Wraps the app: counts and times every response by endpoint and status, answers 503 at once when
    `max_inflight` heavy requests are already being served, and 413 when a body exceeds `max_body_bytes`
    (by its Content-Length, or while it streams in). The body is read fully here (bounded), then replayed."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        max_body_bytes: int,
        max_inflight: int,
        retry_after_s: int,
        endpoints: tuple[str, ...],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight
        self.retry_after = str(retry_after_s)
        self.endpoints = endpoints
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        heavy = path in _HEAVY
        if heavy and self.inflight >= self.max_inflight:
            await send_json(
                send_wrapper, 503,
                {"message": f"server busy: {self.inflight} requests in flight (limit {self.max_inflight}); retry later"},
                {"Retry-After": self.retry_after},
            )
            self.metrics.observe(endpoint, status, time.perf_counter() - start)
            return
        if heavy:
            self.inflight += 1
            self.metrics.inflight.inc()
        try:
            body = await self._read_body(scope, receive, send_wrapper)
            if body is None:  # answered (413) or the client went away
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            if heavy:
                self.inflight -= 1
                self.metrics.inflight.dec()
            self.metrics.observe(endpoint, status, time.perf_counter() - start)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        too_large = {"message": f"request body too large (limit {self.max_body_bytes} bytes)"}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await send_json(send, 413, too_large)
                    return None
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                await send_json(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
