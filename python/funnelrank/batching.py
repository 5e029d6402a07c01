"""Length-sorted batching under a padded-token budget, for running transformer models on CPU.

Sorting inputs by token length before batching means each batch pads to nearly the same length (little
wasted compute), and bounding ``batch_size * longest_in_batch`` (the padded tokens the model actually
processes) instead of the batch *count* keeps the memory and latency of every batch about equal:
many short texts share a batch, long ones go in small batches.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["padded_tokens", "token_budget_batches"]


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
