"""`funnelrank calibrate-floor TRACES...`: recommend a relevance floor from persisted score traces."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-command to the CLI."""
    p = sub.add_parser(
        "calibrate-floor",
        help="recommend a relevance floor from score traces (and qrels)",
        description="Recommend a relevance floor from rerank score traces (JSONL written by Reranker(traces=...)). "
        "With --qrels, the floor that best separates relevant from non-relevant candidates; without, Otsu's "
        "threshold of the score distribution.",
    )
    p.add_argument("traces", nargs="+", help="trace JSONL file(s)")
    p.add_argument("--qrels", help="relevance judgments (BEIR qrels TSV or TREC qrels) for the traced query ids")
    p.add_argument("--png", help="write a histogram of the scores with the floor marked to this PNG file")
    p.add_argument("--objective", choices=("f1", "youden"), default="f1", help="what the floor maximises (qrels)")
    p.add_argument("--target-precision", type=float, help="lowest floor whose kept candidates reach this precision")
    p.add_argument("--min-kept", type=float, metavar="P",
                   help="the floor's promise as the objective (needs --qrels): the highest floor at which at least P "
                        "of the answerable queries keep an answer in their top --top-k results; prints how many of "
                        "the same queries made unanswerable it refuses")
    p.add_argument("--top-k", type=int, default=10, help="results the pipeline returns, for --min-kept (default 10)")
    p.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute `calibrate-floor`."""
    from funnelrank.eval.calibrate import label_traces, load_qrels, plot_histogram, promise_floor, recommend_floor
    from funnelrank.rerank.traces import read_traces

    records = read_traces(args.traces, allow_empty=False)
    labels = None
    if args.min_kept is not None:
        if not args.qrels or args.target_precision is not None:
            raise ValueError("--min-kept needs --qrels and cannot be combined with --target-precision")
        qrels = load_qrels(args.qrels)
        rec = promise_floor(records, qrels, min_kept=args.min_kept, top_k=args.top_k)
        scores, labels, _, _ = label_traces(records, qrels)
    else:
        if args.qrels:
            scores, labels, qids, skipped = label_traces(records, load_qrels(args.qrels))
            if scores.shape[0] == 0:
                raise ValueError("no traced query id appears in the qrels (were traces written with query_id?)")
        else:
            scores = np.asarray([float(r["score"]) for r in records])
            qids = np.asarray([str(r.get("query_id", r.get("query"))) for r in records], dtype=object)
            skipped = 0
        rec = recommend_floor(scores, qids, labels, objective=args.objective, target_precision=args.target_precision)
        if skipped:
            rec.notes.append(f"{skipped} traced candidates of queries absent from the qrels were left out")
    if args.png:
        plot_histogram(args.png, scores, rec.floor, labels, title=f"floor {rec.floor:.3f} ({rec.method})")
    if args.json:
        json.dump(rec.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(f"recommended floor: {rec.floor:.4f}  ({rec.method}; {rec.n_pairs} traced candidates, {rec.n_queries} queries"
          + (f", {rec.n_relevant} relevant)" if rec.n_relevant is not None else ")"))
    header = f"{'floor':>8} {'kept':>7} {'kept%':>6} {'no-evid%':>8}"
    if labels is not None:
        header += f" {'prec':>6} {'recall':>6} {'F1':>6} {'J':>6}"
    print(header)
    for point, mark in [(rec.at_floor, " <- recommended")] + [(a, "") for a in rec.alternatives]:
        line = f"{point.floor:8.4f} {point.kept:7d} {100 * point.kept_fraction:6.1f} {100 * point.no_evidence_queries:8.1f}"
        if labels is not None:
            line += f" {point.precision:6.3f} {point.recall:6.3f} {point.f1:6.3f} {point.youden_j:6.3f}"
        print(line + mark)
    for note in rec.notes:
        print(f"note: {note}")
    if args.png:
        print(f"histogram written to {args.png}")
    return 0
