"""`Scorer`: the one way stage 2 scores a query against candidate texts.

A scorer implements one method, :meth:`Scorer.submit` (queue the pairs, return a future of
:class:`Scores`); blocking :meth:`Scorer.score` and asyncio :meth:`Scorer.ascore` are derived from it here, once,
with the same timeout and cancellation rules. The dynamic batch scheduler, a cross-encoder used directly and
the two-pass cascade are Scorers; a feature such as a cache or a cascade is a wrapper around one, not a
parallel code path.

    >>> scorer = CrossEncoder.from_pretrained(default_reranker_path())  # a CrossEncoder is a Scorer
    >>> scores = scorer.score("compress data with gzip", ["gzip.compress(data)", "json.dumps(obj)"])
    >>> scores.scores.round(3), scores.query_truncated
    (array([0.918, 0.019]), False)
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ChainedFuture", "Scorer", "Scores", "chain", "done_future", "settle"]


@dataclass(frozen=True)
class Scores:
    """Per-passage results of one request, in the caller's passage order."""

    scores: np.ndarray
    """sigmoid(logit), 0..1."""
    logits: np.ndarray
    """Raw relevance logits (max over chunks when chunking)."""
    query_truncated: bool = False
    """The query was cut to leave room for the passage."""


def settle(future: concurrent.futures.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    """Set a future's outcome unless its caller already cancelled it."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class ChainedFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A future computed from another: cancelling it cancels the one it waits on (so a scheduler drops the
    pairs that have not run yet)."""

    source: concurrent.futures.Future[Any] | None = None

    def cancel(self) -> bool:
        """Cancel this future and the one it is waiting on."""
        source = self.source
        if source is not None:
            source.cancel()
        return super().cancel()


def chain(source: concurrent.futures.Future[Any], then: Callable[[Any], Any]) -> ChainedFuture:
    """A future of ``then(source.result())``; ``then`` may return a value or another future to wait on.
    An exception from either step becomes the chained future's exception; cancelling it cancels the step it
    waits on."""
    out = ChainedFuture()
    out.source = source

    def relay(done: concurrent.futures.Future[Any], transform: Callable[[Any], Any] | None) -> None:
        if done.cancelled():
            out.cancel()
            return
        exc = done.exception()
        if exc is not None:
            settle(out, exc=exc)
            return
        if transform is None:
            settle(out, result=done.result())
            return
        try:
            value = transform(done.result())
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            settle(out, exc=e)
            return
        if isinstance(value, concurrent.futures.Future):
            out.source = value
            value.add_done_callback(lambda f: relay(f, None))
        else:
            settle(out, result=value)

    source.add_done_callback(lambda f: relay(f, then))
    return out


def done_future(scores: Scores) -> concurrent.futures.Future[Scores]:
    """A future that already holds `scores`."""
    future: concurrent.futures.Future[Scores] = concurrent.futures.Future()
    future.set_result(scores)
    return future


class Scorer(abc.ABC):
    """Scores (query, passage) pairs: one logit and one sigmoid score (0..1) per passage.

    Subclasses implement :meth:`submit`; :meth:`score` and :meth:`ascore` are derived from it. ``timeout``
    is the default per-request timeout in seconds (None: wait forever).
    """

    timeout: float | None = None

    @abc.abstractmethod
    def submit(self, query: str, passages: Sequence[str]) -> concurrent.futures.Future[Scores]:
        """Queue the pairs of `query` with each passage; returns a future of :class:`Scores` in passage order.
        Cancelling the future drops the pairs that have not run. May raise at once (e.g. ``OverloadedError``
        when a queue is full, ValueError for bad input)."""

    def score(self, query: str, passages: Sequence[str], *, timeout: float | None = None) -> Scores:
        """Score passages against a query (blocking); `timeout` (seconds, default the scorer's) raises
        `TimeoutError` and cancels the pending pairs."""
        future = self.submit(query, passages)
        limit = self.timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            if future.done() and not future.cancelled():
                return future.result()
            raise self._timed_out(future, limit) from None

    async def ascore(self, query: str, passages: Sequence[str], *, timeout: float | None = None) -> Scores:
        """:meth:`score` for asyncio: the submit step (tokenizing) runs in the default executor, then the
        result is awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = await loop.run_in_executor(None, self.submit, query, passages)
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except (TimeoutError, asyncio.TimeoutError):
            raise self._timed_out(future, limit) from None

    def _timed_out(self, future: concurrent.futures.Future[Scores], limit: float | None) -> TimeoutError:
        """Cancel a request that ran past its timeout; the error to raise (subclasses also count it)."""
        future.cancel()
        return TimeoutError(f"rerank timed out after {limit}s; its pending pairs were cancelled")

    def close(self) -> None:
        """Release what the scorer holds (threads, sessions); the default holds nothing."""

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
