"""Scale-out benchmark: `funnelrank serve --ray` with 1, 2 and 3 reranker replicas on a local 3-node Ray cluster
(``ray.cluster_utils.Cluster``, 1 CPU per node), against plain `funnelrank serve` in the same run.

For each setup it sends POST /v1/rerank requests (``--docs`` scifact passages each, from ../shared/data when
present; the payloads of bench/load_test.py) from ``--clients`` concurrent clients and reports throughput and
p50/p99 latency; then the per-request overhead Ray adds: p50 of a one-passage request sent by one client,
through Ray Serve (proxy -> ingress -> replica) minus through `funnelrank serve` (uvicorn, same app, same
threads). The peer is `funnelrank serve` twice: with the replicas' ONNX threads, and with ONNX Runtime's default
(every core), the best one process does here; ``throughput_vs_best_serve`` is against the faster of the two.

Second peer, for the batching choice inside a replica: the same deployment (Serve proxy -> funnelrank's ingress
-> replica) whose replicas batch with Ray Serve's own ``@serve.batch`` instead of funnelrank's scheduler
(``--serve-batch-size`` requests per batch, at most ``--serve-batch-wait-ms`` of waiting): each batch's pairs,
from every request in it, are tokenized, sorted by length and cut by the same padded-token budget and run
through the same ONNX session as ours (:meth:`CrossEncoder.infer`). What differs is the batching and the app
around it (ours: limits, admission, the request deadline); ``--no-serve-batch`` skips it.

Every Ray node runs on this one machine: with 2 cores, 2 or 3 replicas share the same 2 cores, so throughput
cannot grow with replicas here; the figures show what the deployment costs, not what more machines give.
Each replica runs ONNX Runtime with ``--threads`` intra-op threads (default 1) and plain serve with the same.

    .venv/bin/python bench/bench_scale_out.py --json
    .venv/bin/python bench/bench_scale_out.py --replicas 1,2 --requests 24 --clients 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import free_port, load_workload, pick_model, run_level, start_server, wait_ready  # noqa: E402


def payloads(n: int, docs: int, max_chars: int, seed: int) -> list[dict[str, Any]]:
    queries, passages = load_workload(max_chars, seed)
    rng = random.Random(seed)
    return [{"query": rng.choice(queries), "documents": rng.sample(passages, docs)} for _ in range(n)]


def single_p50(url: str, bodies: list[dict[str, Any]], n: int) -> float:
    """p50 ms of `n` sequential one-passage requests (the fixed cost of a request)."""
    import httpx

    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            body = {"query": bodies[i % len(bodies)]["query"], "documents": bodies[i % len(bodies)]["documents"][:1]}
            t = time.perf_counter()
            r = client.post(url + "/v1/rerank", json=body)
            r.raise_for_status()
            times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def measure(url: str, args: argparse.Namespace, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    # Warm-up (first batches, replicas' sessions) is not measured.
    asyncio.run(run_level(url, args.clients, args.clients * 2, 60.0, bodies, 120.0))
    level = asyncio.run(run_level(url, args.clients, args.requests, args.max_seconds, bodies, 120.0))
    level["single_request_p50_ms"] = round(single_p50(url, bodies, args.single), 1)
    return level


def serve_batch_app(model: Path, threads: int, replicas: int, batch_size: int, wait_ms: float) -> Any:
    """The @serve.batch peer: funnelrank's ingress in front of replicas that answer POST /v1/rerank
    ({"query", "documents"}) with ``{"scores": [...]}``, their requests batched by Ray Serve. Defined here, so
    Ray pickles it by value."""
    from funnelrank.serve.limits import ServiceLimits
    from funnelrank.serve.ray_serve import ForwardedResponse, Ingress
    from ray import serve

    class ServeBatchReranker:
        def __init__(self, model_dir: str) -> None:
            from funnelrank.rerank import CrossEncoder

            self.ce = CrossEncoder.from_pretrained(model_dir, intra_op_threads=threads)

        @serve.batch(max_batch_size=batch_size, batch_wait_timeout_s=wait_ms / 1000.0)
        async def score(self, queries: list[str], documents: list[list[str]]) -> list[list[float]]:
            import numpy as np
            from funnelrank.rerank.batching import DEFAULT_BATCH_OVERHEAD_TOKENS, plan_batches
            from funnelrank.rerank.cross_encoder import sigmoid

            encoded = [self.ce.encode(q, docs) for q, docs in zip(queries, documents)]
            ids = [a for e in encoded for a in e.input_ids]
            types = None if encoded[0].type_ids is None else [a for e in encoded for a in e.type_ids]
            lengths = np.asarray([a.shape[0] for a in ids])
            order = np.argsort(lengths, kind="stable")
            logits = np.empty(len(ids))
            for start, end in plan_batches(lengths[order], max_batch_tokens=4096, max_batch_pairs=64,
                                           batch_overhead_tokens=DEFAULT_BATCH_OVERHEAD_TOKENS):
                idx = order[start:end]
                logits[idx] = self.ce.infer([ids[i] for i in idx], None if types is None else [types[i] for i in idx])
            out, at = [], 0
            for e in encoded:  # the bench's passages are short: one pair per passage, no chunking
                out.append(sigmoid(logits[at:at + len(e.input_ids)]).tolist())
                at += len(e.input_ids)
            return out

        async def forward(self, request: Any) -> Any:
            body = json.loads(request.body)
            payload = json.dumps({"scores": await self.score(body["query"], body["documents"])}).encode()
            return ForwardedResponse(200, [(b"content-type", b"application/json"),
                                           (b"content-length", str(len(payload)).encode())], payload)

    replica = serve.deployment(name="serve-batch", num_replicas=replicas, ray_actor_options={"num_cpus": 1.0},
                               max_ongoing_requests=max(64, batch_size))(ServeBatchReranker).bind(str(model))
    ingress = serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0},
                               max_ongoing_requests=1024)(serve.ingress()(Ingress))
    return ingress.bind(replica, [], ServiceLimits().max_body_bytes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", default="1,2,3")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=48, help="measured requests per setup")
    p.add_argument("--docs", type=int, default=8, help="passages per request")
    p.add_argument("--max-chars", type=int, default=600)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--single", type=int, default=30, help="one-passage requests for the overhead figure")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per replica / server")
    p.add_argument("--model", default=None)
    p.add_argument("--random-head", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-batch-size", type=int, default=8, help="@serve.batch peer: requests per batch")
    p.add_argument("--serve-batch-wait-ms", type=float, default=10.0, help="@serve.batch peer: longest wait")
    p.add_argument("--no-serve-batch", action="store_true", help="skip the @serve.batch peer")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    model, model_desc = pick_model(args)
    bodies = payloads(96, args.docs, args.max_chars, args.seed)
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, one machine", "model": model_desc,
                              "docs_per_request": args.docs, "clients": args.clients, "threads": args.threads}

    # Peers: plain funnelrank serve on the same payloads, with the replicas' ONNX threads and with ONNX Runtime's
    # default (every core: one process's best use of this machine).
    report["serve"] = {}
    for label, extra in ((f"threads={args.threads}", ["--threads", str(args.threads)]), ("threads=default", [])):
        port = free_port()
        proc = start_server(model, port, ["--cache-entries", "0", *extra])
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}", proc))
            report["serve"][label] = measure(f"http://127.0.0.1:{port}", args, bodies)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    import ray
    from funnelrank.serve.ray_serve import ServiceConfig, build_app
    from funnelrank.serve.ray_serve import run as deploy
    from ray import serve
    from ray.cluster_utils import Cluster

    # Ray's processes write to this process's stdout; keep it for the report (they get stderr).
    stdout = os.dup(1)
    os.dup2(2, 1)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    config = ServiceConfig(model=str(model), model_name=model.name, cache_entries=0, intra_op_threads=args.threads)
    report["ray"] = []
    try:
        for n in [int(x) for x in args.replicas.split(",")]:
            port = free_port()
            t = time.perf_counter()
            deploy(build_app(None, config, replicas=n, replica_cpus=1.0), port=port)
            ready_s = time.perf_counter() - t
            level = measure(f"http://127.0.0.1:{port}", args, bodies)
            level.update({"replicas": n, "deploy_s": round(ready_s, 1)})
            report["ray"].append(level)
            serve.shutdown()
            print(f"replicas={n}: {level['throughput_rps']} req/s, p50 {level['p50_ms']} ms, p99 {level['p99_ms']} ms",
                  file=sys.stderr)
            if args.no_serve_batch:
                continue
            port = free_port()
            deploy(serve_batch_app(model, args.threads, n, args.serve_batch_size, args.serve_batch_wait_ms),
                   port=port)
            level = measure(f"http://127.0.0.1:{port}", args, bodies)
            level.update({"replicas": n, "batching": "serve.batch", "batch_size": args.serve_batch_size,
                          "batch_wait_ms": args.serve_batch_wait_ms})
            report.setdefault("ray_serve_batch", []).append(level)
            serve.shutdown()
            print(f"serve.batch replicas={n}: {level['throughput_rps']} req/s, p50 {level['p50_ms']} ms", file=sys.stderr)
    finally:
        ray.shutdown()
        cluster.shutdown()
        sys.stdout.flush()
        os.dup2(stdout, 1)
    same = report["serve"][f"threads={args.threads}"]
    best = max(report["serve"].values(), key=lambda lv: lv["throughput_rps"])
    ours = {lv["replicas"]: lv for lv in report["ray"]}
    for level in report.get("ray_serve_batch", []):
        mine = ours[level["replicas"]]
        level["funnelrank_scheduler_vs_serve_batch"] = round(mine["throughput_rps"] / level["throughput_rps"], 3) \
            if level["throughput_rps"] else None
    for level in report["ray"] + report.get("ray_serve_batch", []):
        level["throughput_vs_best_serve"] = round(level["throughput_rps"] / best["throughput_rps"], 3) \
            if best["throughput_rps"] else None
        level["overhead_ms_per_request"] = round(level["single_request_p50_ms"] - same["single_request_p50_ms"], 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"model: {model_desc}; {args.docs} passages/request, {args.clients} clients, {args.threads} thread(s)")
        print("setup                  req/s   p50 ms   p99 ms  x best serve  1-doc p50 ms  overhead ms")
        rows = [(f"serve {k}", lv) for k, lv in report["serve"].items()] + \
            [(f"ray x{lv['replicas']}", lv) for lv in report["ray"]] + \
            [(f"serve.batch x{lv['replicas']}", lv) for lv in report.get("ray_serve_batch", [])]
        for name, lv in rows:
            print(f"{name:<20} {lv['throughput_rps']:>7} {lv['p50_ms']:>8} {lv['p99_ms']:>8} "
                  f"{lv.get('throughput_vs_best_serve', ''):>13} {lv['single_request_p50_ms']:>13} "
                  f"{lv.get('overhead_ms_per_request', ''):>12}")
    failures = [lv for lv in [*report["serve"].values(), *report["ray"], *report.get("ray_serve_batch", [])]
                if lv["failures"]]
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
