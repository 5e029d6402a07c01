"""The C++ core's primitives, public: the BM25 and HNSW indexes, the analyzer and the rank fusions.

    from funnelrank.core import BM25Index, rrf
    bm25 = BM25Index(); bm25.add(["a", "b"], ["cats purr", "dogs bark"])
    fused = rrf([bm25.search("cats"), hnsw.search(query_vector)], k=60)  # hnsw: an HNSWIndex

Everything here is compiled into ``funnelrank._core``; this module is the supported import path for it
(the top-level package exports only the high-level API). Nothing here imports any other funnelrank module.
"""

from __future__ import annotations

from funnelrank._core import Analyzer, BM25Index, FusedResult, HNSWIndex, IndexFileError, convex_fusion, rrf

__all__ = [
    "Analyzer",
    "BM25Index",
    "FusedResult",
    "HNSWIndex",
    "IndexFileError",
    "convex_fusion",
    "rrf",
]
