"""A collection's documents as a list of *segments* (Lucene's model): each segment has its own BM25 index and,
for a dense collection, its own HNSW index; once committed (a ``data-<12 hex>`` directory,
:mod:`funnelrank.store.layout`) it is never rewritten, only its deletions change.

New documents go to the last, unwritten segment; a commit writes it (and nothing else but the deletion
bitmaps that changed). Searches run on every segment and merge, scored with the statistics of all of them:

* **BM25**: N, the total length and every query term's document frequency are summed over the segments and
  each segment is searched with those (``BM25Index.search_global``, as :mod:`funnelrank.retrieve.sharded` does
  for shards); the merge on the exact float64 scores, ties to the earlier segment and then to the segment's own
  order, is the single index's ranking: same ids, same order, bit-identical float32 scores.
* **Dense**: each segment's HNSW top-k, merged by similarity (the top-k of the union; exact wherever each
  segment's search is).

:meth:`Segments.merge` folds adjacent segments, the smallest neighbouring pair first (so insertion order, and
with it every tie, is kept), into a new unwritten segment that the next commit writes; :meth:`Segments.apply_policy`
folds what a :class:`~funnelrank.store.merge_policy.TieredMergePolicy` asks for (each commit runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funnelrank.store.indexing import add_to_bm25
from funnelrank.store.merge_policy import TieredMergePolicy

__all__ = ["MERGE_AT", "Segment", "SegmentedBM25", "SegmentedHNSW", "Segments"]

MERGE_AT = 10
"""The default ``segments_per_tier`` of a commit's :class:`~funnelrank.store.merge_policy.TieredMergePolicy`: a
commit folds every run of this many neighbouring segments of one size tier."""
_STATS_TRIES = 5


class Segment:
    """One segment: its indexes, and for a committed one its data directory, the ids of its documents file in
    order, that file's sha256, and its deletions since it was written.

        >>> Segment(BM25Index(), None)   # doctest: +SKIP
        Segment(data=None, live=0, deleted=0)
    """

    def __init__(self, bm25: Any, hnsw: Any | None, *, data: str | None = None, file_ids: list[str] | None = None,
                 docs_sha256: str | None = None, deleted: set[str] | None = None,
                 deleted_entry: dict[str, Any] | None = None) -> None:
        self.bm25 = bm25
        self.hnsw: Any = hnsw  # None for a collection without a dense index
        self.data = data
        self.file_ids = file_ids or []
        self.docs_sha256 = docs_sha256
        self.deleted = deleted or set()
        self.deleted_entry = deleted_entry
        self.deletions_changed = False

    def __len__(self) -> int:
        return len(self.bm25)

    def __repr__(self) -> str:
        return f"Segment(data={self.data!r}, live={len(self)}, deleted={len(self.deleted)})"

    def deletion_bits(self) -> np.ndarray:
        """The deletion bitmap of a written segment: one bool per document of its documents file."""
        deleted = self.deleted
        return np.fromiter((i in deleted for i in self.file_ids), dtype=bool, count=len(self.file_ids))


class Segments:
    """The segments of one collection, in insertion order, and which holds each live id.

    `make_bm25` and `make_hnsw` (None: not dense) make the empty indexes of a new segment, with the
    collection's parameters. `home` is the resolved directory the written segments' ``data`` names are in.
    """

    def __init__(self, segments: list[Segment], make_bm25: Callable[[], Any],
                 make_hnsw: Callable[[], Any] | None, home: str | None = None) -> None:
        self.make_bm25 = make_bm25
        self.make_hnsw = make_hnsw
        self.home = home
        self.where: dict[str, Segment] = {}
        for seg in segments:
            self.where.update(dict.fromkeys(seg.bm25.ids(), seg))
        self.list: list[Segment] = segments or [self.new_segment()]

    def new_segment(self) -> Segment:
        """A new, empty, unwritten segment (not yet in the list)."""
        return Segment(self.make_bm25(), self.make_hnsw() if self.make_hnsw is not None else None)

    def live(self) -> Segment:
        """The unwritten segment new documents go to (made when the last one is written)."""
        last = self.list[-1]
        if last.data is not None:
            last = self.new_segment()
            self.list = [*self.list, last]
        return last

    def searched(self) -> list[Segment]:
        """The segments holding a live document, in order (a snapshot: searches run beside writes)."""
        return [seg for seg in list(self.list) if len(seg)]

    def add(self, ids: list[str], texts: list[str], vectors: np.ndarray | None, *, progress: bool) -> None:
        """Index new documents into the live segment; all or nothing."""
        seg = self.live()
        add_to_bm25(seg.bm25, ids, texts, progress=progress)
        if vectors is not None:
            try:
                seg.hnsw.add(ids, vectors)
            except BaseException:
                seg.bm25.delete(ids)
                raise
        self.where.update(dict.fromkeys(ids, seg))

    def delete(self, ids: Sequence[str]) -> None:
        """Delete live documents from the segments holding them (KeyError for an unknown id, nothing deleted)."""
        groups: dict[int, tuple[Segment, list[str]]] = {}
        for doc_id in ids:
            seg = self.where[doc_id]
            groups.setdefault(id(seg), (seg, []))[1].append(doc_id)
        for seg, group in groups.values():
            seg.bm25.delete(group)
            if seg.hnsw is not None:
                seg.hnsw.delete(group)
            if seg.data is not None:
                seg.deleted.update(group)
                seg.deletions_changed = True
            for doc_id in group:
                del self.where[doc_id]

    def merge(self, max_segments: int, text: Callable[[str], str]) -> bool:
        """Fold adjacent segments, the pair with the fewest live documents first, until at most `max_segments`
        remain (segments left with no live document are dropped first); `text` gives a document's text. The
        folded segments become one unwritten segment. Returns whether anything changed."""
        if type(max_segments) is not int or max_segments < 1:
            raise ValueError(f"max_segments must be an integer >= 1, got {max_segments!r}")
        segs = [seg for seg in self.list if len(seg) or seg is self.list[-1]]
        changed = len(segs) != len(self.list)
        while len(segs) > max_segments:
            sizes = [len(a) + len(b) for a, b in zip(segs, segs[1:])]
            i = sizes.index(min(sizes))
            segs[i : i + 2] = [self._fold(segs[i : i + 2], text)]
            changed = True
        if changed:
            self._use(segs)
        return changed

    def apply_policy(self, policy: TieredMergePolicy, text: Callable[[str], str]) -> bool:
        """Fold what `policy` asks for (:meth:`TieredMergePolicy.find_merges
        <funnelrank.store.merge_policy.TieredMergePolicy.find_merges>`), again while a fold completes a run of the
        next tier (segments left with no live document are dropped first). Returns whether anything changed."""
        segs = [seg for seg in self.list if len(seg) or seg is self.list[-1]]
        changed = len(segs) != len(self.list)
        for _ in range(64):  # each round folds at least one run or rewrites a mostly-deleted segment
            runs = policy.find_merges([(len(seg), len(seg.deleted)) for seg in segs])
            if not runs:
                break
            for start, end in reversed(runs):
                segs[start:end] = [self._fold(segs[start:end], text)]
            changed = True
        if changed:
            self._use(segs)
        return changed

    def _use(self, segs: list[Segment]) -> None:
        self.list = segs or [self.new_segment()]
        for seg in self.list:
            if seg.data is None:  # folded (or the live one): its documents now live there
                self.where.update(dict.fromkeys(seg.bm25.ids(), seg))

    def _fold(self, parts: Sequence[Segment], text: Callable[[str], str]) -> Segment:
        """One new, unwritten segment holding the live documents of `parts`, in order."""
        out = self.new_segment()
        ids = [i for seg in parts for i in seg.bm25.ids()]
        out.bm25.add(ids, [text(i) for i in ids])
        if out.hnsw is not None:
            vectors = [seg.hnsw.vectors(seg.bm25.ids()) for seg in parts if len(seg)]
            if vectors:
                out.hnsw.add(ids, np.concatenate(vectors))
        return out


def _merged(parts: list[tuple[int, Sequence[str], Any, Any]], k: int) -> tuple[list[str], Any, Any]:
    """Merge per-segment top-k lists (segment position, ids, scores, exact scores), best exact score first,
    ties to the earlier segment and then to the segment's own order; the first `k`."""
    entries = [(-float(exact[r]), pos, r, ids[r], scores[r], exact[r])
               for pos, ids, scores, exact in parts for r in range(len(ids))]
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    top = entries[:k]
    return ([e[3] for e in top], np.asarray([e[4] for e in top], dtype=np.float32),
            np.asarray([e[5] for e in top], dtype=np.float64))


