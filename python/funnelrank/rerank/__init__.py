"""Stage 2: cross-encoder reranking, the dynamic batch scheduler, the relevance floor and score traces.

Typical use::

    from funnelrank.rerank import Reranker
    with Reranker("path/to/cross-encoder", floor=0.4, top_k=10) as reranker:
        result = reranker.rerank("query", ["passage one", "passage two"])
        if result.no_evidence: ...
"""

from funnelrank.candidates import Candidate
from funnelrank.rerank.cross_encoder import ChunkSpec, CrossEncoder, EncodedPairs
from funnelrank.rerank.fusion import fused_order
from funnelrank.rerank.floor import RerankedItem, Reranker, RerankResult
from funnelrank.rerank.scheduler import (
    OverloadedError,
    RerankFuture,
    RerankScheduler,
    SchedulerClosedError,
    SchedulerStats,
    Scores,
)
from funnelrank.rerank.traces import TraceWriter, read_traces

__all__ = [
    "Candidate",
    "ChunkSpec",
    "CrossEncoder",
    "EncodedPairs",
    "OverloadedError",
    "RerankFuture",
    "RerankResult",
    "RerankScheduler",
    "RerankedItem",
    "Reranker",
    "SchedulerClosedError",
    "SchedulerStats",
    "Scores",
    "TraceWriter",
    "fused_order",
    "read_traces",
]
