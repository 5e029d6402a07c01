"""Choose the rerank-fusion weight from persisted score traces (behind `funnelrank tune-fusion`).

The traces of a rerank run (``funnelrank eval ... --rerank-traces FILE``, or ``Reranker(traces=...)``) hold,
per (query, candidate), the cross-encoder score and the candidate's stage-1 rank: everything rerank fusion
(:mod:`funnelrank.rerank.fusion`) needs (and the logit and stage-1 score convex fusion needs). So every
(method, weight) of a grid is scored without running the model again: the traced candidates of each query
are ordered by :meth:`~funnelrank.rerank.policy.RankPolicy.apply` (the served path) and the order is scored against relevance
judgments (nDCG@10 by default, as `funnelrank eval` computes it).

Choose on validation queries, never on test ones: e.g. the scifact train queries held out from reranker
training (``python -m funnelrank.train heldout-ids scifact``). Only traced queries that are judged count;
the mean is over them. The best is the one with the highest figure; ties go to the smaller weight (closer to
the cross-encoder's own order), then to the method listed first.

The sweep also compares the best point with the cross-encoder's order alone (weight 0) and with the stage-1
order alone (weight 1), when the grid holds them, on the same queries
(:func:`funnelrank.eval.significance.compare_per_query`: paired-bootstrap interval and randomization
test). The best point is the maximum of the whole grid, so its margin is biased upward (the winner's curse)
and its p-values are not corrected for that choice: read them as an upper bound on the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from funnelrank.eval.metrics import DEFAULT_METRICS, evaluate, parse_metric
from funnelrank.eval.significance import compare_per_query
from funnelrank.rerank.fusion import FUSION_METHODS, check_fusion, check_stage1_weight
from funnelrank.rerank.policy import RankPolicy
from funnelrank.rerank.traces import TracedQuery

__all__ = [
    "DEFAULT_GRID", "FUSION_METHODS", "FusionPoint", "FusionSweep", "parse_grid", "sweep_fusion",
]

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
"""Weights tried by default: 0, 0.05, ..., 1."""


@dataclass(frozen=True)
class FusionPoint:
    """The metrics (mean over the judged traced queries) of one fusion method and weight."""

    fusion: str
    stage1_weight: float
    metrics: dict[str, float]


@dataclass
class FusionSweep:
    """Every weight's metrics, the best weight for `metric`, and what the figures are over."""

    metric: str
    best: FusionPoint
    points: list[FusionPoint]
    n_queries: int
    n_pairs: int
    notes: list[str] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    """The best point against the cross-encoder order alone and the stage-1 order alone, on `metric`
    (:meth:`funnelrank.eval.significance.PairedComparison.as_dict`; both only when the grid holds 0 / 1)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def parse_grid(text: str) -> list[float]:
    """Weights from ``"0,0.1,0.5"`` (each checked to lie in [0, 1]; sorted, repeats dropped)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("the weight grid is empty")
    weights = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise ValueError(f"grid weight {p!r} is not a number") from None
        weights.append(check_stage1_weight(value))
    return sorted(set(weights))


def sweep_fusion(
    queries: Mapping[str, TracedQuery],
    qrels: Mapping[str, Mapping[str, int]],
    grid: Sequence[float] = DEFAULT_GRID,
    *,
    fusions: Sequence[str] = ("rrf",),
    metric: str = "ndcg@10",
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> FusionSweep:
    """Score every (method of `fusions`, weight of `grid`) on the judged traced queries and pick the best for
    `metric` (weight 0 is the same order for every method and is scored once, as the first method's).

    ValueError when no traced query is judged, the grid or `fusions` is empty or holds a bad entry, or
    "convex" meets traces without logits / stage-1 scores.
    """
    parse_metric(metric)
    if not grid:
        raise ValueError("the weight grid is empty")
    if not fusions:
        raise ValueError("no fusion method given")
    methods = list(dict.fromkeys(check_fusion(f) for f in fusions))
    weights = sorted({check_stage1_weight(w) for w in grid})
    names = list(dict.fromkeys([metric, *metrics]))
    judged = {q: t for q, t in queries.items() if q in qrels}
    if not judged:
        raise ValueError("no traced query id appears in the qrels (were traces written with query ids?)")
    notes = []
    unjudged = len(queries) - len(judged)
    if unjudged:
        notes.append(f"{unjudged} traced queries absent from the qrels were left out")
    no_rank = sum(1 for t in judged.values() for r in t.stage1_ranks if r is None)
    if no_rank:
        notes.append(f"{no_rank} traced candidates have no stage-1 rank; they rank after the ranked ones")
    sub_qrels = {q: qrels[q] for q in judged}
    if "convex" in methods and any(np.isnan(t.logits).any() for t in judged.values()):
        raise ValueError("convex fusion needs traced logits; these traces lack some")
    points = []
    per_query: dict[tuple[str, float], dict[str, float]] = {}
    for m in methods:
        for w in weights:
            if w == 0.0 and m != methods[0]:
                continue
            policy = RankPolicy(floor=None, top_k=None, fusion=m, stage1_weight=w)
            # scored in the order the policy gives, as a served reranker with this fusion would order them
            rankings = {q: [(item.id, 0.0) for item in t.apply(policy)] for q, t in judged.items()}
            result = evaluate(rankings, sub_qrels, names)
            per_query[(m, w)] = result.per_query[metric]
            points.append(FusionPoint(m, w, {name: float(result.mean[name]) for name in names}))
    best = max(points, key=lambda p: (p.metrics[metric], -p.stage1_weight, -methods.index(p.fusion)))
    best_label = f"best ({best.fusion} {best.stage1_weight:g})"
    stage1_alone = next(((m, 1.0) for m in ("rrf", *methods) if (m, 1.0) in per_query), None)
    comparisons = [
        compare_per_query(best_label, per_query[(best.fusion, best.stage1_weight)], label, per_query[key],
                          metric).as_dict()
        for label, key in (("cross-encoder alone", (methods[0], 0.0)), ("stage-1 order alone", stage1_alone))
        if key is not None and key in per_query and key != (best.fusion, best.stage1_weight)
    ]
    return FusionSweep(
        metric=metric,
        best=best,
        points=points,
        n_queries=len(judged),
        n_pairs=sum(len(t.ids) for t in judged.values()),
        notes=notes,
        comparisons=comparisons,
    )
