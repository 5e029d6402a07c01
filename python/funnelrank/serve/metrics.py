"""Prometheus metrics of the HTTP service (one registry per app, so several apps can live in a process).

Exposed at ``GET /metrics`` in the Prometheus text format:

* ``funnelrank_http_requests_total{endpoint, status}`` -- responses by endpoint and status code (``499``: the
  client disconnected before its body was complete, so nothing was answered).
* ``funnelrank_http_request_duration_seconds{endpoint}`` -- latency histogram.
* ``funnelrank_http_inflight_requests`` -- ``/v1/rerank`` and ``/v1/search`` requests being served now: body
  received, response not started (the ``max_inflight`` slots).
* ``funnelrank_rerank_queue_pairs`` -- pairs admitted by the shared rerank scheduler (queued + running).
* ``funnelrank_rerank_queue_capacity_pairs`` -- the scheduler's ``max_queue_pairs``.
* ``funnelrank_rerank_pairs_total``, ``funnelrank_rerank_batches_total``, ``funnelrank_rerank_rejected_total``,
  ``funnelrank_rerank_timeouts_total`` -- the scheduler's counters.
* ``funnelrank_rerank_cache_hits_total``, ``funnelrank_rerank_cache_misses_total``,
  ``funnelrank_rerank_cache_hit_ratio``, ``funnelrank_rerank_cache_entries`` -- the score cache (when on).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the Prometheus text exposition format."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _SchedulerCollector:
    """Reads the rerank scheduler's counters at scrape time."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[Any]:
        s = self._scheduler
        stats = s.stats()
        yield GaugeMetricFamily(
            "funnelrank_rerank_queue_pairs", "Pairs admitted by the rerank scheduler (queued + running)",
            value=s.pending_pairs,
        )
        yield GaugeMetricFamily(
            "funnelrank_rerank_queue_capacity_pairs", "The rerank scheduler's max_queue_pairs",
            value=s.max_queue_pairs,
        )
        for name, doc, value in (
            ("funnelrank_rerank_pairs", "Pairs scored by the rerank scheduler", stats.pairs),
            ("funnelrank_rerank_batches", "Model batches run by the rerank scheduler", stats.batches),
            ("funnelrank_rerank_rejected", "Requests refused because the rerank queue was full", stats.rejected),
            ("funnelrank_rerank_timeouts", "Rerank requests that timed out", stats.timed_out),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        cache = getattr(s, "cache", None)
        if cache is not None:
            c = cache.stats()
            yield CounterMetricFamily("funnelrank_rerank_cache_hits", "Pairs answered from the score cache",
                                      value=c["hits"])
            yield CounterMetricFamily("funnelrank_rerank_cache_misses", "Pairs the score cache did not hold",
                                      value=c["misses"])
            yield GaugeMetricFamily("funnelrank_rerank_cache_hit_ratio", "Score cache hits / lookups",
                                    value=c["hit_ratio"])
            yield GaugeMetricFamily("funnelrank_rerank_cache_entries", "Pairs in the score cache",
                                    value=c["entries"])


class ServiceMetrics:
    """The service's metrics, in their own registry."""

    def __init__(self, scheduler: Any | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "funnelrank_http_requests", "HTTP responses by endpoint and status code", ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "funnelrank_http_request_duration_seconds", "HTTP request latency", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.inflight = Gauge("funnelrank_http_inflight_requests", "Requests being served", registry=self.registry)
        if scheduler is not None:
            self.registry.register(_SchedulerCollector(scheduler))  # type: ignore[arg-type]

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
