"""fp32 vs int8 all-MiniLM-L6-v2 on this CPU: throughput, agreement with sentence-transformers, and
dense retrieval quality on scifact. Both run through the same Embedder (same tokenizer, pooling,
length-sorted token-budget batching, same ONNX Runtime thread count); only the ONNX file differs.

    python bench/bench_embedder.py [--data ../shared/data/scifact] [--sample 300] [--threads 2]
                                   [--repeats 2] [--chunk 50] [--budgets 4096,8192,16384] [--no-quality] [--json]

* throughput: texts/s embedding a fixed random sample of the corpus (title + text) in chunks of ``--chunk``
  texts, fp32 and int8 alternating chunk by chunk, ``--repeats`` passes. The machine is shared and noisy, so
  reported are the best and median wall texts/s, the median texts per CPU-second, and the median of the
  paired per-chunk int8/fp32 speed ratios (each pair ran back to back under the same load);
* budget sweep (``--budgets``): fp32 at each padded-token budget and the default one, interleaved chunk by
  chunk the same way (ratios are against the smallest budget), to pick the default;
* agreement: cosine of each precision's vectors with sentence-transformers' on the first 200 sample texts;
* quality: nDCG@10 / Recall@100 on the test split by exact (brute-force) inner-product search over the whole
  corpus, so the figure is the embedder's alone, not HNSW's. Corpus vectors go through the embedding cache
  (``funnelrank.embed.embed_corpus``), shared with ``funnelrank eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact"
PRECISIONS = ("fp32", "int8")


def _throughput(embedders: dict[str, object], texts: list[str], repeats: int, chunk: int) -> dict[str, object]:
    """Embed `texts` in chunks, alternating the embedders chunk by chunk (so both see the same machine
    load), `repeats` times. Per embedder: best and median texts/s (wall) and median texts per CPU-second
    (process CPU time, all threads); plus the median of the paired per-chunk speed ratios vs the first."""
    chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    wall: dict[str, list[float]] = {name: [] for name in embedders}
    cpu: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(repeats):
        for part in chunks:
            for name, emb in embedders.items():
                w0, c0 = time.perf_counter(), time.process_time()
                emb.embed(part)  # type: ignore[attr-defined]
                w, c = time.perf_counter() - w0, time.process_time() - c0
                wall[name].append(len(part) / w)
                cpu[name].append(len(part) / max(c, 1e-9))
    first = next(iter(embedders))
    out: dict[str, object] = {}
    for name in embedders:
        out[name] = {
            "texts_per_s_best": round(max(wall[name]), 2),
            "texts_per_s_median": round(float(np.median(wall[name])), 2),
            "texts_per_cpu_s_median": round(float(np.median(cpu[name])), 2),
        }
        if name != first:
            ratios = np.asarray(wall[name]) / np.asarray(wall[first])
            out[f"{name}_over_{first}_paired_median"] = round(float(np.median(ratios)), 3)
    return out


def _exact_search(doc_vecs: np.ndarray, doc_ids: list[str], query_vecs: np.ndarray, qids: list[str], k: int):
    scores = query_vecs @ doc_vecs.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    rankings = {}
    for row, qid in enumerate(qids):
        idx = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
        rankings[qid] = [(doc_ids[i], float(scores[row, i])) for i in idx]
    return rankings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--sample", type=int, default=300, help="corpus texts timed for throughput")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (both models)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=50, help="texts per timed call (fp32/int8 alternate)")
    parser.add_argument("--budgets", default="", help="comma-separated padded-token budgets to sweep")
    parser.add_argument("--no-quality", action="store_true", help="skip agreement and nDCG (throughput only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()

    from funnelrank.embed import Embedder, embed_corpus
    from funnelrank.embed.default_model import source_model_dir
    from funnelrank.eval.beir import load_beir
    from funnelrank.eval.metrics import evaluate

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    dataset = load_beir(args.data, args.split)
    doc_ids, doc_texts = dataset.doc_ids(), dataset.doc_texts()
    sample = random.Random(0).sample(doc_texts, min(args.sample, len(doc_texts)))
    embedders = {p: Embedder.default(p, threads=args.threads) for p in PRECISIONS}
    for emb in embedders.values():
        emb.embed(sample[:32])  # warm-up
    tokens = sum(embedders["fp32"].token_lengths(sample))
    report: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPUs (shared)", "threads": args.threads,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "sample_texts": len(sample), "sample_tokens": tokens, "max_tokens": embedders["fp32"].max_tokens,
    }

    log(f"throughput: {len(sample)} texts ({tokens} tokens), chunks of {args.chunk}, {args.repeats} repeats")
    report["throughput"] = _throughput(embedders, sample, args.repeats, args.chunk)
    log(f"  {report['throughput']}")

    if args.budgets:
        budgets = sorted({int(b) for b in args.budgets.split(",")} | {embedders["fp32"].max_tokens})
        log(f"budget sweep (fp32, interleaved chunk by chunk): {budgets}")
        variants = {f"fp32@{b}": Embedder.default("fp32", threads=args.threads, max_tokens=b) for b in budgets}
        report["budget_sweep"] = _throughput(variants, sample, args.repeats, args.chunk)
        log(f"  {report['budget_sweep']}")

    if not args.no_quality:
        from sentence_transformers import SentenceTransformer

        log("agreement with sentence-transformers on 200 texts")
        st = SentenceTransformer(str(source_model_dir()), device="cpu")
        ref = np.asarray(st.encode(sample[:200], batch_size=32), dtype=np.float32)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        agreement = {}
        for p, emb in embedders.items():
            cos = (emb.embed(sample[:200]) * ref).sum(axis=1)
            agreement[p] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
        report["cosine_vs_sentence_transformers"] = agreement

        qids = list(dataset.queries)
        quality = {}
        for p, emb in embedders.items():
            start = time.perf_counter()
            vecs, hit = embed_corpus(emb, doc_ids, doc_texts, label=dataset.name, show_progress=True)
            log(f"{p}: corpus embedded in {time.perf_counter() - start:.1f}s (cache hit: {hit})")
            qvecs = emb.embed([dataset.queries[q].text for q in qids])
            result = evaluate(_exact_search(vecs, doc_ids, qvecs, qids, 100), dataset.qrels,
                              ("ndcg@10", "recall@100"))
            quality[p] = {k: round(v, 4) for k, v in result.mean.items()}
        report[f"{dataset.name}_{args.split}_exact_search"] = quality

    report["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
