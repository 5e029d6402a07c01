"""The one candidate type that flows through the funnel: retriever -> reranker -> floor -> results.

A retriever (:mod:`funnelrank.retrieval`) returns :class:`Candidate` objects that already carry their
document (id, text, metadata) and their place in every stage-1 ranking that produced them; the reranker
(:class:`funnelrank.rerank.Reranker`) scores them and keeps them; :class:`funnelrank.Pipeline` turns the kept
ones into results without looking anything up again.

    >>> c = Candidate("d1", "Cats sleep on mats.", rank=1, score=3.2, stage1={"bm25": Stage1Hit(1, 3.2)})
    >>> c.id, c.rank, c.stage1["bm25"].rank
    ('d1', 1, 1)

This module depends on nothing else in funnelrank, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["Candidate", "Stage1Hit"]


class Stage1Hit(NamedTuple):
    """A document's place in one stage-1 ranking: 1-based `rank` and that retriever's `score` (a named
    tuple: one is made per candidate per ranking, on the search path)."""

    rank: int
    score: float


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Candidate(NamedTuple):
    """A stage-1 candidate (a named tuple: a retriever makes one per candidate, on the search path).

    Attributes:
        id, text: the document.
        rank: 1-based position in the ranking handed to the reranker (None when unknown).
        score: the stage-1 score there (BM25 score, cosine similarity, fused score; None when unknown).
        metadata: the document's metadata as stored (read it, do not change it:
            :class:`funnelrank.Pipeline` results carry copies).
        stage1: the document's :class:`Stage1Hit` in each stage-1 ranking that ran, by retriever name
            (``"bm25"``, ``"dense"``, ``"fused"``, ...; None when the document was not in that ranking).
    """

    id: str
    text: str
    rank: int | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = _EMPTY
    stage1: Mapping[str, Stage1Hit | None] = _EMPTY
