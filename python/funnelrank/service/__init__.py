"""The HTTP service behind ``funnelrank serve``: Cohere-compatible ``/v1/rerank``, ``/v1/search`` over a
collection, ``/health`` and Prometheus ``/metrics``, all sharing one rerank scheduler."""

from __future__ import annotations

from funnelrank.service.app import ENDPOINTS, create_app
from funnelrank.service.limits import ServiceLimits

__all__ = ["ENDPOINTS", "ServiceLimits", "create_app"]
