"""Stage 2: a :class:`Scorer` (the cross-encoder on the dynamic batch scheduler, optionally a cascade) and a
:class:`RankPolicy` (the relevance floor, top-k, depth and rerank fusion), joined in :class:`Reranker`.

Typical use::

    from funnelrank.rerank import Reranker
    with Reranker("path/to/cross-encoder", floor=0.4, top_k=10) as reranker:
        result = reranker.rerank("query", ["passage one", "passage two"])
        if result.no_evidence: ...
"""

from funnelrank.rerank.cascade import CascadeScorer
from funnelrank.rerank.cross_encoder import CrossEncoder
from funnelrank.rerank.policy import RankPolicy, RerankedItem, RerankResult
from funnelrank.rerank.reranker import Reranker
from funnelrank.rerank.scheduler import OverloadedError, RerankScheduler, SchedulerClosedError
from funnelrank.rerank.scorer import Scorer, Scores

__all__ = [
    "CascadeScorer",
    "CrossEncoder",
    "OverloadedError",
    "RankPolicy",
    "RerankResult",
    "RerankScheduler",
    "RerankedItem",
    "Reranker",
    "SchedulerClosedError",
    "Scorer",
    "Scores",
]
