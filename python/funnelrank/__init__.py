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
reciprocal-rank fusion, all in a C++ core (:mod:`funnelrank.core`, behind :mod:`funnelrank.retrieve`).
Stage 2 (precision): a :class:`Scorer` (an ONNX Runtime cross-encoder) re-scores the candidates; its sigmoid
scores are absolute, so the :class:`RankPolicy`'s relevance floor can refuse junk ("no evidence").

The package by stage: :mod:`funnelrank.retrieve` (retrievers, filters, sharding, PostgreSQL),
:mod:`funnelrank.store` (collections on disk), :mod:`funnelrank.embed`, :mod:`funnelrank.rerank` (scorers,
scheduler, policy), :mod:`funnelrank.serve` (HTTP and Ray), :mod:`funnelrank.eval`, :mod:`funnelrank.train`,
:mod:`funnelrank.integrations`, :mod:`funnelrank.cli`.
"""

from __future__ import annotations

from funnelrank._core import IndexFileError
from funnelrank.candidates import Candidate
from funnelrank.pipeline import Pipeline, SearchResponse
from funnelrank.rerank import CrossEncoder, RankPolicy, Reranker, Scorer
from funnelrank.store.collection import Collection

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "Collection",
    "CrossEncoder",
    "IndexFileError",
    "Pipeline",
    "RankPolicy",
    "Reranker",
    "Scorer",
    "SearchResponse",
    "__version__",
]
