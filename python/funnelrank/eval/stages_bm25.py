"""The `bm25` stage: :class:`funnelrank.Pipeline` with the BM25 retriever and no reranker, over the run's
collection (:meth:`StageContext.collection`: title + text, Lucene BM25 with ``--k1``/``--b``, English analyzer).

Throughput is measured conservatively: one query at a time on one thread through ``Pipeline.search``
(``"qps_threads": 1`` in the report), analysis of the query text and building the results included; the
collection build is reported separately as ``index_seconds``.
"""

from __future__ import annotations

import argparse

from funnelrank.eval.harness import StageContext, StageOutput, pipeline_output, register_stage


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--k1", type=float, default=1.2, help="BM25 term-frequency saturation (default 1.2)")
    group.add_argument("--b", type=float, default=0.75, help="BM25 length normalisation (default 0.75)")


@register_stage("bm25", help="BM25 over the corpus (C++ core)", add_options=_add_options)
def bm25_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query by BM25."""
    from funnelrank.pipeline import Pipeline

    pipe = Pipeline(ctx.retriever("bm25"), reranker=None, candidates=ctx.depth, top_k=ctx.depth)
    k1, b = float(ctx.option("k1")), float(ctx.option("b"))
    return pipeline_output(ctx, pipe, "bm25 search", {"k1": k1, "b": b},
                           index_seconds=ctx.collection_info.get("index_seconds"))
