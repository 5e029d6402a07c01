"""The playground: a page at ``/`` (plain HTML, CSS and JavaScript shipped in ``funnelrank/serve/playground/``,
nothing loaded from anywhere else) that shows the funnel of a served collection.

* **Search** (needs a collection): ``POST /v1/search`` with ``"explain": true``; stage 1's list and the reranked
  list side by side, each score a bar, the relevance floor a line, the candidates below it greyed, a
  "no evidence" banner when nothing clears it, and stage 1 / stage 2 / total milliseconds from the response's
  ``timings_ms``.
* **Rerank**: a query and passages (one per line) through ``POST /v1/rerank``; the scores and the floor.
* The URL's ``?q=`` (with ``?floor=``, ``?top_k=``) runs a search on load, so a link shares a view; ``?tab=rerank``
  opens the rerank tab.
* An API key field (kept in the tab's ``sessionStorage``) sends ``Authorization: Bearer <key>``; a 401/403 is
  shown as a message saying what to do.

The page and its two files are public (they hold no data); every call they make goes to the page's own origin
(relative URLs) and needs the key like any other client. Their responses carry a Content-Security-Policy that
lets the page load and connect to its own origin only. ``funnelrank serve --no-playground`` (or
``create_app(..., playground=False)``) turns it off: ``/`` is then a 404.

    >>> from funnelrank.serve.playground import PLAYGROUND_PATHS
    >>> PLAYGROUND_PATHS
    ('/', '/playground/playground.css', '/playground/playground.js')
"""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "PLAYGROUND_FILES", "PLAYGROUND_PATHS", "add_playground", "playground_file"]

PLAYGROUND_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
}
"""URL path -> (file in the package's ``playground/`` folder, media type)."""

PLAYGROUND_PATHS: tuple[str, ...] = tuple(PLAYGROUND_FILES)
"""The paths the playground serves (answered without the API key: they are static and hold no data)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Sent with the playground's files: scripts, styles and requests from the page's own origin only."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def playground_file(name: str) -> bytes:
    """The bytes of one of the playground's files (``index.html``, ``playground.css``, ``playground.js``), read
    from the installed package. FileNotFoundError when the package was installed without them.

        >>> playground_file("index.html")[:15]
        b'<!DOCTYPE html>'
    """
    return resources.files("funnelrank.serve").joinpath("playground").joinpath(name).read_bytes()


def add_playground(app: Any) -> None:
    """Register ``GET /`` and the page's two files (:data:`PLAYGROUND_FILES`) on the FastAPI `app`. The files
    are read once, here (a missing one fails now, not at the first request)."""
    from fastapi.responses import Response

    def endpoint(content: bytes, media_type: str) -> Any:
        async def serve() -> Response:  # no parameters: FastAPI would read them from the query string
            return Response(content, media_type=media_type, headers=_HEADERS)

        return serve

    for path, (name, media_type) in PLAYGROUND_FILES.items():
        app.add_api_route(path, endpoint(playground_file(name), media_type), methods=["GET"],
                          include_in_schema=False, name=f"playground:{name}")
