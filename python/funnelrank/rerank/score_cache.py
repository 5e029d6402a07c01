"""A bounded cache of cross-encoder scores for repeated (query, passage) pairs.

A cross-encoder is deterministic, so a pair scored once need not be scored again: a service that sees the same
question twice (retries, popular queries, paging through results) answers the repeat from memory. Keys are
BLAKE2b digests of the pair (16 bytes; the texts themselves are not kept), values the logit and whether the
query was cut. At most `max_entries` pairs are kept, least recently used out first.

    >>> cache = ScoreCache(max_entries=2)
    >>> cache.put("q", "p", 1.5, False)
    >>> cache.get("q", "p"), cache.get("q", "other")
    ((1.5, False), None)
    >>> cache.stats()
    {'entries': 1, 'hits': 1, 'misses': 1, 'hit_ratio': 0.5}
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from funnelrank.rerank.cross_encoder import sigmoid
from funnelrank.rerank.scorer import Scores

__all__ = ["ScoreCache"]


def _key(query: str, passage: str) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(query.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(passage.encode("utf-8", "surrogatepass"))
    return h.digest()


class ScoreCache:
    """Thread-safe LRU of (query, passage) -> (logit, query_truncated); see the module doc."""

    def __init__(self, max_entries: int = 65536) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._items: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, query: str, passage: str) -> tuple[float, bool] | None:
        """The cached (logit, query_truncated) of the pair, or None."""
        key = _key(query, passage)
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(key)
            return found

    def missing(self, query: str, passages: Sequence[str]) -> list[int]:
        """Indices of the passages whose pair with `query` is not cached, best effort (a pair may be evicted
        before it is read); a peek: counters and recency are left alone.

            >>> c = ScoreCache(4); c.put("q", "a", 1.0, False); c.missing("q", ["a", "b"])
            [1]
        """
        keys = [_key(query, p) for p in passages]
        with self._lock:
            return [i for i, k in enumerate(keys) if k not in self._items]

    def put(self, query: str, passage: str, logit: float, query_truncated: bool) -> None:
        """Remember the pair's logit (evicting the least recently used pair when full)."""
        key = _key(query, passage)
        with self._lock:
            self._items[key] = (float(logit), bool(query_truncated))
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def lookup(self, query: str, passages: Sequence[str]) -> tuple[list[tuple[float, bool] | None], list[int]]:
        """Each passage's cached ``(logit, query_truncated)`` (None when not cached) and the positions to score."""
        hits = [self.get(query, p) for p in passages]
        return hits, [i for i, h in enumerate(hits) if h is None]

    def complete(self, query: str, passages: Sequence[str], hits: list[tuple[float, bool] | None],
                 todo: Sequence[int], fresh: Scores | None) -> Scores:
        """The `Scores` of every passage: the cached `hits`, and `fresh` (the scores of the passages at
        positions `todo`, in that order), which are remembered."""
        if fresh is not None:
            for i, logit in zip(todo, fresh.logits.tolist()):
                self.put(query, passages[i], logit, fresh.query_truncated)
                hits[i] = (logit, fresh.query_truncated)
        entries = [h for h in hits if h is not None]
        logits = np.asarray([e[0] for e in entries], dtype=np.float64)
        return Scores(sigmoid(logits), logits, any(e[1] for e in entries))

    def clear(self) -> None:
        """Forget every pair (the counters stay)."""
        with self._lock:
            self._items.clear()

    def stats(self) -> dict[str, float]:
        """Entries, hits, misses and hits / lookups (0.0 before any lookup)."""
        with self._lock:
            lookups = self.hits + self.misses
            return {"entries": len(self._items), "hits": self.hits, "misses": self.misses,
                    "hit_ratio": self.hits / lookups if lookups else 0.0}
