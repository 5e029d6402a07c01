"""Rerank fusion: the order of the reranked candidates as a weighted fusion of the cross-encoder's ranking and
the stage-1 ranking (reciprocal-rank fusion or a convex combination of normalised scores).

A small cross-encoder scores pairs well but its order alone can be worse than stage 1's on candidates that
dense retrieval brought in; fusing both orders keeps what each gets right. With ``stage1_weight`` w in
[0, 1], candidate d's fused score is::

    (1 - w) / (k + rerank_rank(d)) + w / (k + stage1_rank(d))

computed by the core's RRF (:func:`funnelrank._core.rrf`, ``k`` = :data:`RERANK_FUSION_K`), or with
``fusion="convex"`` (the core's :func:`funnelrank._core.convex_fusion`, min-max normalisation per query)::

    (1 - w) * minmax(cross-encoder logit)(d) + w * minmax(stage-1 score)(d)

which also weighs by how far apart the scores are, not only by rank (it needs every candidate's stage-1
score). w = 0 is the cross-encoder's order alone, w = 1 stage 1's order alone. Only the ORDER is fused: the
relevance floor still compares each candidate's absolute cross-encoder score (sigmoid) with the floor (see
:meth:`funnelrank.rerank.policy.RankPolicy.apply`).

Ranks: the cross-encoder ranking sorts by score, best first (ties: input order; NaN last); the stage-1 ranking
sorts by the candidates' stage-1 rank (ties and missing ranks: input order, missing after ranked). Ties in
the fused score go to the better rank in either input, then to input order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FUSION_METHODS", "RERANK_FUSION_K", "check_fusion", "check_stage1_weight", "fused_order", "rerank_order",
    "stage1_order",
]

RERANK_FUSION_K = 60.0
"""The RRF constant of rerank fusion (the usual 60, as in hybrid stage-1 fusion)."""

FUSION_METHODS: tuple[str, ...] = ("rrf", "convex")
"""How the two orders are fused: reciprocal ranks, or a convex combination of min-max normalised scores."""


def check_fusion(method: Any) -> str:
    """`method` if it is one of :data:`FUSION_METHODS`; ValueError listing them otherwise."""
    if not isinstance(method, str) or method not in FUSION_METHODS:
        raise ValueError(f"fusion must be one of {', '.join(FUSION_METHODS)}, got {method!r}")
    return method


def check_stage1_weight(weight: Any) -> float:
    """`weight` as a float in [0, 1]; ValueError saying what is allowed for anything else (bool, NaN, str...)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
        raise ValueError(f"stage1_weight must be a number in [0, 1] (0 = cross-encoder order only), got {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"stage1_weight must be in [0, 1] (0 = cross-encoder order only), got {weight!r}")
    return value


def rerank_order(scores: np.ndarray | Sequence[float]) -> list[int]:
    """Candidate positions by cross-encoder score, best first (ties: input order; NaN scores last)."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(s), -np.inf, s)
    return [int(i) for i in np.lexsort((np.arange(key.shape[0]), -key))]


def stage1_order(stage1_ranks: Sequence[int | None]) -> list[int]:
    """Candidate positions by stage-1 rank (ties and missing ranks: input order, missing after ranked)."""
    return sorted(range(len(stage1_ranks)), key=lambda i: (stage1_ranks[i] is None, stage1_ranks[i] or 0, i))


def fused_order(
    scores: np.ndarray | Sequence[float],
    stage1_ranks: Sequence[int | None],
    stage1_weight: float,
    *,
    fusion: str,
    logits: np.ndarray | Sequence[float] | None = None,
    stage1_scores: Sequence[float | None] | None = None,
    k: float = RERANK_FUSION_K,
) -> tuple[list[int], np.ndarray | None]:
    """The candidates' fused order (see the module doc).

    Args:
        scores: the cross-encoder score of each candidate, in input order.
        stage1_ranks: each candidate's stage-1 rank (1-based; None when unknown), in input order.
        stage1_weight: w in [0, 1]; 0 returns the cross-encoder order exactly, 1 the stage-1 order (for
            "convex", stage-1 score order).
        fusion: "rrf" or "convex" (:data:`FUSION_METHODS`).
        logits: "convex": the cross-encoder logits (default: `scores`); finite where the order uses them.
        stage1_scores: "convex": every candidate's stage-1 score (ValueError when one is missing or not
            finite).
        k: the RRF constant.

    Returns:
        ``(order, fused)``: candidate positions best first, and the fused score of each position in input
        order (None for w = 0, where there is no fusion).
    """
    w = check_stage1_weight(stage1_weight)
    check_fusion(fusion)
    n = len(scores)
    if len(stage1_ranks) != n:
        raise ValueError(f"{n} scores but {len(stage1_ranks)} stage-1 ranks")
    by_rerank = rerank_order(scores)
    if w == 0.0 or n == 0:
        return by_rerank, None if w == 0.0 else np.zeros(0, dtype=np.float64)
    from funnelrank._core import convex_fusion, rrf

    by_stage1 = stage1_order(stage1_ranks)
    # Zero-padded position ids: the core breaks remaining ties by id byte order, i.e. by input order here.
    width = len(str(n))
    names = [f"{i:0{width}d}" for i in range(n)]
    if fusion == "rrf":
        rank_scores = -np.arange(n, dtype=np.float64)  # kept for tracing only; RRF reads the positions
        fused = rrf(
            [([names[i] for i in by_rerank], rank_scores), ([names[i] for i in by_stage1], rank_scores)],
            k=k,
            weights=[1.0 - w, w],
        )
    else:
        if stage1_scores is None or len(stage1_scores) != n or any(
            s is None or not math.isfinite(s) for s in stage1_scores
        ):
            raise ValueError("convex rerank fusion needs a finite stage-1 score for every candidate")
        ce = np.asarray(scores if logits is None else logits, dtype=np.float64)
        if ce.shape != (n,):
            raise ValueError(f"{n} scores but {ce.shape[0]} logits")
        finite = np.isfinite(ce)  # a NaN/-inf logit ranks below every finite one, +inf above
        low, high = (ce[finite].min() - 1.0, ce[finite].max() + 1.0) if finite.any() else (0.0, 1.0)
        ce = np.where(finite, ce, np.where(ce == np.inf, high, low))
        s1 = np.asarray(stage1_scores, dtype=np.float64)
        fused = convex_fusion(
            [([names[i] for i in by_rerank], ce[by_rerank]), ([names[i] for i in by_stage1], s1[by_stage1])],
            weights=[1.0 - w, w],
            normalization="minmax",
        )
    order = [int(name) for name in fused.ids]
    values = np.empty(n, dtype=np.float64)
    values[order] = fused.scores
    return order, values
