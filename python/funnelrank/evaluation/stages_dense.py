"""The `dense` and `hybrid` stages.

``dense``: embed the corpus (``title + " " + text``) with the bi-encoder (default all-MiniLM-L6-v2, see
:mod:`funnelrank.embedding.defaults`), build the core's :class:`~funnelrank.HNSWIndex` (cosine), and answer
each query by embedding it and searching the graph. Corpus vectors are cached on disk keyed by model and
corpus content (:func:`funnelrank.embedding.embed_corpus`), so repeated evaluations skip the embedding.
Reported separately: ``embed_seconds`` (corpus embedding, ~0 on a cache hit, ``embed_cached`` says which),
``index_seconds`` (HNSW build only), and query throughput/latency, which *includes embedding the query*,
one query at a time (``"qps_threads": 1``).

``hybrid``: fuse, per query, the ``bm25`` and ``dense`` rankings of the same run (computed once, not
again) with reciprocal-rank fusion (``--rrf-k`` 60, ``--hybrid-weights`` bm25,dense) or a min-max
convex combination (``--hybrid-fusion convex``). Each input ranking is that stage's top ``--depth``; to
fuse deeper lists raise ``--depth``. The hybrid latency of a query is its bm25 latency + its dense latency +
the fusion time (the retrievers run one after the other), and its ``query_seconds`` is the bm25 and dense
query loops' wall time plus all fusion time, so its QPS is that of the whole hybrid query;
``fusion_ms_p50`` / ``fusion_ms_p99`` give the fusion alone.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from funnelrank.evaluation.harness import (Rankings, StageContext, StageOutput, index_in_chunks, register_stage,
                                           time_queries)


def _dense_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--dense-model", default=None,
                       help="sentence-transformers-style model directory with an ONNX file "
                            "(default: all-MiniLM-L6-v2 at --dense-precision)")
    group.add_argument("--dense-precision", choices=("fp32", "int8"), default=None,
                       help="precision of the default model (default: funnelrank.embedding.DEFAULT_PRECISION)")
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


def load_embedder(ctx: StageContext) -> Any:
    """The embedder the dense stage uses under `ctx`'s options."""
    from funnelrank.embedding import Embedder

    threads = int(ctx.option("embed_threads"))
    model = ctx.option("dense_model")
    if model:
        if ctx.option("dense_precision"):
            raise ValueError("--dense-precision applies to the default model only, not to --dense-model")
        return Embedder(model, threads=threads)
    return Embedder.default(ctx.option("dense_precision"), threads=threads)


@register_stage("dense", help="bi-encoder embeddings in an HNSW graph (C++ core)", add_options=_dense_options)
def dense_stage(ctx: StageContext) -> StageOutput:
    """Embed the corpus (cached), index it with HNSW and retrieve the top ``--depth`` per query."""
    from funnelrank import HNSWIndex
    from funnelrank.embedding import embed_corpus

    embedder = load_embedder(ctx)
    ids, texts = ctx.dataset.doc_ids(), ctx.dataset.doc_texts()
    start = time.perf_counter()
    vectors, cached = embed_corpus(embedder, ids, texts, label=ctx.dataset.name,
                                   use_cache=not ctx.option("no_embedding_cache"), show_progress=ctx.progress)
    embed_seconds = time.perf_counter() - start
    ctx.log(f"[dense] {len(ids)} documents embedded by {embedder.name} in {embed_seconds:.1f}s"
            f"{' (cached)' if cached else ''}")

    index = HNSWIndex(embedder.dim, metric="cosine", M=int(ctx.option("hnsw_m")),
                      ef_construction=int(ctx.option("hnsw_ef_construction")))
    index_seconds = index_in_chunks(ctx, index.add, ids, vectors, "hnsw index")

    depth = ctx.depth
    ef = ctx.option("hnsw_ef")
    ef = max(128, depth) if ef is None else int(ef)

    def search(text: str) -> tuple[list[str], np.ndarray]:
        hits: tuple[list[str], np.ndarray] = index.search(embedder.embed_query(text), k=depth, ef=ef)
        return hits

    embedder.embed_query("warm-up")  # the first ONNX run allocates; keep it out of the latencies
    rankings, query_seconds, latencies = time_queries(ctx, search, "dense search")
    return StageOutput(
        rankings=rankings,
        query_seconds=query_seconds,
        index_seconds=index_seconds,
        latencies_ms=latencies,
        extra={
            "qps_threads": 1,
            "model": embedder.name,
            "embed_seconds": round(embed_seconds, 3),
            "embed_cached": cached,
            "hnsw": {"M": index.M, "ef_construction": index.ef_construction, "ef": ef},
        },
    )


