"""Length-sorted batching under a padded-token budget, for running transformer models on CPU.

Sorting inputs by token length before batching means each batch pads to nearly the same length (little
wasted compute), and bounding ``batch_size * longest_in_batch`` (the padded tokens the model actually
processes) instead of the batch *count* keeps the memory and latency of every batch about equal:
many short texts share a batch, long ones go in small batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["padded_tokens", "plan_batches", "token_budget_batches"]


def padded_tokens(batch: Sequence[int], lengths: Sequence[int]) -> int:
    """Padded tokens a batch of item indices costs: ``len(batch) * max(length of its items)``."""
    return len(batch) * max((lengths[i] for i in batch), default=0)


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, max_batch_size: int | None = None
) -> list[list[int]]:
    """Group item indices into batches, longest items first, so that every batch's padded size
    (``len(batch) * longest length in it``) is at most `max_tokens` and, when given, it holds at most
    `max_batch_size` items. An item longer than `max_tokens` on its own gets a batch of its own.

    Returns a list of batches of indices into `lengths`; every index appears exactly once. Callers
    scatter results back by these indices to restore input order.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0  # length of the first (longest) item of the current batch
    for i in order:
        length = max(int(lengths[i]), 1)
        if current:
            full = max_batch_size is not None and len(current) >= max_batch_size
            if full or (len(current) + 1) * longest > max_tokens:
                batches.append(current)
                current = []
        if not current:
            longest = length
        current.append(i)
    if current:
        batches.append(current)
    return batches


# Exact variant for callers that already hold lengths sorted ascending (the rerank scheduler). Every
# batch is padded to its own longest item, so a batch costs ``len(batch) * max_len`` padded tokens plus a
# fixed per-call overhead. `plan_batches` picks the cut points minimising ``padded tokens +
# batch_overhead_tokens * number of batches`` subject to the same budget and size cap (a dynamic programme
# over the sorted lengths, O(n * max_batch_pairs)); greedy filling can cost measurably more padding.

DEFAULT_BATCH_OVERHEAD_TOKENS = 32
"""The per-batch fixed cost, in token equivalents, that `RerankScheduler` and `CrossEncoder.predict` plan with."""


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
