"""Offline batch reranking of a run (query id -> ranked document ids): in-process, or on a Ray cluster with
Ray Data.

    >>> from funnelrank.serve.ray_data import rerank_run
    >>> run = {"q1": [("d1", 12.0), ("d2", 9.5)]}
    >>> reranked = rerank_run(run, {"q1": "gzip a file"}, {"d1": "json.dumps(obj)", "d2": "gzip.compress(data)"})
    >>> [(doc_id, round(score, 3)) for doc_id, score in reranked["q1"]]
    [('d2', 0.999), ('d1', 0.0)]

Each query's top `depth` candidates (in the run's order) are scored by the cross-encoder through
:class:`funnelrank.rerank.Reranker` with no floor and no cut, the path ``funnelrank eval --stages rerank``
takes: the new order is the cross-encoder's (sigmoid) score, ties in the run's order, and each document's
score is its rerank score. So the reranked run file that :func:`write_trec_run` writes scores, under
``funnelrank eval --run-file FILE --stages run``, as the rerank stage does over the same candidates.

With ``use_ray=True`` the queries become a :mod:`ray.data` dataset (one row per query, its candidates'
texts in it) and :meth:`ray.data.Dataset.map_batches` sends batches of queries to a pool of
``concurrency`` actors (:class:`ray.data.ActorPoolStrategy`), each loading the ONNX cross-encoder once
(:class:`RunScorer`) and scoring with one ONNX Runtime thread per actor CPU. Without Ray the same
:class:`RunScorer` runs the batches in this process. Ray is imported only then: ``pip install
'funnelrank[ray]'``.

The CLI is ``funnelrank rerank-run RUN --data DATA --out RUN_OUT [--ray]`` (:mod:`funnelrank.cli.rerank_run`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank.candidates import Candidate
from funnelrank.rerank.policy import DEFAULT_DEPTH

__all__ = ["RunScorer", "rerank_run", "reranking_tasks", "write_trec_run"]

Run = dict[str, list[tuple[str, float]]]
"""query id -> [(document id, score), ...], best first."""

DEFAULT_BATCH_QUERIES = 8
"""Queries per batch handed to a scorer (each with up to `depth` candidates)."""


def reranking_tasks(
    run: Mapping[str, Sequence[tuple[str, float]]],
    queries: Mapping[str, str],
    documents: Mapping[str, str] | Callable[[str], str | None],
    *,
    depth: int = DEFAULT_DEPTH,
    query_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per query to rerank: ``{"query_id", "query", "doc_ids", "texts", "ranks", "scores"}`` with the
    run's top `depth` candidates in its order (``ranks`` 1, 2, ...; ``scores`` the run's).

    `query_ids` restricts (and orders) the queries; by default every query of the run, in its order. ValueError
    for a bad depth, a query id with no text in `queries`, a ranked document with no text in `documents`, or
    a document repeated within one query's ranking.

        >>> reranking_tasks({"q1": [("d1", 3.0)]}, {"q1": "cats"}, {"d1": "cats sleep"})
        [{'query_id': 'q1', 'query': 'cats', 'doc_ids': ['d1'], 'texts': ['cats sleep'], 'ranks': [1], 'scores': [3.0]}]
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    text_of: Callable[[str], str | None] = documents if callable(documents) else documents.get
    wanted = list(run) if query_ids is None else list(query_ids)
    missing_q = [q for q in wanted if q not in queries]
    if missing_q:
        shown = ", ".join(repr(q) for q in missing_q[:5])
        raise ValueError(f"{len(missing_q)} query ids of the run have no query text: {shown}")
    rows: list[dict[str, Any]] = []
    unknown: list[str] = []
    for qid in wanted:
        ranking = list(run.get(qid, ()))[:depth]
        doc_ids = [str(d) for d, _ in ranking]
        if len(set(doc_ids)) != len(doc_ids):
            dup = next(d for i, d in enumerate(doc_ids) if d in doc_ids[:i])
            raise ValueError(f"document {dup!r} is ranked twice for query {qid!r}")
        texts = []
        for doc_id in doc_ids:
            text = text_of(doc_id)
            if text is None:
                unknown.append(doc_id)
            texts.append(text or "")
        rows.append({"query_id": qid, "query": queries[qid], "doc_ids": doc_ids, "texts": texts,
                     "ranks": list(range(1, len(doc_ids) + 1)), "scores": [float(s) for _, s in ranking]})
    if unknown:
        shown = ", ".join(repr(d) for d in sorted(set(unknown))[:5])
        raise ValueError(f"{len(set(unknown))} ranked document ids are not in the corpus: {shown}")
    return rows


class RunScorer:
    """Reranks batches of :func:`reranking_tasks` rows with one cross-encoder, loaded once (a Ray Data actor
    holds one): ``__call__(batch)`` takes a batch of rows (a :class:`pyarrow.Table` or a dict of columns) and
    returns one row per (query, candidate): ``{"query_id", "doc_id", "rank", "score", "logit"}``, each query's
    candidates in reranked order (``rank`` 1 first).

        >>> scorer = RunScorer("path/to/cross-encoder")
        >>> out = scorer({"query_id": ["q1"], "query": ["cats"], "doc_ids": [["d1", "d2"]],
        ...               "texts": [["dogs bark", "cats sleep"]], "ranks": [[1, 2]], "scores": [[2.0, 1.0]]})
        >>> list(out["doc_id"]), list(out["rank"])
        (['d2', 'd1'], [1, 2])

    Args:
        model: a cross-encoder directory or Hub id; None: the default reranker
            (:func:`funnelrank.rerank.default_model.default_reranker_dir`).
        max_length: pair token budget (default: the model's limit, at most 512).
        intra_op_threads: ONNX Runtime threads (default: ONNX Runtime's choice).
    """

    def __init__(
        self, model: str | os.PathLike[str] | None = None, *, max_length: int | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        from funnelrank.rerank import CrossEncoder, Reranker
        from funnelrank.rerank.default_model import default_reranker_dir

        self.model_name = str(model if model is not None else default_reranker_dir())
        self.cross_encoder = CrossEncoder.from_pretrained(self.model_name, max_length=max_length,
                                                          intra_op_threads=intra_op_threads)
        self.reranker = Reranker(self.cross_encoder, floor=None, top_k=None, stage1_weight=0.0)

    def rerank(self, query: str, doc_ids: Sequence[str], texts: Sequence[str], ranks: Sequence[int],
               scores: Sequence[float]) -> list[tuple[str, float, float]]:
        """One query's candidates reranked: ``[(doc_id, score, logit), ...]``, best first."""
        cands = [Candidate(str(d), str(t), int(r), float(s)) for d, t, r, s in zip(doc_ids, texts, ranks, scores)]
        if not cands:
            return []
        result = self.reranker.rerank(query, cands, top_k=None, floor=None, stage1_weight=0.0)
        return [(item.id, item.score, item.logit) for item in result.items]

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        cols = _columns(batch, ("query_id", "query", "doc_ids", "texts", "ranks", "scores"))
        out: dict[str, list[Any]] = {"query_id": [], "doc_id": [], "rank": [], "score": [], "logit": []}
        for qid, query, doc_ids, texts, ranks, scores in zip(*cols):
            for rank, (doc_id, score, logit) in enumerate(self.rerank(query, doc_ids, texts, ranks, scores), 1):
                out["query_id"].append(qid)
                out["doc_id"].append(doc_id)
                out["rank"].append(rank)
                out["score"].append(score)
                out["logit"].append(logit)
        return {
            "query_id": np.asarray(out["query_id"], dtype=object),
            "doc_id": np.asarray(out["doc_id"], dtype=object),
            "rank": np.asarray(out["rank"], dtype=np.int64),
            "score": np.asarray(out["score"], dtype=np.float64),
            "logit": np.asarray(out["logit"], dtype=np.float64),
        }

    def close(self) -> None:
        """Stop the reranker's scheduler."""
        self.reranker.close()


def _columns(batch: Any, names: Sequence[str]) -> list[list[Any]]:
    """The named columns of a batch (a pyarrow Table, a pandas DataFrame or a dict of sequences) as lists."""
    if hasattr(batch, "column_names") and hasattr(batch, "column"):  # pyarrow.Table
        return [batch.column(n).to_pylist() for n in names]
    return [[x.tolist() if isinstance(x, np.ndarray) else x for x in batch[n]] for n in names]


def _collect(batches: Iterator[Mapping[str, Any]], order: Sequence[str]) -> Run:
    got: dict[str, list[tuple[int, str, float]]] = {}
    for batch in batches:
        qids, docs, ranks, scores = _columns(batch, ("query_id", "doc_id", "rank", "score"))
        for qid, doc_id, rank, score in zip(qids, docs, ranks, scores):
            got.setdefault(str(qid), []).append((int(rank), str(doc_id), float(score)))
    return {qid: [(d, s) for _, d, s in sorted(got.get(qid, []))] for qid in order}


def rerank_run(
    run: Mapping[str, Sequence[tuple[str, float]]],
    queries: Mapping[str, str],
    documents: Mapping[str, str] | Callable[[str], str | None],
    *,
    model: str | os.PathLike[str] | None = None,
    depth: int = DEFAULT_DEPTH,
    query_ids: Sequence[str] | None = None,
    use_ray: bool = False,
    concurrency: int = 2,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    max_length: int | None = None,
    intra_op_threads: int | None = None,
    progress: bool = False,
) -> Run:
    """The run's queries reranked: query id -> ``[(doc_id, rerank score), ...]``, best first, at most
    `depth` per query, every query of the run (or of `query_ids`) in order, one with no candidates empty.

    `queries` maps query id -> text, `documents` doc id -> text (or is a look-up function). With `use_ray`,
    the work runs as a Ray Data job on the connected cluster (``ray.init()`` first; a local one is started
    when none is), `concurrency` actors of 1 CPU each, `batch_queries` queries per batch, each actor with
    `intra_op_threads` ONNX Runtime threads (default 1); without it one :class:`RunScorer` scores the same
    batches here. ValueError for unknown query or document ids (see :func:`reranking_tasks`), a bad
    `concurrency` or `batch_queries`.
    """
    tasks = reranking_tasks(run, queries, documents, depth=depth, query_ids=query_ids)
    order = [t["query_id"] for t in tasks]
    for name, value in (("concurrency", concurrency), ("batch_queries", batch_queries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if progress:
        pairs = sum(len(t["doc_ids"]) for t in tasks)
        where = f"Ray Data, {concurrency} actors" if use_ray else "in-process"
        print(f"reranking {len(tasks)} queries, {pairs} pairs ({where})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if not tasks:
        return {}
    if use_ray:
        out = _collect(_ray_batches(tasks, model, concurrency, batch_queries, max_length, intra_op_threads), order)
    else:
        scorer = RunScorer(model, max_length=max_length, intra_op_threads=intra_op_threads)
        try:
            batches = (scorer(_as_columns(tasks[i:i + batch_queries])) for i in range(0, len(tasks), batch_queries))
            out = _collect(batches, order)
        finally:
            scorer.close()
    if progress:
        print(f"reranked {len(tasks)} queries in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    return out


def _as_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}


def _ray_batches(
    tasks: list[dict[str, Any]], model: str | os.PathLike[str] | None, concurrency: int, batch_queries: int,
    max_length: int | None, intra_op_threads: int | None,
) -> Iterator[Mapping[str, Any]]:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError("batch reranking on Ray needs ray[data]: pip install 'funnelrank[ray]'") from exc
    if model is None:
        from funnelrank.rerank.default_model import default_reranker_dir

        model = default_reranker_dir()  # resolved here, so every actor loads the same model
    if not ray.is_initialized():
        ray.init()
    ds = ray.data.from_items(tasks)
    scored = ds.map_batches(
        RunScorer,
        fn_constructor_kwargs={"model": str(Path(model)) if os.path.exists(model) else str(model),
                               "max_length": max_length,
                               "intra_op_threads": 1 if intra_op_threads is None else intra_op_threads},
        batch_size=batch_queries,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=1,
    )
    yield from scored.iter_batches(batch_format="numpy", batch_size=None)


def write_trec_run(path: str | os.PathLike[str], run: Mapping[str, Sequence[tuple[str, float]]],
                   tag: str = "funnelrank") -> int:
    """Write `run` as a TREC run file, atomically (:func:`funnelrank.files.atomic_writer`): one line
    ``query_id Q0 doc_id rank score tag`` per entry, ranks from 1 in the given order, scores at full precision
    (what :func:`funnelrank.eval.beir.load_run` and ``funnelrank eval --run-file`` read). Returns the
    lines written. ValueError for ids or a tag holding whitespace (they would break the columns).

        >>> write_trec_run("reranked.trec", {"q1": [("d2", 0.98), ("d1", 0.01)]})
        2

    gives ``q1 Q0 d2 1 0.98 funnelrank`` and ``q1 Q0 d1 2 0.01 funnelrank``.
    """
    from funnelrank.files import atomic_writer

    def check(value: str, what: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{what} {value!r} is empty or holds whitespace; a TREC run file cannot hold it")
        return value

    check(tag, "tag")
    lines = []
    for qid, ranking in run.items():
        check(qid, "query id")
        for rank, (doc_id, score) in enumerate(ranking, 1):
            lines.append(f"{qid} Q0 {check(doc_id, 'document id')} {rank} {float(score)!r} {tag}\n")
    with atomic_writer(path) as fh:
        fh.write("".join(lines).encode("utf-8"))
    return len(lines)
