"""BM25 speed against bm25s, same analyzer settings, single thread, tokenization included for both.

1. Query throughput on the scifact and nfcorpus test queries (from ../shared/data; skipped with a message
   when absent): ours one query at a time with ``BM25Index.search`` (and ``search_batch(threads=1)``), bm25s
   batched the way its docs recommend (``bm25s.tokenize`` of all queries, then one ``retrieve`` call with the
   numba backend, ``n_threads=1``, ``NUMBA_NUM_THREADS=1``), both returning the top k of every query.
   After a warm-up (numba compiles on first use), ``--repeat`` rounds each time every variant once over
   all queries, in alternating order (ours first, then bm25s first, ...); the ratio ours/bm25s is taken
   within each round and the median over rounds is reported (a shared machine's load bursts then hit both
   sides of a ratio alike), with the range over rounds, for wall and process-CPU time.
2. Index build time and peak RSS on a synthetic corpus (default 1,000,000 documents, 50k-term vocabulary
   with Zipf(1) frequencies, lengths uniform in 50..200 tokens), each library in its own subprocess
   (peak RSS = VmHWM; "build" = the growth of peak RSS over the RSS with the corpus already loaded).

Analyzer settings for both: lowercase, token pattern ``(?u)\\b\\w\\w+\\b``, our "english" stopword list
passed to ``bm25s.tokenize``, Snowball english stemming (ours: libstemmer; bm25s: PyStemmer).

    python bench/bench_bm25.py [--docs 1000000] [--repeat 9] [--skip-synthetic] [--skip-beir] [--data DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # bm25s's numba backend: one thread, like ours

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import default_data_dir, proc_status_kib, write_sampled_corpus  # noqa: E402
from timing import interleaved_rounds  # noqa: E402

K_VALUES = (10, 100)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------------------------------------
# 1. BEIR query throughput


def bench_beir(data_dir: Path, name: str, repeat: int) -> dict[str, float] | None:
    import bm25s
    import Stemmer
    from funnelrank.core import Analyzer, BM25Index
    from funnelrank.eval.beir import load_corpus, load_qrels, load_queries
    from funnelrank.eval.metrics import evaluate

    root = data_dir / name
    if not (root / "corpus.jsonl").is_file():
        print(f"[{name}] skipped: no dataset at {root}")
        return None
    corpus = load_corpus(root / "corpus.jsonl")
    queries = load_queries(root / "queries.jsonl")
    qrels = load_qrels(root / "qrels" / "test.tsv")
    qids = [q for q in qrels if q in queries]
    qtexts = [queries[q].text for q in qids]
    doc_ids = list(corpus)
    texts = [corpus[d].full_text for d in doc_ids]

    analyzer = Analyzer()
    stopwords = analyzer.stopwords
    stemmer = Stemmer.Stemmer("english")

    t0 = time.perf_counter()
    ours = BM25Index(analyzer=analyzer)
    ours.add(doc_ids, texts)
    ours_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = bm25s.BM25(k1=1.2, b=0.75, method="lucene", backend="numba")
    theirs.index(bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer, show_progress=False), show_progress=False)
    theirs_build = time.perf_counter() - t0

    def run_bm25s(k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = bm25s.tokenize(qtexts, stopwords=stopwords, stemmer=stemmer, show_progress=False)
        return theirs.retrieve(tokens, k=k, n_threads=1, show_progress=False)

    out: dict[str, float] = {"queries": len(qids), "docs": len(doc_ids)}
    print(f"[{name}] {len(doc_ids)} docs, {len(qids)} test queries; build: ours {ours_build:.3f}s, "
          f"bm25s {theirs_build:.3f}s")
    for k in K_VALUES:
        ours.search(qtexts[0], k)  # warm-up
        run_bm25s(k)  # warm-up: numba compiles here
        times, _ = interleaved_rounds({"ours": lambda: [ours.search(q, k) for q in qtexts],
                                    "batch": lambda: ours.search_batch(qtexts, k, threads=1),
                                    "bm25s": lambda: run_bm25s(k)}, repeat)
        for clock, idx in (("wall", 0), ("cpu", 1)):
            best = {name: min(t[idx] for t in ts) for name, ts in times.items()}
            qps_loop, qps_batch, qps_bm25s = (len(qids) / best[name] for name in ("ours", "batch", "bm25s"))
            ratios = sorted(b[idx] / o[idx] for o, b in zip(times["ours"], times["bm25s"]))
            ratios_batch = sorted(b[idx] / o[idx] for o, b in zip(times["batch"], times["bm25s"]))
            ratio, ratio_batch = float(np.median(ratios)), float(np.median(ratios_batch))
            out[f"qps_{clock}_ours_k{k}"] = qps_loop
            out[f"qps_{clock}_ours_batch1_k{k}"] = qps_batch
            out[f"qps_{clock}_bm25s_k{k}"] = qps_bm25s
            out[f"ratio_{clock}_k{k}"] = ratio
            out[f"ratio_{clock}_batch1_k{k}"] = ratio_batch
            print(f"[{name}] k={k:<3} {clock:4} best QPS: ours (search loop) {qps_loop:7.0f} | ours (search_batch, "
                  f"1 thread) {qps_batch:7.0f} | bm25s (batched) {qps_bm25s:7.0f}")
            print(f"[{name}] k={k:<3} {clock:4} QPS ratio ours/bm25s, median of {repeat} interleaved rounds: "
                  f"search loop {ratio:4.2f}x (range {ratios[0]:4.2f}-{ratios[-1]:4.2f}), search_batch "
                  f"{ratio_batch:4.2f}x (range {ratios_batch[0]:4.2f}-{ratios_batch[-1]:4.2f}); target >= 2")

    ours_run = {q: list(zip(*ours.search(t, 10))) for q, t in zip(qids, qtexts)}
    docs_b, scores_b = run_bm25s(10)
    bm25s_run = {q: [(doc_ids[int(i)], float(s)) for i, s in zip(docs_b[j], scores_b[j])] for j, q in enumerate(qids)}
    ndcg_ours = evaluate(ours_run, {q: qrels[q] for q in qids}, ["ndcg@10"]).mean["ndcg@10"]
    ndcg_bm25s = evaluate(bm25s_run, {q: qrels[q] for q in qids}, ["ndcg@10"]).mean["ndcg@10"]
    out["ndcg10_ours"] = ndcg_ours
    out["ndcg10_bm25s"] = ndcg_bm25s
    print(f"[{name}] nDCG@10 ours {ndcg_ours:.4f} | bm25s {ndcg_bm25s:.4f} (same stopwords; stemmers differ in "
          f"Snowball version)")
    return out


# ---------------------------------------------------------------------------------------------------
# 2. Synthetic corpus: build time and peak RSS


def synthetic_corpus(path: Path, n_docs: int, vocab_size: int = 50_000, seed: int = 0) -> None:
    """One document per line; deterministic for (n_docs, vocab_size, seed)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < vocab_size:
        for length in rng.integers(4, 11, size=vocab_size):
            words.add("".join(rng.choice(letters, size=int(length))))
    vocab = np.array(sorted(words)[:vocab_size], dtype=object)
    rng.shuffle(vocab)  # rank r gets a random word
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1))
    cdf /= cdf[-1]
    write_sampled_corpus(path, n_docs, vocab, cdf, lambda n: rng.integers(50, 201, size=n), rng)


