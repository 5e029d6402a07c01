"""How deep to rerank, from persisted score traces (behind `funnelrank advise-depth`).

The traces of one rerank run over depth D (``funnelrank eval ... --rerank-traces FILE`` or
``Reranker(traces=...)``) hold every candidate's stage-1 rank and cross-encoder score. Reranking only the
stage-1 top d (d < D) is replayed without the model: the top d are ordered by their score, the rest follow
in stage-1 order. Each depth gets nDCG@10, MRR@10 and Recall@d (the share of relevant traced candidates
that the cross-encoder sees at all) over the judged traced queries, its cost (pairs per query, and
milliseconds at a given pairs/s), and its paired difference from the full depth on nDCG@10 with a 95%
bootstrap interval.

The advice follows the rule ``funnelrank optimize`` uses, fixed before any figure: the shallowest depth whose
interval of the nDCG@10 difference from the full depth lies within +-`margin` (0.01). Choose it on
validation data; a depth picked on a test split is not a result.

    >>> report = advise_depth(records, qrels, depths=[10, 30])     # doctest: +SKIP
    >>> report.recommended, [p.depth for p in report.points]       # doctest: +SKIP
    (30, [10, 30, 100])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from funnelrank.eval.metrics import mrr_at_k, ndcg_at_k
from funnelrank.eval.significance import bootstrap_ci
from funnelrank.rerank.policy import RankPolicy
from funnelrank.rerank.traces import TracedQuery, group_traces

__all__ = ["DEFAULT_DEPTHS", "DEFAULT_MARGIN", "DepthPoint", "DepthReport", "advise_depth", "parse_depths",
           "replay_order"]

DEFAULT_DEPTHS: tuple[int, ...] = (10, 20, 30, 50)
"""Depths tried by default (the traced full depth is always added)."""
DEFAULT_MARGIN = 0.01
"""A shallower depth is advised only when the 95% interval of its nDCG@10 difference lies within +-this."""


@dataclass(frozen=True)
class DepthPoint:
    """One rerank depth's figures (means over the judged traced queries)."""

    depth: int
    pairs_per_query: float
    ndcg10: float
    mrr10: float
    recall: float
    """Relevant traced candidates inside the reranked top `depth`, over all relevant traced candidates."""
    ndcg10_difference: float
    """Mean per-query nDCG@10 minus the full depth's."""
    ci_low: float
    ci_high: float
    ms_per_query: float | None = None
    """Model milliseconds per query at the given pairs/s (None without it)."""


@dataclass
class DepthReport:
    """Every depth's figures, the full traced depth and the advised (shallowest kept) depth."""

    points: list[DepthPoint]
    full_depth: int
    recommended: int
    margin: float
    n_queries: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def parse_depths(text: str) -> list[int]:
    """Depths from ``"10,20,30"`` (positive integers; sorted, repeats dropped)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"depth {part!r} is not an integer") from None
        if value < 1:
            raise ValueError(f"depth must be >= 1, got {value}")
        out.append(value)
    if not out:
        raise ValueError("no depths given")
    return sorted(set(out))


def replay_order(query: TracedQuery, depth: int) -> list[str]:
    """The ids in the order a rerank of the stage-1 top `depth` gives: those by score (ties by stage-1 rank),
    then the rest in stage-1 order.

        >>> q = TracedQuery(["a", "b", "c"], np.array([0.1, 0.9, 0.5]), [1, 2, 3], np.full(3, np.nan), [None] * 3)
        >>> replay_order(q, 2), replay_order(q, 3)
        (['b', 'a', 'c'], ['b', 'c', 'a'])
    """
    ranks = [r if r is not None else i + 1 for i, r in enumerate(query.stage1_ranks)]
    by_stage1 = sorted(range(len(query.ids)), key=lambda i: ranks[i])
    head, tail = by_stage1[:depth], by_stage1[depth:]
    # the reranked head as a reranker keeping everything returns it (ties in input, here stage-1, order)
    reranked = query.subset(head).apply(RankPolicy(floor=None, top_k=None))
    return [item.id for item in reranked] + [query.ids[i] for i in tail]


def advise_depth(
    records: Iterable[Mapping[str, Any]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    margin: float = DEFAULT_MARGIN,
    pairs_per_s: float | None = None,
) -> DepthReport:
    """Replay the traced rerank at each depth (see the module doc) and advise the shallowest depth whose
    nDCG@10 is not measurably below the full depth's. ValueError when no traced query is judged or a
    record lacks its stage-1 rank."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    if pairs_per_s is not None and not pairs_per_s > 0:
        raise ValueError(f"pairs_per_s must be > 0, got {pairs_per_s!r}")
    queries, skipped = group_traces(records)
    judged = {q: t for q, t in queries.items() if q in qrels}
    if not judged:
        raise ValueError("no traced query id appears in the qrels (were traces written with query_id?)")
    for qid, t in judged.items():
        if any(r is None for r in t.stage1_ranks):
            raise ValueError(f"query {qid!r}: a traced candidate has no stage1_rank; depth cannot be replayed")
    full = max(len(t.ids) for t in judged.values())
    tried = sorted({d for d in depths if d < full} | {full})
    qids = sorted(judged)
    per_depth: dict[int, np.ndarray] = {}
    points = []
    for d in tried:
        ndcg, mrr, seen, relevant, pairs = [], [], 0, 0, 0
        for q in qids:
            order = replay_order(judged[q], d)
            ndcg.append(ndcg_at_k(order, qrels[q], 10))
            mrr.append(mrr_at_k(order, qrels[q], 10))
            ranks = judged[q].stage1_ranks
            rel = [i for i, doc in enumerate(judged[q].ids) if qrels[q].get(doc, 0) > 0]
            relevant += len(rel)
            seen += sum(1 for i in rel if (ranks[i] or 0) <= d)
            pairs += min(d, len(judged[q].ids))
        per_depth[d] = np.asarray(ndcg, dtype=np.float64)
        points.append((d, pairs / len(qids), float(np.mean(ndcg)), float(np.mean(mrr)),
                       seen / relevant if relevant else 0.0))
    out = []
    for d, ppq, n, m, r in points:
        diff = per_depth[d] - per_depth[full]
        low, high = bootstrap_ci(diff) if d != full else (0.0, 0.0)
        out.append(DepthPoint(depth=d, pairs_per_query=ppq, ndcg10=n, mrr10=m, recall=r,
                              ndcg10_difference=float(diff.mean()), ci_low=low, ci_high=high,
                              ms_per_query=1000.0 * ppq / pairs_per_s if pairs_per_s else None))
    kept = [p for p in out if p.ci_low >= -margin and p.ci_high <= margin]
    notes = []
    if skipped:
        notes.append(f"{skipped} traced candidates without a query id were left out")
    unjudged = len(queries) - len(judged)
    if unjudged:
        notes.append(f"{unjudged} traced queries are not in the qrels and were left out")
    return DepthReport(points=out, full_depth=full, recommended=min(p.depth for p in kept), margin=margin,
                       n_queries=len(qids), notes=notes)
