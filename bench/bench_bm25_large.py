"""BM25 at 1M+ documents against bm25s, tantivy and PISA, in one run, interleaved.

Corpus: ``--sizes`` documents (default 1,000,000) drawn, seeded, from the MS MARCO passages under
../shared/data (msmarco-dev-sample, trec-dl19, trec-dl22-unjudged, msmarco-train-1k corpora): each
document's length (in ``\\w\\w+`` tokens) is sampled from their lengths and its tokens from their
lowercased unigram distribution, stopwords included (every system removes them itself). Generated on the
fly into the temp directory (never committed). Queries: the 600 MS MARCO dev queries of
msmarco-dev-sample (``--queries`` of them), punctuation dropped, the same text for every system.

Systems, each in its own subprocess (peak memory = VmHWM, corpus text included; build = wall time of
indexing from the texts in memory, single-threaded where the library allows; index bytes = its saved
index on disk), all answering top-k for the whole query set per timed call:

- ours (funnelrank): ``search`` per query (loop) and ``search_batch(threads=t)``; the planner's choice per
  query is reported.
- bm25s (numba backend; ``--peer-python``, a separate venv when it clashes): ``tokenize`` + ``retrieve``
  on all queries (batch, ``n_threads=t``) and one query per call (loop).
- tantivy: ``parse_query`` + ``searcher.search`` per query; 2 threads = a thread pool over the queries.
- PISA (pyterrier-pisa): ``bm25(...).transform`` on all queries, block-max WAND and block-max MaxScore,
  ``threads=t``.

Analyzer on every side: lowercase, ``\\w\\w+`` tokens, our English stopword list, English Snowball stemming;
PISA is given text analyzed the same way in Python (PyStemmer, as for bm25s; untimed for the documents,
timed for the queries) and indexes it with its own stemmer and stopwords off: pyterrier-pisa 0.4.9
removes stopwords at query time only (they would count in its document lengths), refuses a custom
stopword list at query time, and with its porter2 stemmer ranked only 40% of our top 10 alike;
k1 = 1.2, b = 0.75 (tantivy's fixed values). Timing: after one untimed warm-up of every cell, ``--rounds``
rounds each run every cell once in alternating order; a ratio is a peer's time over ours in the same round,
reported as the median with the range over rounds. Top-10 overlap with ours is printed as the check that
the systems rank alike.

    python bench/bench_bm25_large.py [--sizes 1000000 [5000000]] [--rounds 5] [--queries 600]
        [--peer-python .venv-peers/bin/python] [--skip tantivy,pisa]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import default_data_dir, proc_status_kib, write_sampled_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MSMARCO_SETS = ("msmarco-dev-sample", "trec-dl19", "trec-dl22-unjudged", "msmarco-train-1k")
TOKEN = re.compile(r"\w\w+")
PEERS = ("bm25s", "tantivy", "pisa")


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------------
# Corpus and queries


def corpus_statistics(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vocabulary, unigram probabilities, document lengths) of the MS MARCO passages under `data`."""
    counts: dict[str, int] = {}
    lengths = []
    for name in MSMARCO_SETS:
        path = data / name / "corpus.jsonl"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                tokens = TOKEN.findall(f"{doc.get('title', '')} {doc['text']}".lower())
                lengths.append(len(tokens))
                for t in tokens:
                    counts[t] = counts.get(t, 0) + 1
    if not lengths:
        raise SystemExit(f"no MS MARCO corpus under {data} (set FUNNELRANK_SHARED_DATA or --data)")
    vocab = np.array(sorted(counts), dtype=object)
    freq = np.array([counts[t] for t in vocab], dtype=np.float64)
    return vocab, freq / freq.sum(), np.array(lengths, dtype=np.int64)


