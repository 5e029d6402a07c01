"""Hybrid query latency breakdown on scifact: embed the query, BM25 top-N, HNSW top-N, RRF fusion.

    python bench/bench_hybrid.py [--data ../shared/data/scifact] [--split test] [--depth 100]
                                 [--passes 2] [--embed-threads 1] [--precision fp32] [--json]

Each query runs the four parts one after the other on one thread (the embedder's ONNX Runtime threads
aside); every part and the whole sequence are timed with perf_counter, over ``--passes`` passes of all the
split's queries after a warm-up. Printed: p50 / p99 / mean milliseconds per part and for the total, and each
part's share of the mean total. Corpus embeddings come from the embedding cache (as in ``funnelrank eval``);
index building is not timed here (see ``funnelrank eval --stages bm25,dense,hybrid`` for that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact"
PARTS = ("embed_query", "bm25", "hnsw", "fusion", "total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100, help="results per retriever and after fusion")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--embed-threads", type=int, default=1, help="ONNX Runtime threads for the query embedding")
    parser.add_argument("--precision", choices=("fp32", "int8"), default=None)
    parser.add_argument("--ef", type=int, default=128, help="HNSW ef at query time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from funnelrank.core import Analyzer, BM25Index, HNSWIndex, rrf
    from funnelrank.embed import Embedder, embed_corpus
    from funnelrank.eval.beir import load_beir

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    dataset = load_beir(args.data, args.split)
    ids, texts = dataset.doc_ids(), dataset.doc_texts()
    embedder = Embedder.default(args.precision, threads=args.embed_threads)
    vectors, cached = embed_corpus(embedder, ids, texts, label=dataset.name, show_progress=True)
    log(f"corpus vectors: {vectors.shape} ({'cache' if cached else 'embedded now'})")
    bm25 = BM25Index(analyzer=Analyzer())
    bm25.add(ids, texts)
    hnsw = HNSWIndex(embedder.dim, metric="cosine", M=16, ef_construction=200)
    hnsw.add(ids, vectors)
    queries = [q.text for q in dataset.queries.values()]
    k = args.depth

    def one(text: str) -> list[float]:
        t0 = time.perf_counter()
        vec = embedder.embed_query(text)
        t1 = time.perf_counter()
        lexical = bm25.search(text, k)
        t2 = time.perf_counter()
        semantic = hnsw.search(vec, k=k, ef=args.ef)
        t3 = time.perf_counter()
        rrf([lexical, semantic], k=60, top_k=k)
        t4 = time.perf_counter()
        return [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3, (t4 - t0) * 1e3]

    load_start = round(os.getloadavg()[0], 2)
    for text in queries[:20]:  # warm-up
        one(text)
    rows = [one(text) for _ in range(args.passes) for text in queries]
    times = np.asarray(rows, dtype=np.float64)
    mean_total = float(times[:, -1].mean())
    load_end = round(os.getloadavg()[0], 2)
    report: dict[str, object] = {
        "dataset": f"{dataset.name}/{dataset.split}", "queries_timed": len(rows), "depth": k, "ef": args.ef,
        "embedder": embedder.name, "embed_threads": args.embed_threads, "machine": f"{os.cpu_count()} CPUs (shared)",
        "load_avg_1m_at_start": load_start,
        "ms": {
            part: {
                "p50": round(float(np.percentile(times[:, i], 50)), 4),
                "p99": round(float(np.percentile(times[:, i], 99)), 4),
                "mean": round(float(times[:, i].mean()), 4),
                "share_of_mean_total": round(float(times[:, i].mean()) / mean_total, 4),
            }
            for i, part in enumerate(PARTS)
        },
    }
    report["load_avg_1m_at_end"] = load_end
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['dataset']}: {len(rows)} hybrid queries (top {k}, ef {args.ef}), {embedder.name}, "
          f"{args.embed_threads} embed thread(s), {report['machine']}, load average "
          f"{report['load_avg_1m_at_start']} -> {load_end}")
    print(f"{'part':<12}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'share':>8}")
    for part, stats in report["ms"].items():  # type: ignore[union-attr]
        print(f"{part:<12}{stats['p50']:>10.3f}{stats['p99']:>10.3f}{stats['mean']:>10.3f}"
              f"{stats['share_of_mean_total']:>8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
