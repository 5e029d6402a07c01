"""ASGI middleware of the HTTP service: API key, request-body limits and timeout, strict JSON, admission
control (in-flight limit), metrics; and :class:`JSONErrors`, which makes every error body ``{"message": ...}``."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from funnelrank.serve.metrics import ServiceMetrics

__all__ = ["MAX_FIELDS", "PARSED_JSON_KEY", "JSONErrors", "ServiceMiddleware", "check_shape", "parse_json",
           "send_json"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Endpoints admitted through the in-flight limit (cheap ones -- health, metrics -- always answer).
_HEAVY = ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/search")
# Endpoints answered without the API key (by default; the app adds the playground's static files).
_OPEN = ("/health",)

MAX_FIELDS = 64
"""Most top-level fields a ``/v1/rerank`` or ``/v1/search`` body may have (422 beyond it)."""

PARSED_JSON_KEY = "funnelrank.json"
"""Scope key under which the middleware leaves the parsed body, so that the app does not parse it again."""

_THREAD_BYTES = 64 * 1024  # bodies larger than this are parsed in a worker thread, off the event loop

_INT_LIMIT = 2**63  # integers must fit in 64 bits (JSON's interoperable range is smaller still)


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response through a raw ASGI `send`."""
    payload = json.dumps(body).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class _BadNumber(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"number {text[:40]} is out of range")
    return value


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > 19 or not -_INT_LIMIT <= int(text) < _INT_LIMIT:
        shown = text if len(text) <= 40 else f"{text[:20]}... ({digits} digits)"
        raise _BadNumber(f"integer {shown} is out of range (64-bit)")
    return int(text)


def parse_json(body: bytes) -> tuple[Any, str | None]:
    """Parse `body` as strict JSON (RFC 8259): returns ``(value, None)``, or ``(None, what is wrong)`` when it is
    not UTF-8, has a syntax error, holds NaN or Infinity, a number beyond float64 or an integer beyond 64 bits,
    or is nested deeper than Python's parser goes. (Python's parser accepts NaN, Infinity, 1e999 (as inf) and
    4,000-digit integers, and FastAPI answers the other cases with a bare ``{"detail": ...}`` 400.)"""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"request body is not valid UTF-8 (byte {exc.start}: {exc.reason})"
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int), None
    except _BadNumber as exc:
        return None, f"malformed JSON body: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON body at character {exc.pos}: {exc.msg}"
    except RecursionError:
        return None, "malformed JSON body: nested too deeply"


def check_shape(value: Any, *, max_documents: int) -> tuple[int, str] | None:
    """What pydantic would reject only at great cost, refused first: ``(status, message)`` or None.

    A 6 MB body of two million empty lists as ``documents`` makes pydantic build four million errors (about a
    minute of the event loop); an object with 500,000 unknown fields, one error each. So: at most
    :data:`MAX_FIELDS` top-level fields (422), at most `max_documents` documents (413, as the endpoint would)."""
    if not isinstance(value, dict):
        return 422, "invalid request: the body must be a JSON object"
    if len(value) > MAX_FIELDS:
        return 422, f"invalid request: the body has {len(value)} fields (at most {MAX_FIELDS})"
    for field in ("documents", "texts"):  # /v1/rerank and /v2/rerank, TEI's /rerank
        documents = value.get(field)
        if isinstance(documents, list) and len(documents) > max_documents:
            return 413, f"{len(documents)} {field}; the limit is {max_documents} per request"
    return None


