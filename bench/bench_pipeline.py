"""What the funnel costs on top of the core: `Pipeline.search` (stage 1 only) against the same searches called
on the core's indexes directly, in one run, on scifact.

    python bench/bench_pipeline.py [--data ../shared/data/scifact] [--split test] [--depth 100]
                                   [--top-k 10] [--rounds 5] [--json]

For each retriever (bm25, hybrid) every query runs both ways, interleaved round by round
(bench/timing.py): ``Pipeline(collection, retriever, reranker=None, candidates=depth, top_k=top_k).search(q)`` and the
bare calls it stands for (``BM25Index.search``; for hybrid also the query embedding, ``HNSWIndex.search``
and ``rrf``) on the very indexes inside the collection. Printed per retriever: the median per-query
milliseconds of each and ``ratio`` = pipeline / bare (1.00 = no overhead), the median of per-round ratios
with their range. Both use one thread (the query embedding's ONNX Runtime threads aside).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
DEFAULT_DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10, help="results the pipeline returns (default 10, its own)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        print(f"bench_pipeline: no dataset at {args.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2

    from funnelrank._core import rrf
    from funnelrank.eval.beir import load_beir
    from funnelrank.pipeline import Pipeline
    from funnelrank.store.collection import Collection
    from timing import interleaved_rounds

    ds = load_beir(args.data, args.split, with_run=False)
    queries = [q.text for q in ds.queries.values()]
    collection = Collection(dense=True)
    collection.add(ds.doc_ids(), ds.doc_texts(), embedding_cache=ds.name, show_progress=False)
    bm25, hnsw, embedder = collection._bm25, collection._hnsw, collection.embedder
    depth = args.depth

    def bare_bm25(q: str) -> object:
        return bm25.search(q, k=depth)

    def bare_hybrid(q: str) -> object:
        vector = np.asarray(embedder.embed_query(q), dtype=np.float32)
        b, d = bm25.search(q, k=depth), hnsw.search(vector, k=depth)
        return rrf([(list(b[0]), b[1]), (list(d[0]), d[1])], k=60.0, top_k=depth)

    report: dict[str, object] = {"dataset": f"{ds.name}/{args.split}", "queries": len(queries), "depth": depth,
                                 "top_k": args.top_k,
                                 "rounds": args.rounds, "retrievers": {}}
    for name, bare in (("bm25", bare_bm25), ("hybrid", bare_hybrid)):
        pipe = Pipeline(collection, name, reranker=None, candidates=depth, top_k=args.top_k)
        for q in queries[:5]:  # warm-up
            pipe.search(q)
            bare(q)
        times, _ = interleaved_rounds(
            {"pipeline": lambda: [pipe.search(q) for q in queries], "bare": lambda: [bare(q) for q in queries]},
            args.rounds,
        )
        per_round = [(p * 1000.0 / len(queries), b * 1000.0 / len(queries))
                     for (p, _), (b, _) in zip(times["pipeline"], times["bare"])]
        pipe_ms = float(np.median([p for p, _ in per_round]))
        bare_ms = float(np.median([b for _, b in per_round]))
        ratios = [p / b for p, b in per_round]
        report["retrievers"][name] = {  # type: ignore[index]
            "pipeline_ms": round(pipe_ms, 4), "bare_ms": round(bare_ms, 4),
            "ratio": round(float(np.median(ratios)), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['dataset']}: {len(queries)} queries, depth {depth}, top {args.top_k}, "
          f"{args.rounds} interleaved rounds")
    for name, row in report["retrievers"].items():  # type: ignore[attr-defined]
        print(f"  {name:7s} pipeline {row['pipeline_ms']:8.3f} ms   bare core {row['bare_ms']:8.3f} ms   "
              f"ratio x{row['ratio']:.3f} ({row['ratio_range'][0]:.3f}-{row['ratio_range'][1]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