def worker(library: str, corpus_path: Path) -> None:
    """Runs in a subprocess: build one library's index over the corpus file, print a JSON line."""
    with open(corpus_path, encoding="utf-8") as f:
        texts = f.read().split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    ids = [str(i) for i in range(len(texts))] if library == "ours" else []
    rss_loaded = proc_status_kib("VmRSS")
    c0 = time.process_time()
    t0 = time.perf_counter()
    if library == "ours":
        from funnelrank.core import BM25Index

        index = BM25Index()
        index.add(ids, texts)
        n = len(index)
    else:
        import bm25s
        import Stemmer
        from funnelrank.core import Analyzer

        tokens = bm25s.tokenize(texts, stopwords=Analyzer().stopwords, stemmer=Stemmer.Stemmer("english"),
                                show_progress=False)
        index = bm25s.BM25(k1=1.2, b=0.75, method="lucene", backend="numba")
        index.index(tokens, show_progress=False)
        n = len(texts)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    print(json.dumps({"library": library, "docs": n, "build_seconds": seconds, "build_cpu_seconds": cpu_seconds,
                      "rss_loaded_kib": rss_loaded,
                      "peak_rss_kib": proc_status_kib("VmHWM")}))


def bench_synthetic(n_docs: int) -> dict[str, float]:
    cache = Path(tempfile.gettempdir()) / "funnelrank-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"synthetic_{n_docs}_v50000_s0.txt"
    if not path.is_file():
        t0 = time.perf_counter()
        synthetic_corpus(path, n_docs)
        print(f"[synthetic] generated {n_docs} documents in {time.perf_counter() - t0:.1f}s -> {path} "
              f"({path.stat().st_size / 1e6:.0f} MB)")
    results = {}
    for library in ("ours", "bm25s"):
        proc = subprocess.run([sys.executable, __file__, "--worker", library, "--corpus", str(path)],
                              capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"{library} worker failed:\n{proc.stderr[-3000:]}")
        results[library] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[library]
        print(f"[synthetic] {library:5}: build {r['build_seconds']:7.1f}s wall, {r['build_cpu_seconds']:7.1f}s CPU, peak RSS {r['peak_rss_kib'] / 2**20:5.2f} GiB "
              f"(corpus loaded: {r['rss_loaded_kib'] / 2**20:5.2f} GiB, build adds "
              f"{(r['peak_rss_kib'] - r['rss_loaded_kib']) / 2**20:5.2f} GiB)")
    o, b = results["ours"], results["bm25s"]
    ratio_t = o["build_seconds"] / b["build_seconds"]
    ratio_c = o["build_cpu_seconds"] / b["build_cpu_seconds"]
    ratio_m = (o["peak_rss_kib"] - o["rss_loaded_kib"]) / max(1, b["peak_rss_kib"] - b["rss_loaded_kib"])
    print(f"[synthetic] ratio ours/bm25s: build time {ratio_t:.2f}x wall, {ratio_c:.2f}x CPU (target <= 1), "
          f"peak RSS {o['peak_rss_kib'] / b['peak_rss_kib']:.2f}x, build memory {ratio_m:.2f}x")
    return {"build_seconds_ours": o["build_seconds"], "build_seconds_bm25s": b["build_seconds"],
            "build_cpu_seconds_ours": o["build_cpu_seconds"], "build_cpu_seconds_bm25s": b["build_cpu_seconds"],
            "peak_rss_kib_ours": o["peak_rss_kib"], "peak_rss_kib_bm25s": b["peak_rss_kib"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data_dir(), help="BEIR data directory (../shared/data)")
    p.add_argument("--docs", type=int, default=1_000_000, help="synthetic corpus size")
    p.add_argument("--repeat", type=int, default=9, help="interleaved timing rounds per measurement (median ratio)")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--skip-beir", action="store_true")
    p.add_argument("--worker", choices=["ours", "bm25s"], help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.corpus)
        return 0

    import bm25s
    import numba

    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"python {platform.python_version()}")
    print(f"peer: bm25s {bm25s.__version__} (backend='numba', numba {numba.__version__}, NUMBA_NUM_THREADS="
          f"{os.environ['NUMBA_NUM_THREADS']}, retrieve n_threads=1), PyStemmer english; ours single-threaded")
    if not args.skip_beir:
        if not args.data.is_dir():
            print(f"BEIR part skipped: no data directory at {args.data} (set FUNNELRANK_SHARED_DATA or --data)")
        else:
            for name in ("scifact", "nfcorpus"):
                bench_beir(args.data, name, args.repeat)
    if not args.skip_synthetic:
        bench_synthetic(args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
