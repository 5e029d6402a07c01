"""`funnelrank optimize MODEL_DIR --validate DATA_DIR --split S`: derive the faster stage-2 variants of a
cross-encoder, measure each against the original on validation data, and keep those that lose nothing
measurable (the rule and the variants: :mod:`funnelrank.eval.optimize`).

    funnelrank optimize python/funnelrank/models/reranker-minilm-l6 \\
        --validate ../shared/data/msmarco-dev-sample --split validation --candidates 20

prints one line per variant (nDCG@10, its difference from fp32 with the 95% interval, p50 ms per query,
speed-up, KEPT or dropped) and writes the report as JSON (``--out``, atomically). Load a kept variant with the
options the report lists, e.g. ``CrossEncoder.from_pretrained(MODEL_DIR, reuse_passage_states=True)``, or
for a cascade (``--variants cascade-int8-128@30``) ``Reranker(MODEL_DIR, cascade="int8-128@30")``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from funnelrank.rerank.policy import DEFAULT_DEPTH


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank optimize`."""
    from funnelrank.eval.beir import load_beir
    from funnelrank.eval.optimize import VARIANTS, check_variants, describe, guard

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else list(VARIANTS)
    check_variants(variants)  # a bad name fails before the data and the models load
    if args.candidates < 1:
        raise ValueError(f"--candidates must be >= 1, got {args.candidates}")
    ds = load_beir(args.validate, args.split)
    if args.query_ids is not None:
        from funnelrank.eval.beir import read_query_ids

        ds = ds.with_queries(read_query_ids(args.query_ids))
    if args.queries is not None:
        if args.queries < 1:
            raise ValueError(f"--queries must be >= 1, got {args.queries}")
        ds = ds.with_queries(list(ds.qrels)[: args.queries])
    report = guard(args.model, ds, variants=variants, candidates=args.candidates, max_length=args.max_length,
                   threads=args.threads, progress=None if args.json else (lambda m: print(m, file=sys.stderr)))
    if args.out is not None:
        from funnelrank.files import atomic_writer

        with atomic_writer(Path(args.out)) as fh:
            fh.write((json.dumps(report, indent=2) + "\n").encode("utf-8"))
    if args.json:
        print(json.dumps(report))
    else:
        print(describe(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `optimize` sub-command."""
    p = sub.add_parser(
        "optimize",
        help="derive faster variants of a cross-encoder and keep those that hold quality on validation data",
        description="Derive the faster stage-2 variants of MODEL (int8, reused passage states, cascades), rerank the "
        "validation split's BM25 candidates with each and with the original, and keep a variant only when the "
        "95%% paired-bootstrap interval of its nDCG@10 difference lies within +-0.01.",
    )
    p.add_argument("model", help="cross-encoder directory (model.onnx, tokenizer.json, config.json) or Hub id")
    p.add_argument("--validate", required=True, type=Path, metavar="DATA_DIR", help="BEIR-layout dataset")
    p.add_argument("--split", required=True, help="its validation split (never a test split you report)")
    p.add_argument("--candidates", type=int, default=DEFAULT_DEPTH, help=f"BM25 candidates per query (default {DEFAULT_DEPTH})")
    p.add_argument("--query-ids", type=Path, default=None, metavar="FILE",
                   help="only these judged queries (one id per line, '#' comments), e.g. the scifact train queries "
                   "held out from reranker training: `python -m funnelrank.train heldout-ids scifact`")
    p.add_argument("--queries", type=int, default=None, help="only the first N judged queries (after --query-ids)")
    p.add_argument("--max-length", type=int, default=None, help="pair token budget (default: the model's)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants: fp32,int8,states,states-prefix (the default set) and cascades "
                   "cascade-FIRST[-MAX_LENGTH]@KEEP, e.g. cascade-int8-128@30: FIRST (one of the four, at "
                   "MAX_LENGTH tokens) scores every candidate, fp32 rescores its top KEEP")
    p.add_argument("--out", default=None, help="write the JSON report here (atomically)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)
