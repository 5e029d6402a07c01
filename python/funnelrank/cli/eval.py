"""`funnelrank eval DATA_DIR --split test --stages bm25[,dense,...] [--json]`: score retrieval stages on a
BEIR dataset (nDCG@10, Recall@100, MRR@10, throughput). Progress goes to stderr; stdout carries either a
table or, with --json, exactly one JSON object.

TREC interop: ``--run-file`` reads a BEIR or TREC run, ``--qrels`` a BEIR or TREC qrels file, and ``--out-run
FILE`` writes a stage's rankings as a TREC run (:func:`write_out_runs`): the last of ``--stages`` unless
``--out-run-stage`` names another, or every stage when FILE holds ``{stage}``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from funnelrank.eval.beir import load_beir, read_query_ids
from funnelrank.eval.harness import (
    add_harness_options,
    get_stage,
    known_stages,
    parse_comparison,
    run_evaluation,
)
from funnelrank.eval.significance import describe_comparison

# Table columns: (header, report key, format).
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("nDCG@10", "ndcg@10", "{:.4f}"),
    ("Recall@100", "recall@100", "{:.4f}"),
    ("MRR@10", "mrr@10", "{:.4f}"),
    ("nDCG@10 95% CI", "ci", "ndcg@10"),
    ("QPS", "qps", "{:.1f}"),
    ("p50 ms", "latency_ms_p50", "{:.2f}"),
    ("p99 ms", "latency_ms_p99", "{:.2f}"),
    ("index s", "index_seconds", "{:.2f}"),
)


def _parse_stages(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--stages is empty; known stages: {', '.join(known_stages())}")
    for name in names:
        get_stage(name)
    return names


def _share(promise: dict[str, Any], key: str) -> str:
    value, ci = promise.get(key), promise.get(f"{key}_ci")
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, one row per stage ("-" where a figure does not apply)."""
    header = ["stage", *(c[0] for c in _COLUMNS)]
    rows = [header]
    for name, stage in report["stages"].items():
        cells = [name]
        for _, key, fmt in _COLUMNS:
            value = stage.get(key)
            if key == "ci":
                value = (value or {}).get(fmt)
                cells.append("-" if value is None else f"{value[0]:.4f}-{value[1]:.4f}")
            else:
                cells.append("-" if value is None else fmt.format(value))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"{report['dataset']} / {report['split']}: {report['num_queries']} judged queries, "
        f"{report['num_docs']} documents"
    ]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[0]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for name, stage in report["stages"].items():
        promise = stage.get("floor_promise")
        if promise:
            lines.append("")
            lines.append(f"{name}: the floor's promise at floor {promise['floor']:.2f}, top {promise['top_k']}: "
                         f"{_share(promise, 'answerable_kept')} of {promise['answerable_queries']} answerable "
                         f"queries keep an answer; {_share(promise, 'unanswerable_refused')} of "
                         f"{promise['unanswerable_queries']} made unanswerable are refused")
    comparisons = report.get("comparisons") or []
    if comparisons:
        lines.append("")
        lines.append("paired comparisons (difference of means, 95% paired-bootstrap CI, two-sided randomization test):")
        for c in comparisons:
            lines.append(f"  {c['a']} - {c['b']}  {c['metric']:<10} {describe_comparison(c)}")
    return "\n".join(lines)


def write_per_query(path: str, per_query: dict[str, dict[str, dict[str, float]]]) -> int:
    """Write one JSON line per (stage, judged query) with every metric, atomically; returns the lines written."""
    from funnelrank.files import atomic_writer

    lines = []
    for stage, metrics in per_query.items():
        names = list(metrics)
        qids = list(metrics[names[0]]) if names else []
        for qid in qids:
            lines.append(json.dumps({"stage": stage, "query_id": qid, **{m: metrics[m][qid] for m in names}}))
    with atomic_writer(path) as fh:
        fh.write("".join(line + "\n" for line in lines).encode("utf-8"))
    return len(lines)


STAGE_FIELD = "{stage}"
"""In ``--out-run FILE``, replaced by each stage's name: one run file per evaluated stage."""


def out_run_paths(pattern: str, stages: list[str], stage: str | None) -> dict[str, str]:
    """Which stage's rankings ``--out-run PATTERN`` writes where: every stage when `pattern` holds ``{stage}``
    (then `stage` must be None), else the one `stage` (default: the last of `stages`) to `pattern`. ValueError
    for a stage that is not evaluated.

        >>> out_run_paths("runs/{stage}.trec", ["bm25", "rerank"], None)
        {'bm25': 'runs/bm25.trec', 'rerank': 'runs/rerank.trec'}
        >>> out_run_paths("rerank.trec", ["bm25", "rerank"], None)
        {'rerank': 'rerank.trec'}
    """
    if STAGE_FIELD in pattern:
        if stage is not None:
            raise ValueError(f"--out-run-stage names one stage, but --out-run {pattern!r} holds {STAGE_FIELD} "
                             "(one file per stage): give one or the other")
        return {name: pattern.replace(STAGE_FIELD, name) for name in dict.fromkeys(stages)}
    chosen = stages[-1] if stage is None else stage
    if chosen not in stages:
        raise ValueError(f'--out-run-stage "{chosen}" is not among the evaluated stages ({", ".join(stages)})')
    return {chosen: pattern}


