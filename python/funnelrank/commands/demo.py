"""`funnelrank demo`: the README's main job. Offline, it builds (or reuses from its cache) the embedded default
corpus, the documentation of the installed Python standard library (see :mod:`funnelrank.demo_corpus`),
indexes it with BM25 and answers a few queries, printing the top results with scores and timings.

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

from funnelrank.demo_corpus import Passage, load_demo_corpus

if TYPE_CHECKING:
    from funnelrank import BM25Index

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
INDEX_CHUNK = 500  # passages per BM25Index.add call (progress bar granularity)
SNIPPET_CHARS = 90


@dataclass(frozen=True)
class Hit:
    """One result line: the passage, its score and rank."""

    rank: int
    score: float
    passage: Passage


@dataclass
class DemoState:
    """What the sections share: the corpus (by id) and the indexes built for it."""

    passages: dict[str, Passage]
    bm25: BM25Index
    top_k: int
    reranker: Any | None = None
    """A :class:`funnelrank.Reranker` (with its floor), or None when no cross-encoder is available."""
    candidates: int = RERANK_CANDIDATES


def build_bm25(passages: list[Passage], progress: bool) -> tuple[BM25Index, float]:
    """Index the passages (title + text) with BM25 and default analyzer; returns (index, seconds)."""
    from tqdm import tqdm

    from funnelrank import Analyzer, BM25Index

    index = BM25Index(k1=1.2, b=0.75, analyzer=Analyzer())
    start = time.perf_counter()
    with tqdm(total=len(passages), desc="indexing (BM25)", unit="passage", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for i in range(0, len(passages), INDEX_CHUNK):
            chunk = passages[i : i + INDEX_CHUNK]
            index.add([p.id for p in chunk], [f"{p.title} {p.text}" for p in chunk])
            bar.update(len(chunk))
    return index, time.perf_counter() - start


def bm25_hits(state: DemoState, query: str) -> tuple[list[Hit], float]:
    """BM25's top-k for `query` and the milliseconds the search took."""
    start = time.perf_counter()
    ids, scores = state.bm25.search(query, state.top_k)
    ms = (time.perf_counter() - start) * 1000.0
    hits = [Hit(i + 1, float(s), state.passages[d]) for i, (d, s) in enumerate(zip(ids, scores))]
    return hits, ms


def print_hits(heading: str, hits: list[Hit], out: TextIO) -> None:
    """A section: heading, then per hit a line with rank, score and passage id, and a snippet line."""
    print(f"  {heading}", file=out)
    if not hits:
        print("     (no results)", file=out)
    for hit in hits:
        text = hit.passage.text
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3] + "..."
        print(f"    {hit.rank}. {hit.score:7.3f}  {hit.passage.id}", file=out)
        print(f"                {snippet}", file=out)


def print_reranked(state: DemoState, query: str, out: TextIO) -> None:
    """A section: the cross-encoder's order of BM25's top `candidates`, with rerank score and BM25 rank,
    cut by the relevance floor; "no evidence" when nothing clears it."""
    assert state.reranker is not None
    ids, scores = state.bm25.search(query, state.candidates)
    candidates = [
        {"id": d, "text": f"{state.passages[d].title} {state.passages[d].text}", "rank": i + 1, "score": float(s)}
        for i, (d, s) in enumerate(zip(ids, scores))
    ]
    start = time.perf_counter()
    result = state.reranker.rerank(query, candidates, top_k=state.top_k)
    ms = (time.perf_counter() - start) * 1000.0
    floor = state.reranker.floor
    print(
        f"  Reranked: cross-encoder over BM25's top {len(candidates)}, floor {floor:.2f} ({ms:.0f} ms)"
        if floor is not None
        else f"  Reranked: cross-encoder over BM25's top {len(candidates)} ({ms:.0f} ms)",
        file=out,
    )
    if result.no_evidence:
        best = "none" if result.max_score is None else f"{result.max_score:.3f}"
        print(f"     no evidence: no passage clears the floor (best score {best}); answer \"I don't know\"", file=out)
        return
    for rank, item in enumerate(result.items, start=1):
        text = state.passages[item.id].text
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3] + "..."
        print(f"    {rank}. {item.score:7.3f}  (BM25 #{item.stage1_rank:<3}) {item.id}", file=out)
        print(f"                {snippet}", file=out)


def answer(state: DemoState, query: str, out: TextIO, heading: str = "Query") -> None:
    """Print every section for one query: BM25 order (stage 1), then the reranked order with the relevance
    floor (stage 2) when a reranker is loaded."""
    print(f'\n{heading}: "{query}"', file=out)
    hits, ms = bm25_hits(state, query)
    print_hits(f"BM25 top {state.top_k} ({ms:.2f} ms)", hits, out)
    if state.reranker is not None:
        print_reranked(state, query, out)


def load_reranker(args: argparse.Namespace, out: TextIO) -> Any | None:
    """The cross-encoder named by --model, else the default one; None (saying why) when there is none."""
    from funnelrank.pipeline import default_reranker
    from funnelrank.rerank import Reranker

    options: dict[str, Any] = {} if args.floor is None else {"floor": args.floor}
    if args.no_rerank:
        return None
    if args.model is not None:
        return Reranker(args.model, **options)
    try:
        return default_reranker(**options)
    except FileNotFoundError as exc:
        print(f"Reranking skipped: {exc}", file=out)
        return None


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank demo`."""
    out = sys.stdout
    progress = not args.quiet
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    start = time.perf_counter()
    passages, cache_file, built = load_demo_corpus(rebuild=args.rebuild_corpus)
    corpus_s = time.perf_counter() - start
    how = f"built in {corpus_s:.1f} s and cached" if built else f"loaded in {corpus_s:.2f} s from cache"
    print(
        f"Corpus: the installed Python {sys.version_info.major}.{sys.version_info.minor} standard library's "
        f"documentation, {len(passages)} passages ({how}: {cache_file})",
        file=out,
    )
    index, index_s = build_bm25(passages, progress)
    print(f"Indexed {len(passages)} passages with BM25 in {index_s:.2f} s", file=out)
    if args.candidates < 1:
        raise ValueError(f"--candidates must be >= 1, got {args.candidates}")
    reranker = load_reranker(args, out)
    state = DemoState(
        passages={p.id: p for p in passages}, bm25=index, top_k=args.top_k, reranker=reranker,
        candidates=args.candidates,
    )
    try:
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
