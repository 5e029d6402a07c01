"""`funnelrank compare A.jsonl B.jsonl`: compare two saved evaluations query by query.

Each file is what ``funnelrank eval ... --per-query FILE`` writes: one JSON line per (stage, judged query) with
the metrics. Typical use: two models (or two settings) evaluated in separate runs on the same split, then
compared on the same queries with the paired bootstrap and the randomization test
(:mod:`funnelrank.eval.significance`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from funnelrank.eval.beir import DatasetFormatError
from funnelrank.eval.beir import _read_jsonl as read_objects
from funnelrank.eval.significance import compare_per_query, describe_comparison

PerQuery = dict[str, dict[str, dict[str, float]]]
"""stage -> metric -> query id -> value."""


def read_per_query(path: str | Path) -> PerQuery:
    """Load an ``eval --per-query`` file; ValueError naming the file and line for anything malformed (the
    lines are read as every dataset JSONL file is, by :mod:`funnelrank.eval.beir`)."""
    out: PerQuery = {}
    for lineno, row in read_objects(Path(path)):
        stage, qid = row.get("stage"), row.get("query_id")
        if not isinstance(stage, str) or not isinstance(qid, str):
            raise DatasetFormatError(path, lineno, 'expected an object with "stage" and "query_id" strings')
        for metric, value in row.items():
            if metric in ("stage", "query_id"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DatasetFormatError(path, lineno, f'metric "{metric}" is not a number: {value!r}')
            per_query = out.setdefault(stage, {}).setdefault(metric, {})
            if qid in per_query:
                raise DatasetFormatError(path, lineno, f'query "{qid}" appears twice for stage "{stage}"')
            per_query[qid] = float(value)
    if not out:
        raise ValueError(f"{path}: no per-query lines (write them with `funnelrank eval ... --per-query FILE`)")
    return out


def _pick_stage(path: str, data: PerQuery, stage: str | None) -> str:
    if stage is None:
        if len(data) == 1:
            return next(iter(data))
        raise ValueError(f"{path} holds stages {', '.join(data)}: say which one with --stage-a / --stage-b")
    if stage not in data:
        raise ValueError(f'{path} has no stage "{stage}" (it holds {", ".join(data)})')
    return stage


def compare_files(
    path_a: str, path_b: str, *, stage_a: str | None = None, stage_b: str | None = None,
    metrics: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Paired comparisons of `path_a`'s stage with `path_b`'s, one per metric both files hold (or `metrics`)."""
    a, b = read_per_query(path_a), read_per_query(path_b)
    sa, sb = _pick_stage(path_a, a, stage_a), _pick_stage(path_b, b, stage_b)
    shared = [m for m in a[sa] if m in b[sb]]
    names = shared if metrics is None else metrics
    if not names:
        raise ValueError("no metric to compare: " + ("the files share none" if metrics is None else "--metrics is empty"))
    for m in names:
        if m not in shared:
            raise ValueError(f'metric "{m}" is not in both files (shared: {", ".join(shared) or "none"})')
    label_a, label_b = f"{Path(path_a).name}:{sa}", f"{Path(path_b).name}:{sb}"
    return [compare_per_query(label_a, a[sa][m], label_b, b[sb][m], m).as_dict() for m in names]


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank compare`."""
    metrics = None if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
    comparisons = compare_files(args.a, args.b, stage_a=args.stage_a, stage_b=args.stage_b, metrics=metrics)
    if args.json:
        json.dump({"comparisons": comparisons}, sys.stdout)
        print()
        return 0
    first = comparisons[0]
    print(f"{first['a']} - {first['b']} on {first['queries']} queries "
          "(difference of means, 95% paired-bootstrap CI, two-sided randomization test):")
    for c in comparisons:
        print(f"  {c['metric']:<10} {c['mean_a']:.4f} vs {c['mean_b']:.4f}  {describe_comparison(c)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `compare` sub-command."""
    p = sub.add_parser(
        "compare",
        help="compare two saved evaluations (eval --per-query files) on the same queries",
        description="Compare stage A of one `funnelrank eval --per-query` file with stage B of another, query by "
        "query: for each metric the mean difference, its 95%% paired-bootstrap interval and the two-sided "
        "p-value of Fisher's paired randomization test. Both must cover the same judged queries.",
    )
    p.add_argument("a", metavar="A.jsonl", help="per-query file of the system to compare (difference = A - B)")
    p.add_argument("b", metavar="B.jsonl", help="per-query file of the system to compare against")
    p.add_argument("--stage-a", default=None, help="stage of A (needed when A holds several)")
    p.add_argument("--stage-b", default=None, help="stage of B (needed when B holds several)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: every metric both hold)")
    p.add_argument("--json", action="store_true", help='print {"comparisons": [...]} as one JSON object')
    p.set_defaults(func=run)