class _Refused(Exception):
    """The body was not read: answer `status` with `message` (and close the connection when `close`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Gone(Exception):
    """The client disconnected while sending its body."""


class ServiceMiddleware:
    """Wraps the app. In order, for each HTTP request:

    1. with `api_key`, anything but `open_paths` (``/health``; the app adds the playground's static files) needs
       ``Authorization: Bearer <api_key>`` (401 otherwise, before the body is read);
    2. the body is read fully here, within `body_timeout_s` of the headers (408, connection closed), at most
       `max_body_bytes` (413, by its Content-Length or while it streams in), with at most `max_receiving_bytes`
       buffered across all requests still being received (503);
    3. the body of the rerank endpoints and ``/v1/search`` must be strict JSON (:func:`parse_json`; 422), parsed once
       (in a worker thread when large) and left in the scope for the app (:data:`PARSED_JSON_KEY`), of a shape
       that is cheap to validate (:func:`check_shape`; 422 or 413);
    4. only then does such a request count as in flight: when `max_inflight` already are, 503 at once. It stops
       counting when its response starts (a slow reader holds no slot);
    5. the app sees the body replayed. Every response is counted and timed by endpoint and status."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        max_body_bytes: int,
        max_inflight: int,
        retry_after_s: int,
        endpoints: tuple[str, ...],
        body_timeout_s: float = 10.0,
        max_receiving_bytes: int | None = None,
        api_key: str | None = None,
        max_documents: int = 1000,
        open_paths: tuple[str, ...] = _OPEN,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_inflight = max_inflight
        self.retry_after = str(retry_after_s)
        self.endpoints = endpoints
        self.body_timeout_s = body_timeout_s
        self.max_receiving_bytes = max_receiving_bytes if max_receiving_bytes is not None else 32 * max_body_bytes
        self._api_key = api_key.encode("utf-8") if api_key else None
        self.max_documents = max_documents
        self.open_paths = open_paths
        self.inflight = 0
        self.receiving_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        start = time.perf_counter()
        status = 500
        counted = False

        def release() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.inflight -= 1
                self.metrics.inflight.dec()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                release()  # the work is done: writing the response to a slow reader holds no slot
            await send(message)

        try:
            if self._api_key is not None and path not in self.open_paths and not self._authorized(scope):
                await send_json(
                    send_wrapper, 401,
                    {"message": "missing or invalid API key: send the header 'Authorization: Bearer <key>'"},
                    {"WWW-Authenticate": "Bearer"},
                )
                return
            try:
                body = await self._read_body(scope, receive)
            except _Refused as exc:
                await send_json(send_wrapper, exc.status, {"message": exc.message}, exc.headers)
                return
            except _Gone:
                status = 499  # client closed the request (nginx's code): not a server error in the metrics
                return
            heavy = path in _HEAVY
            if heavy and scope.get("method") == "POST" and body:
                if len(body) > _THREAD_BYTES:  # a pathological body takes seconds to parse: not on the event loop
                    value, problem = await asyncio.get_running_loop().run_in_executor(None, parse_json, body)
                else:
                    value, problem = parse_json(body)
                if problem is not None:
                    await send_json(send_wrapper, 422, {"message": f"invalid request: {problem}"})
                    return
                refused = check_shape(value, max_documents=self.max_documents)
                if refused is not None:
                    await send_json(send_wrapper, refused[0], {"message": refused[1]})
                    return
                scope[PARSED_JSON_KEY] = value
            if heavy:
                if self.inflight >= self.max_inflight:
                    await send_json(
                        send_wrapper, 503,
                        {"message": f"server busy: {self.inflight} requests in flight (limit {self.max_inflight}); "
                                    "retry later"},
                        {"Retry-After": self.retry_after},
                    )
                    return
                self.inflight += 1
                self.metrics.inflight.inc()
                counted = True
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_wrapper)
        finally:
            release()
            self.metrics.observe(endpoint, status, time.perf_counter() - start)

    def _authorized(self, scope: Scope) -> bool:
        assert self._api_key is not None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._api_key):
                    return True
        return False

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, or raise `_Refused` (413, 408, 503) / `_Gone` (the client left)."""
        too_large = f"request body too large (limit {self.max_body_bytes} bytes)"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    raise _Refused(413, too_large)
        deadline = time.monotonic() + self.body_timeout_s
        chunks: list[bytes] = []
        total = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise asyncio.TimeoutError
                    message = await asyncio.wait_for(receive(), remaining)
                except asyncio.TimeoutError:
                    raise _Refused(
                        408, f"request body not received within {self.body_timeout_s:g} s ({total} bytes arrived)",
                        {"Connection": "close"},
                    ) from None
                if message["type"] == "http.disconnect":
                    raise _Gone
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > self.max_body_bytes:
                    raise _Refused(413, too_large)
                if chunk:
                    if self.receiving_bytes + len(chunk) > self.max_receiving_bytes:
                        raise _Refused(
                            503, "server busy: too many request bodies being received at once; retry later",
                            {"Retry-After": self.retry_after, "Connection": "close"},
                        )
                    self.receiving_bytes += len(chunk)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            self.receiving_bytes -= sum(len(c) for c in chunks)


class JSONErrors:
    """Outermost of the service's middleware: an error response (status >= 400) whose body is not JSON -- from
    Starlette's trusted-host or CORS middleware, say -- is rewritten as ``{"message": <its text>}``; an
    exception before any response was sent is answered ``500 {"message": "internal server error"}`` (and
    re-raised, so that the server logs it) instead of the servers' plain-text 500."""

    def __init__(self, app: ASGIApp, *, max_error_bytes: int = 65536) -> None:
        self.app = app
        self.max_error_bytes = max_error_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        forwarded = False  # a response start went out
        held: Message | None = None  # a non-JSON error's start message, until its body is complete
        text = bytearray()

        async def send_wrapper(message: Message) -> None:
            nonlocal forwarded, held
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if int(message["status"]) >= 400 and not ctype.startswith(b"application/json"):
                    held = message
                    return
                forwarded = True
                await send(message)
                return
            if held is not None and message["type"] == "http.response.body":
                if len(text) < self.max_error_bytes:
                    text.extend(message.get("body", b"")[: self.max_error_bytes - len(text)])
                if message.get("more_body", False):
                    return
                start, held = held, None
                forwarded = True
                await self._send_rewritten(send, start, text.decode("utf-8", "replace").strip(), scope)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not forwarded:
                await send_json(send, 500, {"message": "internal server error"})
            raise

    @staticmethod
    async def _send_rewritten(send: Send, start: Message, text: str, scope: Scope) -> None:
        status = int(start["status"])
        keep = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
        if status == 400 and text == "Invalid host header":
            host = next((v for k, v in scope.get("headers", []) if k == b"host"), b"").decode("latin-1")
            text = f"invalid Host header {host!r}: not a trusted host of this server (see --trusted-host)"
        payload = json.dumps({"message": text or f"HTTP {status}"}).encode("utf-8")
        headers = [*keep, (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