class SegmentedBM25:
    """The BM25 calls a collection makes, over every segment (see the module docstring); the same answers as one
    ``BM25Index`` holding every live document."""

    def __init__(self, segments: Segments) -> None:
        self.segments = segments

    def __len__(self) -> int:
        return sum(len(seg) for seg in list(self.segments.list))

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.segments.where

    def ids(self) -> list[str]:
        """Live ids in insertion order."""
        return [i for seg in list(self.segments.list) for i in seg.bm25.ids()]

    @property
    def k1(self) -> float:
        return float(self.segments.list[0].bm25.k1)

    @property
    def b(self) -> float:
        return float(self.segments.list[0].bm25.b)

    @property
    def analyzer(self) -> Any:
        return self.segments.list[0].bm25.analyzer

    def corpus_stats(self) -> tuple[int, int]:
        """(live documents, their total length) over every segment."""
        docs = length = 0
        for seg in list(self.segments.list):
            d, n = seg.bm25.corpus_stats()
            docs, length = docs + d, length + n
        return docs, length

    def query_terms(self, query: str | bytes) -> list[str]:
        return list(self.segments.list[0].bm25.query_terms(query))

    def doc_freqs(self, terms: Sequence[str]) -> list[int]:
        total = [0] * len(terms)
        for seg in list(self.segments.list):
            total = [a + b for a, b in zip(total, seg.bm25.doc_freqs(list(terms)))]
        return total

    def search(self, query: str | bytes, k: int = 10, allow: Sequence[str] | None = None) -> tuple[list[str], Any]:
        segs = self.segments.searched()
        if len(segs) <= 1:
            ids, scores = (segs or self.segments.list)[0].bm25.search(query, k=k, allow=allow)
            return ids, scores
        return self.search_batch([query], k=k, allow=allow)[0]

    def search_batch(self, queries: Sequence[str | bytes], k: int = 10, threads: int = 0,
                     allow: Sequence[str] | None = None) -> list[tuple[list[str], Any]]:
        segs = self.segments.searched()
        if len(segs) <= 1:
            seg = segs[0] if segs else self.segments.list[0]
            return list(seg.bm25.search_batch(list(queries), k=k, threads=threads, allow=allow))
        for attempt in range(_STATS_TRIES):  # an add racing the statistics makes them too small: count again
            documents, total_length = self.corpus_stats()
            terms = list(dict.fromkeys(t for q in queries for t in self.query_terms(q)))
            df = dict(zip(terms, self.doc_freqs(terms)))
            try:
                found = self._global(segs, queries, k, documents, total_length, df, threads, allow)
            except ValueError:
                if attempt + 1 == _STATS_TRIES:
                    raise
                continue
            return [(ids, scores) for ids, scores, _ in found]
        raise AssertionError("unreachable")  # pragma: no cover

    def search_global(self, queries: Sequence[str | bytes], k: int = 10, *, documents: int, total_length: int,
                      df: dict[str, int], threads: int = 0,
                      allow: Sequence[str] | None = None) -> list[tuple[list[str], Any, Any]]:
        """``BM25Index.search_global`` over every segment (this collection being one shard of a corpus)."""
        segs = self.segments.searched() or self.segments.list[:1]
        return self._global(segs, queries, k, documents, total_length, df, threads, allow)

    @staticmethod
    def _global(segs: list[Segment], queries: Sequence[str | bytes], k: int, documents: int, total_length: int,
                df: dict[str, int], threads: int, allow: Sequence[str] | None) -> list[tuple[list[str], Any, Any]]:
        per_seg = [seg.bm25.search_global(list(queries), k=k, documents=documents, total_length=total_length,
                                          df={t: n for t, n in df.items()}, threads=threads, allow=allow)
                   for seg in segs]
        if len(segs) == 1:
            return list(per_seg[0])
        return [_merged([(pos, *per_seg[pos][q]) for pos in range(len(segs))], k) for q in range(len(queries))]


