"""funnelrank: retrieve-and-rerank for RAG and search.

Stage 1 (recall): BM25 over an inverted index and dense vectors in an HNSW graph, fused with
reciprocal-rank fusion, all in a C++ core. Stage 2 (precision): an ONNX Runtime cross-encoder
re-scores the candidates; its sigmoid scores are absolute, so a relevance floor can refuse junk.
"""

from __future__ import annotations

from funnelrank._core import Analyzer, BM25Index, FusedResult, HNSWIndex, IndexFileError, convex_fusion, rrf
from funnelrank.collection import Collection, Document
from funnelrank.models import default_reranker_path
from funnelrank.pipeline import Pipeline, Result, SearchResponse
from funnelrank.rerank import CrossEncoder, OverloadedError, Reranker, RerankResult, RerankScheduler

__version__ = "0.1.0"

__all__ = [
    "Analyzer",
    "BM25Index",
    "Collection",
    "CrossEncoder",
    "Document",
    "FusedResult",
    "HNSWIndex",
    "IndexFileError",
    "OverloadedError",
    "Pipeline",
    "RerankResult",
    "RerankScheduler",
    "Reranker",
    "Result",
    "SearchResponse",
    "__version__",
    "convex_fusion",
    "default_reranker_path",
    "rrf",
]
