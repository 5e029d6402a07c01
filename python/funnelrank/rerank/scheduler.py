"""The dynamic batch scheduler every reranking call goes through (threads and asyncio alike).

Within a request, pairs are tokenized once, sorted by token length and cut into batches by a padded-token
budget (``batch size * longest pair in the batch <= max_batch_tokens``, see `plan_batches`), each batch padded
only to its own longest pair. Across requests, concurrent callers share one worker thread: it takes the
queued requests (first come, first served, up to ``max_round_pairs`` pairs) as one *round*, sorts all their
pairs together by length and runs the round's batches; a request that is smaller than one batch waits at
most ``max_wait_ms`` for company. Each caller gets its own scores back, in its own passage order.

Back-pressure: at most ``max_queue_pairs`` pairs are admitted (queued or running) at once; a request that
would exceed it fails immediately with `OverloadedError` (map it to HTTP 429/503), so memory stays bounded.
A request that outlives its timeout raises `TimeoutError` and its pending pairs are dropped. An exception
raised by the model fails the requests whose pairs were in that batch, and only those.

Tokenization runs in the caller's thread (``tokenizers`` releases the GIL), so it overlaps with inference
of other requests; `ascore` runs it in the event loop's default executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from funnelrank.batching import plan_batches
from funnelrank.rerank.cross_encoder import EncodedPairs, reduce_to_passages, sigmoid


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


@dataclass(frozen=True)
class Scores:
    """Per-passage results of one request, in the caller's passage order."""

    scores: np.ndarray
    """sigmoid(logit), 0..1."""
    logits: np.ndarray
    """Raw relevance logits (max over chunks when chunking)."""
    query_truncated: bool = False
    """The query was cut to leave room for the passage."""


@dataclass
class SchedulerStats:
    """Counters since the scheduler started (a snapshot; see `RerankScheduler.stats`)."""

    requests: int = 0
    pairs: int = 0
    batches: int = 0
    rounds: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    infer_seconds: float = 0.0
    rejected: int = 0
    timed_out: int = 0
    failed: int = 0
    batch_sizes: list[int] = field(default_factory=list, repr=False)

    @property
    def padding_waste(self) -> float:
        """padded tokens / real tokens - 1 (0 means no padding at all)."""
        return self.padded_tokens / self.real_tokens - 1.0 if self.real_tokens else 0.0


_QUEUED, _RUNNING, _DONE = 0, 1, 2


class _Request:
    __slots__ = ("enc", "lengths", "logits", "remaining", "future", "state", "t_submit", "tokens")

    def __init__(self, enc: EncodedPairs, future: RerankFuture) -> None:
        self.enc = enc
        self.lengths = enc.lengths
        self.tokens = int(self.lengths.sum())
        self.logits = np.empty(len(enc))
        self.remaining = len(enc)
        self.future = future
        self.state = _QUEUED
        self.t_submit = time.monotonic()


class RerankFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A `concurrent.futures.Future` of `Scores`; cancelling it drops the request's pending pairs."""

    _scheduler: RerankScheduler | None = None
    _request: _Request | None = None

    def cancel(self) -> bool:
        """Cancel the request: its pairs that have not run yet never will."""
        if self._scheduler is not None and self._request is not None:
            self._scheduler._drop(self._request)
        return super().cancel()


