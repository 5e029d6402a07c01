"""`funnelrank demo`: the README's main job. Offline, it builds (or reuses from its cache) the embedded default
corpus, the documentation of the installed Python standard library (see :mod:`funnelrank.cli.demo_corpus`),
indexes it in a :class:`funnelrank.Collection` and answers a few queries through :class:`funnelrank.Pipeline`
(the same retriever -> reranker -> floor path as every other entry point), printing the top results with
scores and timings.

The output is built from sections, one per stage, printed for every query by :func:`answer`: BM25's order,
then (when a cross-encoder is available: ``--model DIR`` or the default reranker) the reranked order of BM25's
top ``--candidates`` with each passage's rerank score and BM25 rank, cut by the relevance floor. Finally an
off-topic query shows the floor refusing to answer ("no evidence") instead of returning the least-bad junk."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from funnelrank.cli.demo_corpus import Passage, load_demo_corpus

if TYPE_CHECKING:
    from funnelrank.pipeline import Pipeline, Result

DEFAULT_QUERIES: tuple[str, ...] = (
    "parse command line arguments and options",
    "serialize a Python object to a JSON formatted string",
    "run a shell command in a subprocess and capture its output",
    "compress data with gzip",
)
OFF_TOPIC_QUERY = "a good recipe for chocolate chip cookies"
"""Shown after the others: nothing in the standard library's documentation answers it."""
RERANK_CANDIDATES = 30
"""BM25 candidates the demo reranks per query (small, so the demo stays quick on a laptop CPU)."""
SNIPPET_CHARS = 90


@dataclass
class DemoState:
    """What the sections share: the corpus (by id, for display) and the pipeline over it."""

    passages: dict[str, Passage]
    pipeline: Pipeline
    """BM25 retriever over the passages (title + text), the reranker (or None) and its floor."""


def build_pipeline(passages: list[Passage], reranker: Any | None, *, top_k: int, candidates: int,
                   floor: float | None, progress: bool) -> tuple[Pipeline, float]:
    """A :class:`funnelrank.Pipeline` over the passages (BM25 over title + text, `reranker` as stage 2);
    returns (pipeline, indexing seconds)."""
    from funnelrank.pipeline import DEFAULT, Pipeline
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    start = time.perf_counter()
    collection.add([p.id for p in passages], [f"{p.title} {p.text}" for p in passages], show_progress=progress)
    seconds = time.perf_counter() - start
    pipe = Pipeline(collection, "bm25", reranker=reranker, top_k=top_k, candidates=candidates,
                    floor=DEFAULT if floor is None else floor)
    return pipe, seconds


def _print_result(state: DemoState, rank: int, result: Result, label: str, out: TextIO) -> None:
    text = state.passages[result.id].text
    snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3] + "..."
    print(f"    {rank}. {result.score:7.3f}  {label}{result.id}", file=out)
    print(f"                {snippet}", file=out)


def print_bm25(state: DemoState, query: str, out: TextIO) -> None:
    """A section: BM25's top-k (stage 1 alone) with scores and the search time."""
    resp = state.pipeline.search(query, rerank=False)
    print(f"  BM25 top {state.pipeline.top_k} ({resp.timings_ms.get('bm25', 0.0):.2f} ms)", file=out)
    if not resp.results:
        print("     (no results)", file=out)
    for rank, result in enumerate(resp.results, start=1):
        _print_result(state, rank, result, "", out)


def print_reranked(state: DemoState, query: str, out: TextIO) -> None:
    """A section: the cross-encoder's order of BM25's top `candidates`, with rerank score and BM25 rank,
    cut by the relevance floor; "no evidence" when nothing clears it."""
    pipe = state.pipeline
    resp = pipe.search(query)
    ms = resp.timings_ms.get("rerank", 0.0)
    print(f"  Reranked: cross-encoder over BM25's top {resp.candidates}, floor {pipe.floor:.2f} ({ms:.0f} ms)",
          file=out)
    if resp.no_evidence:
        best = "none" if resp.max_score is None else f"{resp.max_score:.3f}"
        print(f"     no evidence: no passage clears the floor (best score {best}); answer \"I don't know\"", file=out)
        return
    for rank, result in enumerate(resp.results, start=1):
        hit = result.stage1.get("bm25")
        _print_result(state, rank, result, f"(BM25 #{'-' if hit is None else hit.rank:<3}) ", out)


def answer(state: DemoState, query: str, out: TextIO, heading: str = "Query") -> None:
    """Print every section for one query: BM25 order (stage 1), then the reranked order with the relevance
    floor (stage 2) when a reranker is loaded."""
    print(f'\n{heading}: "{query}"', file=out)
    print_bm25(state, query, out)
    if state.pipeline.reranker is not None:
        print_reranked(state, query, out)


def load_reranker(args: argparse.Namespace, out: TextIO) -> Any | None:
    """The cross-encoder named by --model, else the default one; None (saying why) when there is none."""
    from funnelrank.rerank import Reranker

    if args.no_rerank:
        return None
    try:
        return Reranker(args.model)
    except FileNotFoundError as exc:
        if args.model is not None:
            raise
        print(f"Reranking skipped: {exc}", file=out)
        return None


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank demo`."""
    out = sys.stdout
    progress = not args.quiet
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.candidates < 1:
        raise ValueError(f"--candidates must be >= 1, got {args.candidates}")
    start = time.perf_counter()
    passages, cache_file, built = load_demo_corpus(rebuild=args.rebuild_corpus)
    corpus_s = time.perf_counter() - start
    how = f"built in {corpus_s:.1f} s and cached" if built else f"loaded in {corpus_s:.2f} s from cache"
    print(
        f"Corpus: the installed Python {sys.version_info.major}.{sys.version_info.minor} standard library's "
        f"documentation, {len(passages)} passages ({how}: {cache_file})",
        file=out,
    )
    reranker = load_reranker(args, out)
    try:
        pipe, index_s = build_pipeline(passages, reranker, top_k=args.top_k, candidates=args.candidates,
                                       floor=args.floor, progress=progress)
        print(f"Indexed {len(passages)} passages with BM25 in {index_s:.2f} s", file=out)
        state = DemoState(passages={p.id: p for p in passages}, pipeline=pipe)
        for query in args.query or DEFAULT_QUERIES:
            answer(state, query, out)
        if reranker is not None and not args.query:
            answer(state, OFF_TOPIC_QUERY, out, heading="Off-topic query (the floor should refuse it)")
    finally:
        if reranker is not None:
            reranker.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `demo` sub-command."""
    p = sub.add_parser(
        "demo",
        help="index the embedded default corpus (Python stdlib docs) and answer a few queries",
        description="Offline demo: builds a corpus from the installed Python standard library's docstrings "
        "(cached under ~/.cache/funnelrank/demo or $FUNNELRANK_CACHE/demo), indexes it and answers queries.",
    )
    p.add_argument("--query", "-q", action="append", help="a query to answer (repeatable; default: a built-in set)")
    p.add_argument("--top-k", "-k", type=int, default=5, help="results shown per query (default 5)")
    p.add_argument("--rebuild-corpus", action="store_true", help="rebuild the corpus instead of using the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--model", metavar="DIR", default=None, help="cross-encoder directory (default: the shipped one)")
    p.add_argument("--candidates", type=int, default=RERANK_CANDIDATES,
                   help=f"BM25 candidates reranked per query (default {RERANK_CANDIDATES})")
    p.add_argument("--floor", type=float, default=None, help="relevance floor in [0, 1] (default: the model's)")
    p.add_argument("--no-rerank", action="store_true", help="BM25 only")
    p.set_defaults(func=run)
