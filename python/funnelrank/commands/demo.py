"""`funnelrank demo`: the README's main job. Offline, it builds (or reuses from its cache) the embedded default
corpus, the documentation of the installed Python standard library (see :mod:`funnelrank.demo_corpus`),
indexes it with BM25 and answers a few queries, printing the top results with scores and timings.

The output is built from sections, one per stage, printed for every query by :func:`answer`; a later stage
(reranked order, the relevance floor) adds its own section there."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from funnelrank.demo_corpus import Passage, load_demo_corpus

if TYPE_CHECKING:
    from funnelrank import BM25Index

DEFAULT_QUERIES: tuple[str, ...] = (
    "parse command line arguments and options",
    "serialize a Python object to a JSON formatted string",
    "run a shell command in a subprocess and capture its output",
    "compress data with gzip",
)
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


def answer(state: DemoState, query: str, out: TextIO) -> None:
    """Print every section for one query: BM25 order (stage 1). Reranked order and the relevance floor
    (stage 2) are added here as further sections."""
    print(f'\nQuery: "{query}"', file=out)
    hits, ms = bm25_hits(state, query)
    print_hits(f"BM25 top {state.top_k} ({ms:.2f} ms)", hits, out)


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
    state = DemoState(passages={p.id: p for p in passages}, bm25=index, top_k=args.top_k)
    for query in args.query or DEFAULT_QUERIES:
        answer(state, query, out)
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
    p.set_defaults(func=run)
