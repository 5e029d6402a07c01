"""Admission control: refuse at once a request that would time out in the rerank queue anyway.

The scheduler's queue bound (``max_queue_pairs``) caps memory, but on a slow machine a full queue can hold
minutes of work: a request admitted at its tail would wait, then time out with 503 -- slow for the client
and wasted work for the server. :class:`WaitEstimator` measures the scheduler's throughput (pairs per second
of model time, from its counters) and predicts the wait of a new request as ``(pending + n) / throughput``;
when that exceeds the request timeout the service answers 429 immediately, with ``Retry-After`` set to the
time the current queue needs to drain. Until enough pairs were measured nothing is refused on this ground.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

__all__ = ["WaitEstimator"]


class WaitEstimator:
    """Predicts queueing delay from a `RerankScheduler`'s counters (refreshed at most every `refresh_s`)."""

    def __init__(self, scheduler: Any, *, min_pairs: int = 64, refresh_s: float = 0.5) -> None:
        self._scheduler = scheduler
        self._min_pairs = min_pairs
        self._refresh_s = refresh_s
        self._rate: float | None = None
        self._checked = -math.inf
        self._lock = threading.Lock()

    def pairs_per_second(self) -> float | None:
        """Measured model throughput, or None until `min_pairs` pairs were scored."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= self._refresh_s:
                self._checked = now
                stats = self._scheduler.stats()
                if stats.pairs >= self._min_pairs and stats.infer_seconds > 0:
                    self._rate = stats.pairs / stats.infer_seconds
            return self._rate

    def expected_wait_s(self, n_pairs: int) -> float | None:
        """Seconds until a request of `n_pairs` pairs submitted now would finish (None: not known yet)."""
        rate = self.pairs_per_second()
        if rate is None:
            return None
        return (self._scheduler.pending_pairs + n_pairs) / rate

    def refuse(self, n_pairs: int, timeout_s: float) -> tuple[float, int] | None:
        """(expected wait, seconds to retry after) when a request of `n_pairs` would outlive `timeout_s`;
        None when it should be admitted."""
        wait = self.expected_wait_s(n_pairs)
        if wait is None or wait <= timeout_s:
            return None
        rate = self.pairs_per_second() or 1.0
        return wait, max(1, math.ceil(self._scheduler.pending_pairs / rate))
