"""The score cache: repeated (query, passage) pairs are answered without the model, in the scheduler (sync and
async), by default in a Reranker, and in the service, whose /metrics reports the hit ratio."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from funnelrank.rerank.scheduler import RerankScheduler
from funnelrank.rerank.score_cache import ScoreCache
from service_helpers import OverlapModel, overlap_reranker, running_server, wait_until_pending

DOCS = ["The capital of France is Paris.", "Bananas are yellow.", "Paris hosts the Louvre.", "Knitting basics."]


def test_score_cache_is_a_bounded_lru() -> None:
    cache = ScoreCache(max_entries=2)
    cache.put("q", "a", 1.0, False)
    cache.put("q", "b", 2.0, True)
    assert cache.get("q", "a") == (1.0, False)  # "a" is now the most recent
    cache.put("q", "c", 3.0, False)
    assert cache.get("q", "b") is None and cache.get("q", "c") == (3.0, False) and len(cache) == 2
    assert cache.get("other query", "a") is None  # the query is part of the key
    assert cache.stats() == {"entries": 2, "hits": 2, "misses": 2, "hit_ratio": 0.5}
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="max_entries"):
            ScoreCache(bad)  # type: ignore[arg-type]


def test_scheduler_answers_repeats_from_the_cache() -> None:
    model = OverlapModel()
    with RerankScheduler(model, max_wait_ms=0.0, cache_entries=100) as scheduler:
        first = scheduler.score("capital of France", DOCS)
        pairs = scheduler.stats().pairs
        again = scheduler.score("capital of France", DOCS)
        assert scheduler.stats().pairs == pairs  # nothing reached the model
        np.testing.assert_array_equal(first.logits, again.logits)
        np.testing.assert_array_equal(first.scores, again.scores)
        mixed = scheduler.score("capital of France", [DOCS[2], "A new passage about Paris.", DOCS[0]])
        assert scheduler.stats().pairs == pairs + 1  # only the new passage was scored
        assert mixed.logits[0] == first.logits[2] and mixed.logits[2] == first.logits[0]
        other = scheduler.score("bananas", DOCS)
        assert scheduler.stats().pairs == pairs + 1 + len(DOCS)  # another query is another pair
        assert other.logits[1] > other.logits[0]
        hits = scheduler.cache.stats()["hits"] if scheduler.cache else 0
        assert hits == len(DOCS) + 2


def test_a_closed_scheduler_refuses_even_cached_pairs() -> None:
    from funnelrank.rerank.scheduler import SchedulerClosedError

    scheduler = RerankScheduler(OverlapModel(), max_wait_ms=0.0, cache_entries=100)
    scheduler.score("q", DOCS)
    scheduler.close()
    with pytest.raises(SchedulerClosedError):
        scheduler.score("q", DOCS)
    with pytest.raises(SchedulerClosedError):
        asyncio.run(scheduler.ascore("q", DOCS))


def test_async_scoring_uses_the_cache_too() -> None:
    with RerankScheduler(OverlapModel(), max_wait_ms=0.0, cache_entries=100) as scheduler:
        async def twice() -> tuple[np.ndarray, np.ndarray, int, int]:
            a = await scheduler.ascore("Paris museum", DOCS)
            n = scheduler.stats().pairs
            b = await scheduler.ascore("Paris museum", DOCS)
            return a.logits, b.logits, n, scheduler.stats().pairs

        a, b, before, after = asyncio.run(twice())
        np.testing.assert_array_equal(a, b)
        assert before == after == len(DOCS)


def test_no_cache_unless_asked_in_the_scheduler_and_on_by_default_in_a_reranker() -> None:
    with RerankScheduler(OverlapModel(), max_wait_ms=0.0) as scheduler:
        assert scheduler.cache is None
        scheduler.score("q", DOCS)
        scheduler.score("q", DOCS)
        assert scheduler.stats().pairs == 2 * len(DOCS)
    from funnelrank.rerank.reranker import DEFAULT_CACHE_ENTRIES, Reranker

    with Reranker() as reranker:  # the default model
        assert reranker.scheduler.cache is not None and reranker.scheduler.cache.max_entries == DEFAULT_CACHE_ENTRIES
    with Reranker(cache_entries=0) as reranker:
        assert reranker.scheduler.cache is None


def test_service_answers_a_repeated_rerank_from_the_cache_and_reports_the_hit_ratio() -> None:
    from funnelrank.serve.app import create_app

    reranker = overlap_reranker(cache_entries=1000)
    app = create_app(reranker, model_name="overlap-toy")
    body = {"query": "capital of France", "documents": DOCS, "top_n": 2}
    try:
        with running_server(app) as url:
            first = httpx.post(url + "/v1/rerank", json=body, timeout=10).json()["results"]
            pairs = reranker.scheduler.stats().pairs
            second = httpx.post(url + "/v1/rerank", json=body, timeout=10).json()["results"]
            assert second == first and reranker.scheduler.stats().pairs == pairs
            metrics = httpx.get(url + "/metrics", timeout=10).text
    finally:
        reranker.scheduler.close()
    values = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith("funnelrank_rerank_cache")}
    assert values["funnelrank_rerank_cache_hits_total"] == len(DOCS)
    assert values["funnelrank_rerank_cache_misses_total"] == len(DOCS)
    assert values["funnelrank_rerank_cache_hit_ratio"] == 0.5
    assert values["funnelrank_rerank_cache_entries"] == len(DOCS)


def test_cache_missing_is_a_peek() -> None:
    cache = ScoreCache(4)
    cache.put("q", "a", 1.0, False)
    assert cache.missing("q", ["a", "b", "a"]) == [1]
    assert cache.stats()["hits"] == 0 and cache.stats()["misses"] == 0


def test_a_cached_request_skips_admission_when_a_fresh_one_would_be_refused() -> None:
    # 10 ms per pair; timeout 3 s (80%: 2.4 s). While 100 pairs (>= 1 s) run, a fresh request of 100 pairs
    # cannot finish in time (429), but 100 pairs already cached cost no model time: served at once.
    import threading
    import time

    from funnelrank.serve import ServiceLimits
    from funnelrank.serve.app import create_app

    reranker = overlap_reranker(delay_s=0.01, max_batch_pairs=1, cache_entries=1000)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=3.0, max_documents=400))
    cached = {"query": "q", "documents": [f"cached {i}" for i in range(100)]}
    try:
        with running_server(app) as url:
            for _ in range(2):  # let the estimator measure the throughput; also fills the cache for `cached`
                assert httpx.post(url + "/v1/rerank", json=cached, timeout=10).status_code == 200
            for i in range(2):
                fresh_warm = {"query": "q", "documents": [f"warm {i} {j}" for j in range(40)]}
                assert httpx.post(url + "/v1/rerank", json=fresh_warm, timeout=10).status_code == 200
            time.sleep(0.6)  # the estimate refreshes every 0.5 s
            long = {"query": "q", "documents": [f"long {i}" for i in range(100)]}
            statuses: list[int] = []
            runner = threading.Thread(
                target=lambda: statuses.append(httpx.post(url + "/v1/rerank", json=long, timeout=10).status_code))
            runner.start()
            wait_until_pending(reranker.scheduler, 50, stop=lambda: bool(statuses))  # statuses: refused early
            fresh = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": [f"new {i}" for i in range(100)]},
                               timeout=10)
            again = httpx.post(url + "/v1/rerank", json=cached, timeout=10)
            pending = reranker.scheduler.pending_pairs
            runner.join()
    finally:
        reranker.scheduler.close()
    assert fresh.status_code == 429, fresh.text
    assert again.status_code == 200, again.text
    assert pending > 0  # it was answered while the long request was still running
    assert statuses == [200]
