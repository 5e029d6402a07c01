"""The route class of every service route: handlers receive the JSON body that
:class:`~funnelrank.serve.middleware.ServiceMiddleware` already parsed (strictly, off the event loop when
large) instead of parsing it a second time."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from funnelrank.serve.middleware import PARSED_JSON_KEY

__all__ = ["ParsedBodyRoute"]


class _ParsedBodyRequest(Request):
    """A request whose JSON body the middleware already parsed (strictly, off the event loop when large)."""

    async def json(self) -> Any:
        if PARSED_JSON_KEY in self.scope:
            return self.scope[PARSED_JSON_KEY]
        return await super().json()


class ParsedBodyRoute(APIRoute):
    """Routes that hand FastAPI the middleware's parsed body instead of parsing it a second time."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed_body_handler(request: Request) -> Response:
            return await handler(_ParsedBodyRequest(request.scope, request.receive))

        return parsed_body_handler