def generate_corpus(path: Path, n_docs: int, data: Path, seed: int = 0) -> None:
    """One document per line, deterministic for (n_docs, seed, the data)."""
    vocab, prob, lengths = corpus_statistics(data)
    rng = np.random.default_rng(seed)
    write_sampled_corpus(path, n_docs, vocab, np.cumsum(prob), lambda n: np.maximum(1, rng.choice(lengths, size=n)),
                         rng)


def load_queries(data: Path, n: int) -> list[str]:
    out = []
    with open(data / "msmarco-dev-sample" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            text = " ".join(re.findall(r"\w+", json.loads(line)["text"].lower()))
            if text:
                out.append(text)
    return out[:n]


# ---------------------------------------------------------------------------------------------------
# Workers (one subprocess per system): build, report, then answer timing requests on stdin


class System:
    """Builds one library's index; `run(mode, k, threads)` answers every query once, returns top ids."""

    def __init__(self, name: str, texts: list[str], queries: list[str], work: Path) -> None:
        self.name, self.queries, self.work = name, queries, work
        self.stopwords = self._stopwords()
        getattr(self, f"_build_{name}")(texts)

    @staticmethod
    def _stopwords() -> list[str]:
        path = os.environ.get("BENCH_STOPWORDS")
        return json.loads(Path(path).read_text()) if path else []

    # -- ours
    def _build_ours(self, texts: list[str]) -> None:
        from funnelrank.core import BM25Index

        self.index = BM25Index(k1=1.2, b=0.75)
        self.index.add([str(i) for i in range(len(texts))], texts)
        self.index.search("warm", 10)  # impacts are computed by the first search: part of the build

    def _save_ours(self) -> int:
        path = self.work / "ours.bm25"
        self.index.save(str(path))
        return dir_bytes(path)

    def _run_ours(self, mode: str, k: int, threads: int, ids: bool) -> list[list[str]]:
        if mode == "loop":
            return [self.index.search(q, k)[0] for q in self.queries]
        return [r[0] for r in self.index.search_batch(self.queries, k, threads=threads)]

    def plans(self, k: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self.queries:
            p = self.index._plan(q, k)
            out[p] = out.get(p, 0) + 1
        return out

    # -- bm25s
    def _build_bm25s(self, texts: list[str]) -> None:
        import bm25s
        import Stemmer

        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=False)
        self.index = bm25s.BM25(k1=1.2, b=0.75, method="lucene", backend="numba")
        self.index.index(tokens, show_progress=False)

    def _save_bm25s(self) -> int:
        path = self.work / "bm25s"
        self.index.save(str(path))
        return dir_bytes(path)

    def _run_bm25s(self, mode: str, k: int, threads: int, ids: bool) -> list[list[str]]:
        import bm25s

        def retrieve(qs: list[str], n_threads: int) -> np.ndarray:
            tokens = bm25s.tokenize(qs, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=False)
            docs, _ = self.index.retrieve(tokens, k=k, n_threads=n_threads, show_progress=False)
            return docs

        rows = [retrieve([q], 1)[0] for q in self.queries] if mode == "loop" else list(retrieve(self.queries, threads))
        return [[str(int(d)) for d in row] for row in rows] if ids else []  # (untimed: the caller's check only)

    # -- tantivy
    def _build_tantivy(self, texts: list[str]) -> None:
        import tantivy

        sb = tantivy.SchemaBuilder()
        sb.add_text_field("body", stored=False, tokenizer_name="ours", index_option="freq")
        sb.add_unsigned_field("id", stored=True)  # read back for the overlap check only
        path = self.work / "tantivy"
        path.mkdir()
        self.index = tantivy.Index(sb.build(), path=str(path))
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"\w\w+"))
                    .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.custom_stopword(self.stopwords))
                    .filter(tantivy.Filter.stemmer("english")).build())
        self.index.register_tokenizer("ours", analyzer)
        writer = self.index.writer(heap_size=512_000_000, num_threads=1)
        for i, text in enumerate(texts):
            writer.add_document(tantivy.Document(body=text, id=i))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def _save_tantivy(self) -> int:
        return dir_bytes(self.work / "tantivy")

    def _run_tantivy(self, mode: str, k: int, threads: int, ids: bool) -> list[list[str]]:
        def one(q: str) -> list[Any]:
            return [addr for _, addr in self.searcher.search(self.index.parse_query(q, ["body"]), k).hits]

        if threads == 1:
            hits = [one(q) for q in self.queries]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                hits = list(pool.map(one, self.queries))
        if ids:  # the stored ids, for the check only
            return [[str(self.searcher.doc(a)["id"][0]) for a in h[:10]] for h in hits]
        return [[] for _ in hits]

    # -- PISA
    @staticmethod
    def pisa_analyze(text: str, _state: dict[str, Any] = {}) -> str:  # noqa: B006 - a per-process cache
        """Our analysis (lowercase, \\w\\w+, our stopwords, English Snowball via PyStemmer, as for bm25s), the
        terms joined by spaces: PISA then indexes them as they are (stemmer and stopwords off)."""
        if not _state:
            import Stemmer

            _state["stem"] = Stemmer.Stemmer("english").stemWords
            _state["stops"] = set(System._stopwords())
        stops = _state["stops"]
        return " ".join(_state["stem"]([t for t in TOKEN.findall(text.lower()) if t not in stops]))

    def _build_pisa(self, texts: list[str]) -> None:
        from pyterrier_pisa import PisaIndex

        path = self.work / "pisa"
        self.pisa = PisaIndex(str(path), text_field="text", stemmer="none", stops="none", threads=1)
        self.pisa.index({"docno": str(i), "text": t} for i, t in enumerate(texts))
        self.retrievers: dict[tuple[str, int, int], Any] = {}

    def _save_pisa(self) -> int:
        return dir_bytes(self.work / "pisa")

    def _run_pisa(self, mode: str, k: int, threads: int, ids: bool) -> list[list[str]]:
        alg = "block_max_maxscore" if mode == "bmm" else "block_max_wand"
        key = (alg, k, threads)
        if key not in self.retrievers:
            from pyterrier_pisa import PisaRetrieve

            self.retrievers[key] = PisaRetrieve(self.pisa, scorer="bm25", bm25_k1=1.2, bm25_b=0.75, num_results=k,
                                                threads=threads, stops="none", query_algorithm=alg)
        import pandas as pd

        frame = pd.DataFrame({"qid": [str(i) for i in range(len(self.queries))],
                              "query": [self.pisa_analyze(q) for q in self.queries]})  # timed, as for the others
        res = self.retrievers[key].transform(frame)
        if not ids:
            return []
        out: list[list[str]] = [[] for _ in self.queries]
        for qid, docno in zip(res["qid"], res["docno"]):
            out[int(qid)].append(docno)
        return out

    def save(self) -> int:
        return int(getattr(self, f"_save_{self.name}")())

    def run(self, mode: str, k: int, threads: int, ids: bool = False) -> list[list[str]]:
        """Every query once; the top ids per query only when `ids` (the overlap check, not timed)."""
        return list(getattr(self, f"_run_{self.name}")(mode, k, threads, ids))


