"""The HTTP service, started for real (uvicorn on 127.0.0.1, a free port) and spoken to over HTTP."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from funnelrank.serve import ServiceLimits
from funnelrank.serve.app import create_app
from service_helpers import TOY_DOCS, OverlapModel, overlap_reranker, running_server, toy_server, wait_until_pending

DOCS = TOY_DOCS


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with toy_server() as url:
        yield url


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10, **kwargs)


def test_rerank_contract(server: str) -> None:
    r = post(server, "/v1/rerank", {"query": "capital of France", "documents": DOCS, "top_n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta", "usage"}
    assert body["usage"]["total_tokens"] > 0  # Jina-style: the tokens the model read
    assert isinstance(body["id"], str) and body["id"]
    results = body["results"]
    assert len(results) == 3
    assert [set(x) for x in results] == [{"index", "relevance_score"}] * 3
    assert results[0]["index"] == 0  # holds every query word
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert body["meta"]["model"] == "overlap-toy"


def test_rerank_documents_as_objects_and_return_documents(server: str) -> None:
    docs = [{"text": d, "title": "ignored"} for d in DOCS]
    r = post(server, "/v1/rerank", {"query": "Paris museum", "documents": docs, "return_documents": True,
                                    "model": "rerank-english-v3.0", "max_chunks_per_doc": 4})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(DOCS)  # no top_n: every document, best first
    assert sorted(x["index"] for x in results) == [0, 1, 2, 3]
    assert results[0]["index"] == 2
    for x in results:
        assert x["document"] == {"text": DOCS[x["index"]]}


def test_rerank_empty_documents(server: str) -> None:
    r = post(server, "/v1/rerank", {"query": "anything", "documents": []})
    assert r.status_code == 200 and r.json()["results"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"documents": ["a"]},  # no query
        {"query": 3, "documents": ["a"]},
        {"query": "q", "documents": "not a list"},
        {"query": "q", "documents": [1, 2]},
        {"query": "q", "documents": [{"no_text": "x"}]},
        {"query": "q", "documents": ["a"], "top_n": 0},
        {"query": "q", "documents": ["a"], "top_n": "3"},
        {"query": "q", "documents": ["a"], "return_documents": "yes"},
    ],
)
def test_wrong_types_are_422_with_a_message(server: str, body: dict[str, Any]) -> None:
    r = post(server, "/v1/rerank", body)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("invalid request: ")


def test_malformed_json_is_422(server: str) -> None:
    r = httpx.post(server + "/v1/rerank", content=b'{"query": "q", "documents": [', timeout=10,
                   headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["message"].startswith("invalid request: malformed JSON body at character 29: ")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "q", "documents": ["x"] * 9}, 413, "9 documents; the limit is 8"),
        ({"query": "q", "documents": ["x" * 201]}, 413, "documents[0] is 201 characters"),
        ({"query": "q" * 51, "documents": ["x"]}, 413, "query is 51 characters"),
        ({"query": "   ", "documents": ["x"]}, 400, "query is empty"),
    ],
)
def test_limits(server: str, body: dict[str, Any], status: int, fragment: str) -> None:
    r = post(server, "/v1/rerank", body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]


def test_body_too_large_is_413(server: str) -> None:
    r = post(server, "/v1/rerank", {"query": "q", "documents": ["y" * 100] * 50})
    assert r.status_code == 413
    assert "body too large" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        yield b'{"query": "q", "documents": ['
        for _ in range(100):
            yield b'"' + b"z" * 100 + b'",'
        yield b'"z"]}'

    r = httpx.post(server + "/v1/rerank", content=chunks(), timeout=10, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_search_without_collection_is_404(server: str) -> None:
    r = post(server, "/v1/search", {"query": "q"})
    assert r.status_code == 404 and "no collection" in r.json()["message"]


def test_health_and_metrics(server: str) -> None:
    h = httpx.get(server + "/health", timeout=10)
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["model"] == "overlap-toy" and body["collection"] is None
    assert body["queue"]["pending_pairs"] == 0

    post(server, "/v1/rerank", {"query": "q", "documents": ["q"]})
    post(server, "/v1/rerank", {"query": 1, "documents": ["q"]})
    m = httpx.get(server + "/metrics", timeout=10)
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    ok = _sample(text, 'funnelrank_http_requests_total{endpoint="/v1/rerank",status="200"}')
    bad = _sample(text, 'funnelrank_http_requests_total{endpoint="/v1/rerank",status="422"}')
    assert ok >= 1 and bad >= 1
    assert _sample(text, 'funnelrank_http_request_duration_seconds_count{endpoint="/v1/rerank"}') >= ok + bad
    assert "funnelrank_rerank_queue_pairs 0.0" in text
    assert _sample(text, "funnelrank_rerank_pairs_total") >= 1


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


def test_overload_answers_429_quickly() -> None:
    # A slow model and a queue of 4 pairs: 8 concurrent requests of 2 documents cannot all be admitted.
    reranker = overlap_reranker(delay_s=1.0, max_queue_pairs=4, max_batch_pairs=2)
    app = create_app(reranker, limits=ServiceLimits(max_documents=4))
    try:
        with running_server(app) as url:
            body = {"query": "q", "documents": ["q a", "b"]}
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda _: post(url, "/v1/rerank", body), range(8)))
            statuses = sorted(r.status_code for r in responses)
            assert set(statuses) <= {200, 429}, statuses
            assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
            refused = [r for r in responses if r.status_code == 429]
            served = [r for r in responses if r.status_code == 200]
            for r in refused:
                assert r.headers["retry-after"] == "1"
                assert "overloaded" in r.json()["message"]
            # Refused at once: faster than any served request, each of which waited for >= 1 s of model time.
            assert max(r.elapsed for r in refused) < min(r.elapsed for r in served)
    finally:
        reranker.scheduler.close()


def test_timeout_and_inflight_limit_answer_503() -> None:
    # Every batch takes 2 s and requests time out after 0.5 s; at most 2 requests may be in flight.
    reranker = overlap_reranker(delay_s=2.0)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=0.5, max_inflight=2))
    try:
        with running_server(app) as url:
            r = post(url, "/v1/rerank", {"query": "q", "documents": ["q"]})
            assert r.status_code == 503 and "timed out" in r.json()["message"]
            assert r.headers["retry-after"] == "1"
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                responses = list(pool.map(lambda _: post(url, "/v1/rerank", {"query": "q", "documents": ["q"]}),
                                          range(6)))
            assert {r.status_code for r in responses} == {503}
            messages = {json.loads(r.text)["message"].split(":")[0] for r in responses}
            assert "server busy" in messages  # some never got in
            assert httpx.get(url + "/health", timeout=5).status_code == 200  # cheap endpoints still answer
    finally:
        reranker.scheduler.close()


@pytest.fixture(scope="module")
def search_server() -> Iterator[str]:
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    collection.add(
        ["fr", "banana", "louvre", "knit"], DOCS, [{"lang": "en", "year": 2020}, {"lang": "en"}, {"lang": "fr"}, {}]
    )
    reranker = overlap_reranker()
    app = create_app(reranker, collection=collection, model_name="overlap-toy")
    try:
        with running_server(app) as url:
            yield url
    finally:
        reranker.scheduler.close()


def test_search_endpoint(search_server: str) -> None:
    r = post(search_server, "/v1/search", {"query": "Paris France", "top_k": 2, "floor": 0.1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["id"] for x in body["results"]] == ["fr", "louvre"]
    first = body["results"][0]
    assert first["text"] == DOCS[0] and first["metadata"] == {"lang": "en", "year": 2020}
    assert 0 < first["score"] <= 1 and first["logit"] is not None and first["stage1"]["bm25"]["rank"] >= 1
    assert {"bm25", "rerank", "total"} <= set(body["timings_ms"]) and body["no_evidence"] is False

    r = post(search_server, "/v1/search", {"query": "Paris France", "filter": {"lang": "fr"}, "floor": 0})
    assert [x["id"] for x in r.json()["results"]] == ["louvre"]
    r = post(search_server, "/v1/search", {"query": "France knitting bananas potassium museum", "floor": 0.99})
    assert r.status_code == 200 and r.json()["results"] == [] and r.json()["no_evidence"] is True
    r = post(search_server, "/v1/search", {"query": "Paris", "rerank": False})
    assert r.status_code == 200 and r.json()["results"][0]["logit"] is None


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "q", "filter": {"year": {"near": 1}}}, 400, "unknown operator"),
        ({"query": "q", "retriever": "dense"}, 400, "needs a dense collection"),
        ({"query": "q", "retriever": "magic"}, 400, "retriever must be one of"),
        ({"query": "q", "top_k": 5000}, 400, "<= 1000"),
        ({"query": "q", "top_k": 0}, 422, "top_k"),
        ({"query": "q", "floor": 2}, 422, "floor"),
        ({"query": "q", "filter": [1]}, 422, "filter"),
        ({"query": "q", "unknown": 1}, 422, "unknown"),
        ({"query": ""}, 400, "query is empty"),
    ],
)
def test_search_errors(search_server: str, body: dict[str, Any], status: int, fragment: str) -> None:
    r = post(search_server, "/v1/search", body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]
    h = httpx.get(search_server + "/health", timeout=5).json()
    assert h["collection"] == {"documents": 4, "dense": False}


def test_requests_that_cannot_finish_in_time_are_refused_at_once() -> None:
    # 10 ms per pair (one pair per batch, "q" vs "q" = 3 tokens): at most ~300 tokens/s, slower on a busy machine.
    # With a 2 s timeout a request may take 1.6 s (80%). One of 300 pairs (>= 3 s of model time) cannot finish in
    # time even on an idle server: 413 before it is queued (retrying cannot help), not 429. One of 60 pairs fits
    # alone but not behind another of 60 still running: 429 with Retry-After, saying what it compared. A small
    # one is still served.
    import threading
    import time

    reranker = overlap_reranker(delay_s=0.01, max_batch_pairs=1)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=2.0, max_documents=400))
    try:
        with running_server(app) as url:
            for _ in range(4):  # let the estimator measure the throughput (>= 64 pairs)
                assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 20}).status_code == 200
            time.sleep(0.6)  # the estimate refreshes every 0.5 s
            r = post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 300})
            assert r.status_code == 413, r.text
            message = r.json()["message"]
            assert message.startswith("request too large for this server: this request (300 pairs, about 1500 tokens)")
            assert "even with nothing queued ahead, more than the 80% of the 2 s timeout (1.6 s)" in message
            assert "retry-after" not in r.headers
            assert r.elapsed.total_seconds() < 1.0  # refused at once, not after 3 s of work

            first: list[httpx.Response] = []
            runner = threading.Thread(
                target=lambda: first.append(post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 60})))
            runner.start()
            # Send the second only once the first is admitted and queued (a fixed sleep raced with the first
            # request's connect on a busy machine: the second got in first and both ran past the timeout).
            wait_until_pending(reranker.scheduler, 30)
            r = post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 60})
            runner.join()
            assert first[0].status_code == 200, first[0].text
            assert r.status_code == 429, r.text
            message = r.json()["message"]
            assert message.startswith("overloaded: behind the work queued ahead, this request (60 pairs, about 300 "
                                      "tokens) would finish in about ")
            assert "later than the 80% of the 2 s timeout (1.6 s) a request may take; retry later" in message
            assert "more than the 2 s timeout" not in message  # the old, self-contradicting wording
            assert int(r.headers["retry-after"]) >= 1
            assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 5}).status_code == 200
    finally:
        reranker.scheduler.close()


def test_a_burst_is_shed_with_429_not_left_to_time_out() -> None:
    # <= 100 pairs/s; 20 simultaneous requests of 20 pairs need >= 4 s; the timeout is 3 s. The ones that cannot
    # finish in time are refused at once (429) -- counting requests still being tokenized -- and every admitted
    # one finishes: no 503.
    reranker = overlap_reranker(delay_s=0.01, max_batch_pairs=1)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=3.0))
    try:
        with running_server(app) as url:
            for _ in range(4):
                assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 20}).status_code == 200
            import time

            time.sleep(0.6)
            body = {"query": "q", "documents": ["q"] * 20}
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                statuses = sorted(r.status_code for r in pool.map(lambda _: post(url, "/v1/rerank", body), range(20)))
            assert set(statuses) <= {200, 429}, statuses
            assert statuses.count(429) >= 1 and statuses.count(200) >= 5, statuses
    finally:
        reranker.scheduler.close()


def test_wait_estimator_follows_recent_throughput_in_tokens() -> None:
    from types import SimpleNamespace

    from funnelrank.serve.admission import WaitEstimator

    sched = SimpleNamespace(pending_pairs=0, pairs=0, tokens=0, secs=0.0)
    sched.stats = lambda: SimpleNamespace(pairs=sched.pairs, real_tokens=sched.tokens, infer_seconds=sched.secs)
    est = WaitEstimator(sched, min_pairs=10, refresh_s=0.0, smoothing=0.5)
    assert est.admit(100_000, timeout_s=1.0) is None  # nothing measured yet: admitted
    est.release(100_000)
    sched.pairs, sched.tokens, sched.secs = 100, 10_000, 1.0  # 10,000 tokens/s
    assert est.tokens_per_second() == pytest.approx(10_000.0)
    sched.pairs, sched.tokens, sched.secs = 150, 15_000, 2.0  # the machine slowed down: 5,000 tokens/s recently
    assert est.tokens_per_second() == pytest.approx(7_500.0)
    assert est.admit(4_000, timeout_s=1.0) is None  # 4,000 / 7,500 s <= 0.8 s
    refused = est.admit(4_000, timeout_s=1.0)  # 8,000 tokens ahead incl. the admitted 4,000: 1.07 s > 0.8 s
    assert refused is not None and refused.wait_s == pytest.approx(8_000 / 7_500) and not refused.alone
    assert refused.limit_s == pytest.approx(0.8) and refused.retry_after_s == 1
    alone = est.admit(7_000, timeout_s=1.0)  # 0.93 s even on an idle queue
    assert alone is not None and alone.alone
    est.release(4_000)
    assert est.admitted_tokens == 0
    # With nothing else queued, work ahead is also read from the scheduler (pairs x measured tokens per pair).
    sched.pending_pairs = 50
    assert est.expected_wait_s(0) == pytest.approx(50 * 100 / 7_500)
    assert est.estimate_pairs(10) == 1000  # 10 pairs of the measured 100 tokens


def test_token_estimate_is_capped_per_pair_and_counts_windows() -> None:
    from funnelrank.rerank.cross_encoder import ChunkSpec
    from funnelrank.serve.admission import estimate_tokens

    # ceil(30 / 3) query + ceil(300 / 3) document + 3 special tokens.
    assert estimate_tokens(30, [300], max_length=256) == 113
    # A 7,900-character document costs max_length, not 2,637 tokens: the tokenizer truncates the rest.
    assert estimate_tokens(30, [7_900] * 1000, max_length=256) == 256_000
    # Chunked: windows of 100 passage tokens sharing 20, at most 4 of them.
    chunks = ChunkSpec(window=100, stride=20, max_chunks=4)
    assert estimate_tokens(30, [150], max_length=256, chunking=chunks) == 10 + 50 + 3
    assert estimate_tokens(30, [600], max_length=256, chunking=chunks) == 3 * (10 + 100 + 3)  # 200 tokens: 3
    assert estimate_tokens(30, [60_000], max_length=256, chunking=chunks) == 4 * (10 + 100 + 3)


# --------------------------------------------------------------------------- slow clients (hardening item 1)


def _raw(url: str, data: bytes) -> Any:
    """A socket to the test server that has sent `data` (and nothing more)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(data)
    return sock