class RerankScheduler:
    """Shares one model among concurrent callers by micro-batching their pairs (see the module doc).

    Args:
        model: a `CrossEncoder` (or anything with ``encode``/``infer``, see `PairModel`).
        max_batch_tokens: padded-token budget of one batch (``size * longest``).
        max_batch_pairs: most pairs in one batch.
        batch_overhead_tokens: the per-batch fixed cost, in token equivalents, used to trade a little
            padding for fewer, larger batches (0 = minimise padding only).
        max_wait_ms: how long a request smaller than one batch waits for others to share a batch with.
        max_queue_pairs: most pairs admitted at once (queued + running); beyond it `OverloadedError`.
        max_round_pairs: most pairs the worker takes into one round (bounds the wait of later requests).
        workers: worker threads (1 is right when the model already uses every core).
        timeout: default per-request timeout in seconds (None: wait forever).

    Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        model: PairModel,
        *,
        max_batch_tokens: int = 4096,
        max_batch_pairs: int = 64,
        batch_overhead_tokens: int = 32,
        max_wait_ms: float = 2.0,
        max_queue_pairs: int = 4096,
        max_round_pairs: int = 512,
        workers: int = 1,
        timeout: float | None = None,
    ) -> None:
        if max_batch_tokens < 1 or max_batch_pairs < 1 or max_round_pairs < 1 or max_queue_pairs < 1:
            raise ValueError("batch, round and queue limits must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 (or None)")
        self.model = model
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_batch_pairs = int(max_batch_pairs)
        self.batch_overhead_tokens = int(batch_overhead_tokens)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue_pairs = int(max_queue_pairs)
        self.max_round_pairs = int(max_round_pairs)
        self.timeout = timeout
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._queued_tokens = 0
        self._pending_pairs = 0
        self._closed = False
        self._stats = SchedulerStats()
        self._workers = [
            threading.Thread(target=self._work, name=f"funnelrank-rerank-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._workers:
            t.start()

    # ------------------------------------------------------------------ public API
    @property
    def pending_pairs(self) -> int:
        """Pairs admitted and not finished (queued or running)."""
        with self._cond:
            return self._pending_pairs

    def stats(self) -> SchedulerStats:
        """A snapshot of the counters."""
        with self._cond:
            s = self._stats
            return SchedulerStats(
                s.requests, s.pairs, s.batches, s.rounds, s.real_tokens, s.padded_tokens, s.infer_seconds,
                s.rejected, s.timed_out, s.failed, list(s.batch_sizes),
            )

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._cond:
            self._stats = SchedulerStats()

    def submit(self, query: str, passages: Sequence[str]) -> RerankFuture:
        """Tokenize in this thread and queue the request; returns a future of `Scores`.

        Raises `OverloadedError` at once when the queue is full, `SchedulerClosedError` after `close()`.
        """
        self._precheck(len(passages))
        return self.submit_encoded(self.model.encode(query, passages))

    def submit_encoded(self, enc: EncodedPairs) -> RerankFuture:
        """Queue already-tokenized pairs; returns a future of `Scores`."""
        n = len(enc)
        future = RerankFuture()
        if n == 0:
            future.set_result(Scores(np.zeros(0), np.zeros(0), enc.query_truncated))
            return future
        if n > self.max_queue_pairs:
            raise ValueError(f"a request of {n} pairs can never fit max_queue_pairs={self.max_queue_pairs}")
        req = _Request(enc, future)
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
            self._queue.append(req)
            self._queued_tokens += req.tokens
            self._pending_pairs += n
            self._stats.requests += 1
            self._cond.notify()
        return future

    def score(self, query: str, passages: Sequence[str], *, timeout: float | None = None) -> Scores:
        """Score passages against a query (blocking); returns `Scores` in passage order.

        `timeout` (seconds, default the scheduler's) raises `TimeoutError` and cancels the pending pairs.
        """
        future = self.submit(query, passages)
        return self._wait(future, self.timeout if timeout is None else timeout)

    async def ascore(self, query: str, passages: Sequence[str], *, timeout: float | None = None) -> Scores:
        """`score` for asyncio: tokenizes in the default executor and awaits the shared worker."""
        self._precheck(len(passages))
        loop = asyncio.get_running_loop()
        enc = await loop.run_in_executor(None, self.model.encode, query, passages)
        future = self.submit_encoded(enc)
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except TimeoutError:
            future.cancel()
            self._count_timeout()
            raise TimeoutError(f"rerank timed out after {limit}s; its pending pairs were cancelled") from None

    def close(self, *, cancel_pending: bool = False, wait: bool = True) -> None:
        """Stop accepting requests. Queued requests are still served unless `cancel_pending`
        (then they fail with `SchedulerClosedError`); with `wait`, join the worker threads."""
        dropped: list[_Request] = []
        with self._cond:
            self._closed = True
            if cancel_pending:
                while self._queue:
                    req = self._queue.popleft()
                    req.state = _DONE
                    self._pending_pairs -= len(req.enc)
                    dropped.append(req)
                self._queued_tokens = 0
            self._cond.notify_all()
        for req in dropped:
            _settle(req.future, exc=SchedulerClosedError("the rerank scheduler was closed before this request ran"))
        if wait:
            for t in self._workers:
                if t is not threading.current_thread():
                    t.join()

    def __enter__(self) -> RerankScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
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

    def _wait(self, future: RerankFuture, timeout: float | None) -> Scores:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done() and not future.cancelled():
                return future.result()
            future.cancel()
            self._count_timeout()
            raise TimeoutError(f"rerank timed out after {timeout}s; its pending pairs were cancelled") from None

    def _count_timeout(self) -> None:
        with self._cond:
            self._stats.timed_out += 1

    def _drop(self, req: _Request) -> None:
        """Forget a request (cancel/timeout): remove it from the queue, or skip its remaining pairs."""
        with self._cond:
            if req.state == _DONE:
                return
            if req.state == _QUEUED:
                self._queue.remove(req)
                self._queued_tokens -= req.tokens
            req.state = _DONE
            self._pending_pairs -= len(req.enc)

    def _take_round(self) -> list[_Request] | None:
        """Block until there is work; return the next round's requests, or None to stop."""
        with self._cond:
            while True:
                if self._queue:
                    age = time.monotonic() - self._queue[0].t_submit
                    if not self._closed and self._queued_tokens < self.max_batch_tokens and age < self.max_wait:
                        self._cond.wait(self.max_wait - age)
                        continue
                    taken: list[_Request] = []
                    pairs = 0
                    while self._queue and (not taken or pairs + len(self._queue[0].enc) <= self.max_round_pairs):
                        req = self._queue.popleft()
                        req.state = _RUNNING
                        self._queued_tokens -= req.tokens
                        pairs += len(req.enc)
                        taken.append(req)
                    self._stats.rounds += 1
                    return taken
                if self._closed:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        while True:
            reqs = self._take_round()
            if reqs is None:
                return
            try:
                self._run_round(reqs)
            except BaseException as exc:  # a bug here must not strand callers
                self._fail(reqs, exc)

    def _run_round(self, reqs: list[_Request]) -> None:
        sizes = [len(r.enc) for r in reqs]
        lengths = np.concatenate([r.lengths for r in reqs])
        owner = np.repeat(np.arange(len(reqs)), sizes)
        local = np.concatenate([np.arange(s) for s in sizes])
        order = np.argsort(lengths, kind="stable")
        slices = plan_batches(
            lengths[order],
            max_batch_tokens=self.max_batch_tokens,
            max_batch_pairs=self.max_batch_pairs,
            batch_overhead_tokens=self.batch_overhead_tokens,
        )
        for start, end in slices:
            live = [int(k) for k in order[start:end] if reqs[owner[k]].state == _RUNNING]
            if not live:
                continue
            ids = [reqs[owner[k]].enc.input_ids[local[k]] for k in live]
            has_types = reqs[owner[live[0]]].enc.type_ids is not None
            types = [reqs[owner[k]].enc.type_ids[local[k]] for k in live] if has_types else None  # type: ignore[index]
            t0 = time.perf_counter()
            try:
                out = np.asarray(self.model.infer(ids, types), dtype=np.float64).reshape(-1)
                if out.shape[0] != len(live):
                    raise RuntimeError(f"model returned {out.shape[0]} logits for a batch of {len(live)} pairs")
            except Exception as exc:
                self._fail(list({id(reqs[owner[k]]): reqs[owner[k]] for k in live}.values()), exc)
                continue
            elapsed = time.perf_counter() - t0
            longest = max(a.shape[0] for a in ids)
            finished: list[_Request] = []
            with self._cond:
                s = self._stats
                s.batches += 1
                s.pairs += len(live)
                s.real_tokens += int(sum(a.shape[0] for a in ids))
                s.padded_tokens += len(live) * longest
                s.infer_seconds += elapsed
                if len(s.batch_sizes) < 100_000:
                    s.batch_sizes.append(len(live))
                for k, value in zip(live, out):
                    req = reqs[owner[k]]
                    if req.state != _RUNNING:
                        continue
                    req.logits[local[k]] = value
                    req.remaining -= 1
                    if req.remaining == 0:
                        req.state = _DONE
                        self._pending_pairs -= len(req.enc)
                        finished.append(req)
            for req in finished:
                logits = reduce_to_passages(req.logits, req.enc)
                _settle(req.future, result=Scores(sigmoid(logits), logits, req.enc.query_truncated))

    def _fail(self, reqs: list[_Request], exc: BaseException) -> None:
        failed: list[_Request] = []
        with self._cond:
            for req in reqs:
                if req.state != _DONE:
                    req.state = _DONE
                    self._pending_pairs -= len(req.enc)
                    self._stats.failed += 1
                    failed.append(req)
        for req in failed:
            _settle(req.future, exc=exc)


def _settle(future: concurrent.futures.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    """Set a future's outcome unless its caller already cancelled it."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
