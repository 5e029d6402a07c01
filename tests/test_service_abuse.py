"""Abuse test of the HTTP service: a real uvicorn server on 127.0.0.1 (a free port) with the toy overlap model,
sent a small, bounded mix of hostile traffic -- malformed bodies, NaN/Infinity, huge numbers, deep nesting,
invalid UTF-8, oversized bodies, slow clients, raw garbage, and a burst of concurrent valid requests -- while
/health is polled throughout. Every answer must be 2xx or 4xx (429 and 408 included) or 503, never a 500 or a
dropped connection; every error body the app sends is ``{"message": ...}``; /health answers 200 all along.
The counts by category and status are printed (``pytest -s``) and recorded as a junit property."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from funnelrank.serve import ServiceLimits
from funnelrank.serve.app import create_app
from service_helpers import overlap_reranker, running_server

DOCS = ["The capital of France is Paris.", "Bananas are yellow.", "Paris hosts the Louvre.", "Knitting."]
JSON = {"content-type": "application/json"}

LIMITS = ServiceLimits(max_documents=16, max_document_chars=2_000, max_body_bytes=64 * 1024, max_inflight=8,
                       timeout_s=3.0, body_timeout_s=2.0, header_timeout_s=2.0)

DEEP = b"[" * 40 + b"]" * 40
VERY_DEEP = b"[" * 50_000 + b"]" * 50_000

# (category, path, raw body, content type)
CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    *[("malformed", path, body, JSON) for path in ("/v1/rerank", "/v1/search") for body in (
        b"", b"{", b'{"query": "q", "documents": [', b"[1, 2, 3]", b"null", b'"just a string"', b"\x00\x01\x02",
        b'{"query": 1}', b'{"query": "q", "documents": "x"}', b'{"query": "q", "documents": [{"no_text": 1}]}',
        b'{"query": "q", "top_k": "ten"}', b'{"query": "q", "filter": [1]}', b'{"query": "", "documents": []}',
        b'{"query": "q", "documents": ["a"], "top_n": -1}', b"{'single': 'quotes'}", b'{"query": "q",}',
    )],
    ("malformed", "/v1/rerank", b"query=q&documents=a", {"content-type": "application/x-www-form-urlencoded"}),
    ("malformed", "/v1/rerank", b'{"query": "q", "documents": ["a"]}', {"content-type": "text/plain"}),
    *[("nan/infinity", path, body, JSON) for path, body in (
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": NaN}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": Infinity}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": -Infinity}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": NaN}'),
        ("/v1/search", b'{"query": "q", "floor": NaN}'),
        ("/v1/search", b'{"query": "q", "floor": Infinity}'),
        ("/v1/search", b'{"query": "q", "filter": {"year": NaN}}'),
        ("/v1/search", b'{"query": "q", "filter": {"year": {"gte": -Infinity}}}'),
    )],
    *[("huge numbers", path, body, JSON) for path, body in (
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 1e999}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 1' + b"0" * 400 + b"}"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": 1e400}'),
        ("/v1/search", b'{"query": "q", "top_k": 1' + b"0" * 5000 + b"}"),
        ("/v1/search", b'{"query": "q", "candidates": 99999999999999999999}'),
        ("/v1/search", b'{"query": "q", "filter": {"year": -1e999}}'),
        ("/v1/search", b'{"query": "q", "top_k": 100000}'),
    )],
    *[("deep nesting", path, body, JSON) for path, body in (
        ("/v1/rerank", b'{"query": "q", "documents": ' + DEEP + b"}"),
        ("/v1/rerank", b'{"query": "q", "documents": ' + VERY_DEEP[:30_000] + b"}"),
        ("/v1/search", b'{"query": "q", "filter": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}"),
        ("/v1/search", b'{"query": "q", "filter": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}"),
        ("/v1/rerank", b"[" * 60_000),
    )],
    *[("wide bodies", path, body, JSON) for path, body in (
        ("/v1/rerank", b'{"query": "q", "documents": [' + b",".join([b"[]"] * 20_000) + b"]}"),  # 20,000 documents
        ("/v1/rerank", b'{"query": "q", "documents": [' + b",".join([b"{}"] * 16) + b"]}"),
        ("/v1/search", b"{" + b",".join(b'"f%d": 1' % i for i in range(5_000)) + b"}"),  # 5,000 unknown fields
        ("/v1/search", b'{"query": "q", "filter": {' + b",".join(b'"f%d": 1' % i for i in range(5_000)) + b"}}"),
    )],
    *[("invalid utf-8", path, body, JSON) for path, body in (
        ("/v1/rerank", b'{"query": "caf\xe9", "documents": ["a"]}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["\xff\xfe\xfd"]}'),
        ("/v1/rerank", b'{"query": "q", "documents": ["\xed\xa0\x80"]}'),  # an encoded surrogate
        ("/v1/rerank", b'{"query": "\\ud800", "documents": ["a"]}'),  # escaped lone surrogate: valid JSON, bad text
        ("/v1/search", b'{"query": "\xc3\x28"}'),
        ("/v1/search", "{\"query\": \"q\"}".encode("utf-16")),
    )],
    *[("oversized", "/v1/rerank", body, JSON) for body in (
        json.dumps({"query": "q", "documents": ["x" * 1000] * 100}).encode(),  # > 64 KiB body: 413
        json.dumps({"query": "q", "documents": ["x"] * 17}).encode(),  # 17 documents: 413
        json.dumps({"query": "q" * 3000, "documents": ["x"]}).encode(),  # query too long: 413
        json.dumps({"query": "q", "documents": ["x" * 2001]}).encode(),  # document too long: 413
    )],
    *[("wrong path/method", path, b"", {}) for path in ("/", "/v9/rerank", "/v1/rerank/../health", "/%00")],
]


def _status_of_raw(data: bytes, *, wait_s: float = 6.0) -> int:
    """Send raw bytes on a fresh connection; return the status the server answers (0: it closed without one)."""
    host_port = _server_url.removeprefix("http://").split(":")
    with socket.create_connection((host_port[0], int(host_port[1])), timeout=wait_s) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + wait_s
        while b"\r\n" not in out and time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    if not out.startswith(b"HTTP/1.1 "):
        return 0
    return int(out.split(b" ")[1])


_server_url = ""


@pytest.fixture(scope="module")
def abuse_server() -> Iterator[str]:
    global _server_url
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    collection.add(["fr", "banana", "louvre", "knit"], DOCS, [{"year": 2020}, {}, {"year": 1990}, {}])
    reranker = overlap_reranker(delay_s=0.02, max_queue_pairs=16)
    app = create_app(reranker, collection=collection, limits=LIMITS)
    try:
        with running_server(app, limits=LIMITS) as url:
            _server_url = url
            yield url
    finally:
        reranker.scheduler.close()


def test_service_survives_abuse(abuse_server: str, record_property: Any) -> None:
    url = abuse_server
    counts: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    bad_bodies: list[str] = []
    lock = threading.Lock()

    def record(category: str, status: int, response: httpx.Response | None = None) -> None:
        with lock:
            counts[category][status] += 1
            if response is not None and status >= 400:
                try:
                    body = response.json()
                    ok = isinstance(body, dict) and list(body) == ["message"] and isinstance(body["message"], str)
                except ValueError:
                    ok = False
                if not ok:
                    bad_bodies.append(f"{category} {status}: {response.text[:200]!r}")

    # /health, polled all along.
    health: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(timeout=2.0) as client:
            while not stop.is_set():
                try:
                    health[str(client.get(url + "/health").status_code)] += 1
                except httpx.HTTPError as exc:
                    health[type(exc).__name__] += 1
                time.sleep(0.05)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    started = time.monotonic()
    try:
        # Slow clients first (they stall until the server times them out), then everything else meanwhile.
        slow_head = (b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{")
        with concurrent.futures.ThreadPoolExecutor(64) as slow_pool:
            slow = [slow_pool.submit(_status_of_raw, slow_head) for _ in range(40)]
            slow += [slow_pool.submit(_status_of_raw, b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                     for _ in range(6)]
            slow += [slow_pool.submit(_status_of_raw, b"") for _ in range(2)]
            time.sleep(0.3)

            with httpx.Client(timeout=15.0) as client:
                for category, path, raw, headers in CASES:
                    r = client.post(url + path, content=raw, headers=headers)
                    record(category, r.status_code, r)
                for method in ("GET", "PUT", "DELETE"):
                    r = client.request(method, url + "/v1/rerank")
                    record("wrong path/method", r.status_code, r)

            # Raw protocol garbage (answered by uvicorn itself, before the app).
            for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
                        b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n"):
                record("protocol garbage", _status_of_raw(raw))

            # A burst of valid requests: 48 from 16 clients at once (4 pairs each or 2-4 candidates; the queue holds
            # 16 pairs, 8 may be in flight): 200, or 429/503 with Retry-After.
            body = {"query": "capital of France", "documents": DOCS}
            search = {"query": "Paris France", "top_k": 2}

            def one(i: int) -> None:
                path, payload = ("/v1/rerank", body) if i % 2 else ("/v1/search", search)
                r = httpx.post(url + path, json=payload, timeout=15.0)
                record("burst (valid)", r.status_code, r)

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(one, range(48)))

            for future in slow:
                record("slow clients", future.result())
    finally:
        stop.set()
        poller.join(5)
    elapsed = time.monotonic() - started

    table = {category: dict(sorted(c.items())) for category, c in counts.items()}
    summary = {"requests": table, "health": dict(health), "seconds": round(elapsed, 1)}
    print("\nservice abuse test:", json.dumps(summary, indent=1))
    record_property("abuse_counts", json.dumps(summary))

    allowed = lambda s: 200 <= s < 300 or 400 <= s < 500 or s == 503  # noqa: E731
    wrong = {cat: dict(c) for cat, c in counts.items() if any(not allowed(s) for s in c)}
    assert not wrong, wrong
    assert not bad_bodies, bad_bodies
    assert set(health) == {"200"} and health["200"] >= 10, health
    # What each category must get (not just "some 4xx").
    assert set(counts["nan/infinity"]) == {422}
    assert set(counts["huge numbers"]) <= {400, 422} and set(counts["deep nesting"]) <= {400, 422}
    assert set(counts["invalid utf-8"]) <= {400, 422} and set(counts["oversized"]) == {413}
    assert set(counts["wrong path/method"]) <= {404, 405}
    assert counts["slow clients"] == collections.Counter({408: 48})
    assert counts["burst (valid)"][200] >= 1 and set(counts["burst (valid)"]) <= {200, 429, 503}
    assert elapsed < 60
    assert httpx.get(url + "/health", timeout=5).status_code == 200