def _read_all(sock: Any, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout_s` passes)."""
    import socket
    import time

    sock.settimeout(0.2)
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server did not close the connection within {timeout_s} s; got {out!r}")


def test_slow_clients_take_no_inflight_slots_and_time_out() -> None:
    # 48 clients send their headers and one byte of a 100-byte body, then stall; 6 more send half their headers;
    # 2 connect and send nothing; 1 sends a request, then half the next one's headers. With 8 in-flight slots,
    # the stalled bodies must not take them: every normal
    # request meanwhile gets 200. The stalled bodies get 408 after body_timeout_s and their connections close;
    # the stalled headers get 408 after header_timeout_s.
    import time

    limits = ServiceLimits(max_inflight=8, body_timeout_s=3.0, header_timeout_s=3.0)
    reranker = overlap_reranker()
    app = create_app(reranker, limits=limits)
    head = (b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{")
    try:
        with running_server(app, limits=limits) as url:
            started = time.monotonic()
            slow_bodies = [_raw(url, head) for _ in range(48)]
            slow_heads = [_raw(url, b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(6)]
            silent = [_raw(url, b"") for _ in range(2)]
            # A keep-alive connection: one complete request, then half of the next one's headers.
            kept = _raw(url, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _read_all_response(kept).startswith(b"HTTP/1.1 200 ")
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: 12")
            time.sleep(0.3)  # the server has read every head and is waiting for the bodies
            body = {"query": "capital of France", "documents": DOCS}
            with httpx.Client(timeout=10) as client:
                for endpoint in ("/v1/rerank", "/v1/rerank", "/health", "/metrics"):
                    r = (client.post(url + endpoint, json=body) if endpoint == "/v1/rerank"
                         else client.get(url + endpoint))
                    assert r.status_code == 200, (endpoint, r.status_code, r.text)
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    statuses = list(pool.map(lambda _: post(url, "/v1/rerank", body).status_code, range(16)))
                assert statuses == [200] * 16, statuses
                metrics = client.get(url + "/metrics").text
                assert _sample(metrics, "funnelrank_http_inflight_requests") == 0  # the stalled ones are not in flight
                # ... and all of that happened while they were still stalled (none timed out yet):
                assert 'status="408"' not in metrics, time.monotonic() - started

            for sock in slow_bodies:
                answer = _read_all(sock, 5.0)
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b'{"message": "request body not received within 3 s (1 bytes arrived)"}' in answer
                sock.close()
            for sock in [*slow_heads, *silent, kept]:
                answer = _read_all(sock, 5.0)
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b'"message": "request headers not received within 3 s"' in answer
                sock.close()
            assert time.monotonic() - started < 10.0
            metrics = httpx.get(url + "/metrics", timeout=5).text
            assert _sample(metrics, 'funnelrank_http_requests_total{endpoint="/v1/rerank",status="408"}') == 48
            assert httpx.get(url + "/health", timeout=5).status_code == 200
    finally:
        reranker.scheduler.close()


def test_inflight_slot_is_taken_after_the_body_and_freed_when_the_response_starts() -> None:
    # One slot, a slow model: a request whose body is still arriving does not take it, so a complete request
    # is served; a second complete request meanwhile gets 503 (the slot is taken by the first).
    import time

    limits = ServiceLimits(max_inflight=1, body_timeout_s=3.0)
    reranker = overlap_reranker(delay_s=0.8)
    app = create_app(reranker, limits=limits)
    try:
        with running_server(app, limits=limits) as url:
            slow = _raw(url, b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 60\r\n\r\n{")
            time.sleep(0.2)
            body = {"query": "q", "documents": ["q"]}
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                first = pool.submit(post, url, "/v1/rerank", body)
                time.sleep(0.3)
                second = pool.submit(post, url, "/v1/rerank", body)
                assert first.result().status_code == 200
                busy = second.result()
                assert busy.status_code == 503 and "1 requests in flight" in busy.json()["message"]
            # The stalled body finally arrives: it is served too.
            rest = json.dumps(body).encode()[1:]
            slow.sendall(rest + b" " * (59 - len(rest)))
            answer = _read_all_response(slow)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            slow.close()
    finally:
        reranker.scheduler.close()


def _read_all_response(sock: Any) -> bytes:
    """One complete response with a Content-Length body, on a connection that stays open."""
    sock.settimeout(10)
    out = b""
    while b"\r\n\r\n" not in out:
        out += sock.recv(65536)
    head, _, rest = out.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


# --------------------------------------------------------------------------- error bodies (hardening item 2)

_DEEP = b"[" * 40 + b"]" * 40
_VERY_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("path", "raw", "fragment"),
    [
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": NaN}', "NaN is not valid JSON"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "floor": Infinity}', "Infinity is not valid JSON"),
        ("/v1/search", b'{"query": "q", "floor": NaN}', "NaN is not valid JSON"),
        ("/v1/search", b'{"query": "q", "floor": -Infinity}', "-Infinity is not valid JSON"),
        ("/v1/rerank", b'{"query": "caf\xe9", "documents": ["a"]}', "not valid UTF-8 (byte 14"),
        ("/v1/search", b'{"query": "\xff\xfe"}', "not valid UTF-8"),
        ("/v1/rerank", b'{"query": "q", "documents": ' + _DEEP + b"}", "documents.0.str: Input should be a valid str"),
        ("/v1/rerank", b'{"query": "q", "documents": ' + _VERY_DEEP + b"}", "nested too deeply"),
        ("/v1/search", b'{"query": "q", "filter": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}", "too deeply"),
        ("/v1/rerank", b"[" + b"[]," * 500 + b"[]]", "the body must be a JSON object"),
        ("/v1/search", b"{" + b",".join(b'"f%d": 1' % i for i in range(65)) + b"}",
         "the body has 65 fields (at most 64)"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 1e999}', "number 1e999 is out of range"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 1' + b"0" * 400 + b"}", "(401 digits) is out"),
        ("/v1/search", b'{"query": "q", "top_k": 1' + b"0" * 5000 + b"}", "(5001 digits) is out of range"),
        ("/v1/search", b'{"query": "q", "floor": 1e999}', "number 1e999 is out of range"),
        ("/v1/search", b'{"query": "q", "filter": {"n": -1e400}}', "number -1e400 is out of range"),
        ("/v1/search", b'{"query": "q", "candidates": 9223372036854775808}', "is out of range (64-bit)"),
    ],
)
def test_malformed_json_is_422_with_a_message(
    search_server: str, path: str, raw: bytes, fragment: str
) -> None:
    r = httpx.post(search_server + path, content=raw, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["message"] and body["message"].startswith("invalid request: ")
    assert fragment in body["message"], body["message"]


def test_wide_bodies_are_refused_before_validation(search_server: str) -> None:
    # Two million empty lists as documents (6 MB): pydantic would build four million errors -- about a minute of the
    # event loop -- before the endpoint's 413. The middleware parses the body once, off the event loop, and counts
    # the documents first. (The search server runs the default limits: 8 MiB bodies, 1,000 documents.)
    import time

    raw = b'{"query": "q", "documents": [' + b",".join([b"[]"] * 2_000_000) + b"]}"
    t = time.perf_counter()
    r = httpx.post(search_server + "/v1/rerank", content=raw, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json() == {"message": "2000000 documents; the limit is 1000 per request"}
    assert time.perf_counter() - t < 20  # seconds of parsing on a loaded 2-core box, not a minute
    # Deep nesting that Python's parser takes but the service has no use for: an ordinary 4xx, not a crash.
    r = post(search_server, "/v1/search", {"query": "q", "filter": _nested(900)})
    assert r.status_code == 400 and "unknown operator 'a'" in r.json()["message"]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_floor_out_of_range_and_wrong_types_are_422_with_only_a_message(search_server: str) -> None:
    for path, body in [("/v1/rerank", {"query": "q", "documents": ["a"], "floor": 1.5}),
                       ("/v1/search", {"query": "q", "floor": -0.1}),
                       ("/v1/rerank", {"query": "q", "documents": [{"text": 1}] * 3})]:
        r = post(search_server, path, body)
        assert r.status_code == 422, r.text
        assert list(r.json()) == ["message"]  # no "detail": pydantic's list echoes the (possibly huge) input
    # 2**63 - 1 is still a number, just a silly top_n.
    r = httpx.post(search_server + "/v1/rerank", headers={"content-type": "application/json"}, timeout=10,
                   content=b'{"query": "q", "documents": ["a"], "top_n": 9223372036854775807}')
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope", 404, "not found: GET /nope"),
        ("POST", "/v1/nope", 404, "not found: POST /v1/nope"),
        ("GET", "/v1/rerank", 405, "method not allowed: GET /v1/rerank (allowed: POST)"),
        ("PUT", "/v1/search", 405, "method not allowed: PUT /v1/search (allowed: POST)"),
        ("DELETE", "/health", 405, "method not allowed: DELETE /health (allowed: GET)"),
    ],
)
def test_unknown_paths_and_methods_answer_a_message(
    server: str, method: str, path: str, status: int, message: str
) -> None:
    r = httpx.request(method, server + path, timeout=10)
    assert r.status_code == status
    assert r.json() == {"message": message}


def test_an_unexpected_error_is_a_json_500() -> None:
    # A model that crashes: the request fails, with a JSON body, and the server keeps serving.
    from funnelrank.rerank.reranker import Reranker
    from funnelrank.rerank.scheduler import RerankScheduler

    class Broken(OverlapModel):
        def encode(self, query: str, passages: Any) -> Any:
            raise KeyError("boom")

    reranker = Reranker(scorer=RerankScheduler(Broken()))
    app = create_app(reranker)
    try:
        with running_server(app) as url:
            r = post(url, "/v1/rerank", {"query": "q", "documents": ["a"]})
            assert r.status_code == 500 and r.json() == {"message": "internal server error"}
            assert httpx.get(url + "/health", timeout=5).status_code == 200
    finally:
        reranker.scheduler.close()


# --------------------------------------------------------------------------- admission by tokens (hardening item 3)

_LONG_DOC = " ".join(["lorem", "ipsum", "dolor", "sit", "amet"] * 10)  # 50 words (a 52-token pair), 269 characters


def test_admission_counts_tokens_not_pairs() -> None:
    # Model time is 0.2 ms per token (<= 5,000 tokens/s, slower on a busy machine), measured on SHORT documents
    # (3-token pairs). Then 16 clients at once send 20 LONG documents each (52-token pairs): 16.6k tokens, >= 3.3 s
    # of model time, and the timeout is 2 s. Counted in pairs, the short warm-up made them look cheap (20 pairs
    # each), so all were admitted and those at the back timed out (503). Counted in tokens, the ones that could not
    # finish in time are refused at once (429) and every admitted one finishes.
    import time

    reranker = overlap_reranker(token_delay_s=0.0002)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=2.0))
    try:
        with running_server(app) as url:
            for _ in range(4):
                assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 20}).status_code == 200
            time.sleep(0.6)
            body = {"query": "lorem", "documents": [_LONG_DOC] * 20}
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                responses = list(pool.map(lambda _: post(url, "/v1/rerank", body), range(16)))
            statuses = sorted(r.status_code for r in responses)
            assert set(statuses) <= {200, 429}, [(r.status_code, r.text) for r in responses if r.status_code != 200]
            assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    finally:
        reranker.scheduler.close()


def test_request_token_limit_is_413_with_the_estimate() -> None:
    reranker = overlap_reranker()
    app = create_app(reranker, limits=ServiceLimits(max_request_tokens=500))
    try:
        with running_server(app) as url:
            # 10 documents of 269 characters: 10 x (ceil(5 / 3) + ceil(269 / 3) + 3) = 950 estimated tokens.
            r = post(url, "/v1/rerank", {"query": "lorem", "documents": [_LONG_DOC] * 10})
            assert r.status_code == 413, r.text
            assert r.json()["message"] == (
                "10 documents of 2690 characters need about 950 model tokens; the limit is 500 per request (about "
                "3 characters per token, at most 512 per document); send fewer or shorter documents"
            )
            assert post(url, "/v1/rerank", {"query": "lorem", "documents": [_LONG_DOC] * 4}).status_code == 200
    finally:
        reranker.scheduler.close()


def test_default_limits_are_servable_on_the_reference_machine() -> None:
    # The documented defaults: the largest request they allow needs at most 80% of the timeout at the reference
    # throughput, so admission control does not refuse a request at the limits on that machine (it used to refuse
    # 1,000 documents x 7,900 characters every time). With the default model (max_length 256) 64 documents of the
    # longest allowed length fit, 65 do not, and 1,000 x 7,900 characters is a clear 413.
    from funnelrank.serve.admission import estimate_tokens
    from funnelrank.serve.limits import REFERENCE_TOKENS_PER_S

    limits = ServiceLimits()
    assert limits.max_request_tokens / REFERENCE_TOKENS_PER_S <= 0.8 * limits.timeout_s
    longest = limits.max_document_chars
    assert estimate_tokens(limits.max_query_chars, [longest] * 64, max_length=256) <= limits.max_request_tokens
    assert estimate_tokens(limits.max_query_chars, [longest] * 65, max_length=256) > limits.max_request_tokens
    largest = {"query": "q" * limits.max_query_chars, "documents": ["x" * longest] * 64}
    assert len(json.dumps(largest)) < limits.max_body_bytes

    class Model256(OverlapModel):
        max_length = 256  # as the default reranker

    from funnelrank.rerank.reranker import Reranker
    from funnelrank.rerank.scheduler import RerankScheduler

    reranker = Reranker(scorer=RerankScheduler(Model256()))
    app = create_app(reranker)
    try:
        with running_server(app) as url:
            docs = [("lorem ipsum " * 2000)[:longest]] * 64
            r = post(url, "/v1/rerank", {"query": "lorem", "documents": docs, "top_n": 1})
            assert r.status_code == 200, r.text
            r = post(url, "/v1/rerank", {"query": "lorem", "documents": ["x" * 7_900] * 1000})
            assert r.status_code == 413 and "need about 256000 model tokens; the limit is 16384" in r.json()["message"]
    finally:
        reranker.scheduler.close()


# --------------------------------------------------------------------------- access (hardening item 4)


def test_api_key_is_required_everywhere_but_health() -> None:
    reranker = overlap_reranker()
    app = create_app(reranker, api_key="s3cret-key")
    body = {"query": "capital of France", "documents": DOCS}
    try:
        with running_server(app) as url:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"},
                            {"Authorization": "Basic s3cret-key"}):
                r = httpx.post(url + "/v1/rerank", json=body, headers=headers, timeout=10)
                assert r.status_code == 401, (headers, r.text)
                assert r.json()["message"].startswith("missing or invalid API key")
                assert r.headers["www-authenticate"] == "Bearer"
            assert httpx.get(url + "/metrics", timeout=10).status_code == 401
            assert httpx.get(url + "/docs", timeout=10).status_code == 401
            assert httpx.get(url + "/health", timeout=10).status_code == 200  # liveness stays open
            ok = {"Authorization": "Bearer s3cret-key"}
            r = httpx.post(url + "/v1/rerank", json=body, headers=ok, timeout=10)
            assert r.status_code == 200, r.text
            lower = {"authorization": "bearer s3cret-key"}  # the scheme is case-insensitive
            assert httpx.get(url + "/metrics", headers=lower, timeout=10).status_code == 200
            # Refused before the body is read: a huge body without the key is not buffered (no 413 either).
            r = httpx.post(url + "/v1/rerank", content=b"x" * 100_000, timeout=10)
            assert r.status_code == 401
    finally:
        reranker.scheduler.close()


def test_cors_origins_trusted_hosts_and_no_docs() -> None:
    reranker = overlap_reranker()
    app = create_app(reranker, cors_origins=["https://app.example"], trusted_hosts=["127.0.0.1", "localhost"],
                     docs=False, api_key="k")
    try:
        with running_server(app) as url:
            # A browser's preflight from the allowed origin is answered without the key...
            preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                         "Access-Control-Request-Headers": "authorization,content-type"}
            r = httpx.options(url + "/v1/rerank", headers=preflight, timeout=10)
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            # ... from any other origin it is refused, with a JSON message.
            r = httpx.options(url + "/v1/rerank", headers={**preflight, "Origin": "https://evil.example"}, timeout=10)
            assert r.status_code == 400 and r.json() == {"message": "Disallowed CORS origin"}
            # The real call carries the CORS header, and so does its 401 (so the page can read why).
            r = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["q"]}, timeout=10,
                           headers={"Origin": "https://app.example", "Authorization": "Bearer k"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
            r = httpx.post(url + "/v1/rerank", json={"query": "q"}, headers={"Origin": "https://app.example"},
                           timeout=10)
            assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://app.example"
            # DNS rebinding: the same server reached under another name is refused.
            r = httpx.get(url + "/health", headers={"Host": "attacker.example:8000"}, timeout=10)
            assert r.status_code == 400
            assert r.json() == {"message": "invalid Host header 'attacker.example:8000': not a trusted host of this "
                                           "server (see --trusted-host)"}
            assert httpx.get(url + "/health", headers={"Host": "localhost"}, timeout=10).status_code == 200
            # No docs.
            for path in ("/docs", "/openapi.json"):
                r = httpx.get(url + path, headers={"Authorization": "Bearer k"}, timeout=10)
                assert r.status_code == 404 and r.json()["message"] == f"not found: GET {path}"
    finally:
        reranker.scheduler.close()


def test_docs_are_served_by_default(server: str) -> None:
    assert httpx.get(server + "/docs", timeout=10).status_code == 200
    assert httpx.get(server + "/openapi.json", timeout=10).json()["info"]["title"] == "funnelrank"


def test_bodies_being_received_have_a_memory_budget() -> None:
    # 8 KiB may be buffered for bodies still arriving: two clients stalled after 3,000 bytes each fit, a third one's
    # 3,000 bytes do not (503, connection closed); the two get 408 when their body timeout passes.
    import time

    limits = ServiceLimits(max_body_bytes=4096, max_receiving_bytes=8192, body_timeout_s=1.5)
    reranker = overlap_reranker()
    app = create_app(reranker, limits=limits)
    head = (b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n")
    try:
        with running_server(app, limits=limits) as url:
            stalled = [_raw(url, head + b" " * 3000) for _ in range(2)]
            time.sleep(0.3)
            third = _raw(url, head + b" " * 3000)
            answer = _read_all(third, 5.0)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"too many request bodies being received" in answer
            assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"]}).status_code == 200  # small ones fit
            for sock in stalled:
                assert _read_all(sock, 5.0).startswith(b"HTTP/1.1 408 ")
            third.close()
            for sock in stalled:
                sock.close()
    finally:
        reranker.scheduler.close()
