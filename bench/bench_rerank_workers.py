#!/usr/bin/env python
"""How to spend 2 cores on reranking: 1 worker x 2 intra-op threads vs 2 workers x 1 thread, and whether
ONNX Runtime's transformer optimizer (fused attention/LayerNorm/GELU, `optimize_onnx`) is faster.

Same data and model as bench/bench_rerank.py (scifact test queries' BM25 top-100, all-MiniLM-L6-v2 with a
seeded random 1-logit head, max_length 256). Configurations, each a `RerankScheduler` with its own sessions:

  1x2-plain   1 worker, one session with intra_op_threads=2, unfused export
  1x2-opt     1 worker, one session with intra_op_threads=2, optimizer-fused export
  2x1-opt     2 workers, each its own session with intra_op_threads=1 (`CrossEncoder.replicas`), fused

One client: the --single queries, one request at a time, configurations interleaved query by query
(rotating the order); per configuration: seconds, pairs/s and CPU cores used (process CPU time / wall).
Concurrent: --clients threads each reranking its own query at once, configurations run back to back in
rotating order --reps times: total seconds, p50/p99 latency. Ratios are against 1x2-plain / 1x2-opt
measured in the same run. Run: `nice -n 10 python bench/bench_rerank_workers.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rerank import REPO, bm25_top100, build_model, load_scifact, log, run_clients  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact")
    parser.add_argument("--single", type=int, default=3, help="queries run one at a time per configuration")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (distinct queries)")
    parser.add_argument("--reps", type=int, default=1, help="concurrent rounds per configuration")
    parser.add_argument("--configs", default="1x2-plain,1x2-opt,2x1-opt", help="WORKERSxTHREADS-{plain,opt}, comma separated")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    t_start = time.perf_counter()

    from funnelrank.files import cache_dir
    from funnelrank.rerank import CrossEncoder, RerankScheduler

    corpus, queries = load_scifact(args.data, max(args.clients, args.single), args.seed)
    cands, bm25_name = bm25_top100(corpus, queries)
    work = [(text, [corpus[d] for d in cands[qid]]) for qid, text in queries]
    cache = cache_dir("bench", f"rerank-minilm-l6-randomhead-{args.seed}")
    scheds = {}
    for name in args.configs.split(","):
        shape, variant = name.split("-")
        workers, threads = (int(x) for x in shape.split("x"))
        _, onnx_dir = build_model(cache, args.seed, optimized=variant == "opt")
        ce = CrossEncoder.from_pretrained(onnx_dir, max_length=args.max_length, intra_op_threads=threads)
        scheds[name] = RerankScheduler(ce.replicas(workers))
    names = list(scheds)
    log(f"setup {time.perf_counter() - t_start:.1f}s; candidates from {bm25_name}; load {os.getloadavg()}")
    loads = [os.getloadavg()[0]]

    single = {n: {"wall": 0.0, "cpu": 0.0, "lat": []} for n in names}
    pairs_single = 0
    for i, (text, docs) in enumerate(work[: args.single]):
        pairs_single += len(docs)
        for n in names[i % len(names):] + names[: i % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            scheds[n].score(text, docs)
            dt = time.perf_counter() - t0
            single[n]["wall"] += dt
            single[n]["cpu"] += time.process_time() - c0
            single[n]["lat"].append(dt)
        loads.append(os.getloadavg()[0])
        log(f"  single query {i + 1}/{args.single} ({time.perf_counter() - t_start:.0f}s)")

    conc = {n: {"wall": 0.0, "cpu": 0.0, "lat": []} for n in names}
    clients = work[: args.clients]
    pairs_conc = sum(len(d) for _, d in clients)
    for rep in range(args.reps):
        for n in names[rep % len(names):] + names[: rep % len(names)]:
            wall, cpu, lat = run_clients(scheds[n], clients)
            conc[n]["wall"] += wall
            conc[n]["cpu"] += cpu
            conc[n]["lat"].extend(lat)
            loads.append(os.getloadavg()[0])
            log(f"  {len(clients)} clients on {n} ({time.perf_counter() - t_start:.0f}s)")
    for s in scheds.values():
        s.close()

    def pct(xs: list[float], p: float) -> float:
        return float(np.percentile(np.asarray(xs) * 1000.0, p))

    base = names[0]
    print(f"rerank workers benchmark -- {os.cpu_count()} logical CPUs, load average during run "
          f"{min(loads):.1f}..{max(loads):.1f}; max_length={args.max_length}; scifact BM25 top-100 ({bm25_name})")
    print(f"one client, {args.single} queries ({pairs_single} pairs) per configuration, interleaved:")
    for n in names:
        s = single[n]
        print(f"  {n:10s} {s['wall']:7.1f} s  {pairs_single / s['wall']:6.2f} pairs/s  speed vs {base} "
              f"{single[base]['wall'] / s['wall']:.2f}x  CPU cores used {s['cpu'] / s['wall']:.2f}  "
              f"p50 {pct(s['lat'], 50):.0f} ms")
    print(f"{len(clients)} concurrent clients ({pairs_conc} pairs) x {args.reps}:")
    for n in names:
        c = conc[n]
        seq_equiv = single[n]["wall"] / pairs_single * pairs_conc
        print(f"  {n:10s} {c['wall']:7.1f} s  {args.reps * pairs_conc / c['wall']:6.2f} pairs/s  speed vs {base} "
              f"{conc[base]['wall'] / c['wall']:.2f}x  vs its own one-client rate {seq_equiv * args.reps / c['wall']:.2f}x  "
              f"CPU cores used {c['cpu'] / c['wall']:.2f}  p50 {pct(c['lat'], 50):.0f} ms  p99 {pct(c['lat'], 99):.0f} ms")
    print(f"total {time.perf_counter() - t_start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"single": single, "concurrent": conc, "loads": loads}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
