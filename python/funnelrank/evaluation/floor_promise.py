"""The relevance floor's promise, measured: answer when there is evidence, refuse when there is none.

Every judged query is scored twice from one rerank pass (the cross-encoder scores each candidate on its own,
so removing candidates changes no other candidate's score):

* **answerable**: the query as it is, when its candidates hold at least one judged-relevant document. The
  floor *keeps an answer* when a judged-relevant document is among what the pipeline would return: the
  first `top_k` candidates, in the pipeline's order, whose rerank score clears the floor.
* **unanswerable**: the same query with its judged-relevant documents removed from the candidates. The floor
  *refuses* (``no_evidence``) when no remaining candidate's score clears it.

    >>> promise = floor_promise({"q1": [("d1", 0.9), ("d2", 0.2)]}, {"q1": {"d1": 1}}, floor=0.4, top_k=10)
    >>> promise["answerable_kept"], promise["unanswerable_refused"]
    (1.0, 1.0)

A floor that keeps answers and refuses junk scores high on both; a floor of 0 keeps every answer and
refuses nothing, a floor of 1 the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from funnelrank.evaluation.significance import bootstrap_ci

__all__ = ["floor_promise"]


def _clears(score: float, floor: float) -> bool:
    return score >= floor  # NaN never clears


def floor_promise(
    ranked: Mapping[str, Sequence[tuple[str, float]]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    floor: float,
    top_k: int,
) -> dict[str, object]:
    """The shares of answerable queries that keep an answer and of unanswerable ones that are refused.

    Args:
        ranked: query id -> every candidate as ``(doc_id, rerank score)``, in the pipeline's order (fused
            order when rerank fusion is on), with no floor and no top-k cut applied yet.
        qrels: query id -> {doc id: grade}; grade >= 1 is relevant.
        floor: the relevance floor (0..1).
        top_k: results the pipeline returns.

    Returns:
        ``{"floor", "top_k", "answerable_kept", "answerable_kept_ci", "answerable_queries",
        "unanswerable_refused", "unanswerable_refused_ci", "unanswerable_queries"}`` (shares in 0..1 with
        95% bootstrap intervals; a share is None when there is no query to take it over).
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor!r}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k!r}")
    kept: list[float] = []
    refused: list[float] = []
    for qid, candidates in ranked.items():
        relevant = {d for d, g in qrels.get(qid, {}).items() if g >= 1}
        if any(d in relevant for d, _ in candidates):
            returned = [d for d, s in candidates if _clears(s, floor)][:top_k]
            kept.append(1.0 if any(d in relevant for d in returned) else 0.0)
        refused.append(0.0 if any(_clears(s, floor) for d, s in candidates if d not in relevant) else 1.0)

    def share(values: list[float]) -> tuple[float | None, list[float] | None]:
        if not values:
            return None, None
        low, high = bootstrap_ci(values)
        return round(sum(values) / len(values), 6), [round(low, 6), round(high, 6)]

    kept_share, kept_ci = share(kept)
    refused_share, refused_ci = share(refused)
    return {
        "floor": floor,
        "top_k": top_k,
        "answerable_kept": kept_share,
        "answerable_kept_ci": kept_ci,
        "answerable_queries": len(kept),
        "unanswerable_refused": refused_share,
        "unanswerable_refused_ci": refused_ci,
        "unanswerable_queries": len(refused),
    }
