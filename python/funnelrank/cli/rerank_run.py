"""`funnelrank rerank-run RUN --data DATA --out RUN_OUT [--ray] [--model M] [--depth N]`: rerank a run file's
top candidates with the cross-encoder, offline, and write the reranked run (TREC format, atomically).

RUN is a BEIR run TSV (``query-id corpus-id rank score``, e.g. DATA/run.bm25.tsv) or a TREC run file (``qid Q0
docid rank score tag``, e.g. an Anserini or Pyserini run); DATA a BEIR directory (its corpus.jsonl and
queries.jsonl give the texts; ``--split`` keeps only that split's judged queries, ``--qrels FILE`` those a BEIR
or TREC qrels file judges). ``--ray`` runs the job on Ray Data (``--ray-address``, default: ``$RAY_ADDRESS`` or a local
cluster; ``--concurrency`` actors, each loading the model once); without it the same scorer runs here.
Score the output with ``funnelrank eval DATA --run-file RUN_OUT --stages run``. See
:mod:`funnelrank.serve.ray_data`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from funnelrank.rerank.policy import DEFAULT_DEPTH


def run(args: argparse.Namespace) -> int:
    """Entry point of `funnelrank rerank-run`."""
    from funnelrank.eval.beir import load_corpus, load_qrels, load_queries, load_run
    from funnelrank.serve.ray_data import rerank_run, write_trec_run

    progress = not args.quiet
    run_path, data = Path(args.run), Path(args.data)
    if not run_path.is_file():
        raise FileNotFoundError(f"{run_path}: run file not found")
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: dataset directory not found")
    if args.depth < 1:
        raise ValueError(f"--depth must be >= 1, got {args.depth}")
    start = time.perf_counter()
    ranked = load_run(run_path)
    corpus = load_corpus(data / "corpus.jsonl")
    queries = {q.id: q.text for q in load_queries(data / "queries.jsonl").values()}
    query_ids = None
    if args.split is not None or args.qrels is not None:
        qrels = load_qrels(args.qrels if args.qrels is not None else data / "qrels" / f"{args.split}.tsv")
        query_ids = [q for q in ranked if q in qrels]
    if progress:
        print(f"loaded {len(ranked)} queries of {run_path} and {len(corpus)} documents in "
              f"{time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)

    def text(doc_id: str) -> str | None:
        doc = corpus.get(doc_id)
        return None if doc is None else doc.full_text

    if args.ray and args.ray_address:
        import ray

        ray.init(address=args.ray_address)
    start = time.perf_counter()
    reranked = rerank_run(ranked, queries, text, model=args.model, depth=args.depth, query_ids=query_ids,
                          use_ray=args.ray, concurrency=args.concurrency, batch_queries=args.batch_queries,
                          max_length=args.max_length, intra_op_threads=args.threads, progress=progress)
    seconds = time.perf_counter() - start
    lines = write_trec_run(args.out, reranked, tag=args.tag)
    summary = {"run": str(run_path), "out": str(args.out), "queries": len(reranked), "lines": lines,
               "depth": args.depth, "ray": bool(args.ray), "seconds": round(seconds, 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {lines} lines for {len(reranked)} queries to {args.out} in {seconds:.1f}s"
              f"{' (Ray Data)' if args.ray else ''}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `rerank-run` sub-command."""
    p = sub.add_parser(
        "rerank-run",
        help="rerank a run file's candidates offline (in-process or on Ray Data)",
        description="Rerank the top --depth candidates of every query of RUN with the cross-encoder and write "
        "the reranked run as a TREC run file (qid Q0 docid rank score tag; written atomically). The texts come "
        "from DATA (a BEIR directory). --ray runs it as a Ray Data job over an actor pool.",
    )
    p.add_argument("run", metavar="RUN", help="run file: BEIR TSV (query-id corpus-id rank score) or TREC "
                   "(qid Q0 docid rank score tag)")
    p.add_argument("--data", required=True, metavar="DATA", help="BEIR dataset directory (corpus.jsonl, queries.jsonl)")
    p.add_argument("--out", required=True, metavar="RUN_OUT", help="the reranked run file to write (TREC format)")
    p.add_argument("--model", default=None, help="cross-encoder directory or Hugging Face id (default: the "
                   "project's default reranker)")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help=f"candidates reranked per query (default {DEFAULT_DEPTH})")
    judged = p.add_mutually_exclusive_group()
    judged.add_argument("--split", default=None, help="rerank only the queries judged in DATA/qrels/SPLIT.tsv")
    judged.add_argument("--qrels", metavar="FILE", default=None,
                        help="rerank only the queries judged in FILE (BEIR or TREC qrels: qid 0 docid grade)")
    p.add_argument("--max-length", type=int, default=None, help="pair token budget (default: the model's, <= 512)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads per scorer (default: 1 per Ray actor, ONNX Runtime's choice in-process)")
    p.add_argument("--batch-queries", type=int, default=8, help="queries per batch (default 8)")
    p.add_argument("--tag", default="funnelrank", help="the run tag, last column (default funnelrank)")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (an actor pool, the model loaded once per actor)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to connect to (default: $RAY_ADDRESS or local)")
    p.add_argument("--concurrency", type=int, default=2, help="Ray actors (default 2)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
