"""`funnelrank advise-depth TRACES... --qrels QRELS`: how many candidates to rerank, from score traces."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-command to the CLI."""
    p = sub.add_parser(
        "advise-depth",
        help="advise a rerank depth from score traces and qrels",
        description="Replay a traced rerank run (JSONL from `funnelrank eval --rerank-traces` or "
        "Reranker(traces=...)) at shallower depths without the model: nDCG@10, MRR@10 and Recall@depth per "
        "depth, its cost, and its paired difference from the full depth; advises the shallowest depth whose "
        "95%% interval of the nDCG@10 difference lies within +-margin. Use validation data.",
    )
    p.add_argument("traces", nargs="+", help="trace JSONL file(s) of one rerank run")
    p.add_argument("--qrels", required=True, help="relevance judgments (BEIR qrels TSV or TREC qrels)")
    p.add_argument("--depths", default="10,20,30,50", help="depths to try (the traced depth is always added)")
    p.add_argument("--margin", type=float, default=0.01, help="nDCG@10 margin of the rule (default 0.01)")
    p.add_argument("--pairs-per-s", type=float, default=None,
                   help="the reranker's measured throughput (bench/bench_stage2.py, /metrics), for ms per query")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute `advise-depth`."""
    from funnelrank.eval.calibrate import load_qrels
    from funnelrank.eval.depth import advise_depth, parse_depths
    from funnelrank.rerank.traces import read_traces

    report = advise_depth(read_traces(args.traces, allow_empty=False), load_qrels(args.qrels),
                          depths=parse_depths(args.depths), margin=args.margin, pairs_per_s=args.pairs_per_s)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(f"advised depth: {report.recommended} of {report.full_depth} traced ({report.n_queries} judged queries; "
          f"rule: 95% interval of the nDCG@10 difference within +-{report.margin:g})")
    print(f"{'depth':>5} {'pairs/q':>8} {'ms/q':>8} {'nDCG@10':>8} {'MRR@10':>7} {'Recall@d':>8} "
          f"{'diff':>8}  95% interval")
    for p in report.points:
        ms = f"{p.ms_per_query:8.0f}" if p.ms_per_query is not None else f"{'-':>8}"
        mark = " <- advised" if p.depth == report.recommended else ""
        print(f"{p.depth:5d} {p.pairs_per_query:8.1f} {ms} {p.ndcg10:8.4f} {p.mrr10:7.4f} {p.recall:8.3f} "
              f"{p.ndcg10_difference:+8.4f}  [{p.ci_low:+.4f}, {p.ci_high:+.4f}]{mark}")
    for note in report.notes:
        print(f"note: {note}")
    return 0