def _weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--hybrid-weights must be two numbers bm25,dense, got {text!r}") from None
    if len(weights) != 2 or any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--hybrid-weights must be two non-negative numbers bm25,dense, got {text!r}")
    return weights


def fuse(bm25: Rankings, dense: Rankings, *, method: str, weights: list[float], rrf_k: float, depth: int,
         ) -> tuple[Rankings, list[float]]:
    """Fuse two stages' rankings query by query; returns the fused rankings and per-query fusion ms."""
    from funnelrank import convex_fusion, rrf

    fused: Rankings = {}
    times: list[float] = []
    for qid in dict.fromkeys([*bm25, *dense]):
        inputs = []
        for ranking in (bm25.get(qid, []), dense.get(qid, [])):
            inputs.append(([d for d, _ in ranking], np.fromiter((s for _, s in ranking), np.float32, len(ranking))))
        t0 = time.perf_counter()
        if method == "rrf":
            result = rrf(inputs, k=rrf_k, weights=weights, top_k=depth)
        else:
            result = convex_fusion(inputs, weights=weights, normalization="minmax", top_k=depth)
        times.append((time.perf_counter() - t0) * 1000.0)
        fused[qid] = [(str(d), float(s)) for d, s in zip(result.ids, result.scores)]
    return fused, times


@register_stage("hybrid", help="fusion of the bm25 and dense stages (RRF by default)", add_options=_hybrid_options)
def hybrid_stage(ctx: StageContext) -> StageOutput:
    """Fuse this run's ``bm25`` and ``dense`` rankings per query."""
    bm25, dense = ctx.stage("bm25"), ctx.stage("dense")
    method = str(ctx.option("hybrid_fusion"))
    weights = _weights(ctx.option("hybrid_weights"))
    rrf_k = float(ctx.option("rrf_k"))
    if method == "rrf" and not rrf_k > 0:
        raise ValueError(f"--rrf-k must be > 0, got {rrf_k}")
    fused, fusion_ms = fuse(bm25.rankings, dense.rankings, method=method, weights=weights, rrf_k=rrf_k,
                            depth=ctx.depth)
    latencies: list[float] | None = None
    query_seconds: float | None = None
    if bm25.latencies_ms and dense.latencies_ms:  # both timed per query, in their rankings' order
        b_ms = dict(zip(bm25.rankings, bm25.latencies_ms))
        d_ms = dict(zip(dense.rankings, dense.latencies_ms))
        latencies = [b_ms.get(q, 0.0) + d_ms.get(q, 0.0) + f for q, f in zip(fused, fusion_ms)]
    if bm25.query_seconds is not None and dense.query_seconds is not None:  # the two query loops + fusion
        query_seconds = bm25.query_seconds + dense.query_seconds + sum(fusion_ms) / 1000.0
    fusion = np.asarray(fusion_ms, dtype=np.float64)
    extra: dict[str, Any] = {
        "fusion": method,
        "weights": weights,
        "fused_depth": ctx.depth,
        "fusion_ms_p50": round(float(np.percentile(fusion, 50)), 4) if fusion.size else None,
        "fusion_ms_p99": round(float(np.percentile(fusion, 99)), 4) if fusion.size else None,
        "latency": "bm25 + dense + fusion per query",
    }
    if method == "rrf":
        extra["rrf_k"] = rrf_k
    return StageOutput(rankings=fused, query_seconds=query_seconds, latencies_ms=latencies, extra=extra)
