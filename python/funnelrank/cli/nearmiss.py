"""`funnelrank nearmiss [DIR] [--model DIR] [--floor F] [--json]`: the judge on "right tokens, wrong meaning"
cases (:mod:`funnelrank.eval.nearmiss`), beside the default bi-encoder's cosine in the same run."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(os.environ.get("FUNNELRANK_SHARED_DATA", "../shared/data")) / "nearmiss-dev"


def _line(name: str, r: dict[str, Any]) -> str:
    ci = r["answer_first_ci"]
    out = (f"  {name:<14} answer first {r['answer_first']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  MRR {r['mrr']:.3f}  "
           f"AUC {r['auc']:.3f}  mean score answer {r['mean_pos_score']:.3f} / near-miss {r['mean_near_miss_score']:.3f}")
    if "gated_cleanly" in r:
        g = r["gated_cleanly_ci"]
        out += f"\n  {'':<14} floor {r['floor']:.2f} gates cleanly {r['gated_cleanly']:.3f} [{g[0]:.3f}, {g[1]:.3f}]"
    return out


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank nearmiss`."""
    from funnelrank.eval.nearmiss import load_cases, score_cases
    from funnelrank.rerank import Reranker

    cases = load_cases(args.data_dir)
    report: dict[str, Any] = {"data": str(args.data_dir), "cases": len(cases)}
    with Reranker(args.model) as reranker:
        floor = reranker.floor if args.floor is None else args.floor
        scores = []
        for case in cases:
            result = reranker.rank(case.query, [case.pos, *case.neg], top_k=None, floor=None)
            scores.append(result.all_scores.tolist())
        report["reranker"] = {"model": str(args.model or "default"), **score_cases(cases, scores, floor=floor)}
    if not args.no_bi_encoder:
        import numpy as np

        from funnelrank.embed import Embedder

        embedder = Embedder.default()
        cos = []
        for case in cases:
            q = np.asarray(embedder.embed_query(case.query), dtype=np.float64)
            d = np.asarray(embedder.embed([case.pos, *case.neg]), dtype=np.float64)
            cos.append((d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))).tolist())
        report["bi_encoder"] = {"model": embedder.name, **score_cases(cases, cos)}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.data_dir}: {len(cases)} cases (one answer, {len(cases[0].neg)} near-misses each)")
    print(_line("reranker", report["reranker"]))
    if "bi_encoder" in report:
        print(_line("bi-encoder", report["bi_encoder"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `nearmiss` sub-command."""
    p = sub.add_parser(
        "nearmiss",
        help="score the reranker on near-miss cases (right tokens, wrong meaning)",
        description="Rank each case's answer against its near-misses with the cross-encoder and report answer-first "
        "share, MRR, AUC and how often the relevance floor keeps the answer and drops every near-miss; the default "
        "bi-encoder's cosine is measured in the same run for comparison.",
    )
    p.add_argument("data_dir", metavar="DIR", nargs="?", type=Path, default=DEFAULT_DIR,
                   help=f"a directory with cases.jsonl, or the file (default {DEFAULT_DIR})")
    p.add_argument("--model", default=None, help="cross-encoder directory (default: the shipped one)")
    p.add_argument("--floor", type=float, default=None, help="relevance floor (default: the model's)")
    p.add_argument("--no-bi-encoder", action="store_true", help="skip the bi-encoder comparison")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(func=run)
