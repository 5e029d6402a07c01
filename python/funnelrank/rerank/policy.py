"""`RankPolicy`: every ranking decision after stage 2, made in one place.

A policy holds the relevance floor, ``top_k``, the candidate depth, and the rerank fusion (method and
stage-1 weight). It is validated once, at construction, and :meth:`RankPolicy.apply` turns a query's
candidates and their :class:`~funnelrank.rerank.scorer.Scores` into a :class:`RerankResult`. The reranker,
the pipeline, the service, the CLI, eval, the integrations, the Ray deployment and the tuning tools
(calibrate-floor, tune-fusion, advise-depth, the near-miss report, the optimize guard) all go through it,
so a tuned value means the same thing wherever it is served.

    >>> policy = RankPolicy(floor=0.5, top_k=2)
    >>> result = policy.apply([Candidate("a", "gzip.compress"), Candidate("b", "json.dumps")],
    ...                       Scores(np.array([0.9, 0.2]), np.array([2.2, -1.4])))
    >>> [(item.id, item.score) for item in result], result.no_evidence
    ([('a', 0.9)], False)

The defaults of the whole package are the module constants below (:data:`DEFAULT_FLOOR`,
:data:`DEFAULT_TOP_K`, :data:`DEFAULT_DEPTH`, :data:`DEFAULT_FUSION`, :data:`DEFAULT_STAGE1_WEIGHT`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnelrank.candidates import Candidate
from funnelrank.checks import check_k
from funnelrank.rerank.fusion import check_fusion, check_stage1_weight, fused_order
from funnelrank.rerank.scorer import Scores

__all__ = [
    "DEFAULT_DEPTH", "DEFAULT_FLOOR", "DEFAULT_FUSION", "DEFAULT_STAGE1_WEIGHT", "DEFAULT_TOP_K", "RankPolicy",
    "RerankResult", "RerankedItem", "check_floor", "clears_floor", "default_stage1_weight",
]

DEFAULT_FLOOR = 0.46
"""The default reranker's relevance floor, chosen on validation traces with ``funnelrank calibrate-floor
--min-kept 0.9`` (see the model card)."""

DEFAULT_TOP_K = 10
"""Results kept per query."""

DEFAULT_DEPTH = 100
"""Stage-1 candidates handed to the reranker per query (and results retrieved per stage in eval)."""

DEFAULT_FUSION = "convex"
"""Rerank-fusion method used with :data:`DEFAULT_STAGE1_WEIGHT` ("rrf" or "convex"), chosen with it."""

DEFAULT_STAGE1_WEIGHT = 0.8
"""Rerank-fusion weight for hybrid candidates: the reranked candidates are ordered by
``(1 - w) * minmax(cross-encoder logit) + w * minmax(stage-1 score)`` (:data:`DEFAULT_FUSION` "convex";
"rrf" fuses the two ranks instead); 0 turns fusion off. Chosen on validation queries by ``make tune-fusion``
(the docs' "Rerank fusion" guide has the sweep) for hybrid candidates only, so :func:`default_stage1_weight`
applies it to those alone."""


def default_stage1_weight(stage1: str) -> float:
    """The default rerank-fusion weight for candidates from `stage1` ("hybrid", "bm25", "dense", "run", ...):
    :data:`DEFAULT_STAGE1_WEIGHT` for "hybrid", where it was chosen on validation queries, and 0 (the
    cross-encoder's order alone) for any other stage 1, where no weight was chosen.

        >>> default_stage1_weight("hybrid"), default_stage1_weight("bm25")
        (0.8, 0.0)
    """
    return DEFAULT_STAGE1_WEIGHT if stage1 == "hybrid" else 0.0


def clears_floor(scores: np.ndarray | Sequence[float] | float, floor: float | None) -> np.ndarray:
    """The floor rule, the one definition: a score clears `floor` when ``score >= floor``; NaN never does;
    every score clears no floor (None).

        >>> clears_floor([0.9, 0.46, 0.2, float("nan")], 0.46)
        array([ True,  True, False, False])
    """
    s = np.asarray(scores, dtype=np.float64)
    if floor is None:
        return np.ones(s.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return s >= float(floor)


def check_floor(floor: Any) -> float | None:
    """`floor` as a float in [0, 1] (None: no floor); ValueError otherwise."""
    if floor is None:
        return None
    if isinstance(floor, bool) or not isinstance(floor, (int, float, np.integer, np.floating)):
        raise ValueError(f"floor must be a score in [0, 1] (or None for no floor), got {floor!r}")
    f = float(floor)
    if math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"floor must be a score in [0, 1] (or None for no floor), got {floor!r}")
    return f


@dataclass(frozen=True)
class RerankedItem:
    """One kept candidate: the cross-encoder's `score` (sigmoid, 0..1) and `logit`, and its stage-1 place."""

    id: str
    text: str
    score: float
    logit: float
    stage1_rank: int | None
    stage1_score: float | None
    index: int
    """Position of the candidate in the input list."""
    fused_score: float | None = None
    """Its rerank-fusion score (the order of the items) when ``stage1_weight`` > 0, else None."""


@dataclass
class RerankResult:
    """The kept candidates, best first, and why the list may be short or empty."""

    items: list[RerankedItem]
    no_evidence: bool
    """True when candidates were given (or none were) and none cleared the floor."""
    floor: float | None
    top_k: int | None
    n_candidates: int
    max_score: float | None
    """Best score among all candidates, kept or not (None when there were none)."""
    query_truncated: bool = False
    all_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Every candidate's score, in input order."""
    all_logits: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Every candidate's logit, in input order."""
    stage1_weight: float = 0.0
    """The rerank-fusion weight that ordered the items (0: cross-encoder order alone)."""
    fusion: str = DEFAULT_FUSION
    """The rerank-fusion method ("rrf" or "convex"; irrelevant when ``stage1_weight`` is 0)."""

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[RerankedItem]:
        return iter(self.items)

    def __str__(self) -> str:
        """One line per kept item: score, ``[index]`` in the input, and the text's start."""
        lines = [f"RerankResult(no_evidence={self.no_evidence}, floor={self.floor}, items=["]
        for item in self.items:
            text = item.text if len(item.text) <= 72 else item.text[:69] + "..."
            lines.append(f"  {item.score:.3f}  [{item.index}] {text}")
        lines.append("])")
        return "\n".join(lines)


@dataclass(frozen=True)
class RankPolicy:
    """What to keep after stage 2, and in which order; validated at construction (ValueError naming the
    setting).

        >>> RankPolicy.for_stage1("hybrid")
        RankPolicy(floor=0.46, top_k=10, depth=100, fusion='convex', stage1_weight=0.8)
        >>> RankPolicy(top_k=0)
        Traceback (most recent call last):
        ...
        ValueError: top_k must be a positive int, got 0

    Attributes:
        floor: the relevance floor on the cross-encoder's sigmoid score (0..1; None: no floor).
        top_k: most results kept (None: all that clear the floor).
        depth: stage-1 candidates handed to the reranker per query.
        fusion: rerank-fusion method, "rrf" or "convex" (:mod:`funnelrank.rerank.fusion`).
        stage1_weight: rerank-fusion weight in [0, 1]; 0 orders by the cross-encoder alone.
    """

    floor: float | None = DEFAULT_FLOOR
    top_k: int | None = DEFAULT_TOP_K
    depth: int = DEFAULT_DEPTH
    fusion: str = DEFAULT_FUSION
    stage1_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "floor", check_floor(self.floor))
        object.__setattr__(self, "top_k", None if self.top_k is None else check_k(self.top_k, "top_k"))
        object.__setattr__(self, "depth", check_k(self.depth, "candidates"))
        object.__setattr__(self, "fusion", check_fusion(self.fusion))
        object.__setattr__(self, "stage1_weight", check_stage1_weight(self.stage1_weight))

    @classmethod
    def for_stage1(cls, stage1: str, **settings: Any) -> RankPolicy:
        """The default policy for candidates from `stage1` (its :func:`default_stage1_weight`), with
        `settings` overriding any field."""
        settings.setdefault("stage1_weight", default_stage1_weight(stage1))
        return cls(**settings)

    def replace(self, **changes: Any) -> RankPolicy:
        """A copy with `changes` (validated like the constructor's arguments)."""
        return dataclasses.replace(self, **changes) if changes else self

    def clears(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        """Which scores clear this policy's floor (:func:`clears_floor`)."""
        return clears_floor(scores, self.floor)

    def order(self, candidates: Sequence[Candidate], scores: Scores) -> tuple[list[int], np.ndarray | None]:
        """Candidate positions best first (fused as the policy says) and the fused scores (None without
        fusion); candidates without a stage-1 rank come after the ranked ones in the stage-1 order, in input
        order; "convex" needs every candidate's stage-1 score."""
        return fused_order(
            scores.scores, [c.rank for c in candidates], self.stage1_weight, fusion=self.fusion,
            logits=scores.logits, stage1_scores=[c.score for c in candidates],
        )

    def apply(self, candidates: Sequence[Candidate], scores: Scores) -> RerankResult:
        """Keep the candidates whose score clears the floor, in the policy's order, cut to ``top_k``.

        `candidates` and `scores` are in the same (input) order; ValueError when their lengths differ.
        """
        s = np.asarray(scores.scores, dtype=np.float64)
        if len(s) != len(candidates):
            raise ValueError(f"{len(candidates)} candidates but {len(s)} scores")
        order, fused = self.order(candidates, scores)
        clear = self.clears(s)
        kept: list[RerankedItem] = []
        for i in order:
            if self.top_k is not None and len(kept) >= self.top_k:
                break
            if not clear[i]:
                continue
            c = candidates[i]
            kept.append(RerankedItem(c.id, c.text, float(s[i]), float(scores.logits[i]), c.rank, c.score, i,
                                     None if fused is None else float(fused[i])))
        return RerankResult(
            items=kept, no_evidence=not kept, floor=self.floor, top_k=self.top_k, n_candidates=len(candidates),
            max_score=float(np.max(s)) if len(candidates) else None, query_truncated=scores.query_truncated,
            all_scores=s, all_logits=np.asarray(scores.logits, dtype=np.float64),
            stage1_weight=self.stage1_weight, fusion=self.fusion,
        )
