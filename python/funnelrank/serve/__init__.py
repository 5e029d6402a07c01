"""The HTTP service behind ``funnelrank serve``: Cohere-compatible ``/v1/rerank``, ``/v1/search`` over a
collection, ``/health`` and Prometheus ``/metrics``, all sharing one rerank scheduler.

It needs the ``serve`` extra (FastAPI, uvicorn, prometheus_client). ``ENDPOINTS`` and ``create_app`` are
imported on first use, so that the rest of funnelrank (and ``funnelrank.serve.limits``) works without it."""

from __future__ import annotations

from typing import Any

from funnelrank.serve.limits import ServiceLimits

__all__ = ["ENDPOINTS", "ServiceLimits", "create_app", "require_serve_extra"]

_SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def require_serve_extra() -> None:
    """Raise ImportError naming the missing packages when the ``serve`` extra is not installed."""
    import importlib

    missing = []
    for name in _SERVE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"the funnelrank service needs {', '.join(missing)}: pip install 'funnelrank[serve]'"
        )


def __getattr__(name: str) -> Any:
    if name in ("ENDPOINTS", "create_app"):
        require_serve_extra()
        from funnelrank.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
