"""The `rerank` stage: the cross-encoder re-scores the top ``--rerank-depth`` candidates of ``--rerank-from``.

Candidates come from :meth:`StageContext.candidates` (bm25, dense, hybrid, or the dataset's run); each
query's candidates go through a :class:`~funnelrank.rerank.Reranker` (the shared batch scheduler) with no
floor and no top-k cut, so the ranking metrics judge the order alone. The order is a fusion of the
cross-encoder's order and the candidates' order (``--rerank-fusion rrf|convex``, ``--rerank-stage1-weight W``;
W = 0 is the cross-encoder order alone; see :mod:`funnelrank.rerank.fusion`). The default W is
:func:`~funnelrank.rerank.defaults.default_stage1_weight`: the weight chosen on validation for
``--rerank-from hybrid``, 0 for other sources. Each ranked document carries its fused score then, else its
cross-encoder score. Queries run one at a time; the latency of each (tokenization + inference) is recorded.
``--rerank-traces FILE`` appends score traces with query ids, ready for
``funnelrank calibrate-floor FILE --qrels ...`` and ``funnelrank tune-fusion FILE --qrels ...`` (the
traces do not depend on the fusion weight).
"""

from __future__ import annotations

import argparse
import sys
import time

from funnelrank.evaluation.harness import Rankings, StageContext, StageOutput, register_stage
from funnelrank.rerank.defaults import DEFAULT_FUSION, DEFAULT_STAGE1_WEIGHT, default_stage1_weight
from funnelrank.rerank.fusion import FUSION_METHODS


def _add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--rerank-model", default=None,
                       help="cross-encoder directory or Hugging Face id (default: the project's default reranker)")
    group.add_argument("--rerank-depth", type=int, default=100, help="candidates reranked per query (default 100)")
    group.add_argument("--rerank-max-length", type=int, default=None,
                       help="pair token budget (default: the model's limit, at most 512)")
    group.add_argument("--rerank-threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    group.add_argument("--rerank-traces", default=None, help="append score traces (JSONL) to this file")
    group.add_argument("--rerank-stage1-weight", type=float, default=None, metavar="W",
                       help="rerank fusion weight of the candidates' order against the cross-encoder's (see "
                       f"--rerank-fusion); 0 = cross-encoder order alone (default: {DEFAULT_STAGE1_WEIGHT} for "
                       "--rerank-from hybrid, chosen on validation queries with `make tune-fusion`; 0 for other "
                       "sources)")
    group.add_argument("--rerank-fusion", choices=FUSION_METHODS, default=DEFAULT_FUSION,
                       help="rerank fusion method: rrf, (1-W)/(60+rerank rank) + W/(60+candidate rank), or convex, "
                       "(1-W)*minmax(logit) + W*minmax(candidate score) (needs candidate scores) "
                       f"(default {DEFAULT_FUSION})")


@register_stage("rerank", help="cross-encoder reranking of --rerank-from's top candidates", add_options=_add_options)
def rerank_stage(ctx: StageContext) -> StageOutput:
    """Rerank every judged query's candidates; rankings are the candidates sorted by cross-encoder score."""
    from tqdm import tqdm

    from funnelrank.rerank import Candidate, CrossEncoder, Reranker
    from funnelrank.rerank.defaults import default_reranker_dir
    from funnelrank.rerank.fusion import check_fusion, check_stage1_weight

    depth = int(ctx.option("rerank_depth"))
    if depth < 1:
        raise ValueError(f"--rerank-depth must be >= 1, got {depth}")
    source = ctx.rerank_source()
    weight = ctx.option("rerank_stage1_weight")
    stage1_weight = check_stage1_weight(default_stage1_weight(source) if weight is None else weight)
    fusion = check_fusion(ctx.option("rerank_fusion"))
    candidates = ctx.candidates(depth)
    model_name = ctx.option("rerank_model") or default_reranker_dir()
    start = time.perf_counter()
    model = CrossEncoder.from_pretrained(
        model_name, max_length=ctx.option("rerank_max_length"), intra_op_threads=ctx.option("rerank_threads")
    )
    load_seconds = time.perf_counter() - start
    corpus = ctx.dataset.corpus
    rankings: Rankings = {}
    latencies: list[float] = []
    missing = 0
    with Reranker(
        model, floor=None, top_k=None, stage1_weight=stage1_weight, fusion=fusion, traces=ctx.option("rerank_traces")
    ) as reranker:
        queries = list(ctx.dataset.queries.values())
        start = time.perf_counter()
        for query in tqdm(queries, desc="rerank", unit="q", disable=not ctx.progress, file=sys.stderr, leave=False):
            cands = []
            for rank, (doc_id, score) in enumerate(candidates.get(query.id, []), start=1):
                doc = corpus.get(doc_id)
                if doc is None:
                    missing += 1
                    continue
                cands.append(Candidate(doc_id, doc.full_text, rank, score))
            t0 = time.perf_counter()
            result = reranker.rerank(query.text, cands, query_id=query.id)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            rankings[query.id] = [
                (item.id, item.score if item.fused_score is None else item.fused_score) for item in result.items
            ]
        query_seconds = time.perf_counter() - start
        stats = reranker.scheduler.stats()
    extra = {
        "rerank_from": source,
        "rerank_depth": depth,
        "stage1_weight": stage1_weight,
        "fusion": fusion,
        "model": str(model_name),
        "max_length": model.max_length,
        "pairs_per_second": round(stats.pairs / query_seconds, 2) if query_seconds > 0 else None,
        "padding_waste": round(stats.padding_waste, 4),
        "model_load_seconds": round(load_seconds, 3),
    }
    if missing:
        extra["candidates_missing_from_corpus"] = missing
    return StageOutput(rankings=rankings, query_seconds=query_seconds, latencies_ms=latencies, extra=extra)
