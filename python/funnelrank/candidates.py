"""The one candidate type that flows through the funnel: retriever -> reranker -> floor -> results.

A retriever (:mod:`funnelrank.retrieve.retrievers`) returns :class:`Candidate` objects that already carry their
document (id, text, metadata) and their place in every stage-1 ranking that produced them; the reranker
(:class:`funnelrank.rerank.Reranker`) scores them and keeps them; :class:`funnelrank.Pipeline` turns the kept
ones into results without looking anything up again.

    >>> c = Candidate("d1", "Cats sleep on mats.", rank=1, score=3.2, stage1={"bm25": Stage1Hit(1, 3.2)})
    >>> c.id, c.rank, c.stage1["bm25"].rank
    ('d1', 1, 1)

This module depends on nothing else in funnelrank, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, overload

__all__ = ["Candidate", "CandidateList", "Stage1Hit", "as_candidates"]


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


class CandidateList(Sequence[Candidate]):
    """A retriever's candidates, best first, each made the first time it is read: a pipeline that returns
    stage 1's top 10 of 100 candidates (``rerank=False``) makes 10, a reranker that reads all makes all.
    It reads like a list (``len``, indexing, slices, iteration; equal to a list of the same candidates).

        >>> cands = CandidateList(2, lambda i: Candidate(f"d{i}", "text", rank=i + 1))
        >>> [c.id for c in cands], cands[-1].rank, cands[:1] == [Candidate("d0", "text", rank=1)]
        (['d0', 'd1'], 2, True)

    `make(i)` builds candidate `i` (0-based); it is called at most once per index.
    """

    __slots__ = ("_make", "_made")

    def __init__(self, n: int, make: Callable[[int], Candidate]) -> None:
        self._make = make
        self._made: list[Candidate | None] = [None] * n

    def __len__(self) -> int:
        return len(self._made)

    def _at(self, i: int) -> Candidate:
        c = self._made[i]
        if c is None:
            c = self._made[i] = self._make(i)
        return c

    @overload
    def __getitem__(self, index: int) -> Candidate: ...

    @overload
    def __getitem__(self, index: slice) -> list[Candidate]: ...

    def __getitem__(self, index: int | slice) -> Candidate | list[Candidate]:
        n = len(self._made)
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(n))]
        i = index.__index__()
        if not -n <= i < n:
            raise IndexError(f"candidate index {index} out of range for {n} candidates")
        return self._at(i % n)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.tolist())

    def tolist(self) -> list[Candidate]:
        """All the candidates as a list (each made once)."""
        return [self._at(i) for i in range(len(self._made))]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (CandidateList, list, tuple)):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CandidateList({self.tolist()!r})"


def as_candidates(candidates: Sequence[Any]) -> list[Candidate]:
    """Normalise candidates: plain strings (ids "0", "1", ... and stage-1 rank = position + 1), `Candidate`s,
    mappings with ``id``/``text`` (and optional ``rank``/``score``), or objects with those attributes."""
    if isinstance(candidates, (str, bytes)):
        raise TypeError("candidates must be a sequence of strings or candidate objects, not a single string")
    out: list[Candidate] = []
    seen: set[str] = set()
    for i, c in enumerate(candidates):
        if isinstance(c, Candidate):
            cand = c
        elif isinstance(c, str):
            cand = Candidate(str(i), c, i + 1, None)
        else:
            get = c.get if isinstance(c, Mapping) else (lambda k, _c=c: getattr(_c, k, None))
            cid, text = get("id"), get("text")
            if cid is None or text is None:
                raise TypeError(f"candidate {i} has no id/text (got {type(c).__name__})")
            rank = get("rank")
            score = get("score")
            cand = Candidate(str(cid), text, None if rank is None else int(rank), None if score is None else float(score))
        if cand.id in seen:
            raise ValueError(f"duplicate candidate id {cand.id!r}")
        seen.add(cand.id)
        out.append(cand)
    return out
