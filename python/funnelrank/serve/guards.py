"""What every route that reaches the model runs first: the query's limits, and admission control around the
call (:mod:`funnelrank.serve.admission`), with the scheduler's refusals answered as HTTP errors: 413 for a
request that could never finish in time, 429 when the work ahead is too long or the queue is full, 503 on a
timeout or while shutting down (each overload answer with ``Retry-After``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from funnelrank.rerank.scheduler import OverloadedError, SchedulerClosedError
from funnelrank.serve.errors import ServiceError
from funnelrank.serve.state import ServiceState

__all__ = ["check_query", "run_admitted"]

T = TypeVar("T")


def check_query(state: ServiceState, query: str) -> None:
    """ServiceError unless `query` fits the limits (413), is not blank and is valid Unicode (400)."""
    limits = state.limits
    if len(query) > limits.max_query_chars:
        raise ServiceError(413, f"query is {len(query)} characters; the limit is {limits.max_query_chars}")
    if not query.strip():
        raise ServiceError(400, "query is empty")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise ServiceError(400, "query is not valid Unicode (lone surrogate)") from None


async def run_admitted(state: ServiceState, n_pairs: int, n_tokens: int, make_call: Callable[[], Awaitable[T]]) -> T:
    """``await make_call()`` if admission control admits `n_pairs` pairs of about `n_tokens` tokens (no pairs:
    always), holding their tokens as admitted until it returns; ServiceError when refused or when the scheduler
    refuses, times out or is shutting down."""
    estimator, limits = state.estimator, state.limits
    refused = estimator.admit(n_tokens, limits.timeout_s) if n_pairs else None
    if refused is not None:
        r = refused
        what = f"this request ({n_pairs} pairs, about {r.tokens} tokens)"
        rate = f"at the measured {r.tokens_per_s:.0f} tokens/s"
        allowed = f"{estimator.headroom:.0%} of the {limits.timeout_s:g} s timeout ({r.limit_s:.1f} s)"
        if r.alone:
            raise ServiceError(
                413,
                f"request too large for this server: {what} needs about {r.tokens / r.tokens_per_s:.1f} s "
                f"of model time {rate} even with nothing queued ahead, more than the {allowed} a request "
                "may take; send fewer or shorter documents per request",
            )
        raise ServiceError(
            429,
            f"overloaded: behind the work queued ahead, {what} would finish in about {r.wait_s:.1f} s {rate}, "
            f"later than the {allowed} a request may take; retry later",
            {"Retry-After": str(r.retry_after_s)},
        )
    try:
        return await make_call()
    except OverloadedError as exc:
        raise ServiceError(429, f"overloaded: {exc}", state.retry) from None
    except TimeoutError as exc:
        raise ServiceError(503, f"timed out: {exc}", state.retry) from None
    except SchedulerClosedError as exc:
        raise ServiceError(503, f"shutting down: {exc}", state.retry) from None
    finally:
        if n_pairs:
            estimator.release(n_tokens)