class SegmentedHNSW:
    """The HNSW calls a collection makes, over every segment: each segment's top-k merged by similarity."""

    def __init__(self, segments: Segments) -> None:
        self.segments = segments

    def _any(self) -> Any:
        return self.segments.list[0].hnsw

    def __len__(self) -> int:
        return sum(len(seg.hnsw) for seg in list(self.segments.list))

    @property
    def dim(self) -> int:
        return int(self._any().dim)

    @property
    def ef_search(self) -> int:
        return int(self._any().ef_search)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        for seg in list(self.segments.list):
            seg.hnsw.ef_search = value

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of `ids` (KeyError for an id not in the collection)."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        groups: dict[int, tuple[Segment, list[int]]] = {}
        for row, doc_id in enumerate(ids):
            seg = self.segments.where.get(doc_id)
            if seg is None:
                raise KeyError(doc_id)
            groups.setdefault(id(seg), (seg, []))[1].append(row)
        for seg, rows in groups.values():
            out[rows] = seg.hnsw.vectors([ids[r] for r in rows])
        return out

    def search(self, vector: Any, k: int = 10, ef: int | None = None,
               allow: Sequence[str] | None = None) -> tuple[list[str], Any]:
        segs = self.segments.searched()
        if len(segs) <= 1:
            ids, scores = (segs or self.segments.list)[0].hnsw.search(vector, k=k, ef=ef, allow=allow)
            return ids, scores
        return self.search_batch(np.asarray(vector, dtype=np.float32).reshape(1, -1), k=k, ef=ef, allow=allow)[0]

    def search_batch(self, vectors: Any, k: int = 10, ef: int | None = None, threads: int = 0,
                     allow: Sequence[str] | None = None) -> list[tuple[list[str], Any]]:
        segs = self.segments.searched()
        if len(segs) <= 1:
            seg = segs[0] if segs else self.segments.list[0]
            return list(seg.hnsw.search_batch(vectors, k=k, ef=ef, threads=threads, allow=allow))
        per_seg = [seg.hnsw.search_batch(vectors, k=k, ef=ef, threads=threads, allow=allow) for seg in segs]
        out = []
        for q in range(len(vectors)):
            ids, scores, _ = _merged([(pos, per_seg[pos][q][0], per_seg[pos][q][1], per_seg[pos][q][1])
                                      for pos in range(len(segs))], k)
            out.append((ids, scores))
        return out
