"""Admission control: refuse at once a request that would time out in the rerank queue anyway.

The scheduler's queue bound (``max_queue_pairs``) caps memory, but on a slow machine a full queue can hold
minutes of work: a request admitted at its tail would wait, then time out with 503 -- slow for the client
and wasted work for the server. Model time grows with TOKENS, not pairs (a 256-token pair costs about ten
times a 25-token one), so :class:`WaitEstimator` works in tokens:

* the scheduler's throughput is measured in tokens per second of model time (its ``real_tokens`` and
  ``infer_seconds`` counters), as a moving average over refresh intervals;
* a request's cost is estimated before it is tokenized, from characters (:func:`estimate_tokens`: about
  :data:`CHARS_PER_TOKEN` characters per token, at most the model's ``max_length`` per pair, since the rest
  is truncated; windows when the model chunks long passages);
* its predicted finish is ``(ahead + tokens) / throughput``, where ``ahead`` counts the estimated tokens of
  every request admitted and not finished (including those still being tokenized, which the scheduler does
  not see yet -- a burst of simultaneous requests is judged correctly).

When the predicted finish exceeds ``headroom`` (80%) of the request timeout the request is refused: with 429
and ``Retry-After`` (the time the work ahead needs to drain) when waiting would help, and with 413 when the
request alone, on an idle queue, could not finish in time -- retrying it can never succeed; it must be split.
Until enough pairs were measured nothing is refused on these grounds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_MAX_LENGTH", "Refusal", "WaitEstimator", "estimate_tokens"]

CHARS_PER_TOKEN = 3.0
"""Characters per token assumed when estimating a request's tokens before tokenizing. The default reranker's
WordPiece tokenizer gives about 3.0 on technical English (this project's README) and about 4-4.5 on prose, so
the estimate errs toward more tokens: toward refusing rather than admitting a request that then times out."""

DEFAULT_MAX_LENGTH = 512
"""Per-pair token cap assumed for a model that does not say its ``max_length``."""

_SPECIAL_TOKENS = 3  # [CLS] query [SEP] passage [SEP]


def estimate_tokens(
    query_chars: int,
    document_chars: Sequence[int],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    chunking: Any | None = None,
    chars_per_token: float = CHARS_PER_TOKEN,
) -> int:
    """Estimated model tokens of reranking documents of `document_chars` characters against a query of
    `query_chars` characters: per pair ``ceil((query + document) / chars_per_token) + 3`` special tokens, at
    most `max_length` (the tokenizer truncates the rest). With `chunking` (a
    :class:`funnelrank.rerank.cross_encoder.ChunkSpec`) a long document costs one pair per window, at most
    ``max_chunks`` of them."""
    q = math.ceil(query_chars / chars_per_token)
    total = 0
    if chunking is None:
        for n in document_chars:
            total += min(max_length, q + math.ceil(n / chars_per_token) + _SPECIAL_TOKENS)
        return total
    window = max(1, min(int(chunking.window), max_length - _SPECIAL_TOKENS - min(q, max_length // 2)))
    step = max(1, window - int(chunking.stride))
    for n in document_chars:
        d = math.ceil(n / chars_per_token)
        chunks = 1 if d <= window else min(int(chunking.max_chunks), 1 + math.ceil((d - window) / step))
        total += chunks * min(max_length, q + min(d, window) + _SPECIAL_TOKENS)
    return total


@dataclass(frozen=True)
class Refusal:
    """Why :meth:`WaitEstimator.admit` refused a request."""

    wait_s: float
    """Predicted seconds until the request would finish if admitted now."""
    limit_s: float
    """The most it may need: ``headroom`` x the timeout."""
    tokens: int
    """The request's estimated tokens."""
    tokens_per_s: float
    """The measured throughput the prediction used."""
    alone: bool
    """Even alone, on an idle queue, the request would need more than `limit_s` (retrying cannot help)."""
    retry_after_s: int
    """Seconds the work ahead needs to drain (for ``Retry-After``)."""


class WaitEstimator:
    """Predicts queueing delay from a `RerankScheduler`'s counters (refreshed at most every `refresh_s`);
    admits a request when its predicted finish is within `headroom` x its timeout (the rest covers what
    model time does not count: tokenization, HTTP). Costs are in tokens (module doc); the per-pair cap and
    chunking come from the scheduler's model (``max_length``, ``chunking``) when it has them."""

    def __init__(
        self, scheduler: Any, *, min_pairs: int = 64, refresh_s: float = 0.5, headroom: float = 0.8,
        smoothing: float = 0.3, chars_per_token: float = CHARS_PER_TOKEN,
    ) -> None:
        self._scheduler = scheduler
        self.headroom = headroom
        self._min_pairs = min_pairs
        self._refresh_s = refresh_s
        self._smoothing = smoothing
        self.chars_per_token = chars_per_token
        model = getattr(scheduler, "model", None)
        self.max_length = int(getattr(model, "max_length", None) or DEFAULT_MAX_LENGTH)
        self.chunking = getattr(model, "chunking", None)
        self._rate: float | None = None  # tokens per second of model time
        self._tokens_per_pair: float | None = None
        self._checked = -math.inf
        self._seen = (0, 0, 0.0)  # (pairs, tokens, infer seconds) at the last rate update
        self._lock = threading.Lock()
        self._admitted = 0

    def estimate_tokens(self, query_chars: int, document_chars: Sequence[int]) -> int:
        """:func:`estimate_tokens` with this scheduler's model settings."""
        return estimate_tokens(query_chars, document_chars, max_length=self.max_length, chunking=self.chunking,
                               chars_per_token=self.chars_per_token)

    def estimate_pairs(self, n_pairs: int) -> int:
        """Estimated tokens of `n_pairs` pairs whose texts are not known yet (``/v1/search`` candidates): the
        measured mean tokens per pair, or `max_length` each before anything was measured."""
        self.tokens_per_second()
        per_pair = self._tokens_per_pair if self._tokens_per_pair is not None else self.max_length
        return math.ceil(n_pairs * per_pair)

    def tokens_per_second(self) -> float | None:
        """Recent model throughput in tokens per second: an exponential moving average over refresh intervals
        that scored at least `min_pairs` pairs (the machine's speed drifts with its load); None until the first
        such interval."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= self._refresh_s:
                self._checked = now
                stats = self._scheduler.stats()
                pairs = stats.pairs - self._seen[0]
                tokens = stats.real_tokens - self._seen[1]
                seconds = stats.infer_seconds - self._seen[2]
                if pairs >= self._min_pairs and tokens > 0 and seconds > 0:
                    a = self._smoothing
                    recent, per_pair = tokens / seconds, tokens / pairs
                    self._rate = recent if self._rate is None else (1 - a) * self._rate + a * recent
                    self._tokens_per_pair = (
                        per_pair if self._tokens_per_pair is None else (1 - a) * self._tokens_per_pair + a * per_pair
                    )
                    self._seen = (stats.pairs, stats.real_tokens, stats.infer_seconds)
            return self._rate

    @property
    def admitted_tokens(self) -> int:
        """Estimated tokens of requests admitted through :meth:`admit` and not yet :meth:`release`d."""
        return self._admitted

    def _ahead(self) -> float:
        """Tokens ahead of a new request: the larger of the admitted estimate and the scheduler's pending pairs
        at the measured tokens per pair (other users of the scheduler, requests admitted but still tokenizing)."""
        per_pair = self._tokens_per_pair if self._tokens_per_pair is not None else 0.0
        return max(float(self._admitted), self._scheduler.pending_pairs * per_pair)

    def expected_wait_s(self, n_tokens: int) -> float | None:
        """Seconds until a request of `n_tokens` estimated tokens admitted now would finish (None: not known yet)."""
        rate = self.tokens_per_second()
        if rate is None:
            return None
        return (self._ahead() + n_tokens) / rate

    def admit(self, n_tokens: int, timeout_s: float) -> Refusal | None:
        """Admit a request of `n_tokens` estimated tokens (returns None; call :meth:`release` with the same
        number when it is done), or refuse it when it would outlive `headroom` x `timeout_s`."""
        rate = self.tokens_per_second()
        limit = self.headroom * timeout_s
        if rate is not None:
            ahead = self._ahead()
            wait = (ahead + n_tokens) / rate
            if wait > limit:
                return Refusal(wait_s=wait, limit_s=limit, tokens=n_tokens, tokens_per_s=rate,
                               alone=n_tokens / rate > limit, retry_after_s=max(1, math.ceil(ahead / rate)))
        with self._lock:
            self._admitted += n_tokens
        return None

    def release(self, n_tokens: int) -> None:
        """A request admitted with :meth:`admit` finished (in any way)."""
        with self._lock:
            self._admitted -= n_tokens
