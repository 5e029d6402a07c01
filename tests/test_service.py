"""The HTTP service, started for real (uvicorn on 127.0.0.1, a free port) and spoken to over HTTP."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from service_helpers import overlap_reranker, running_server

from funnelrank.service import ServiceLimits, create_app

DOCS = [
    "The capital of France is Paris.",
    "Bananas are yellow and rich in potassium.",
    "Paris hosts the Louvre, the most visited museum in France.",
    "Completely unrelated text about knitting.",
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    reranker = overlap_reranker()
    app = create_app(reranker, model_name="overlap-toy", limits=ServiceLimits(max_documents=8, max_document_chars=200,
                                                                              max_query_chars=50, max_body_bytes=4096))
    try:
        with running_server(app) as url:
            yield url
    finally:
        reranker.scheduler.close()


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10, **kwargs)


def test_rerank_contract(server: str) -> None:
    r = post(server, "/v1/rerank", {"query": "capital of France", "documents": DOCS, "top_n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta"}
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
    from funnelrank.collection import Collection

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


def test_requests_that_would_time_out_in_the_queue_get_429_at_once() -> None:
    # 10 ms per pair (one pair per batch): at most 100 pairs/s, slower on a busy machine. With a 2 s timeout a
    # request of 300 pairs (>= 3 s of model time) cannot finish in time even on an idle server, so it is
    # refused before it is queued; a small one is still served.
    reranker = overlap_reranker(delay_s=0.01, max_batch_pairs=1)
    app = create_app(reranker, limits=ServiceLimits(timeout_s=2.0, max_documents=400))
    try:
        with running_server(app) as url:
            for _ in range(4):  # let the estimator measure the throughput (>= 64 pairs)
                assert post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 20}).status_code == 200
            import time

            time.sleep(0.6)  # the estimate refreshes every 0.5 s
            r = post(url, "/v1/rerank", {"query": "q", "documents": ["q"] * 300})
            assert r.status_code == 429, r.text
            assert "more than the 2 s timeout" in r.json()["message"]
            assert int(r.headers["retry-after"]) >= 1
            assert r.elapsed.total_seconds() < 1.0  # refused at once, not after 3 s of work
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


def test_wait_estimator_follows_recent_throughput() -> None:
    from types import SimpleNamespace

    from funnelrank.service.admission import WaitEstimator

    sched = SimpleNamespace(pending_pairs=0, pairs=0, secs=0.0)
    sched.stats = lambda: SimpleNamespace(pairs=sched.pairs, infer_seconds=sched.secs)
    est = WaitEstimator(sched, min_pairs=10, refresh_s=0.0, smoothing=0.5)
    assert est.admit(1000, timeout_s=1.0) is None  # nothing measured yet: admitted
    est.release(1000)
    sched.pairs, sched.secs = 100, 1.0  # 100 pairs/s
    assert est.pairs_per_second() == pytest.approx(100.0)
    sched.pairs, sched.secs = 150, 2.0  # the machine slowed down: 50 pairs/s recently
    assert est.pairs_per_second() == pytest.approx(75.0)
    assert est.admit(40, timeout_s=1.0) is None  # 40 / 75 s <= 0.8 s
    refused = est.admit(40, timeout_s=1.0)  # 80 pairs ahead incl. the admitted 40: 1.07 s > 0.8 s
    assert refused is not None and refused[0] == pytest.approx(80 / 75)
    est.release(40)
    assert est.admitted_pairs == 0
