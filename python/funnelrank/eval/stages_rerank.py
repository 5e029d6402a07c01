"""The `rerank` stage: the cross-encoder re-scores the top ``--rerank-depth`` candidates of ``--rerank-from``.

Each query runs through :class:`funnelrank.Pipeline`, the product's path: the ``--rerank-from`` retriever
(bm25, dense, hybrid over the run's collection, or the dataset's run) and a
:class:`~funnelrank.rerank.Reranker` (the shared batch scheduler) with no floor and no top-k cut, so the
ranking metrics judge the order alone. The order is a fusion of the
cross-encoder's order and the candidates' order (``--rerank-fusion rrf|convex``, ``--rerank-stage1-weight W``;
W = 0 is the cross-encoder order alone; see :mod:`funnelrank.rerank.fusion`). The default W is
:func:`~funnelrank.rerank.policy.default_stage1_weight`: the weight chosen on validation for
``--rerank-from hybrid``, 0 for other sources. Each ranked document carries its fused score then, else its
cross-encoder score. Queries run one at a time; the latency of each (stage 1 + tokenization + inference) is recorded.
The floor's promise at ``--rerank-floor`` (default: the reranker's default floor) and ``--rerank-top-k`` is
measured from the same pass (:mod:`funnelrank.eval.floor_promise`): the share of answerable queries
that keep a judged-relevant result, and of the same queries made unanswerable (judged-relevant candidates
removed) that are refused; ``"floor_promise"`` in the report. ``--rerank-traces FILE`` appends score traces with query ids, ready for
``funnelrank calibrate-floor FILE --qrels ...`` and ``funnelrank tune-fusion FILE --qrels ...`` (the
traces do not depend on the fusion weight). ``--rerank-variant int8|states|states-prefix`` loads a derived
variant of the model and ``--rerank-cascade FIRST[-LEN]@KEEP`` runs a two-pass cascade
(:mod:`funnelrank.rerank.cascade`), so the floor's promise and the latency of a variant that
``funnelrank optimize`` kept can be measured on the same path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from funnelrank.eval.floor_promise import floor_promise
from funnelrank.eval.harness import StageContext, StageOutput, pipeline_output, register_stage
from funnelrank.rerank.fusion import FUSION_METHODS
from funnelrank.rerank.policy import (
    DEFAULT_DEPTH,
    DEFAULT_FLOOR,
    DEFAULT_FUSION,
    DEFAULT_STAGE1_WEIGHT,
    default_stage1_weight,
)
from funnelrank.rerank.traces import group_traces, read_traces
from funnelrank.rerank.variants import LOAD_VARIANTS


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--rerank-model", default=None,
                       help="cross-encoder directory or Hugging Face id (default: the project's default reranker)")
    group.add_argument("--rerank-depth", type=int, default=DEFAULT_DEPTH, help=f"candidates reranked per query (default {DEFAULT_DEPTH})")
    group.add_argument("--rerank-max-length", type=int, default=None,
                       help="pair token budget (default: the model's limit, at most 512)")
    group.add_argument("--rerank-threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    group.add_argument("--rerank-traces", default=None, help="append score traces (JSONL) to this file")
    group.add_argument("--rerank-stage1-weight", type=float, default=None, metavar="W",
                       help="rerank fusion weight of the candidates' order against the cross-encoder's (see "
                       f"--rerank-fusion); 0 = cross-encoder order alone (default: {DEFAULT_STAGE1_WEIGHT} for "
                       "--rerank-from hybrid, chosen on validation queries with `make tune-fusion`; 0 for other "
                       "sources)")
    group.add_argument("--rerank-floor", type=float, default=None, metavar="F",
                       help="the relevance floor whose promise is measured (answerable queries keeping an answer, "
                       "unanswerable ones refused; see funnelrank.eval.floor_promise); default: the "
                       f"reranker's default floor, {DEFAULT_FLOOR}")
    group.add_argument("--rerank-top-k", type=int, default=10, metavar="K",
                       help="results returned when measuring the floor's promise (default 10, the pipeline's)")
    group.add_argument("--rerank-variant", choices=sorted(LOAD_VARIANTS), default="fp32",
                       help="load this derived variant of the model (see `funnelrank optimize`; default fp32)")
    group.add_argument("--rerank-cascade", default=None, metavar="FIRST[-LEN]@KEEP",
                       help="a two-pass cascade, e.g. int8-128@30: the FIRST variant at LEN tokens scores every "
                       "candidate, the model rescores its top KEEP (see funnelrank.rerank.cascade)")
    group.add_argument("--rerank-fusion", choices=FUSION_METHODS, default=DEFAULT_FUSION,
                       help="rerank fusion method: rrf, (1-W)/(60+rerank rank) + W/(60+candidate rank), or convex, "
                       "(1-W)*minmax(logit) + W*minmax(candidate score) (needs candidate scores) "
                       f"(default {DEFAULT_FUSION})")


@register_stage("rerank", help="cross-encoder reranking of --rerank-from's top candidates", add_options=_add_options)
def rerank_stage(ctx: StageContext) -> StageOutput:
    """Every judged query through :class:`funnelrank.Pipeline` with the ``--rerank-from`` retriever and the
    cross-encoder, no floor and no top-k cut: the ranking is the reranked (fused) order of all candidates."""
    from funnelrank.pipeline import Pipeline
    from funnelrank.rerank import CrossEncoder, Reranker
    from funnelrank.rerank.cascade import CascadeSpec
    from funnelrank.rerank.default_model import default_reranker_dir
    from funnelrank.rerank.fusion import check_fusion, check_stage1_weight

    depth = int(ctx.option("rerank_depth"))
    if depth < 1:
        raise ValueError(f"--rerank-depth must be >= 1, got {depth}")
    source = ctx.rerank_source()
    weight = ctx.option("rerank_stage1_weight")
    stage1_weight = check_stage1_weight(default_stage1_weight(source) if weight is None else weight)
    fusion = check_fusion(ctx.option("rerank_fusion"))
    retriever = ctx.retriever(source)
    model_name = ctx.option("rerank_model") or default_reranker_dir()
    start = time.perf_counter()
    variant = ctx.option("rerank_variant") or "fp32"
    if variant not in LOAD_VARIANTS:
        raise ValueError(f"--rerank-variant must be one of {sorted(LOAD_VARIANTS)}, got {variant!r}")
    cascade = CascadeSpec.parse(ctx.option("rerank_cascade")) if ctx.option("rerank_cascade") else None
    model = CrossEncoder.from_pretrained(
        model_name, max_length=ctx.option("rerank_max_length"), intra_op_threads=ctx.option("rerank_threads"),
        **LOAD_VARIANTS[variant],
    )
    load_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="funnelrank-eval-") as tmp:
        traces = os.path.join(tmp, "traces.jsonl")  # this run's alone, whatever --rerank-traces already holds
        with Reranker(model, traces=traces, cascade=cascade) as reranker:
            pipe = Pipeline(retriever, reranker=reranker, candidates=depth, top_k=depth, floor=None,
                            stage1_weight=stage1_weight, fusion=fusion)
            output = pipeline_output(ctx, pipe, "rerank")
            assert reranker.scheduler is not None  # built from a model here, so a RerankScheduler runs it
            stats = reranker.scheduler.stats()
        # the promise replays this run's traces through the policy a served pipeline would apply
        floor = DEFAULT_FLOOR if ctx.option("rerank_floor") is None else float(ctx.option("rerank_floor"))
        policy = pipe.policy.replace(floor=floor, top_k=int(ctx.option("rerank_top_k")))
        queries = {q: t for q, t in group_traces(read_traces(traces))[0].items() if q in output.rankings}
        promise = floor_promise(queries, ctx.dataset.qrels, policy)
        if ctx.option("rerank_traces"):
            with open(traces, "rb") as src, open(ctx.option("rerank_traces"), "ab") as dst:
                shutil.copyfileobj(src, dst)
    query_seconds = output.query_seconds or 0.0
    output.extra.update({
        "rerank_from": source,
        "rerank_depth": depth,
        "stage1_weight": stage1_weight,
        "fusion": fusion,
        "model": str(model_name),
        "variant": variant,
        "cascade": None if cascade is None else cascade.name,
        "max_length": model.max_length,
        "pairs_per_second": round(stats.pairs / query_seconds, 2) if query_seconds > 0 else None,
        "padding_waste": round(stats.padding_waste, 4),
        "model_load_seconds": round(load_seconds, 3),
        "latency": "stage 1 + rerank per query",
        "floor_promise": promise,
    })
    missing = getattr(retriever, "missing", 0)
    if missing:
        output.extra["candidates_missing_from_corpus"] = missing
    return output
