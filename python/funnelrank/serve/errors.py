"""How the service answers errors: :class:`ServiceError` (raised by the route handlers) and the app's exception
handlers, which make every error body ``{"message": ...}``: a service error with its status and headers,
pydantic's validation errors as 422 with a short message (never the echoed input), and Starlette's own 400,
404 and 405 answers with a message that names the method and path."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ServiceError", "add_error_handlers", "validation_message"]


class ServiceError(Exception):
    """An error answered with `status` and ``{"message": ...}`` (and optional headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line for pydantic's validation `errors` (the first five, each field and what is wrong)."""
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


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    # The message only: pydantic's error list echoes the input, which may be huge or hold NaN (not JSON).
    return JSONResponse({"message": validation_message(list(exc.errors()))}, status_code=422)


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


def add_error_handlers(app: FastAPI) -> None:
    """Register the service's exception handlers on `app` (see the module docstring)."""
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http_error)
