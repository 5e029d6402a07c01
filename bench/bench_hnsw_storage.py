"""HNSW vector storages: funnelrank's HNSWIndex with storage "f32", "f16" and "int8" against hnswlib, faiss-cpu
(IndexHNSWFlat, IndexHNSWSQ 8-bit) and usearch (f32, f16, i8): recall, speed, bytes, build time and build memory.

    python bench/bench_hnsw_storage.py [--n 50000] [--dim 384] [--queries 1000] [--rounds 3] [--no-scifact]
                                       [--peer-python PEER_VENV/bin/python] [--systems a,b,...] [--json PATH]

Each system runs in its own worker process (this file with --worker), one after the other, so that its peak
memory is its own: the worker loads the data, notes its resident memory, builds the index (all threads),
and reports the build's wall time and its peak RSS above that baseline (VmHWM, reset before the build). Then, per ef in
EFS: recall@10 against exact search (numpy brute force, computed once by the parent), single-query QPS (one
thread, one query per call, a Python loop) and batch QPS (100 queries per call, every thread), the median
of --rounds rounds. funnelrank's indexes are searched after a save and a load, as a service would use them
(int8's float32 re-scoring vectors are then mapped from the file, not held in memory).

Bytes: "index MiB" is what the index holds in memory: funnelrank's index_bytes (level-0 block, upper links,
in-memory re-scoring vectors; int8's mapped vectors are listed apart as "mapped MiB"), and for the peers
their serialized size (hnswlib's saveIndex file, faiss's serialize_index, usearch's save), which is their
in-memory layout. "vector MiB" is the stored vectors alone (funnelrank: vector_bytes; peers: n x dim x the
element size, plus per-vector scale where there is one).

Peers come from --peer-python (a separate virtual environment, e.g. `python3 -m venv --system-site-packages
.venv-peers && .venv-peers/bin/pip install hnswlib faiss-cpu usearch`) or else this interpreter; a system
that does not import is reported as skipped. Workers run one at a time, not interleaved: speed ratios between
them carry the machine's load drift (the 1-minute load average is printed with each).

Printed per data set (the synthetic 50k x 384 set of bench_hnsw.py, and scifact when its data and the default
embedder are available): one row per system, ratios against funnelrank f32 and hnswlib, and the issue-27
targets met or missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

M, EF_CONSTRUCTION, K, BATCH = 16, 200, 10, 100
EFS = [10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 384]
SYSTEMS = ["funnelrank-f32", "funnelrank-f16", "funnelrank-int8", "hnswlib", "faiss-hnsw", "faiss-hnsw-sq8",
           "usearch-f32", "usearch-f16", "usearch-i8"]
MIB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- worker: one system, in its own process ----


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux >= 4.0). getrusage's ru_maxrss cannot be used: it survives
    exec, so a worker would report its parent's peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class System:
    """build(data) -> bytes info; set_ef; single(queries) -> row lists; batch(queries) -> row lists."""

    def __init__(self, name: str, work: Path) -> None:
        self.name, self.work = name, work

    def build(self, data: np.ndarray) -> None:
        n, dim = data.shape
        kind, _, mode = self.name.partition("-")
        self.kind, self.mode = kind, mode
        if kind == "funnelrank":
            from funnelrank.core import HNSWIndex

            self.index = HNSWIndex(dim, metric="ip", M=M, ef_construction=EF_CONSTRUCTION, initial_capacity=n,
                                   storage=mode)
            self.index.add([str(i) for i in range(n)], data)
        elif kind == "hnswlib":
            import hnswlib

            self.index = hnswlib.Index(space="ip", dim=dim)
            self.index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
            self.index.add_items(data, np.arange(n), num_threads=-1)
        elif kind == "faiss":
            import faiss

            self.faiss, self.threads = faiss, faiss.omp_get_max_threads()
            if mode == "hnsw":
                self.index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
            else:
                self.index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
                self.index.train(data)
            self.index.hnsw.efConstruction = EF_CONSTRUCTION
            self.index.add(data)
        elif kind == "usearch":
            from usearch.index import Index

            self.index = Index(ndim=dim, metric="ip", dtype=mode, connectivity=M, expansion_add=EF_CONSTRUCTION)
            self.index.add(np.arange(n), data, threads=0)
        else:
            raise ValueError(self.name)

    def sizes(self, n: int, dim: int) -> dict[str, float]:
        if self.kind == "funnelrank":
            path = self.work / f"{self.name}.idx"
            self.index.save(path)
            del self.index
            gc.collect()
            from funnelrank.core import HNSWIndex

            self.index = HNSWIndex.load(path)
            return {"index": self.index.index_bytes, "vectors": self.index.vector_bytes,
                    "mapped": self.index.mapped_bytes, "file": path.stat().st_size}
        if self.kind == "hnswlib":
            path = self.work / "hnswlib.bin"
            self.index.save_index(str(path))
            size = path.stat().st_size
            return {"index": size, "vectors": n * dim * 4, "mapped": 0, "file": size}
        if self.kind == "faiss":
            size = int(self.faiss.serialize_index(self.index).nbytes)
            return {"index": size, "vectors": n * dim * (4 if self.mode == "hnsw" else 1), "mapped": 0, "file": size}
        size = len(self.index.save())
        element = {"f32": 4, "f16": 2, "i8": 1}[self.mode]
        return {"index": size, "vectors": n * dim * element, "mapped": 0, "file": size}

    def set_ef(self, ef: int) -> None:
        if self.kind == "funnelrank":
            self.ef = ef
        elif self.kind == "hnswlib":
            self.index.set_ef(ef)
        elif self.kind == "faiss":
            self.index.hnsw.efSearch = ef
        else:
            self.index.expansion_search = ef

    def single(self, queries: np.ndarray) -> list[list[int]]:
        if self.kind == "funnelrank":
            search, ef = self.index.search, self.ef
            return [[int(i) for i in search(q, K, ef)[0]] for q in queries]
        if self.kind == "hnswlib":
            query = self.index.knn_query
            return [query(q, k=K, num_threads=1)[0][0].tolist() for q in queries]
        if self.kind == "faiss":
            self.faiss.omp_set_num_threads(1)
            try:
                return [self.index.search(queries[i : i + 1], K)[1][0].tolist() for i in range(len(queries))]
            finally:
                self.faiss.omp_set_num_threads(self.threads)
        search = self.index.search
        return [search(q, K, threads=1).keys.tolist() for q in queries]

    def batch(self, queries: np.ndarray) -> None:
        for s in range(0, len(queries), BATCH):
            chunk = queries[s : s + BATCH]
            if self.kind == "funnelrank":
                self.index.search_batch(chunk, K, self.ef)
            elif self.kind == "hnswlib":
                self.index.knn_query(chunk, k=K, num_threads=-1)
            elif self.kind == "faiss":
                self.index.search(chunk, K)
            else:
                self.index.search(chunk, K, threads=0)


def worker(name: str, work: Path, rounds: int) -> dict:
    try:
        system = System(name, work)
        data = np.load(work / "data.npy")
        queries = np.load(work / "queries.npy")
        truth = np.load(work / "truth.npy")
        System(name, work).build(data[:200].copy())  # imports and first-call setup outside the measurement
    except ImportError as exc:
        return {"system": name, "skipped": f"{type(exc).__name__}: {exc}"}
    gc.collect()
    base = rss_bytes()
    reset_peak_rss()
    t0 = time.perf_counter()
    system.build(data)
    build_s = time.perf_counter() - t0
    peak = peak_rss_bytes()
    out: dict = {"system": name, "build_s": build_s, "build_peak": max(0, peak - base),
                 "sizes": system.sizes(*data.shape), "rows": []}
    for ef in EFS:
        system.set_ef(ef)
        single_t, batch_t = [], []
        found: list[list[int]] = []
        for _ in range(rounds):
            t = time.perf_counter()
            found = system.single(queries)
            single_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            system.batch(queries)
            batch_t.append(time.perf_counter() - t)
        hits = sum(len(set(f[:K]) & set(t.tolist())) for f, t in zip(found, truth))
        out["rows"].append({"ef": ef, "recall": hits / truth.size, "single_qps": len(queries) / statistics.median(single_t),
                            "batch_qps": len(queries) / statistics.median(batch_t), "load": os.getloadavg()[0]})
        if hits / truth.size >= 0.999 and ef >= 64:
            break
    return out


# ---- parent: data, workers, report ----


def first_reaching(rows: list[dict], target: float) -> dict | None:
    return next((r for r in rows if r["recall"] >= target), None)


def qps_ratios(rows: list[dict], ref: list[dict]) -> list[str]:
    """Single and batch QPS against `ref`, each at its own smallest ef reaching recall 0.95 and 0.99."""
    out = []
    for target in (0.95, 0.99):
        a, b = first_reaching(rows, target), first_reaching(ref, target)
        if a and b:
            out.append(f"@{target}: single {a['single_qps'] / b['single_qps']:.2f}x, "
                       f"batch {a['batch_qps'] / b['batch_qps']:.2f}x")
    return out


def at_ef(rows: list[dict], ef: int) -> dict | None:
    return next((r for r in rows if r["ef"] == ef), None)


def report(dataset: str, n: int, dim: int, results: list[dict]) -> list[str]:
    ok = {r["system"]: r for r in results if "rows" in r}
    lines = [f"\n## {dataset}: {n} x {dim}, recall@{K}, M={M}, ef_construction={EF_CONSTRUCTION}"]
    for r in results:
        if "skipped" in r:
            lines.append(f"- {r['system']}: skipped ({r['skipped']})")
    head = ("| system | build s | build peak MiB | index MiB | vector MiB | mapped MiB | recall ef64 | single QPS ef64 "
            "| batch QPS ef64 | ef @0.95 | single @0.95 | batch @0.95 | ef @0.99 | single @0.99 | batch @0.99 |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in ok.items():
        s, rows = r["sizes"], r["rows"]
        e64, r95, r99 = at_ef(rows, 64), first_reaching(rows, 0.95), first_reaching(rows, 0.99)

        def cells(row: dict | None, with_ef: bool) -> str:
            if row is None:
                return " - | - | - |"
            ef = f" {row['ef']} |" if with_ef else ""
            return f"{ef} {row['single_qps']:.0f} | {row['batch_qps']:.0f} |"

        lines.append(f"| {name} | {r['build_s']:.1f} | {r['build_peak'] / MIB:.1f} | {s['index'] / MIB:.1f} | "
                     f"{s['vectors'] / MIB:.1f} | {s['mapped'] / MIB:.1f} | "
                     + (f"{e64['recall']:.4f} | {e64['single_qps']:.0f} | {e64['batch_qps']:.0f} |" if e64 else " - | - | - |")
                     + cells(r95, True) + cells(r99, True))
    base, peer = ok.get("funnelrank-f32"), ok.get("hnswlib")
    if base:
        lines.append("\nAgainst funnelrank f32 (ratios):")
        for mode in ("f16", "int8"):
            r = ok.get(f"funnelrank-{mode}")
            if not r:
                continue
            e64, b64 = at_ef(r["rows"], 64), at_ef(base["rows"], 64)
            parts = [f"index bytes {r['sizes']['index'] / base['sizes']['index']:.2f}x",
                     f"vector bytes {r['sizes']['vectors'] / base['sizes']['vectors']:.2f}x"]
            if e64 and b64:
                parts += [f"recall@ef64 {e64['recall']:.4f} (f32 {b64['recall']:.4f})",
                          f"single QPS@ef64 {e64['single_qps'] / b64['single_qps']:.2f}x",
                          f"batch QPS@ef64 {e64['batch_qps'] / b64['batch_qps']:.2f}x"]
            parts += qps_ratios(r["rows"], base["rows"])
            lines.append(f"- {mode}: " + "; ".join(parts))
    if peer:
        lines.append("\nAgainst hnswlib (ratios; speed > 1 is faster, time and memory < 1 is less):")
        for name, r in ok.items():
            if name == "hnswlib":
                continue
            parts = [f"build time {r['build_s'] / peer['build_s']:.2f}x",
                     f"build peak memory {r['build_peak'] / max(peer['build_peak'], 1):.2f}x"]
            parts += qps_ratios(r["rows"], peer["rows"])
            lines.append(f"- {name}: " + "; ".join(parts))
    if base:
        lines.append("\nIssue-27 targets:")
        f16, i8 = ok.get("funnelrank-f16"), ok.get("funnelrank-int8")
        if f16:
            rec = at_ef(f16["rows"], 64)["recall"]
            ratio = f16["sizes"]["index"] / base["sizes"]["index"]
            lines.append(f"- f16 recall@ef64 >= 0.95 ({rec:.4f}) and <= 0.6x f32 index bytes ({ratio:.2f}x): "
                         + ("met" if rec >= 0.95 and ratio <= 0.6 else "MISSED"))
        if i8:
            rec = at_ef(i8["rows"], 64)["recall"]
            ratio = i8["sizes"]["vectors"] / base["sizes"]["vectors"]
            lines.append(f"- int8 recall@ef64 >= 0.95 ({rec:.4f}) at <= 0.35x f32 vector bytes ({ratio:.2f}x, "
                         f"float32 copies mapped: {i8['sizes']['mapped'] / MIB:.1f} MiB): "
                         + ("met" if rec >= 0.95 and ratio <= 0.35 else "MISSED"))
        if peer:
            t, m = base["build_s"] / peer["build_s"], base["build_peak"] / max(peer["build_peak"], 1)
            lines.append(f"- f32 build time <= 1.0x hnswlib ({t:.2f}x): {'met' if t <= 1.0 else 'MISSED'}; "
                         f"build peak memory <= 1.2x hnswlib ({m:.2f}x): {'met' if m <= 1.2 else 'MISSED'}")
    return lines


def run_dataset(dataset: str, data: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_hnsw import exact_top_k

    with tempfile.TemporaryDirectory(prefix="bench-hnsw-storage-") as tmp:
        work = Path(tmp)
        np.save(work / "data.npy", np.ascontiguousarray(data, dtype=np.float32))
        np.save(work / "queries.npy", np.ascontiguousarray(queries, dtype=np.float32))
        np.save(work / "truth.npy", exact_top_k(data, queries))
        results = []
        for name in args.systems.split(","):
            python = sys.executable if name.startswith("funnelrank") or not args.peer_python else args.peer_python
            log(f"[{dataset}] {name} (load {os.getloadavg()[0]:.2f}) ...")
            proc = subprocess.run([python, __file__, "--worker", name, "--dir", str(work), "--rounds", str(args.rounds)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                results.append({"system": name, "skipped": f"worker failed: {proc.stderr.strip()[-300:]}"})
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            log(f"[{dataset}]   {json.dumps({k: v for k, v in results[-1].items() if k != 'rows'})[:300]}")
    lines = report(dataset, len(data), data.shape[1], results)
    print("\n".join(lines), flush=True)
    return {"dataset": dataset, "n": len(data), "dim": int(data.shape[1]), "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-scifact", action="store_true")
    default_peers = Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "python"
    parser.add_argument("--peer-python", default=str(default_peers) if default_peers.exists() else None,
                        help="interpreter of a venv with hnswlib / faiss-cpu / usearch (default: .venv-peers/bin/python "
                        "when it exists, else this one)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, args.rounds)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_hnsw import mixture, scifact_vectors

    print(f"# bench_hnsw_storage: {os.cpu_count()} CPUs, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    out = [run_dataset("synthetic", mixture(args.n, args.dim, seed=1), mixture(args.queries, args.dim, seed=2), args)]
    if not args.no_scifact:
        sci = scifact_vectors("test")
        if sci is not None:
            out.append(run_dataset("scifact", sci[0], sci[1], args))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
