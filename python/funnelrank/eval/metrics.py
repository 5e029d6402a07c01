"""Ranking metrics computed exactly as trec_eval (and so pytrec_eval) computes them.

* ``ndcg@k`` (trec_eval ``ndcg_cut_k``): gain = the qrels grade (linear, not 2^grade - 1), discount
  ``1 / log2(rank + 1)``; the ideal DCG sorts *all* of the query's judged grades (not only the retrieved
  ones) and cuts at k. Grades <= 0 give no gain. A query whose ideal DCG is 0 (no positive grade) scores 0.
* ``recall@k`` (trec_eval ``recall_k``): relevant documents (grade >= 1) in the top k / all relevant
  documents in the qrels (0 when there are none).
* ``mrr@k``: 1 / rank of the first relevant document within the top k, else 0 (trec_eval ``recip_rank``
  computed on the ranking cut at k).

Means are taken over the *judged* queries (every query in the qrels, as ``trec_eval -c`` does): a judged
query with no results, or absent from the rankings, counts 0. Queries that are ranked but not judged are
ignored.

Order and ties: a ranking is evaluated in the order given (best first), which makes our figures deterministic
whatever the scores. trec_eval instead re-sorts each query's results by score, breaking ties by document id
*descending*; for rankings without tied scores the two agree. Use :func:`trec_eval_order` to reproduce
trec_eval's order exactly when a ranking has ties.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_METRICS",
    "EvalResult",
    "evaluate",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "recall_at_k",
    "trec_eval_order",
]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
"""The metrics `funnelrank eval` reports."""

RankingLike = Sequence[tuple[str, float]]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"cutoff k must be a positive integer, got {k!r}")


def ndcg_at_k(ranked_ids: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranking (document ids, best first) against one query's judgments {doc_id: grade}."""
    _check_k(k)
    ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    if idcg == 0.0:
        return 0.0
    dcg = 0.0
    for i, doc_id in enumerate(ranked_ids[:k]):
        g = judged.get(doc_id, 0)
        if g > 0:
            dcg += g / math.log2(i + 2)
    return dcg / idcg


def recall_at_k(ranked_ids: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Recall@k: relevant (grade >= 1) documents in the top k / relevant documents judged."""
    _check_k(k)
    num_rel = sum(1 for g in judged.values() if g > 0)
    if num_rel == 0:
        return 0.0
    hits = sum(1 for doc_id in ranked_ids[:k] if judged.get(doc_id, 0) > 0)
    return hits / num_rel


def mrr_at_k(ranked_ids: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant (grade >= 1) document within the top k, else 0."""
    _check_k(k)
    for i, doc_id in enumerate(ranked_ids[:k]):
        if judged.get(doc_id, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


_METRIC_FUNCS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
}
_METRIC_RE = re.compile(r"^(ndcg|recall|mrr)@([1-9][0-9]*)$")


def parse_metric(name: str) -> tuple[str, int]:
    """Split a metric name like "ndcg@10" into ("ndcg", 10); ValueError listing the supported forms."""
    m = _METRIC_RE.match(name.strip().lower())
    if not m:
        raise ValueError(f'unknown metric "{name}"; supported: ndcg@K, recall@K, mrr@K (K a positive integer)')
    return m.group(1), int(m.group(2))


def trec_eval_order(ranking: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The order trec_eval evaluates a ranking in: score descending, ties by document id descending."""
    return sorted(ranking, key=lambda e: (e[1], e[0]), reverse=True)


@dataclass
class EvalResult:
    """Per-query values and means over the judged queries, keyed by metric name."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    num_queries: int


def _ids_of(qid: str, ranking: RankingLike) -> list[str]:
    ids = [doc_id for doc_id, _ in ranking]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for doc_id in ids:
            if doc_id in seen:
                raise ValueError(f'ranking for query "{qid}" lists document "{doc_id}" more than once')
            seen.add(doc_id)
    return ids


def evaluate(
    rankings: Mapping[str, RankingLike],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> EvalResult:
    """Score `rankings` ({qid: [(doc_id, score), ...] best first}) against `qrels` ({qid: {doc_id: grade}}).

    Every judged query is scored (missing or empty rankings score 0) and the mean is over all judged
    queries; a document repeated within one ranking is a ValueError.
    """
    parsed = [(name, *parse_metric(name)) for name in metrics]
    per_query: dict[str, dict[str, float]] = {name: {} for name, _, _ in parsed}
    for qid, judged in qrels.items():
        ids = _ids_of(qid, rankings.get(qid, ()))
        for name, kind, k in parsed:
            per_query[name][qid] = _METRIC_FUNCS[kind](ids, judged, k)
    n = len(qrels)
    mean = {name: (math.fsum(values.values()) / n if n else 0.0) for name, values in per_query.items()}
    return EvalResult(per_query=per_query, mean=mean, num_queries=n)