def worker(name: str, corpus: Path, queries_path: Path, work: Path) -> None:
    # Library chatter goes to stderr; our JSON lines go to the original stdout.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(corpus, encoding="utf-8") as f:
        texts = f.read().split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    queries = json.loads(queries_path.read_text())
    prep = 0.0
    if name == "pisa":  # analyzed here (untimed): PISA's own stopwords apply at query time only (see above)
        t0 = time.perf_counter()
        texts = [System.pisa_analyze(text) for text in texts]
        prep = time.perf_counter() - t0
    rss_loaded = proc_status_kib("VmRSS")
    t0 = time.perf_counter()
    system = System(name, texts, queries, work)
    build = time.perf_counter() - t0
    peak = proc_status_kib("VmHWM")
    del texts
    index_bytes = system.save()
    print(json.dumps({"ready": name, "build_seconds": build, "prep_seconds": prep, "peak_rss_kib": peak, "rss_loaded_kib": rss_loaded,
                      "index_bytes": index_bytes}), file=out, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("plans"):
            print(json.dumps({"plans": system.plans(int(req["k"]))}), file=out, flush=True)
            continue
        t = time.perf_counter()
        ids = system.run(req["mode"], int(req["k"]), int(req["threads"]), bool(req.get("ids")))
        seconds = time.perf_counter() - t
        reply: dict[str, Any] = {"seconds": seconds}
        if req.get("ids"):
            reply["ids"] = [row[:10] for row in ids]
        print(json.dumps(reply), file=out, flush=True)


# ---------------------------------------------------------------------------------------------------
# Coordinator


class Worker:
    def __init__(self, name: str, python: str, corpus: Path, queries: Path, work: Path, env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen([python, __file__, "--worker", name, "--corpus", str(corpus), "--query-file",
                                      str(queries), "--work", str(work)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (status {self.proc.wait()})")
        return dict(json.loads(line))

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


# (system, mode, threads): the timed cells; ours first of each thread count is the reference.
CELLS = {
    1: [("ours", "loop"), ("ours", "batch"), ("bm25s", "batch"), ("bm25s", "loop"), ("tantivy", "loop"),
        ("pisa", "bmw"), ("pisa", "bmm")],
    2: [("ours", "batch"), ("bm25s", "batch"), ("tantivy", "loop"), ("pisa", "bmw"), ("pisa", "bmm")],
}


def bench_size(n_docs: int, args: argparse.Namespace, systems: list[str], stopwords: Path) -> dict[str, Any]:
    cache = Path(tempfile.gettempdir()) / "funnelrank-bench"
    cache.mkdir(exist_ok=True)
    corpus = cache / f"msmarco_like_{n_docs}_s0.txt"
    if not corpus.is_file():
        t0 = time.perf_counter()
        generate_corpus(corpus, n_docs, args.data)
        print(f"[{n_docs}] generated in {time.perf_counter() - t0:.0f}s -> {corpus} "
              f"({corpus.stat().st_size / 1e6:.0f} MB)", flush=True)
    queries = load_queries(args.data, args.queries)
    qfile = cache / "msmarco_dev_queries.json"
    qfile.write_text(json.dumps(queries))
    work = Path(tempfile.mkdtemp(prefix="bm25-large-", dir=cache))
    workers: dict[str, Worker] = {}
    try:
        for name in systems:  # built one after another: build times are not shared with another build
            env = os.environ.copy()
            env.update(BENCH_STOPWORDS=str(stopwords), NUMBA_NUM_THREADS="2", PYTHONUNBUFFERED="1")
            python = sys.executable if name == "ours" else args.peer_python
            (work / name).mkdir()
            try:
                workers[name] = Worker(name, python, corpus, qfile, work / name, env)
            except Exception as e:  # noqa: BLE001 - a peer that does not run is reported, not fatal
                print(f"[{n_docs}] {name}: not run: {e}", flush=True)
                continue
            i = workers[name].info
            prep = f" (+{i['prep_seconds']:.0f}s analysis in Python, untimed)" if i["prep_seconds"] else ""
            print(f"[{n_docs}] {name:8} build {i['build_seconds']:7.1f}s{prep}, peak RSS {i['peak_rss_kib'] / 2**20:5.2f} GiB "
                  f"(corpus text {i['rss_loaded_kib'] / 2**20:4.2f} GiB of it), index {i['index_bytes'] / 2**20:7.1f} MiB",
                  flush=True)
        ours = workers["ours"]
        for k in args.k:
            print(f"[{n_docs}] ours' planner, k={k}: {ours.ask(plans=True, k=k)['plans']}", flush=True)
        ref = ours.ask(mode="loop", k=10, threads=1, ids=True)["ids"]
        for name, w in workers.items():
            if name == "ours":
                continue
            mode = {"bm25s": "batch", "tantivy": "loop", "pisa": "bmw"}[name]
            got = w.ask(mode=mode, k=10, threads=1, ids=True)["ids"]
            overlap = np.mean([len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(ref, got)])
            print(f"[{n_docs}] top-10 overlap with ours: {name} {overlap:.3f}", flush=True)
        results: dict[str, Any] = {"docs": n_docs, "build": {n: w.info for n, w in workers.items()}, "ratios": {}}
        for k in args.k:
            for threads in args.threads:
                cells = [(s, m) for s, m in CELLS[threads] if s in workers]
                for s, m in cells:  # warm-up (numba compiles, caches fill)
                    workers[s].ask(mode=m, k=k, threads=threads)
                times: dict[tuple[str, str], list[float]] = {c: [] for c in cells}
                for r in range(args.rounds):
                    for c in (cells if r % 2 == 0 else cells[::-1]):
                        times[c].append(workers[c[0]].ask(mode=c[1], k=k, threads=threads)["seconds"])
                ref_cell = ("ours", "loop") if threads == 1 else ("ours", "batch")
                nq = len(queries)
                line = [f"[{n_docs}] k={k:<3} threads={threads}: QPS (best round)"]
                for c in cells:
                    line.append(f"{c[0]}-{c[1]} {nq / min(times[c]):7.0f}")
                print(" | ".join(line), flush=True)
                for c in cells:
                    if c[0] == "ours":
                        continue
                    ratios = sorted(p / o for p, o in zip(times[c], times[ref_cell]))
                    med = float(np.median(ratios))
                    results["ratios"][f"k{k}_t{threads}_{c[0]}_{c[1]}"] = [med, ratios[0], ratios[-1]]
                    print(f"[{n_docs}] k={k:<3} threads={threads}: ours ({ref_cell[1]}) vs {c[0]} {c[1]:5}: "
                          f"{med:5.2f}x (range {ratios[0]:4.2f}-{ratios[-1]:4.2f}) target >= 1.5", flush=True)
                if threads == 1:
                    speedup = sorted(o / b for o, b in zip(times[("ours", "loop")], times[("ours", "batch")]))
                    print(f"[{n_docs}] k={k:<3} ours search_batch(threads=1) vs loop: {np.median(speedup):4.2f}x",
                          flush=True)
        return results
    finally:
        for w in workers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001
                w.proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--queries", type=int, default=600)
    p.add_argument("--k", type=int, nargs="+", default=[10, 100])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--skip", default="", help="comma-separated peers to leave out (bm25s, tantivy, pisa)")
    default_peer = REPO / ".venv-peers" / "bin" / "python"
    p.add_argument("--peer-python", default=str(default_peer) if default_peer.is_file() else sys.executable,
                   help="interpreter with bm25s, tantivy and pyterrier-pisa installed")
    p.add_argument("--worker", choices=("ours", *PEERS), help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--query-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.corpus, args.query_file, args.work)
        return 0
    if not (args.data / "msmarco-dev-sample").is_dir():
        print(f"skipped: no msmarco-dev-sample under {args.data} (set FUNNELRANK_SHARED_DATA or --data)")
        return 0
    from funnelrank.core import Analyzer

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    systems = ["ours", *[s for s in PEERS if s not in skip]]
    cache = Path(tempfile.gettempdir()) / "funnelrank-bench"
    cache.mkdir(exist_ok=True)
    stopwords = cache / "stopwords.json"
    stopwords.write_text(json.dumps(sorted(Analyzer().stopwords)))
    print(f"machine: {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; peers from {args.peer_python}", flush=True)
    for n in args.sizes:
        bench_size(n, args, systems, stopwords)
    return 0


if __name__ == "__main__":
    sys.exit(main())
