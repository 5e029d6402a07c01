"""Score traces: one JSONL line per (query, candidate) reranked, for auditing and for calibrating the floor.

Each line holds ``query_id``, ``query``, ``id`` (candidate), ``stage1_rank``, ``stage1_score``, ``score``
(sigmoid), ``logit``, ``rerank_rank`` (1-based, by cross-encoder score among all candidates of that call),
``kept`` (cleared the floor and made the top-k), ``floor``, ``top_k``, ``stage1_weight`` and ``fusion`` (the
rerank-fusion weight and method that ordered the kept ones, see :mod:`funnelrank.rerank.fusion`) and ``ts``
(Unix time). Lines are appended to the file with one
``write`` each on a descriptor opened with O_APPEND, so writers in several threads (or processes) never
interleave inside a line; `read_traces` skips a torn last line (a crash mid-write) with a warning.

Replay: :func:`group_traces` turns the lines back into one :class:`TracedQuery` per query, and
:meth:`TracedQuery.apply` runs a :class:`~funnelrank.rerank.policy.RankPolicy` over them, exactly as a
reranker with that policy would have returned (the tuning tools choose floor, fusion and depth this way).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.candidates import Candidate
from funnelrank.rerank.fusion import rerank_order
from funnelrank.rerank.policy import RankPolicy, RerankResult
from funnelrank.rerank.scorer import Scores

__all__ = ["TRACE_FIELDS", "TraceWriter", "TracedQuery", "group_traces", "iter_traces", "read_traces"]

TRACE_FIELDS = (
    "query_id", "query", "id", "stage1_rank", "stage1_score", "score", "logit", "rerank_rank", "kept", "floor",
    "top_k", "stage1_weight", "fusion", "ts",
)
_REQUIRED = ("id", "score")


class TraceWriter:
    """Appends trace lines to a JSONL file; safe to share between threads. Close it (or use ``with``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.is_dir():
            raise FileNotFoundError(f"trace directory {self.path.parent} does not exist")
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write_line(self, record: dict[str, Any]) -> None:
        """Append one record as one line, with a single write."""
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"trace file {self.path} is closed")
            view = memoryview(data)
            while view:  # a regular file takes it in one write; loop only for the pathological partial write
                written = os.write(self._fd, view)
                view = view[written:]

    def record(
        self,
        query: str,
        query_id: str | None,
        candidates: Sequence[Candidate],
        scores: Scores,
        result: RerankResult,
    ) -> None:
        """Write the lines of one rerank call (every candidate, kept or dropped)."""
        kept = {item.index for item in result.items}
        s, lg = scores.scores, scores.logits
        rerank_rank = {i: r + 1 for r, i in enumerate(rerank_order(s))}
        now = time.time()
        for i, c in enumerate(candidates):
            self.write_line(
                {
                    "query_id": query_id,
                    "query": query,
                    "id": c.id,
                    "stage1_rank": c.rank,
                    "stage1_score": c.score,
                    "score": float(s[i]),
                    "logit": float(lg[i]),
                    "rerank_rank": rerank_rank[i],
                    "kept": i in kept,
                    "floor": result.floor,
                    "top_k": result.top_k,
                    "stage1_weight": result.stage1_weight,
                    "fusion": result.fusion,
                    "ts": now,
                }
            )

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_traces(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a trace file. A malformed line raises ValueError naming it, except a torn
    final line (no trailing newline), which is skipped with a warning."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no trace file at {p}")
    with open(p, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
                raise ValueError(f"a trace record needs the fields {', '.join(_REQUIRED)}")
            float(rec["score"])
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            if n == last:
                warnings.warn(f"{p}: skipping an incomplete last line ({exc})", stacklevel=2)
                continue
            raise ValueError(f"{p}, line {n + 1}: not a trace record ({exc})") from None
        yield rec


def read_traces(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                allow_empty: bool = True) -> list[dict[str, Any]]:
    """All records of one or more trace files; ValueError if there are none and `allow_empty` is False."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = [rec for p in paths for rec in iter_traces(p)]
    if not records and not allow_empty:
        raise ValueError("the trace files hold no records")
    return records


@dataclass(frozen=True)
class TracedQuery:
    """One query's traced candidates, in trace order: ids, cross-encoder scores, logits (NaN where not
    traced), stage-1 ranks and scores."""

    ids: list[str]
    scores: np.ndarray
    stage1_ranks: list[int | None]
    logits: np.ndarray
    stage1_scores: list[float | None]

    def candidates(self) -> list[Candidate]:
        """The traced candidates (ids, stage-1 ranks and scores; no text), in trace order."""
        return [Candidate(i, "", r, s) for i, r, s in zip(self.ids, self.stage1_ranks, self.stage1_scores)]

    def traced_scores(self) -> Scores:
        """The traced scores and logits, in trace order."""
        return Scores(self.scores, self.logits)

    def apply(self, policy: RankPolicy) -> RerankResult:
        """Replay `policy` over the traced scores: what a reranker with that policy returns for this query."""
        return policy.apply(self.candidates(), self.traced_scores())

    def subset(self, keep: Sequence[int]) -> TracedQuery:
        """Only the candidates at positions `keep` (in that order)."""
        return TracedQuery([self.ids[i] for i in keep], self.scores[list(keep)], [self.stage1_ranks[i] for i in keep],
                           self.logits[list(keep)], [self.stage1_scores[i] for i in keep])


def group_traces(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, TracedQuery], int]:
    """Traced candidates per query id. Returns ``(queries, skipped)``, `skipped` counting records without
    a query id. ValueError when a query traces the same candidate twice (two runs appended to one file:
    write each run's traces to a fresh file) or a record's stage-1 rank is not a positive integer."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    skipped = 0
    for rec in records:
        qid = rec.get("query_id")
        if qid is None:
            skipped += 1
            continue
        qid, doc = str(qid), str(rec["id"])
        if (qid, doc) in seen:
            raise ValueError(
                f"query {qid!r} traces candidate {doc!r} twice (traces of several runs in one file?); "
                "write each run's traces to a fresh file"
            )
        seen.add((qid, doc))
        rank = rec.get("stage1_rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"query {qid!r}, candidate {doc!r}: stage1_rank must be a positive integer, got {rank!r}")
        grouped.setdefault(qid, []).append(rec)
    queries = {
        q: TracedQuery(
            ids=[str(r["id"]) for r in recs],
            scores=np.asarray([float(r["score"]) for r in recs], dtype=np.float64),
            stage1_ranks=[r.get("stage1_rank") for r in recs],
            logits=np.asarray([math.nan if r.get("logit") is None else float(r["logit"]) for r in recs],
                              dtype=np.float64),
            stage1_scores=[None if r.get("stage1_score") is None else float(r["stage1_score"]) for r in recs],
        )
        for q, recs in grouped.items()
    }
    return queries, skipped
