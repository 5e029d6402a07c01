"""The uvicorn settings the service runs under (``funnelrank serve``; the tests use the same).

What uvicorn bounds by itself, and what this adds:

* h11 buffers at most ``h11_max_incomplete_event_size`` (:data:`MAX_HEADER_BYTES`, 16 KiB) of a request head
  that is still incomplete -- uvicorn answers 400 beyond it (a head that arrives whole in one read is parsed);
* an idle keep-alive connection is closed after :data:`KEEP_ALIVE_TIMEOUT_S` (uvicorn's
  ``timeout_keep_alive``) -- but uvicorn cancels that timer at the first byte of the next request, and a new
  connection has none: :class:`HeaderTimeoutH11Protocol` closes, with a 408 answer, a connection that has not
  sent a complete request head within ``header_timeout_s``
  (:attr:`ServiceLimits.header_timeout_s <funnelrank.serve.limits.ServiceLimits.header_timeout_s>`) of
  connecting or of its previous response;
* the body is timed by the app's middleware (``body_timeout_s``: 408), which works under any ASGI server.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from funnelrank.serve.limits import ServiceLimits

__all__ = ["KEEP_ALIVE_TIMEOUT_S", "MAX_HEADER_BYTES", "HeaderTimeoutH11Protocol", "server_config"]

KEEP_ALIVE_TIMEOUT_S = 5
"""Seconds an idle keep-alive connection stays open (uvicorn's default, set explicitly)."""

MAX_HEADER_BYTES = 16 * 1024
"""Most bytes of an incomplete request head (request line + headers) h11 buffers; uvicorn answers 400 beyond."""


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head: a client that connects (or finishes a
    keep-alive request) and then sends the next request's headers slowly, or nothing, is answered 408 and
    disconnected after `header_timeout_s`. (uvicorn's keep-alive timer closes a connection that stays silent,
    but it is cancelled by the first byte that arrives, and a new connection has no timer at all.)"""

    header_timeout_s: float = 10.0
    _header_timer: Any = None
    _waiting_after: Any = None  # the request cycle the connection is waiting to follow (None: none yet)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._waiting_after = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_after:  # a request head arrived
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request's head (unless a pipelined one was already parsed).
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.cycle is not self._waiting_after or self.transport.is_closing():
            return
        body = json.dumps(
            {"message": f"request headers not received within {self.header_timeout_s:g} s"}
        ).encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()


def server_config(app: Any, *, host: str, port: int, limits: ServiceLimits | None = None, **options: Any) -> Any:
    """A ``uvicorn.Config`` serving `app` on `host`:`port` with the timeouts of the module doc (`limits`: the
    app's :class:`ServiceLimits`, for ``header_timeout_s``). `options` go to ``uvicorn.Config`` (``log_level``,
    ``lifespan``, ...); ``access_log`` defaults to off."""
    import uvicorn

    limits = limits or ServiceLimits()
    protocol = type("FunnelrankH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": limits.header_timeout_s})
    options.setdefault("access_log", False)
    options.setdefault("timeout_keep_alive", KEEP_ALIVE_TIMEOUT_S)
    options.setdefault("h11_max_incomplete_event_size", MAX_HEADER_BYTES)
    return uvicorn.Config(app, host=host, port=port, http=protocol, **options)
