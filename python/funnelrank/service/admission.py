"""Admission control: refuse at once a request that would time out in the rerank queue anyway.

The scheduler's queue bound (``max_queue_pairs``) caps memory, but on a slow machine a full queue can hold
minutes of work: a request admitted at its tail would wait, then time out with 503 -- slow for the client
and wasted work for the server. :class:`WaitEstimator` measures the scheduler's throughput (pairs per second
of model time, from its counters) and predicts the wait of a new request as ``(ahead + n) / throughput``,
where ``ahead`` counts the pairs of every request admitted and not finished (including those still being
tokenized, which the scheduler does not see yet -- a burst of simultaneous requests is judged correctly);
when that exceeds 80% of the request timeout the service answers 429 immediately, with ``Retry-After`` set to the
time the current queue needs to drain. Until enough pairs were measured nothing is refused on this ground.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

__all__ = ["WaitEstimator"]


class WaitEstimator:
    """Predicts queueing delay from a `RerankScheduler`'s counters (refreshed at most every `refresh_s`);
    admits a request when its predicted finish is within `headroom` x its timeout (the rest covers what
    model time does not count: tokenization, HTTP)."""

    def __init__(
        self, scheduler: Any, *, min_pairs: int = 64, refresh_s: float = 0.5, headroom: float = 0.8,
        smoothing: float = 0.3,
    ) -> None:
        self._scheduler = scheduler
        self._headroom = headroom
        self._min_pairs = min_pairs
        self._refresh_s = refresh_s
        self._smoothing = smoothing
        self._rate: float | None = None
        self._checked = -math.inf
        self._seen = (0, 0.0)  # (pairs, infer seconds) at the last rate update
        self._lock = threading.Lock()
        self._admitted = 0

    def pairs_per_second(self) -> float | None:
        """Recent model throughput: an exponential moving average over refresh intervals that scored at least
        `min_pairs` pairs (the machine's speed drifts with its load); None until the first such interval."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= self._refresh_s:
                self._checked = now
                stats = self._scheduler.stats()
                pairs, seconds = stats.pairs - self._seen[0], stats.infer_seconds - self._seen[1]
                if pairs >= self._min_pairs and seconds > 0:
                    recent = pairs / seconds
                    a = self._smoothing
                    self._rate = recent if self._rate is None else (1 - a) * self._rate + a * recent
                    self._seen = (stats.pairs, stats.infer_seconds)
            return self._rate

    @property
    def admitted_pairs(self) -> int:
        """Pairs of requests admitted through :meth:`admit` and not yet :meth:`release`d."""
        return self._admitted

    def expected_wait_s(self, n_pairs: int) -> float | None:
        """Seconds until a request of `n_pairs` pairs admitted now would finish (None: not known yet).

        Work ahead of it is the larger of the scheduler's pending pairs and the pairs admitted here (requests
        admitted but still tokenizing are not in the scheduler yet)."""
        rate = self.pairs_per_second()
        if rate is None:
            return None
        return (max(self._scheduler.pending_pairs, self._admitted) + n_pairs) / rate

    def admit(self, n_pairs: int, timeout_s: float) -> tuple[float, int] | None:
        """Admit a request of `n_pairs` pairs (returns None; call :meth:`release` when it is done), or refuse
        it when it would outlive `timeout_s`: returns (expected wait, seconds to retry after)."""
        wait = self.expected_wait_s(n_pairs)
        if wait is not None and wait > self._headroom * timeout_s:
            rate = self.pairs_per_second() or 1.0
            ahead = max(self._scheduler.pending_pairs, self._admitted)
            return wait, max(1, math.ceil(ahead / rate))
        with self._lock:
            self._admitted += n_pairs
        return None

    def release(self, n_pairs: int) -> None:
        """A request admitted with :meth:`admit` finished (in any way)."""
        with self._lock:
            self._admitted -= n_pairs
