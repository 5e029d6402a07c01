"""HNSW speed and recall: funnelrank's HNSWIndex against hnswlib, faiss-cpu IndexHNSWFlat, usearch and voyager.

    python bench/bench_hnsw.py [--n 100000] [--dim 384] [--queries 1000] [--efs 16,24,32,40,48,56,64,96,128]
                               [--rounds 9] [--no-scifact] [--scifact-queries all|test] [--batch-threads N]
                               [--filter] [--json PATH]

Every library indexes the same vectors with the same parameters (inner product on L2-normalised float32,
M=16, ef_construction=200) and answers the same held-out queries at each ef. Per library and ef:
recall@10 against exact search (numpy brute force), single-query QPS (one thread, one query per call, in a
Python loop, as an application would call it) and batch QPS (100 queries per call, all threads or
--batch-threads; each library returns what its batch call returns: ours a (ids, scores) pair per query with
str ids, the peers numpy arrays). Build time (all threads) per library. A peer that is not installed is
skipped with a message (--libraries picks them; all float32).

Timing (like bench_bm25.py): --rounds interleaved rounds per ef, each running every library once over all
queries in a fresh random order, after an untimed 10 ms pause (so faiss's spinning OpenMP threads slow
nobody); single-query and batch rounds are separate. QPS = queries / median round time; a speed ratio
ours/hnswlib = the median over rounds of the ratio within a round (both timed back to back under the same
background load), printed with its range over rounds, and the 1-minute load average per ef. The summary
also gives the ratio by process CPU time (work done, all threads; steadier than wall time under load, but
blind to time spent waiting for threads).

Data sets:
  synthetic  n x dim vectors from a 100-component gaussian mixture in a 256-dimensional latent space,
             randomly projected to `dim` dimensions plus isotropic noise, then L2-normalised: clustered and
             anisotropic like sentence embeddings (uniform noise would make every method's recall
             meaningless); queries are held-out samples of the same mixture.
  scifact    the scifact corpus embedded with funnelrank's default embedder (all-MiniLM-L6-v2), all 1,109
             of its queries (train and test; --scifact-queries test: the 300 test queries) as queries: this
             is a speed and recall bench, not a relevance evaluation, and 300 queries put recall@10 on a
             step of 1/3000, too coarse to tell which ef first reaches 0.99; embeddings cached as .npy under
             /tmp/funnelrank-bench (skipped with a message if the embedder or data is unavailable).

--filter adds a sweep of allow-list sizes on the synthetic index, timing the filtered graph walk against
exact scoring of the allowed ids, which is how HNSWIndex's exact_filter_crossover default was chosen.

Printed: a table per data set and, for each peer, the QPS ratio ours / peer at the smallest ef where each
library reaches recall@10 >= 0.95 and >= 0.99 (a fine ef grid by default, so neither side is taken at an
ef well past the one it needs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_rounds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("FUNNELRANK_BENCH_CACHE", "/tmp/funnelrank-bench"))
M, EF_CONSTRUCTION, K = 16, 200, 10
BATCH = 100  # queries per batch call
BATCH_THREADS = 0  # threads per batch call, every library (0 = all; --batch-threads)
SETTLE_SECONDS = 0.01  # untimed pause before each timed call (see interleaved_rounds)
LIBRARIES = ("funnelrank", "hnswlib", "faiss", "usearch", "voyager")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- data ----


def mixture(n: int, dim: int, seed: int, clusters: int = 100, latent: int = 256) -> np.ndarray:
    """n L2-normalised float32 vectors: gaussian mixture in `latent` dims, random projection, small noise."""
    structure = np.random.default_rng(20240501)  # same mixture for data and queries
    centres = structure.normal(size=(clusters, latent)).astype(np.float32)
    projection = (structure.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20000):  # chunks keep the temporaries small
        m = min(20000, n - start)
        z = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ projection + 0.1 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row indices of the k largest inner products per query (numpy brute force)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        sims = queries[start : start + 256] @ data.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return out


def scifact_vectors(split: str = "all") -> tuple[np.ndarray, np.ndarray] | None:
    """(corpus, test queries) embeddings of scifact; None (with a message) if unavailable.

    The corpus comes from funnelrank's corpus embedding cache (shared with `funnelrank eval`) when the
    package has one; the queries (and the corpus otherwise) are cached as .npy under CACHE."""
    root = DATA / "scifact"
    if not (root / "corpus.jsonl").is_file():
        log(f"scifact: skipped (no data at {root})")
        return None
    try:
        from funnelrank.embed import Embedder
        from funnelrank.eval.beir import load_beir, load_queries
    except ImportError as exc:
        log(f"scifact: skipped (funnelrank has no embedder yet: {exc})")
        return None
    try:
        embedder = Embedder.default()
    except Exception as exc:  # noqa: BLE001 - any failure to find/load the model means: skip this part
        log(f"scifact: skipped (default embedder unavailable: {exc})")
        return None
    dataset = load_beir(root, "test")
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = f"scifact-{embedder.fingerprint[:16]}"

    def cached(name: str, texts: list[str]) -> np.ndarray:
        path = CACHE / f"{stem}.{name}.npy"
        if path.is_file():
            return np.load(path)
        log(f"scifact: embedding {len(texts)} {name} once (cached to {path})")
        array = np.ascontiguousarray(embedder.embed(texts, show_progress=True), dtype=np.float32)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
        return array

    try:
        from funnelrank.embed import embed_corpus
    except ImportError:
        corpus = cached("corpus", dataset.doc_texts())
    else:
        corpus, _ = embed_corpus(embedder, dataset.doc_ids(), dataset.doc_texts(), label="scifact",
                                 show_progress=True)
    if split == "test":
        queries = cached("queries", [q.text for q in dataset.queries.values()])
    else:
        queries = cached("queries-all", [q.text for q in load_queries(root / "queries.jsonl").values()])
    return np.ascontiguousarray(corpus, dtype=np.float32), queries


# ---- the three libraries behind one interface ----


class Adapter:
    """Builds an index over rows 0..n-1 and answers top-K queries as row-index arrays."""

    name = ""

    def build(self, data: np.ndarray) -> None:
        raise NotImplementedError

    def set_ef(self, ef: int) -> None:
        raise NotImplementedError

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def batch(self, queries: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Ours(Adapter):
    name = "funnelrank"

    def build(self, data: np.ndarray) -> None:
        from funnelrank.core import HNSWIndex

        self.index = HNSWIndex(data.shape[1], metric="ip", M=M, ef_construction=EF_CONSTRUCTION,
                               initial_capacity=len(data))
        self.index.add([str(i) for i in range(len(data))], data)
        self.ef = 64

    def set_ef(self, ef: int) -> None:
        self.ef = ef

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        search, ef = self.index.search, self.ef
        return [search(q, K, ef)[0] for q in queries]

    def batch(self, queries: np.ndarray) -> list:
        return self.index.search_batch(queries, K, self.ef, threads=BATCH_THREADS)

    @staticmethod
    def rows(results: list) -> list[np.ndarray]:
        return [np.fromiter(map(int, ids), dtype=np.int64, count=len(ids)) for ids in results]


class Hnswlib(Adapter):
    name = "hnswlib"

    def build(self, data: np.ndarray) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=data.shape[1])
        self.index.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
        self.index.add_items(data, np.arange(len(data)), num_threads=-1)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        query = self.index.knn_query
        return [query(q, k=K, num_threads=1)[0][0] for q in queries]

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.knn_query(queries, k=K, num_threads=BATCH_THREADS or -1)[0]


class Faiss(Adapter):
    name = "faiss"

    def build(self, data: np.ndarray) -> None:
        import faiss

        self.faiss = faiss
        self.threads = faiss.omp_get_max_threads()
        self.index = faiss.IndexHNSWFlat(data.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(data)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        self.faiss.omp_set_num_threads(1)
        try:
            search = self.index.search
            return [search(queries[i : i + 1], K)[1][0] for i in range(len(queries))]
        finally:
            self.faiss.omp_set_num_threads(self.threads)

    def batch(self, queries: np.ndarray) -> np.ndarray:
        if not BATCH_THREADS:
            return self.index.search(queries, K)[1]
        self.faiss.omp_set_num_threads(BATCH_THREADS)
        try:
            return self.index.search(queries, K)[1]
        finally:
            self.faiss.omp_set_num_threads(self.threads)


class Usearch(Adapter):
    name = "usearch"

    def build(self, data: np.ndarray) -> None:
        from usearch.index import Index

        self.index = Index(ndim=data.shape[1], metric="ip", dtype="f32", connectivity=M,
                           expansion_add=EF_CONSTRUCTION)
        self.index.add(np.arange(len(data)), data, threads=0)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        search = self.index.search
        return [search(q, K, threads=1).keys for q in queries]

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search(queries, K, threads=BATCH_THREADS).keys


class Voyager(Adapter):
    name = "voyager"

    def build(self, data: np.ndarray) -> None:
        from voyager import Index, Space, StorageDataType

        self.index = Index(Space.InnerProduct, num_dimensions=data.shape[1], M=M, ef_construction=EF_CONSTRUCTION,
                           random_seed=1, max_elements=len(data), storage_data_type=StorageDataType.Float32)
        self.index.add_items(data, list(range(len(data))), num_threads=-1)
        self.ef = 64

    def set_ef(self, ef: int) -> None:
        self.ef = ef

    def single(self, queries: np.ndarray) -> list[np.ndarray]:
        query, ef = self.index.query, self.ef
        return [query(q, k=K, num_threads=1, query_ef=ef)[0] for q in queries]

    def batch(self, queries: np.ndarray) -> np.ndarray:
        return self.index.query(queries, k=K, num_threads=BATCH_THREADS or -1, query_ef=self.ef)[0]


ADAPTERS: dict[str, type[Adapter]] = {"funnelrank": Ours, "hnswlib": Hnswlib, "faiss": Faiss, "usearch": Usearch,
                                      "voyager": Voyager}
PIP_NAMES = {"faiss": "faiss-cpu"}  # a peer's pip package, where it differs from its module's name


# ---- measurement ----


@dataclass
class Row:
    library: str
    ef: int
    recall: float
    single_qps: float  # queries / median round time
    batch_qps: float
    single_seconds: list[float] = field(default_factory=list)  # wall time per round, all queries
    batch_seconds: list[float] = field(default_factory=list)
    single_cpu: list[float] = field(default_factory=list)  # process CPU time (all threads) per round
    batch_cpu: list[float] = field(default_factory=list)


@dataclass
class Report:
    dataset: str
    n: int
    dim: int
    queries: int
    rounds: int = 0
    load_average: list[float] = field(default_factory=list)  # 1-minute load average at the start of each ef
    build_seconds: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, dict[str, float | int | None]] = field(default_factory=dict)


def recall_at_k(found: list[np.ndarray] | np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f[:K], t)) for f, t in zip(found, truth))
    return hits / truth.size


def batched(adapter: Adapter, queries: np.ndarray, chunk: int = BATCH) -> Callable[[], list[object]]:
    """All queries through `adapter.batch`, `chunk` queries per call."""
    return lambda: [adapter.batch(queries[i : i + chunk]) for i in range(0, len(queries), chunk)]


def run(dataset: str, data: np.ndarray, queries: np.ndarray, efs: list[int], rounds: int,
        libraries: list[str]) -> tuple[Report, dict[str, Adapter]]:
    report = Report(dataset, len(data), data.shape[1], len(queries), rounds)
    log(f"[{dataset}] exact top-{K} for {len(queries)} queries ...")
    truth = exact_top_k(data, queries)
    adapters: dict[str, Adapter] = {}
    for name in libraries:
        adapter = ADAPTERS[name]()
        log(f"[{dataset}] building {name} over {len(data)} x {data.shape[1]} ...")
        t0 = time.perf_counter()
        adapter.build(data)
        report.build_seconds[name] = time.perf_counter() - t0
        log(f"[{dataset}]   {name}: {report.build_seconds[name]:.1f} s")
        adapters[name] = adapter
    for ef in efs:
        for adapter in adapters.values():
            adapter.set_ef(ef)
        report.load_average.append(os.getloadavg()[0])
        # Single-query and batch variants are timed in separate rounds: threads left spinning by one
        # library's batch call would otherwise slow whichever single-threaded loop comes next.
        single, results = interleaved_rounds(
            {name: (lambda a=a: a.single(queries)) for name, a in adapters.items()}, rounds, shuffle=True,
            settle=SETTLE_SECONDS,
        )
        batch, _ = interleaved_rounds(
            {name: batched(a, queries) for name, a in adapters.items()}, rounds, shuffle=True, settle=SETTLE_SECONDS
        )
        for name in libraries:
            found = results[name]
            rows = Ours.rows(found) if name == "funnelrank" else found  # type: ignore[arg-type]
            wall_s, cpu_s = (list(x) for x in zip(*single[name]))
            wall_b, cpu_b = (list(x) for x in zip(*batch[name]))
            row = Row(name, ef, recall_at_k(rows, truth), len(queries) / float(np.median(wall_s)),
                      len(queries) / float(np.median(wall_b)), wall_s, wall_b, cpu_s, cpu_b)
            report.rows.append(row)
            log(f"[{dataset}] ef={ef:<4} {name:<10} recall={row.recall:.4f} single={row.single_qps:8.0f}/s "
                f"batch={row.batch_qps:8.0f}/s (load {report.load_average[-1]:.2f})")
    for target in (0.95, 0.99):
        for peer in libraries:
            if peer != "funnelrank":
                report.ratios[f"recall>={target} vs {peer}"] = target_ratio(report.rows, target, peer)
    return report, adapters


def speed_ratio(ours: list[float], theirs: list[float], paired: bool) -> tuple[float, float, float]:
    """(median, min, max) of how many times faster ours is than theirs. Paired (same ef, so timed in the
    same rounds): per-round ratios; otherwise the ratio of the medians (min = max = that)."""
    if paired:
        r = np.asarray(theirs) / np.asarray(ours)
        return float(np.median(r)), float(r.min()), float(r.max())
    m = float(np.median(theirs) / np.median(ours))
    return m, m, m


def target_ratio(rows: list[Row], target: float, peer: str) -> dict[str, float | int | None]:
    """QPS of ours / `peer`, each at its smallest ef with recall >= target (None if never reached)."""

    def first(lib: str) -> Row | None:
        return next((r for r in sorted(rows, key=lambda r: r.ef) if r.library == lib and r.recall >= target), None)

    ours, theirs = first("funnelrank"), first(peer)
    out: dict[str, float | int | None] = {
        "ef_ours": ours.ef if ours else None,
        "ef_peer": theirs.ef if theirs else None,
    }
    if ours and theirs:
        paired = ours.ef == theirs.ef
        for kind in ("single", "batch"):
            mid, lo, hi = speed_ratio(getattr(ours, f"{kind}_seconds"), getattr(theirs, f"{kind}_seconds"), paired)
            out[f"{kind}_ratio"], out[f"{kind}_ratio_min"], out[f"{kind}_ratio_max"] = mid, lo, hi
            out[f"{kind}_cpu_ratio"] = speed_ratio(getattr(ours, f"{kind}_cpu"), getattr(theirs, f"{kind}_cpu"), paired)[0]
    else:
        out["single_ratio"] = out["batch_ratio"] = None
    return out


def print_report(report: Report) -> None:
    print(f"\n## {report.dataset}: {report.n} x {report.dim} float32 (normalised), {report.queries} queries, "
          f"M={M}, ef_construction={EF_CONSTRUCTION}, k={K}, {os.cpu_count()} CPUs, batch threads "
          f"{BATCH_THREADS or 'all'}, {report.rounds} rounds, "
          f"load average {min(report.load_average):.2f}-{max(report.load_average):.2f}")
    print("build (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report.build_seconds.items()))
    peers = [lib for lib in dict.fromkeys(r.library for r in report.rows) if lib != "funnelrank"]
    print(f"{'ef':>5} {'library':<11} {'recall@10':>9} {'single QPS':>11} {'batch QPS':>10}   "
          "ours/peer single, batch (median of per-round ratios): " + ", ".join(peers))
    by_peer = {(r.library, r.ef): r for r in report.rows}
    for row in report.rows:
        line = f"{row.ef:>5} {row.library:<11} {row.recall:>9.4f} {row.single_qps:>11.0f} {row.batch_qps:>10.0f}"
        if row.library == "funnelrank":
            cells = []
            for peer in peers:
                theirs = by_peer.get((peer, row.ef))
                if theirs is None:
                    continue
                single = speed_ratio(row.single_seconds, theirs.single_seconds, paired=True)[0]
                batch = speed_ratio(row.batch_seconds, theirs.batch_seconds, paired=True)[0]
                cells.append(f"x{single:.2f}, x{batch:.2f}")
            line += "   " + " | ".join(cells)
        print(line)
    for label, r in report.ratios.items():
        target, peer = label.split(" vs ")
        if r["single_ratio"] is None:
            print(f"{label}: not reached by both (ef ours={r['ef_ours']}, {peer}={r['ef_peer']})")
        else:
            how = "median of per-round ratios" if r["ef_ours"] == r["ef_peer"] else "ratio of median times"
            print(f"{target}: ours/{peer} single-query QPS x{r['single_ratio']:.2f} (range "
                  f"{r['single_ratio_min']:.2f}-{r['single_ratio_max']:.2f}), batch QPS x{r['batch_ratio']:.2f} "
                  f"(range {r['batch_ratio_min']:.2f}-{r['batch_ratio_max']:.2f}); ef ours={r['ef_ours']}, "
                  f"{peer}={r['ef_peer']}; {how}; by process CPU time: single x{r['single_cpu_ratio']:.2f}, "
                  f"batch x{r['batch_cpu_ratio']:.2f}")


def filtered(
    index: object, ef: int, allow: list[str], crossover: float, queries: np.ndarray
) -> Callable[[], list[list[str]]]:
    """Answers `queries` with `allow` under a fixed exact_filter_crossover (0: graph walk, inf: exact)."""

    def answer() -> list[list[str]]:
        index.exact_filter_crossover = crossover  # type: ignore[attr-defined]
        return [index.search(q, K, ef, allow)[0] for q in queries]  # type: ignore[attr-defined]

    return answer


def filter_sweep(
    ours: Ours, data: np.ndarray, queries: np.ndarray, rounds: int, ef: int = 64
) -> list[dict[str, float]]:
    """Filtered-search latency, graph walk vs exact scoring, over allow-list sizes."""
    index = ours.index
    n = len(data)
    rng = np.random.default_rng(7)
    qs = queries[:50]
    out = []
    print(f"\n## filtered search on the synthetic index (ef={ef}, k={K}, {len(qs)} queries, one thread)")
    print(f"{'allowed':>8} {'graph ms':>9} {'exact ms':>9} {'graph recall':>12}   c = allowed^2 / (ef * n)")
    default = index.exact_filter_crossover
    try:
        for size in [s for s in (500, 1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000) if s < n]:
            rows = rng.choice(n, size=size, replace=False)
            allow = [str(i) for i in rows]
            sub = data[rows]
            modes = {"graph": filtered(index, ef, allow, 0.0, qs), "exact": filtered(index, ef, allow, float("inf"), qs)}
            seconds, results = interleaved_rounds(modes, min(rounds, 5), shuffle=True)
            timings = {mode: 1000 * float(np.median([wall for wall, _ in s])) / len(qs) for mode, s in seconds.items()}
            found = results["graph"]
            truth = rows[exact_top_k(sub, qs)]
            recall = recall_at_k(Ours.rows(found), truth)
            out.append({"allowed": size, "graph_ms": timings["graph"], "exact_ms": timings["exact"],
                        "graph_recall": recall, "c": size * size / (ef * n)})
            print(f"{size:>8} {timings['graph']:>9.3f} {timings['exact']:>9.3f} {recall:>12.4f}   "
                  f"{size * size / (ef * n):.2f}")
    finally:
        index.exact_filter_crossover = default
    print(f"default exact_filter_crossover = {default}: exact below "
          f"{index.exact_filter_threshold(ef)} allowed ids here")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--efs", default="16,24,32,40,48,56,64,96,128")
    parser.add_argument("--rounds", type=int, default=9,
                        help="interleaved timing rounds per ef; QPS and ratios are medians (see interleaved_rounds)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--no-scifact", action="store_true")
    parser.add_argument("--scifact-queries", choices=("all", "test"), default="all",
                        help="scifact's queries to search with: all 1,109 (default) or the 300 test queries")
    parser.add_argument("--batch-threads", type=int, default=0,
                        help="threads per batch call for every library (default 0: all)")
    parser.add_argument("--filter", action="store_true", help="also sweep allow-list sizes (ours only)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    efs = [int(x) for x in args.efs.split(",")]
    if args.batch_threads < 0:
        parser.error("--batch-threads must be >= 0")
    global BATCH_THREADS
    BATCH_THREADS = args.batch_threads
    libraries = [x for x in args.libraries.split(",") if x]
    unknown = set(libraries) - set(ADAPTERS)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {list(ADAPTERS)}")
    for name in list(libraries):
        if name != "funnelrank" and importlib.util.find_spec(name) is None:
            log(f"{name}: skipped (not installed: pip install {PIP_NAMES.get(name, name)})")
            libraries.remove(name)

    from funnelrank import _core

    log(f"funnelrank HNSW; numpy {np.__version__}")
    t_start = time.perf_counter()
    vectors = mixture(args.n + args.queries, args.dim, seed=1)
    data, queries = vectors[: args.n], vectors[args.n :]
    reports = []
    synthetic, adapters = run("synthetic", data, queries, efs, args.rounds, libraries)
    print_report(synthetic)
    reports.append(synthetic)
    sweep = (
        filter_sweep(adapters["funnelrank"], data, queries, args.rounds)  # type: ignore[arg-type]
        if args.filter and "funnelrank" in adapters
        else []
    )
    del adapters
    if not args.no_scifact:
        sci = scifact_vectors(args.scifact_queries)
        if sci is not None:
            report, _ = run("scifact", sci[0], sci[1], efs, args.rounds, libraries)
            print_report(report)
            reports.append(report)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; _core at {Path(_core.__file__).name}")
    if args.json:
        args.json.write_text(json.dumps({"reports": [asdict(r) for r in reports], "filter_sweep": sweep}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
