"""The relevance floor's promise, measured: answer when there is evidence, refuse when there is none.

Every judged query is scored twice from one rerank pass (the cross-encoder scores each candidate on its own,
so removing candidates changes no other candidate's score):

* **answerable**: the query as it is, when its candidates hold at least one judged-relevant document. The
  floor *keeps an answer* when a judged-relevant document is among what the pipeline would return: the
  first `top_k` candidates, in the pipeline's order, whose rerank score clears the floor.
* **unanswerable**: the same query with its judged-relevant documents removed from the candidates. The floor
  *refuses* (``no_evidence``) when no remaining candidate's score clears it.

    >>> q1 = TracedQuery(["d1", "d2"], np.array([0.9, 0.2]), [1, 2], np.array([2.2, -1.4]), [None, None])
    >>> promise = floor_promise({"q1": q1}, {"q1": {"d1": 1}}, RankPolicy(floor=0.4, top_k=10))
    >>> promise["answerable_kept"], promise["unanswerable_refused"]
    (1.0, 1.0)

A floor that keeps answers and refuses junk scores high on both; a floor of 0 keeps every answer and
refuses nothing, a floor of 1 the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping

from funnelrank.eval.significance import bootstrap_ci
from funnelrank.rerank.policy import RankPolicy
from funnelrank.rerank.traces import TracedQuery

__all__ = ["floor_promise"]


def floor_promise(
    queries: Mapping[str, TracedQuery],
    qrels: Mapping[str, Mapping[str, int]],
    policy: RankPolicy,
) -> dict[str, object]:
    """The shares of answerable queries that keep an answer and of unanswerable ones that are refused.

    Args:
        queries: query id -> its candidates and rerank scores (:class:`~funnelrank.rerank.traces.TracedQuery`,
            e.g. from :func:`~funnelrank.rerank.traces.group_traces`), scored with no floor and no cut.
        qrels: query id -> {doc id: grade}; grade >= 1 is relevant.
        policy: what the pipeline keeps (floor, top_k, fusion): replayed with
            :meth:`~funnelrank.rerank.policy.RankPolicy.apply`, as served.

    Returns:
        ``{"floor", "top_k", "answerable_kept", "answerable_kept_ci", "answerable_queries",
        "unanswerable_refused", "unanswerable_refused_ci", "unanswerable_queries"}`` (shares in 0..1 with
        95% bootstrap intervals; a share is None when there is no query to take it over).
    """
    kept: list[float] = []
    refused: list[float] = []
    for qid, query in queries.items():
        relevant = {d for d, g in qrels.get(qid, {}).items() if g >= 1}
        if any(d in relevant for d in query.ids):
            kept.append(1.0 if any(item.id in relevant for item in query.apply(policy)) else 0.0)
        rest = query.subset([i for i, d in enumerate(query.ids) if d not in relevant])
        refused.append(1.0 if rest.apply(policy).no_evidence else 0.0)

    def share(values: list[float]) -> tuple[float | None, list[float] | None]:
        if not values:
            return None, None
        low, high = bootstrap_ci(values)
        return round(sum(values) / len(values), 6), [round(low, 6), round(high, 6)]

    kept_share, kept_ci = share(kept)
    refused_share, refused_ci = share(refused)
    return {
        "floor": policy.floor,
        "top_k": policy.top_k,
        "answerable_kept": kept_share,
        "answerable_kept_ci": kept_ci,
        "answerable_queries": len(kept),
        "unanswerable_refused": refused_share,
        "unanswerable_refused_ci": refused_ci,
        "unanswerable_queries": len(refused),
    }
