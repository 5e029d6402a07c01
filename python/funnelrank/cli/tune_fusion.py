"""`funnelrank tune-fusion TRACES... --qrels QRELS`: choose the rerank-fusion weight from score traces."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-command to the CLI."""
    p = sub.add_parser(
        "tune-fusion",
        help="choose the rerank-fusion method and weight (stage1_weight) from score traces and qrels",
        description="Score rerank fusion weights on traced queries without re-running the model: each "
        "weight W orders every traced query's candidates by (1-W)/(60+rerank rank) + W/(60+stage-1 rank) (rrf) "
        "or (1-W)*minmax(logit) + W*minmax(stage-1 score) (convex) and the order is scored against the qrels. "
        "Use traces of VALIDATION queries (e.g. `funnelrank eval "
        "DATA --split train --query-ids HELDOUT --stages rerank --rerank-traces FILE`), never test ones.",
    )
    p.add_argument("traces", nargs="+", help="trace JSONL file(s) written with query ids (one run per query)")
    p.add_argument("--qrels", required=True, help="relevance judgments (BEIR qrels TSV or TREC qrels)")
    p.add_argument("--grid", default=None, help="comma-separated weights in [0, 1] (default 0, 0.05, ..., 1)")
    p.add_argument("--fusion", default="rrf,convex",
                   help="comma-separated fusion methods to try: rrf, convex (default both)")
    p.add_argument("--metric", default="ndcg@10", help="what the weight maximises (default ndcg@10)")
    p.add_argument("--json", action="store_true", help="print the sweep as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute `tune-fusion`."""
    from funnelrank.eval.calibrate import load_qrels
    from funnelrank.eval.fusion_tuning import DEFAULT_GRID, parse_grid, sweep_fusion
    from funnelrank.eval.significance import describe_comparison
    from funnelrank.rerank.traces import group_traces, read_traces

    records = read_traces(args.traces, allow_empty=False)
    queries, skipped = group_traces(records)
    grid = DEFAULT_GRID if args.grid is None else parse_grid(args.grid)
    fusions = [f.strip() for f in args.fusion.split(",") if f.strip()]
    sweep = sweep_fusion(queries, load_qrels(args.qrels), grid, fusions=fusions, metric=args.metric)
    if skipped:
        sweep.notes.append(f"{skipped} traced candidates without a query id were left out")
    if args.json:
        json.dump(sweep.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    names = list(sweep.best.metrics)
    best = sweep.best
    print(f"best: fusion {best.fusion}, stage1_weight {best.stage1_weight:g}  ({sweep.metric} "
          f"{best.metrics[sweep.metric]:.4f}; "
          f"{sweep.n_queries} judged queries, {sweep.n_pairs} traced candidates)")
    print(f"{'fusion':>7} {'weight':>7} " + " ".join(f"{n:>10}" for n in names))
    for point in sweep.points:
        mark = " <- best" if point is sweep.best else ""
        if point.stage1_weight == 0.0:
            mark += "  (cross-encoder order alone)"
        elif point.stage1_weight == 1.0:
            mark += "  (stage-1 order alone)" if point.fusion == "rrf" else "  (stage-1 scores alone)"
        figures = " ".join(f"{point.metrics[n]:10.4f}" for n in names)
        print(f"{point.fusion:>7} {point.stage1_weight:7.2f} {figures}{mark}")
    if sweep.comparisons:
        print(f"the best against (difference in {sweep.metric}, 95% paired-bootstrap CI, randomization test; "
              f"the best of {len(sweep.points)} points, so its margin is biased upward):")
        for c in sweep.comparisons:
            print(f"  {c['b']:<20} {describe_comparison(c)}")
    for note in sweep.notes:
        print(f"note: {note}")
    return 0
