"""Which segments a commit merges: :class:`TieredMergePolicy`, after Lucene's TieredMergePolicy.

Segments are grouped in *tiers* by size: tier 0 holds segments of up to `floor_docs` live documents (smaller ones
count as that size), tier 1 up to `segments_per_tier` times that, and so on. A run of `segments_per_tier`
neighbouring segments of one tier is merged into one segment of the next tier, so a collection holds at most about
`segments_per_tier` segments per tier (logarithmically many in all) and each document is re-indexed about once
per tier, not once per commit. A merge never makes a segment of more than `max_merged_docs` live documents (the
budget: large segments are left alone), and a segment of which more than `deletes_pct_allowed` percent of the
documents, and at least `floor_docs` documents, are deleted is rewritten on its own, dropping them (a smaller
segment drops its deleted documents when its tier merges).

Unlike Lucene's, merges take *neighbouring* segments only (as Lucene's LogMergePolicy does): a collection's
segments keep insertion order, which breaks score ties exactly as one index would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TieredMergePolicy"]


@dataclass(frozen=True)
class TieredMergePolicy:
    """When a commit merges segments (see the module docstring); ``Collection.merge_policy``.

    Args:
        segments_per_tier: how many neighbouring segments of one tier are merged together (2 to 1,000).
        floor_docs: segments below this many live documents all count as this size (tier 0) (>= 1).
        max_merged_docs: the most live documents a merge may produce (>= 1): bigger segments are never merged.
        deletes_pct_allowed: a written segment with more than this percentage of its documents deleted (and at
            least `floor_docs` of them) is rewritten without them (0 to 100; 100: never).

        >>> policy = TieredMergePolicy(segments_per_tier=3, floor_docs=10)
        >>> policy.find_merges([(10, 0), (5, 0), (8, 0), (100, 0)])   # (live, deleted) per segment
        [(0, 3)]
        >>> policy.find_merges([(100, 0), (50, 60)])                    # 55% (60 >= 10) deleted: rewritten
        [(1, 2)]
    """

    segments_per_tier: int = 10
    floor_docs: int = 1_000
    max_merged_docs: int = 5_000_000
    deletes_pct_allowed: float = 33.0

    def __post_init__(self) -> None:
        for name, low, high in (("segments_per_tier", 2, 1000), ("floor_docs", 1, 1 << 62),
                                ("max_merged_docs", 1, 1 << 62)):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        pct = self.deletes_pct_allowed
        if not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0 <= pct <= 100:
            raise ValueError(f"deletes_pct_allowed must be a number in [0, 100], got {pct!r}")

    def tier(self, live: int) -> int:
        """The tier of a segment of `live` documents: 0 up to `floor_docs`, then one more per factor of
        `segments_per_tier`, e.g. ``TieredMergePolicy().tier(50_000) == 2``."""
        size, level = max(live, 1), 0
        bound = self.floor_docs
        while size > bound:
            bound *= self.segments_per_tier
            level += 1
        return level

    def find_merges(self, sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """The merges for segments of `sizes` (``(live, deleted)`` documents each, in insertion order): disjoint
        ``(start, end)`` ranges of neighbours, each to be folded into one segment, in order (empty: none)."""
        out: list[tuple[int, int]] = []
        i, n = 0, len(sizes)
        while i < n:
            level = self.tier(sizes[i][0])
            j, total = i, 0
            while (j < n and j - i < self.segments_per_tier and self.tier(sizes[j][0]) == level
                   and total + sizes[j][0] <= self.max_merged_docs):
                total += sizes[j][0]
                j += 1
            if j - i == self.segments_per_tier:
                out.append((i, j))
                i = j
                continue
            live, deleted = sizes[i]
            if deleted >= self.floor_docs and 100 * deleted > self.deletes_pct_allowed * (live + deleted):
                out.append((i, i + 1))  # mostly deleted: rewrite it without them
            i += 1
        return out
