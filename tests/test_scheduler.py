"""RerankScheduler with a fake model that records every batch it is given."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from funnelrank.rerank.batching import plan_batches
from funnelrank.rerank.cross_encoder import EncodedPairs, sigmoid
from funnelrank.rerank.scheduler import OverloadedError, RerankScheduler, SchedulerClosedError, SchedulerStats


class FakeModel:
    """Passage "p<pid>:<length>" -> a pair of <length> tokens [qcode, pid, 0...]; logit = qcode + pid / 1000."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[tuple[int, int, list[int], set[int]]] = []  # (size, longest, lengths, query codes)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def encode(self, query: str, passages: Sequence[str]) -> EncodedPairs:
        qcode = int(query.removeprefix("q"))
        ids = []
        for p in passages:
            pid, length = (int(x) for x in p.removeprefix("p").split(":"))
            a = np.zeros(length, dtype=np.int64)
            a[0], a[1] = qcode, pid
            ids.append(a)
        return EncodedPairs(ids, None, len(passages))

    def infer(self, input_ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if any(int(a[1]) == 666 for a in input_ids):
            raise RuntimeError("boom")
        lengths = [int(a.shape[0]) for a in input_ids]
        with self.lock:
            self.batches.append((len(lengths), max(lengths), lengths, {int(a[0]) for a in input_ids}))
        return np.array([a[0] + a[1] / 1000.0 for a in input_ids], dtype=np.float64)


def passages(rng: np.random.Generator, n: int, lo: int = 5, hi: int = 200) -> list[str]:
    return [f"p{i}:{int(rng.integers(lo, hi))}" for i in range(n)]


def expected(qcode: int, n: int) -> np.ndarray:
    return qcode + np.arange(n) / 1000.0


def test_single_request_order_and_budget() -> None:
    rng = np.random.default_rng(0)
    model = FakeModel()
    docs = passages(rng, 100)
    with RerankScheduler(model, max_batch_tokens=1000, max_batch_pairs=16) as sched:
        res = sched.score("q7", docs)
        stats = sched.stats()
    np.testing.assert_allclose(res.logits, expected(7, 100))
    np.testing.assert_allclose(res.scores, sigmoid(res.logits))
    assert sum(b[0] for b in model.batches) == 100
    for size, longest, lengths, _ in model.batches:
        assert size * longest <= 1000 or size == 1
        assert size <= 16
        assert longest - min(lengths) < 60, "batches hold pairs of similar length"
    assert stats.padded_tokens == sum(b[0] * b[1] for b in model.batches)
    assert stats.real_tokens == sum(int(d.split(":")[1]) for d in docs)
    assert stats.padding_waste < 0.1


def test_oversized_pair_gets_its_own_batch() -> None:
    model = FakeModel()
    with RerankScheduler(model, max_batch_tokens=50) as sched:
        res = sched.score("q1", ["p0:10", "p1:80", "p2:12"])
    np.testing.assert_allclose(res.logits, expected(1, 3))
    assert (1, 80, [80], {1}) in model.batches


def test_plan_batches_is_optimal_and_respects_budget() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = np.sort(rng.integers(1, 300, int(rng.integers(1, 60))))
        slices = plan_batches(lengths, max_batch_tokens=900, max_batch_pairs=8)
        assert slices[0][0] == 0 and slices[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
        for s, e in slices:
            assert e - s <= 8 and ((e - s) * lengths[e - 1] <= 900 or e - s == 1)
        # Exact DP: never worse than greedy filling.
        greedy, s = [], 0
        while s < len(lengths):
            e = s + 1
            while e < len(lengths) and e - s < 8 and (e + 1 - s) * lengths[e] <= 900:
                e += 1
            greedy.append((s, e))
            s = e
        def cost(plan: list[tuple[int, int]]) -> int:
            return sum((e - s) * int(lengths[e - 1]) for s, e in plan)

        assert cost(slices) <= cost(greedy)
    with pytest.raises(ValueError, match="sorted"):
        plan_batches([3, 1], max_batch_tokens=10, max_batch_pairs=2)


def test_threads_share_batches_and_keep_their_own_order() -> None:
    rng = np.random.default_rng(1)
    model = FakeModel(delay=0.01)
    docs = {q: passages(rng, int(rng.integers(1, 40))) for q in range(1, 9)}
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def client(q: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[q] = sched.score(f"q{q}", docs[q]).logits
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with RerankScheduler(model, max_batch_tokens=2000, max_batch_pairs=32, max_wait_ms=5) as sched:
        threads = [threading.Thread(target=client, args=(q,)) for q in docs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for q, d in docs.items():
        np.testing.assert_allclose(results[q], expected(q, len(d)))
    assert any(len(b[3]) > 1 for b in model.batches), "pairs of different requests were batched together"
    for size, longest, _, _ in model.batches:
        assert size * longest <= 2000 or size == 1


def test_asyncio_callers_share_the_scheduler() -> None:
    rng = np.random.default_rng(2)
    model = FakeModel(delay=0.005)
    docs = {q: passages(rng, 25) for q in range(1, 9)}

    async def main(sched: RerankScheduler) -> dict[int, np.ndarray]:
        outs = await asyncio.gather(*(sched.ascore(f"q{q}", d) for q, d in docs.items()))
        return {q: o.logits for q, o in zip(docs, outs)}

    with RerankScheduler(model, max_batch_tokens=4000, max_wait_ms=5) as sched:
        got = asyncio.run(main(sched))
    for q, d in docs.items():
        np.testing.assert_allclose(got[q], expected(q, len(d)))
    assert any(len(b[3]) > 1 for b in model.batches)


def test_overload_fails_fast_and_memory_stays_bounded() -> None:
    model = FakeModel()
    model.gate.clear()
    with RerankScheduler(model, max_queue_pairs=10, max_wait_ms=0) as sched:
        first = sched.submit("q1", [f"p{i}:5" for i in range(8)])
        assert model.entered.wait(5)
        t0 = time.monotonic()
        with pytest.raises(OverloadedError, match="max_queue_pairs=10"):
            sched.submit("q2", [f"p{i}:5" for i in range(5)])
        assert time.monotonic() - t0 < 0.5
        second = sched.submit("q3", ["p0:5", "p1:5"])  # fits exactly
        with pytest.raises(ValueError, match="never fit"):
            sched.submit_encoded(model.encode("q4", [f"p{i}:5" for i in range(11)]))
        assert sched.pending_pairs == 10
        assert sched.stats().rejected == 1
        model.gate.set()
        np.testing.assert_allclose(first.result(5).logits, expected(1, 8))
        np.testing.assert_allclose(second.result(5).logits, expected(3, 2))
        assert sched.pending_pairs == 0


def test_timeout_cancels_pending_pairs() -> None:
    model = FakeModel()
    model.gate.clear()
    with RerankScheduler(model, max_wait_ms=0) as sched:
        busy = sched.submit("q1", ["p0:5", "p1:6"])
        assert model.entered.wait(5)
        with pytest.raises(TimeoutError, match="timed out"):
            sched.score("q2", ["p0:5", "p1:5", "p2:5"], timeout=0.05)
        assert sched.pending_pairs == 2  # only the running request is left
        assert sched.stats().timed_out == 1
        model.gate.set()
        np.testing.assert_allclose(busy.result(5).logits, expected(1, 2))
        np.testing.assert_allclose(sched.score("q3", ["p0:5"]).logits, expected(3, 1))
    assert all(2 not in b[3] for b in model.batches), "the timed-out request's pairs never ran"


def test_async_timeout_cancels() -> None:
    model = FakeModel()
    model.gate.clear()

    async def main(sched: RerankScheduler) -> None:
        with pytest.raises(TimeoutError):
            await sched.ascore("q2", ["p0:5"], timeout=0.05)

    with RerankScheduler(model, max_wait_ms=0) as sched:
        busy = sched.submit("q1", ["p0:5"])
        assert model.entered.wait(5)
        asyncio.run(main(sched))
        assert sched.pending_pairs == 1
        model.gate.set()
        busy.result(5)


def test_model_errors_reach_only_that_batch() -> None:
    model = FakeModel(delay=0.01)
    model.gate.clear()
    with RerankScheduler(model, max_batch_pairs=1, max_wait_ms=0) as sched:
        blocker = sched.submit("q9", ["p0:5"])
        assert model.entered.wait(5)
        bad = sched.submit("q1", ["p0:5", "p666:7", "p2:9"])
        good = sched.submit("q2", ["p0:5", "p1:8"])
        model.gate.set()  # both now run
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(5)
        np.testing.assert_allclose(good.result(5).logits, expected(2, 2))
        blocker.result(5)
        assert sched.stats().failed == 1
        assert sched.pending_pairs == 0
        np.testing.assert_allclose(sched.score("q3", ["p0:5"]).logits, expected(3, 1))  # still serving


def test_close_drains_then_refuses() -> None:
    model = FakeModel(delay=0.01)
    sched = RerankScheduler(model)
    futures = [sched.submit(f"q{q}", ["p0:5", "p1:9"]) for q in range(1, 5)]
    sched.close()
    for q, f in enumerate(futures, start=1):
        np.testing.assert_allclose(f.result(1).logits, expected(q, 2))
    with pytest.raises(SchedulerClosedError):
        sched.submit("q1", ["p0:5"])


def test_close_can_cancel_queued_requests() -> None:
    model = FakeModel()
    model.gate.clear()
    sched = RerankScheduler(model, max_wait_ms=0)
    running = sched.submit("q1", ["p0:5"])
    assert model.entered.wait(5)
    queued = sched.submit("q2", ["p0:5"])
    closer = threading.Thread(target=sched.close, kwargs={"cancel_pending": True})
    closer.start()
    with pytest.raises(SchedulerClosedError):
        queued.result(5)
    model.gate.set()
    closer.join(5)
    running.result(5)


def test_small_request_waits_only_briefly_and_empty_is_fine() -> None:
    model = FakeModel()
    with RerankScheduler(model, max_wait_ms=3) as sched:
        t0 = time.monotonic()
        sched.score("q1", ["p0:5"])
        assert time.monotonic() - t0 < 1.0
        empty = sched.score("q1", [])
        assert empty.scores.shape == (0,)
    with pytest.raises(ValueError):
        RerankScheduler(model, max_batch_tokens=0)


def test_no_round_option_or_counter() -> None:
    """Scheduling has no rounds: the old ignored `max_round_pairs` option and always-zero `rounds` counter are gone."""
    with pytest.raises(TypeError):
        RerankScheduler(FakeModel(), max_round_pairs=512)  # type: ignore[call-arg]
    assert "rounds" not in {f.name for f in dataclasses.fields(SchedulerStats)}


def test_oldest_request_completes_before_later_ones_run() -> None:
    """Latency first: a request's future resolves after its own batches, not after the later requests'."""
    rng = np.random.default_rng(5)
    model = FakeModel()
    model.gate.clear()
    seen_at_first_done: list[int] = []
    with RerankScheduler(model, max_batch_tokens=1000, max_batch_pairs=16, max_wait_ms=0) as sched:
        blocker = sched.submit("q9", ["p0:5"])
        assert model.entered.wait(5)
        first = sched.submit("q1", passages(rng, 100))
        second = sched.submit("q2", passages(rng, 100))

        def record(_: object) -> None:
            with model.lock:
                seen_at_first_done.append(sum(b[2].__len__() for b in model.batches if b[3] == {2}))

        first.add_done_callback(record)
        model.gate.set()
        np.testing.assert_allclose(first.result(5).logits, expected(1, 100))
        np.testing.assert_allclose(second.result(5).logits, expected(2, 100))
        blocker.result(5)
        stats = sched.stats()
    # When the first request completed, the second had run at most the pairs that topped up q1's last batch.
    assert seen_at_first_done and seen_at_first_done[0] < 16
    order = [b[3] for b in model.batches if b[3] != {9}]
    last_q1 = max(k for k, qs in enumerate(order) if 1 in qs)
    first_q2_only = min(k for k, qs in enumerate(order) if qs == {2})
    assert last_q1 < first_q2_only, "no batch of the second request alone ran before the first was done"
    assert stats.padding_waste < 0.1


def test_last_batch_is_topped_up_with_the_next_requests_pairs() -> None:
    model = FakeModel()
    model.gate.clear()
    with RerankScheduler(model, max_batch_tokens=1000, max_batch_pairs=16, max_wait_ms=0) as sched:
        blocker = sched.submit("q9", ["p0:5"])
        assert model.entered.wait(5)
        a = sched.submit("q1", [f"p{i}:50" for i in range(3)])
        b = sched.submit("q2", [f"p{i}:{45 + i}" for i in range(6)] + ["p6:400"])
        model.gate.set()
        np.testing.assert_allclose(a.result(5).logits, expected(1, 3))
        np.testing.assert_allclose(b.result(5).logits, expected(2, 7))
        blocker.result(5)
        stats = sched.stats()
    shared = [bt for bt in model.batches if bt[3] == {1, 2}]
    assert len(shared) == 1 and shared[0][1] == 50, "q1's batch took q2's pairs that pad to at most 50"
    assert sorted(shared[0][2]) == [45, 46, 47, 48, 49, 50, 50, 50, 50]
    assert (1, 400, [400], {2}) in model.batches, "the long pair did not pad the shared batch"
    assert stats.shared_batches == 1


def test_one_model_per_worker() -> None:
    rng = np.random.default_rng(6)
    models = [FakeModel(delay=0.01), FakeModel(delay=0.01)]
    with RerankScheduler(models, max_batch_tokens=500, max_batch_pairs=8) as sched:
        assert sched.workers == 2
        res = sched.score("q3", passages(rng, 60))
    np.testing.assert_allclose(res.logits, expected(3, 60))
    assert all(m.batches for m in models), "both workers' models ran batches of the one request"
    assert sum(len(b[2]) for m in models for b in m.batches) == 60
    with pytest.raises(ValueError, match="one model per worker"):
        RerankScheduler(models, workers=3)
    with pytest.raises(ValueError):
        RerankScheduler([])


def test_infer_seconds_is_wall_time_busy_with_parallel_workers() -> None:
    """pairs / infer_seconds is the scheduler's throughput (the service's wait estimate), also with 2 workers."""
    models = [FakeModel(delay=0.05), FakeModel(delay=0.05)]
    with RerankScheduler(models, max_batch_tokens=100, max_batch_pairs=1, max_wait_ms=0) as sched:
        t0 = time.perf_counter()
        sched.score("q1", [f"p{i}:5" for i in range(10)])
        wall = time.perf_counter() - t0
        stats = sched.stats()
    assert stats.batches == 10
    assert stats.model_seconds >= 10 * 0.05
    assert stats.infer_seconds <= wall + 1e-3
    assert stats.model_seconds > 1.5 * stats.infer_seconds, "the two workers ran batches at the same time"
