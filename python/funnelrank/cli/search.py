"""`funnelrank search DIR "query"`: search a collection directory, print a table or JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from typing import Any

from funnelrank.pipeline import RETRIEVERS, SearchResponse
from funnelrank.rerank.fusion import FUSION_METHODS
from funnelrank.rerank.policy import DEFAULT_DEPTH


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `search` sub-command."""
    p = sub.add_parser("search", help="search a collection directory built by `funnelrank index`")
    p.add_argument("collection", metavar="DIR")
    p.add_argument("query")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--filter", metavar="JSON", help='metadata filter, e.g. \'{"year": {"gte": 2020}}\'')
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=DEFAULT_DEPTH, help=f"stage-1 depth handed to the reranker (default {DEFAULT_DEPTH})")
    p.add_argument("--floor", type=float, default=None, help="relevance floor in [0, 1] (default: the model's)")
    p.add_argument("--retriever", choices=RETRIEVERS, default=None, help="default: hybrid if the collection is dense")
    p.add_argument("--model", metavar="PATH", default=None, help="cross-encoder model directory (default: shipped)")
    p.add_argument("--no-rerank", action="store_true", help="stage 1 only")
    p.add_argument("--stage1-weight", type=float, default=None, metavar="W",
                   help="rerank fusion weight in [0, 1] (0 = cross-encoder order alone; default: the tuned one)")
    p.add_argument("--fusion", choices=FUSION_METHODS, default=None,
                   help="rerank fusion method (default: the tuned one)")
    p.set_defaults(func=run)


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    """The --filter JSON, checked before the collection is loaded (ValueError: exit status 2 with the message)."""
    if raw is None:
        return None
    from funnelrank.retrieve.filters import parse_filter

    return parse_filter(raw, what="--filter")


def format_table(response: SearchResponse, reranked: bool) -> str:
    """A plain-text table of a search response (what `funnelrank search` prints)."""
    width = max(60, shutil.get_terminal_size((100, 20)).columns)
    lines = [f'query: "{response.query}"  ({response.candidates} candidates, '
             + ", ".join(f"{k} {v:.1f} ms" for k, v in response.timings_ms.items()) + ")"]
    if response.no_evidence:
        lines.append("no evidence: nothing cleared the relevance floor" if reranked else "no results")
        return "\n".join(lines)
    head = f"{'#':>3}  {'score':>7}  {'stage-1':<16} id / text"
    lines += [head, "-" * min(width, 100)]
    for i, r in enumerate(response.results, start=1):
        s1 = " ".join(f"{k}:{v.rank}" for k, v in r.stage1.items() if v is not None)
        lines.append(f"{i:>3}  {r.score:>7.3f}  {s1:<16} {r.id}")
        snippet = textwrap.shorten(" ".join(r.text.split()), width=max(40, width - 30), placeholder=" ...")
        lines.append(" " * 30 + snippet)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load the collection, build the pipeline, search, print."""
    from funnelrank.pipeline import DEFAULT, Pipeline
    from funnelrank.store.collection import Collection

    flt = _parse_filter(args.filter)
    collection = Collection.load(args.collection)
    reranker: Any = None if args.no_rerank else (args.model or DEFAULT)
    pipe = Pipeline(
        collection,
        args.retriever,
        candidates=args.candidates,
        reranker=reranker,
        top_k=args.top_k,
        floor=DEFAULT if args.floor is None else args.floor,
        stage1_weight=DEFAULT if args.stage1_weight is None else args.stage1_weight,
        fusion=DEFAULT if args.fusion is None else args.fusion,
    )
    with pipe:
        response = pipe.search(args.query, filter=flt)
    if args.json:
        print(json.dumps(response.to_dict(), ensure_ascii=False))
    else:
        print(format_table(response, reranked=pipe.reranker is not None))
    return 0