def write_out_runs(paths: dict[str, str], rankings: dict[str, Any], *, progress: bool = True) -> dict[str, int]:
    """Write each stage's rankings to its path as a TREC run (``qid Q0 docid rank score funnelrank-<stage>``,
    atomically, :func:`funnelrank.serve.ray_data.write_trec_run`); returns the lines written per stage. The
    scores are the stage's own; trec_eval re-sorts each query's lines by score (ties by document id,
    descending), so when a stage's scores tie or rise its order can differ from the one scored here: a note
    on stderr says so."""
    from funnelrank.eval.metrics import trec_eval_order
    from funnelrank.serve.ray_data import write_trec_run

    written = {}
    for stage, path in paths.items():
        ranked = rankings[stage]
        written[stage] = write_trec_run(path, ranked, tag=f"funnelrank-{stage}")
        reordered = sum(1 for ranking in ranked.values() if trec_eval_order(ranking) != list(ranking))
        if progress:
            print(f"wrote {written[stage]} lines of stage {stage} to {path} (TREC run)", file=sys.stderr)
        if reordered:
            print(f"note: {reordered} of {len(ranked)} queries of stage {stage} have tied or rising scores; trec_eval "
                  "re-sorts them by score (ties by document id, descending), so its figures for them may differ",
                  file=sys.stderr)
    return written


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank eval`."""
    stages = _parse_stages(args.stages)
    out_runs = None if args.out_run is None else out_run_paths(args.out_run, stages, args.out_run_stage)
    if args.out_run is None and args.out_run_stage is not None:
        raise ValueError("--out-run-stage needs --out-run FILE")
    progress = not args.quiet
    if progress:
        source = args.qrels if args.qrels is not None else f"split {args.split}"
        print(f"loading {args.data_dir} ({source})", file=sys.stderr, flush=True)
    dataset = load_beir(args.data_dir, args.split, run_path=args.run_file, qrels_path=args.qrels)
    if args.query_ids is not None:
        dataset = dataset.with_queries(read_query_ids(args.query_ids))
        if progress:
            print(f"evaluating the {len(dataset.queries)} queries listed in {args.query_ids}", file=sys.stderr)
    skip = {"data_dir", "split", "stages", "json", "quiet", "func", "command", "query_ids", "compare", "per_query",
            "run_file", "qrels", "out_run", "out_run_stage"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    compare = None if args.compare is None else [parse_comparison(c) for c in args.compare]
    report = run_evaluation(
        dataset, stages, options, progress=progress, compare=compare, keep_per_query=args.per_query is not None,
        keep_rankings=out_runs is not None,
    )
    if args.qrels is not None:
        report["qrels_file"] = str(args.qrels)
    if out_runs is not None:
        write_out_runs(out_runs, report.pop("rankings"), progress=progress)
        report["out_runs"] = out_runs
    if args.per_query is not None:
        written = write_per_query(args.per_query, report.pop("per_query"))
        report["per_query_file"] = str(args.per_query)
        if progress:
            print(f"wrote {written} per-query lines to {args.per_query}", file=sys.stderr)
    if args.query_ids is not None:
        report["query_ids_file"] = str(args.query_ids)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `eval` sub-command."""
    p = sub.add_parser(
        "eval",
        help="evaluate retrieval stages on a BEIR dataset",
        description="Score retrieval stages on a BEIR dataset directory (corpus.jsonl, queries.jsonl, "
        "qrels/<split>.tsv, optional run.bm25.tsv): nDCG@10, Recall@100, MRR@10 over the split's judged "
        f"queries, and query throughput. Stages: {', '.join(known_stages())}.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="BEIR dataset directory")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument(
        "--stages", default="bm25", help=f"comma-separated stages (default: bm25; known: {', '.join(known_stages())})"
    )
    p.add_argument(
        "--query-ids",
        metavar="FILE",
        default=None,
        help="evaluate only these judged queries of the split (one id per line, '#' comments); e.g. a "
        "validation slice: `python -m funnelrank.train heldout-ids scifact` lists the scifact train "
        "queries held out from reranker training",
    )
    p.add_argument(
        "--run-file",
        metavar="FILE",
        default=None,
        help="the run the `run` stage scores (and --rerank-from run reranks) instead of DATA_DIR/run.bm25.tsv: "
        "BEIR (query-id corpus-id rank score) or TREC (qid Q0 docid rank score tag) format, e.g. the output "
        "of `funnelrank rerank-run`",
    )
    p.add_argument(
        "--qrels",
        metavar="FILE",
        default=None,
        help="the judgments to score against instead of DATA_DIR/qrels/SPLIT.tsv: BEIR (query-id corpus-id "
        "score) or TREC (qid 0 docid grade) format; the evaluated queries are the ones it judges",
    )
    p.add_argument(
        "--out-run",
        metavar="FILE",
        default=None,
        help="write a stage's rankings as a TREC run file (qid Q0 docid rank score funnelrank-STAGE; atomically) "
        "for trec_eval, ranx or ir-measures: the last of --stages unless --out-run-stage names another; a FILE "
        "holding {stage} (e.g. 'runs/{stage}.trec') writes one file per evaluated stage",
    )
    p.add_argument(
        "--out-run-stage",
        metavar="STAGE",
        default=None,
        help="the stage --out-run writes (one of --stages; default: the last)",
    )
    p.add_argument(
        "--compare",
        metavar="A:B",
        action="append",
        default=None,
        help="compare stage A with stage B on the same queries (repeatable; both must be in --stages): mean "
        "difference per metric, its 95%% paired-bootstrap interval and the paired randomization test's p-value. "
        "Default: rerank against its candidate source when both are evaluated",
    )
    p.add_argument(
        "--per-query",
        metavar="FILE",
        default=None,
        help="also write every judged query's metrics, one JSON line per (stage, query): "
        '{"stage", "query_id", "ndcg@10", ...} (like trec_eval -q; written atomically)',
    )
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    add_harness_options(p)
    p.set_defaults(func=run)
