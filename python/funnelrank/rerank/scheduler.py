"""The dynamic batch scheduler every reranking call goes through (threads and asyncio alike).

Latency first. Requests are served in arrival order: the next batch is cut from the *oldest* request's
pending pairs, so a request completes as soon as its own pairs are scored (its future resolves right after
its last batch), not when some larger group of requests does. Within a request, pairs are tokenized once,
sorted by token length and cut into batches by a padded-token budget (``batch size * longest pair in the
batch <= max_batch_tokens``, see `plan_batches`), each batch padded only to its own longest pair. When the
oldest request's last batch leaves room in the budget, it is topped up with the next requests' pairs that
pad to no more than that batch's longest pair (give or take ``batch_overhead_tokens``), so small requests
share batches and the model runs fewer, fuller batches. A request smaller than one batch waits at most
``max_wait_ms`` for company. Each caller gets its own scores back, in its own passage order.

Workers. ``workers`` threads pull batches from the one queue. Each worker runs its own model when the
scheduler is given one model per worker (e.g. several ONNX Runtime sessions of one intra-op thread each, see
`CrossEncoder.replicas`), or all share a single model. Several workers also let one big request's batches
run in parallel.

Back-pressure: at most ``max_queue_pairs`` pairs are admitted (queued or running) at once; a request that
would exceed it fails immediately with `OverloadedError` (map it to HTTP 429/503), so memory stays bounded.
A request that outlives its timeout raises `TimeoutError` and its pending pairs are dropped. An exception
raised by the model fails the requests whose pairs were in that batch, and only those.

Tokenization and batch planning run in the caller's thread (``tokenizers`` releases the GIL), so they
overlap with inference of other requests; `ascore` runs them in the event loop's default executor.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from funnelrank.rerank.batching import DEFAULT_BATCH_OVERHEAD_TOKENS, plan_batches
from funnelrank.rerank.cross_encoder import EncodedPairs, reduce_to_passages, sigmoid
from funnelrank.rerank.score_cache import ScoreCache
from funnelrank.rerank.scorer import Scorer, Scores, chain, done_future, settle


class OverloadedError(RuntimeError):
    """The scheduler already holds `max_queue_pairs` pending pairs; retry later (HTTP 429/503)."""


class SchedulerClosedError(RuntimeError):
    """The scheduler was closed; no new requests are accepted."""


class PairModel(Protocol):
    """What the scheduler needs from a model (`CrossEncoder` is one; tests pass fakes)."""

    def encode(self, query: str, passages: Sequence[str]) -> EncodedPairs:
        """Tokenize the pairs of one request."""
        ...

    def infer(self, input_ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None) -> np.ndarray:
        """One logit per pair for one batch (padding is the model's business)."""
        ...


@dataclass
class SchedulerStats:
    """Counters since the scheduler started (a snapshot; see `RerankScheduler.stats`)."""

    requests: int = 0
    pairs: int = 0
    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    infer_seconds: float = 0.0
    """Wall-clock seconds during which at least one batch was running, so ``pairs / infer_seconds`` is the
    scheduler's throughput while busy, however many workers run at once (see `model_seconds`)."""
    model_seconds: float = 0.0
    """Model time summed over batches (exceeds `infer_seconds` when several workers run at once)."""
    rejected: int = 0
    timed_out: int = 0
    failed: int = 0
    shared_batches: int = 0
    """Batches that held pairs of more than one request (a request's last batch topped up)."""
    batch_sizes: list[int] = field(default_factory=list, repr=False)

    @property
    def padding_waste(self) -> float:
        """padded tokens / real tokens - 1 (0 means no padding at all)."""
        return self.padded_tokens / self.real_tokens - 1.0 if self.real_tokens else 0.0


class _Request:
    __slots__ = ("enc", "lengths", "logits", "remaining", "future", "t_submit", "todo", "queued_tokens",
                 "queued", "done")

    def __init__(self, enc: EncodedPairs, future: RerankFuture, todo: list[list[int]]) -> None:
        self.enc = enc
        self.lengths: list[int] = enc.lengths.tolist()
        self.logits = np.empty(len(enc))
        self.remaining = len(enc)  # pairs not scored yet
        self.future = future
        self.t_submit = time.monotonic()
        self.todo = todo  # planned batches of pairs not yet handed to a worker (ascending length)
        self.queued_tokens = sum(self.lengths)  # tokens of the pairs in `todo`
        self.queued = False  # in the scheduler's queue (it still has pairs in `todo`)
        self.done = False  # scored, failed, cancelled or timed out: nothing more to do


class RerankFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A `concurrent.futures.Future` of `Scores`; cancelling it drops the request's pending pairs."""

    _scheduler: RerankScheduler | None = None
    _request: _Request | None = None

    def cancel(self) -> bool:
        """Cancel the request: its pairs that have not run yet never will."""
        if self._scheduler is not None and self._request is not None:
            self._scheduler._drop(self._request)
        return super().cancel()


_Batch = list[tuple[_Request, int]]


class RerankScheduler(Scorer):
    """Shares a model among concurrent callers by micro-batching their pairs, oldest request first
    (see the module doc).

    Args:
        model: a `CrossEncoder` (or anything with ``encode``/``infer``, see `PairModel`), or a sequence of
            them, one per worker (replicas of one model, e.g. `CrossEncoder.replicas`); the first encodes.
        max_batch_tokens: padded-token budget of one batch (``size * longest``).
        max_batch_pairs: most pairs in one batch.
        batch_overhead_tokens: the per-batch fixed cost, in token equivalents, used to trade a little
            padding for fewer, larger batches (0 = minimise padding only); also the most padding a pair of a
            later request may add when it tops up a request's last batch.
        max_wait_ms: how long a request smaller than one batch waits for others to share a batch with.
        max_queue_pairs: most pairs admitted at once (queued + running); beyond it `OverloadedError`.
        workers: worker threads pulling batches from the queue (default: one per model given).
        timeout: default per-request timeout in seconds (None: wait forever).
        cache_entries: keep the scores of up to this many (query, passage) pairs and answer repeats from
            them (`funnelrank.rerank.score_cache.ScoreCache`, in `cache`); 0 (the default here) keeps none.
            `Reranker` turns it on (:data:`funnelrank.rerank.reranker.DEFAULT_CACHE_ENTRIES`).

    Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        model: PairModel | Sequence[PairModel],
        *,
        max_batch_tokens: int = 4096,
        max_batch_pairs: int = 64,
        batch_overhead_tokens: int = DEFAULT_BATCH_OVERHEAD_TOKENS,
        max_wait_ms: float = 2.0,
        max_queue_pairs: int = 4096,
        workers: int | None = None,
        timeout: float | None = None,
        cache_entries: int = 0,
    ) -> None:
        models: list[PairModel] = list(model) if isinstance(model, (list, tuple)) else [model]  # type: ignore[list-item]
        if not models:
            raise ValueError("model: give a model or a non-empty sequence of models (one per worker)")
        if max_batch_tokens < 1 or max_batch_pairs < 1 or max_queue_pairs < 1:
            raise ValueError("batch and queue limits must be >= 1")
        if batch_overhead_tokens < 0:
            raise ValueError("batch_overhead_tokens must be >= 0")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if workers is None:
            workers = len(models)
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if len(models) > 1 and workers != len(models):
            raise ValueError(f"{len(models)} models given for {workers} workers; give one model per worker, or one")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 (or None)")
        self.model: PairModel = models[0]
        self.models: list[PairModel] = models
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_batch_pairs = int(max_batch_pairs)
        self.batch_overhead_tokens = int(batch_overhead_tokens)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue_pairs = int(max_queue_pairs)
        self.timeout = timeout
        self.cache: ScoreCache | None = ScoreCache(cache_entries) if cache_entries else None
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()  # requests with pairs not yet handed out, oldest first
        self._queued_tokens = 0
        self._pending_pairs = 0
        self._closed = False
        self._stats = SchedulerStats()
        self._running = 0  # batches running now
        self._busy_since = 0.0  # when the current busy period (>= 1 batch running) began
        self._reset_at = 0.0  # when the counters were last zeroed
        self._workers = [
            threading.Thread(target=self._work, args=(models[i % len(models)],), name=f"funnelrank-rerank-{i}",
                             daemon=True)
            for i in range(workers)
        ]
        for t in self._workers:
            t.start()

    # ------------------------------------------------------------------ public API
    @property
    def workers(self) -> int:
        """Number of worker threads."""
        return len(self._workers)

    @property
    def pending_pairs(self) -> int:
        """Pairs admitted and not finished (queued or running)."""
        with self._cond:
            return self._pending_pairs

    def stats(self) -> SchedulerStats:
        """A snapshot of the counters."""
        with self._cond:
            snap = dataclasses.replace(self._stats, batch_sizes=list(self._stats.batch_sizes))
            if self._running:  # count the busy period in progress
                snap.infer_seconds += time.perf_counter() - max(self._busy_since, self._reset_at)
            return snap

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._cond:
            self._stats = SchedulerStats()
            self._reset_at = time.perf_counter()

    def submit(self, query: str, passages: Sequence[str]) -> concurrent.futures.Future[Scores]:
        """Tokenize in this thread and queue the request (passages the score cache knows are answered from
        it); returns a future of `Scores`.

        Raises `OverloadedError` at once when the queue is full, `SchedulerClosedError` after `close()`.
        """
        if self.cache is None:
            self._precheck(len(passages))
            return self.submit_encoded(self.model.encode(query, passages))
        self._precheck(0)  # a closed scheduler refuses, even what it could answer from the cache
        hits, todo = self.cache.lookup(query, passages)
        if not todo:
            return done_future(self.cache.complete(query, passages, hits, todo, None))
        self._precheck(len(todo))
        fresh = self.submit_encoded(self.model.encode(query, [passages[i] for i in todo]))
        cache = self.cache
        return chain(fresh, lambda scores: cache.complete(query, passages, hits, todo, scores))

    def submit_encoded(self, enc: EncodedPairs) -> RerankFuture:
        """Queue already-tokenized pairs; returns a future of `Scores`."""
        n = len(enc)
        future = RerankFuture()
        if n == 0:
            future.set_result(Scores(np.zeros(0), np.zeros(0), enc.query_truncated))
            return future
        if n > self.max_queue_pairs:
            raise ValueError(f"a request of {n} pairs can never fit max_queue_pairs={self.max_queue_pairs}")
        req = _Request(enc, future, self._plan(enc.lengths))
        with self._cond:
            if self._closed:
                raise SchedulerClosedError("the rerank scheduler is closed")
            if self._pending_pairs + n > self.max_queue_pairs:
                self._stats.rejected += 1
                raise OverloadedError(
                    f"rerank queue full: {self._pending_pairs} pairs pending, {n} more would exceed "
                    f"max_queue_pairs={self.max_queue_pairs}; retry later"
                )
            future._scheduler = self
            future._request = req
            req.t_submit = time.monotonic()
            req.queued = True
            self._queue.append(req)
            self._queued_tokens += req.queued_tokens
            self._pending_pairs += n
            self._stats.requests += 1
            self._cond.notify()
        return future

    def close(self, *, cancel_pending: bool = False, wait: bool = True) -> None:
        """Stop accepting requests. Queued requests are still served unless `cancel_pending`
        (then they fail with `SchedulerClosedError`); with `wait`, join the worker threads."""
        dropped: list[_Request] = []
        with self._cond:
            self._closed = True
            if cancel_pending:
                while self._queue:
                    req = self._queue[0]
                    self._finish(req)
                    dropped.append(req)
            self._cond.notify_all()
        for req in dropped:
            settle(req.future, exc=SchedulerClosedError("the rerank scheduler was closed before this request ran"))
        if wait:
            for t in self._workers:
                if t is not threading.current_thread():
                    t.join()

    def __enter__(self) -> RerankScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _plan(self, lengths: np.ndarray) -> list[list[int]]:
        """A request's batches: its pairs sorted by length, cut by `plan_batches` (ascending length)."""
        order = np.argsort(lengths, kind="stable")
        return [[int(order[k]) for k in part] for part in self._plan_sorted(lengths[order])]

    def _precheck(self, n: int) -> None:
        """Fail fast, before tokenizing, when the request cannot be admitted now."""
        with self._cond:
            if self._closed:
                raise SchedulerClosedError("the rerank scheduler is closed")
            if n and self._pending_pairs + n > self.max_queue_pairs and n <= self.max_queue_pairs:
                self._stats.rejected += 1
                raise OverloadedError(
                    f"rerank queue full: {self._pending_pairs} pairs pending, {n} more would exceed "
                    f"max_queue_pairs={self.max_queue_pairs}; retry later"
                )

    def _timed_out(self, future: concurrent.futures.Future[Scores], limit: float | None) -> TimeoutError:
        with self._cond:
            self._stats.timed_out += 1
        return super()._timed_out(future, limit)

    def _finish(self, req: _Request) -> None:
        """Mark a request done (lock held): out of the queue, its pairs no longer pending."""
        if req.queued:
            self._queue.remove(req)
            self._queued_tokens -= req.queued_tokens
            req.queued = False
            req.queued_tokens = 0
            req.todo = []
        req.done = True
        self._pending_pairs -= len(req.enc)

    def _drop(self, req: _Request) -> None:
        """Forget a request (cancel/timeout): its pairs not handed out never run, running ones are ignored."""
        with self._cond:
            if not req.done:
                self._finish(req)

    def _take_batch(self) -> _Batch | None:
        """Block until there is work; return the next batch as (request, pair index) items, or None to stop."""
        with self._cond:
            while True:
                if self._queue:
                    age = time.monotonic() - self._queue[0].t_submit
                    if not self._closed and self._queued_tokens < self.max_batch_tokens and age < self.max_wait:
                        self._cond.wait(self.max_wait - age)
                        continue
                    batch = self._next_batch()
                    if self._queue:
                        self._cond.notify()  # more work: wake another idle worker
                    return batch
                if self._closed:
                    return None
                self._cond.wait()

    def _next_batch(self) -> _Batch:
        """The oldest request's next planned batch; its last one topped up from later requests (lock held)."""
        first = self._queue[0]
        picked = first.todo.pop(0)
        self._take(first, picked)
        batch: _Batch = [(first, i) for i in picked]
        if first.queued:
            return batch
        longest = max(first.lengths[i] for i in picked)
        room = min(self.max_batch_pairs, max(1, self.max_batch_tokens // max(longest, 1))) - len(batch)
        shortest = longest - self.batch_overhead_tokens
        for req in list(self._queue):
            if room <= 0:
                break
            flat = [i for part in req.todo for i in part]  # ascending length
            end = len(flat)
            while end > 0 and req.lengths[flat[end - 1]] > longest:
                end -= 1
            start = end
            while start > 0 and end - start < room and req.lengths[flat[start - 1]] >= shortest:
                start -= 1
            if start == end:
                continue
            extra = flat[start:end]
            rest = flat[:start] + flat[end:]
            req.todo = []
            if rest:  # re-plan what is left of that request
                lengths = np.asarray([req.lengths[i] for i in rest])
                req.todo = [[rest[k] for k in part] for part in self._plan_sorted(lengths)]
            self._take(req, extra)
            batch.extend((req, i) for i in extra)
            room -= len(extra)
        return batch

    def _plan_sorted(self, sorted_lengths: np.ndarray) -> list[list[int]]:
        slices = plan_batches(
            sorted_lengths,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_pairs=self.max_batch_pairs,
            batch_overhead_tokens=self.batch_overhead_tokens,
        )
        return [list(range(s, e)) for s, e in slices]

    def _take(self, req: _Request, picked: list[int]) -> None:
        """Account for pairs of `req` handed to a worker (lock held); dequeue it when none are left."""
        tokens = sum(req.lengths[i] for i in picked)
        req.queued_tokens -= tokens
        self._queued_tokens -= tokens
        if not req.todo:
            self._queue.remove(req)
            req.queued = False

    def _work(self, model: PairModel) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run_batch(model, batch)
            except BaseException as exc:  # a bug here must not strand callers
                self._fail(list({id(r): r for r, _ in batch}.values()), exc)

    def _run_batch(self, model: PairModel, batch: _Batch) -> None:
        live = [(req, i) for req, i in batch if not req.done]
        if not live:
            return
        ids = [req.enc.input_ids[i] for req, i in live]
        types = None
        if live[0][0].enc.type_ids is not None:
            types = [req.enc.type_ids[i] for req, i in live]  # type: ignore[index]
        with self._cond:
            t0 = time.perf_counter()
            if self._running == 0:
                self._busy_since = t0
            self._running += 1
        try:
            out = np.asarray(model.infer(ids, types), dtype=np.float64).reshape(-1)
            if out.shape[0] != len(live):
                raise RuntimeError(f"model returned {out.shape[0]} logits for a batch of {len(live)} pairs")
        except Exception as exc:
            self._idle_one()
            self._fail(list({id(r): r for r, _ in live}.values()), exc)
            return
        elapsed = self._idle_one() - t0
        longest = max(a.shape[0] for a in ids)
        finished: list[_Request] = []
        with self._cond:
            s = self._stats
            s.batches += 1
            s.pairs += len(live)
            s.real_tokens += int(sum(a.shape[0] for a in ids))
            s.padded_tokens += len(live) * longest
            s.model_seconds += elapsed
            if len({id(r) for r, _ in live}) > 1:
                s.shared_batches += 1
            if len(s.batch_sizes) < 100_000:
                s.batch_sizes.append(len(live))
            for (req, i), value in zip(live, out):
                if req.done:
                    continue
                req.logits[i] = value
                req.remaining -= 1
                if req.remaining == 0:
                    self._finish(req)
                    finished.append(req)
        for req in finished:
            logits = reduce_to_passages(req.logits, req.enc)
            settle(req.future, result=Scores(sigmoid(logits), logits, req.enc.query_truncated))

    def _idle_one(self) -> float:
        """A batch finished: close the busy period when it was the last one running. Returns the time."""
        with self._cond:
            now = time.perf_counter()
            self._running -= 1
            if self._running == 0:
                self._stats.infer_seconds += now - max(self._busy_since, self._reset_at)
            return now

    def _fail(self, reqs: list[_Request], exc: BaseException) -> None:
        failed: list[_Request] = []
        with self._cond:
            for req in reqs:
                if not req.done:
                    self._finish(req)
                    self._stats.failed += 1
                    failed.append(req)
        for req in failed:
            settle(req.future, exc=exc)
