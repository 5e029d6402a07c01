"""The `dense` and `hybrid` stages: :class:`funnelrank.Pipeline` with the dense or the hybrid retriever and
no reranker, over the run's collection (:meth:`StageContext.collection`).

``dense``: the corpus (``title + " " + text``) embedded with the bi-encoder (default all-MiniLM-L6-v2, see
:mod:`funnelrank.embed.default_model`) in the core's HNSW graph (cosine); each query is embedded and the graph
searched. Corpus vectors are cached on disk keyed by model and corpus content
(:func:`funnelrank.embed.embed_corpus`), so repeated evaluations skip the embedding. Reported separately:
``embed_seconds`` (corpus embedding, ~0 on a cache hit, ``embed_cached`` says which), ``index_seconds`` (the
collection build: BM25 and HNSW), and query throughput/latency, which *includes embedding the query*, one
query at a time (``"qps_threads": 1``).

``hybrid``: the hybrid retriever, BM25's and dense's top ``--depth`` fused per query with reciprocal-rank
fusion (``--rrf-k`` 60, ``--hybrid-weights`` bm25,dense) or a min-max convex combination (``--hybrid-fusion
convex``), as :class:`funnelrank.Pipeline` runs it: its latency is the whole hybrid query (both searches, the
query embedding and the fusion).
"""

from __future__ import annotations

import argparse
from typing import Any

from funnelrank.eval.harness import StageContext, StageOutput, pipeline_output, register_stage


def _dense_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--dense-model", default=None,
                       help="sentence-transformers-style model directory with an ONNX file "
                            "(default: all-MiniLM-L6-v2 at --dense-precision)")
    group.add_argument("--dense-precision", choices=("fp32", "int8"), default=None,
                       help="precision of the default model (default: funnelrank.embed.DEFAULT_PRECISION)")
    group.add_argument("--embed-threads", type=int, default=0,
                       help="ONNX Runtime threads for embedding (default 0 = one per core)")
    group.add_argument("--no-embedding-cache", action="store_true",
                       help="embed the corpus even if cached embeddings exist (and do not write them)")
    group.add_argument("--hnsw-m", type=int, default=16, help="HNSW graph degree M (default 16)")
    group.add_argument("--hnsw-ef-construction", type=int, default=200, help="HNSW ef_construction (default 200)")
    group.add_argument("--hnsw-ef", type=int, default=None,
                       help="HNSW ef at query time (default: max(128, --depth))")


def _hybrid_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--hybrid-fusion", choices=("rrf", "convex"), default="rrf",
                       help="fusion of bm25 and dense: reciprocal-rank (default) or min-max convex")
    group.add_argument("--rrf-k", type=float, default=60.0, help="RRF constant k (default 60)")
    group.add_argument("--hybrid-weights", default="1,1",
                       help="fusion weights bm25,dense (default 1,1)")


@register_stage("dense", help="bi-encoder embeddings in an HNSW graph (C++ core)", add_options=_dense_options)
def dense_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query by the bi-encoder's cosine similarity (HNSW)."""
    from funnelrank.pipeline import Pipeline

    pipe = Pipeline(ctx.retriever("dense"), reranker=None, candidates=ctx.depth, top_k=ctx.depth)
    info = ctx.collection_info
    extra = {"model": info["model"], "embed_seconds": round(info["embed_seconds"], 3),
             "embed_cached": info["embed_cached"], "hnsw": info["hnsw"]}
    # The first ONNX run allocates; keep it out of the latencies. (A dense retriever has a collection.)
    pipe.collection.embed_query("warm-up")  # type: ignore[union-attr]
    return pipeline_output(ctx, pipe, "dense search", extra, index_seconds=info.get("index_seconds"))


@register_stage("hybrid", help="fusion of bm25 and dense (RRF by default)", add_options=_hybrid_options)
def hybrid_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query of the hybrid retriever (bm25 and dense fused)."""
    from funnelrank.pipeline import Pipeline

    retriever = ctx.retriever("hybrid")
    pipe = Pipeline(retriever, reranker=None, candidates=ctx.depth, top_k=ctx.depth)
    extra: dict[str, Any] = {"fusion": retriever.method, "weights": retriever.weights, "fused_depth": ctx.depth,
                             "latency": "bm25 + query embedding + dense + fusion per query"}
    if retriever.method == "rrf":
        extra["rrf_k"] = retriever.rrf_k
    pipe.collection.embed_query("warm-up")  # type: ignore[union-attr]  # a dense retriever has a collection
    return pipeline_output(ctx, pipe, "hybrid search", extra)
