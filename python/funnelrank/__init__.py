"""funnelrank: retrieve-and-rerank for RAG and search.

Rerank your own documents with the shipped cross-encoder::

    >>> from funnelrank import Reranker
    >>> with Reranker() as reranker:
    ...     print(reranker.rank("compress data with gzip", ["gzip.compress(data): compress data",
    ...                                                      "json.dumps(obj): serialize to JSON"]))

or retrieve and rerank a collection::

    >>> from funnelrank import Pipeline
    >>> with Pipeline.from_texts(["Cats sleep on mats.", "Dogs chase cats."]) as pipe:
    ...     response = pipe.search("where do cats sleep?")

Stage 1 (recall): BM25 over an inverted index and dense vectors in an HNSW graph, fused with
reciprocal-rank fusion, all in a C++ core (:mod:`funnelrank.core`, behind :mod:`funnelrank.retrieve.retrievers`).
Stage 2 (precision): an ONNX Runtime cross-encoder re-scores the candidates; its sigmoid scores are
absolute, so a relevance floor can refuse junk ("no evidence").
"""

from __future__ import annotations

from funnelrank._core import IndexFileError
from funnelrank.candidates import Candidate
from funnelrank.store.collection import Collection, Document
from funnelrank.pipeline import Pipeline, Result, SearchResponse
from funnelrank.rerank import CrossEncoder, OverloadedError, RankPolicy, RerankedItem, Reranker, RerankResult, Scorer

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "Collection",
    "CrossEncoder",
    "Document",
    "IndexFileError",
    "OverloadedError",
    "Pipeline",
    "RerankResult",
    "RerankedItem",
    "Reranker",
    "Result",
    "SearchResponse",
    "__version__",
]
