"""The `bm25` stage: the core's BM25 index (Lucene BM25, English analyzer) over title + text.

Throughput is measured conservatively: one query at a time on one thread with ``BM25Index.search``
(``"qps_threads": 1`` in the report), analysis of the query text included; index build time is reported
separately as ``index_seconds``.
"""

from __future__ import annotations

import argparse

from funnelrank.evaluation.harness import StageContext, StageOutput, index_in_chunks, register_stage, time_queries


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--k1", type=float, default=1.2, help="BM25 term-frequency saturation (default 1.2)")
    group.add_argument("--b", type=float, default=0.75, help="BM25 length normalisation (default 0.75)")


@register_stage("bm25", help="BM25 over the corpus (C++ core)", add_options=_add_options)
def bm25_stage(ctx: StageContext) -> StageOutput:
    """Index the corpus with BM25 and retrieve the top ``--depth`` documents per query."""
    from funnelrank import Analyzer, BM25Index

    ids, texts = ctx.dataset.doc_ids(), ctx.dataset.doc_texts()
    k1, b = float(ctx.option("k1")), float(ctx.option("b"))
    index = BM25Index(k1=k1, b=b, analyzer=Analyzer())
    index_seconds = index_in_chunks(ctx, index.add, ids, texts, "bm25 index")
    depth = ctx.depth
    rankings, query_seconds, latencies = time_queries(ctx, lambda q: index.search(q, depth), "bm25 search")
    return StageOutput(
        rankings=rankings,
        query_seconds=query_seconds,
        index_seconds=index_seconds,
        latencies_ms=latencies,
        extra={"qps_threads": 1, "k1": k1, "b": b},
    )
