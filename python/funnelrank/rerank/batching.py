"""Cutting length-sorted pairs into batches under a padded-token budget.

Every batch is padded to its own longest pair, so the cost of a batch is ``len(batch) * max_len`` padded
tokens plus a fixed per-call overhead. Given the pair lengths sorted ascending, `plan_batches` picks the
cut points that minimise ``padded tokens + batch_overhead_tokens * number of batches`` subject to
``len(batch) * max_len <= max_batch_tokens`` and ``len(batch) <= max_batch_pairs`` (a pair longer than the
budget gets a batch of its own). It is an exact dynamic programme over the sorted lengths, O(n * max_batch_pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(
    sorted_lengths: Sequence[int] | np.ndarray,
    *,
    max_batch_tokens: int,
    max_batch_pairs: int,
    batch_overhead_tokens: int = 0,
) -> list[tuple[int, int]]:
    """Return ``[(start, end), ...]`` half-open slices of `sorted_lengths` (which must be ascending).

    The slices are contiguous, cover every pair exactly once, and respect the padded-token budget
    ``(end - start) * sorted_lengths[end - 1] <= max_batch_tokens`` unless a single pair alone exceeds it.
    """
    if max_batch_tokens < 1 or max_batch_pairs < 1:
        raise ValueError("max_batch_tokens and max_batch_pairs must be >= 1")
    if batch_overhead_tokens < 0:
        raise ValueError("batch_overhead_tokens must be >= 0")
    lengths = np.asarray(sorted_lengths, dtype=np.int64)
    n = int(lengths.shape[0])
    if n == 0:
        return []
    if np.any(lengths[1:] < lengths[:-1]):
        raise ValueError("plan_batches needs lengths sorted ascending")
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[j]: cheapest cost of covering pairs [0, j)
    cut = [0] * (n + 1)
    lens = lengths.tolist()
    for j in range(1, n + 1):
        longest = lens[j - 1]
        # Largest batch ending at j that fits the budget (at least one pair).
        fit = max(1, min(max_batch_pairs, max_batch_tokens // max(longest, 1), j))
        bj, cj = inf, j - 1
        for size in range(1, fit + 1):
            i = j - size
            c = best[i] + size * longest + batch_overhead_tokens
            if c < bj:
                bj, cj = c, i
        best[j] = bj
        cut[j] = cj
    slices: list[tuple[int, int]] = []
    j = n
    while j > 0:
        i = cut[j]
        slices.append((i, j))
        j = i
    slices.reverse()
    return slices


def padded_tokens(sorted_lengths: Sequence[int] | np.ndarray, slices: Sequence[tuple[int, int]]) -> int:
    """Total padded tokens (batch size times its longest pair, summed) of a plan from `plan_batches`."""
    lengths = np.asarray(sorted_lengths, dtype=np.int64)
    return int(sum((end - start) * int(lengths[end - 1]) for start, end in slices))
