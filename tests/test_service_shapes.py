"""The HTTP shapes beside Cohere v1: Cohere v2 ``/v2/rerank`` (spoken to by the official ``cohere`` client),
Jina-style ``usage.total_tokens``, and TEI's ``/rerank``; all on a live uvicorn server, through the same limits
and scheduler as ``/v1/rerank``. The service guide's curl examples for both are posted to the service too."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from funnelrank.serve.app import ENDPOINTS, create_app
from service_helpers import TOY_DOCS, running_server, toy_server

SERVICE_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "service.md"

DOCS = TOY_DOCS


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with toy_server() as url:
        yield url


def post(url: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10)


def test_endpoints_are_listed() -> None:
    assert {"/v1/rerank", "/v2/rerank", "/rerank"} <= set(ENDPOINTS)


# ---------------------------------------------------------------------------------------------- Cohere v2


def test_v2_contract(server: str) -> None:
    r = post(server, "/v2/rerank", {"model": "rerank-v3.5", "query": "capital of France", "documents": DOCS,
                                    "top_n": 2, "max_tokens_per_doc": 4096})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta", "usage"}
    assert [set(x) for x in body["results"]] == [{"index", "relevance_score"}] * 2
    assert body["results"][0]["index"] == 0  # every query word
    assert body["meta"]["api_version"] == {"version": "2"}
    assert body["meta"]["model"] == "overlap-toy"
    # Jina's usage.total_tokens: the toy model's tokens are words, one separator per pair (no specials), so
    # "capital of France" (3) + separator (1) + each document's words.
    expected = sum(3 + 1 + len(re.findall(r"\w+", d)) for d in DOCS)
    assert body["usage"] == {"total_tokens": expected}
    assert body["meta"]["tokens"] == {"input_tokens": expected}


def test_v2_without_top_n_returns_every_document(server: str) -> None:
    r = post(server, "/v2/rerank", {"model": "m", "query": "Paris museum", "documents": DOCS})
    results = r.json()["results"]
    assert [x["index"] for x in results][0] == 2 and sorted(x["index"] for x in results) == [0, 1, 2, 3]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)


def test_v2_floor_extension_and_no_evidence(server: str) -> None:
    r = post(server, "/v2/rerank", {"query": "capital of France", "documents": DOCS, "floor": 0.5})
    body = r.json()
    assert [x["index"] for x in body["results"]] == [0] and body["meta"]["no_evidence"] is False
    r = post(server, "/v2/rerank", {"query": "quantum chromodynamics", "documents": DOCS, "floor": 0.5})
    assert r.json()["results"] == [] and r.json()["meta"]["no_evidence"] is True


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"documents": ["a"]}, 422, "query"),
        ({"query": "q", "documents": [{"text": "objects are v1 only"}]}, 422, "documents.0"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
        ({"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 422, "max_tokens_per_doc"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": 100}, 400, "max_tokens_per_doc=100"),  # toy model: no tokenizer
        ({"query": "   ", "documents": ["a"]}, 400, "query is empty"),
        ({"query": "q", "documents": ["x" * 201]}, 413, "documents[0]"),
        ({"query": "q", "documents": ["x"] * 9}, 413, "9 documents"),
    ],
)
def test_v2_bad_input(server: str, body: dict[str, Any], status: int, fragment: str) -> None:
    r = post(server, "/v2/rerank", body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"message"} and fragment in r.json()["message"]


def test_official_cohere_client_v2_and_v1(server: str) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=server)
    resp = client.rerank(model="rerank-v3.5", query="capital of France", documents=DOCS, top_n=2,
                         max_tokens_per_doc=4096)
    assert [r.index for r in resp.results] == [0, 2]
    assert 0.9 < resp.results[0].relevance_score <= 1.0
    assert resp.meta is not None and resp.meta.api_version is not None and resp.meta.api_version.version == "2"
    assert resp.meta.tokens is not None and resp.meta.tokens.input_tokens and resp.meta.tokens.input_tokens > 0

    v1 = cohere.Client(api_key="unused", base_url=server)
    resp1 = v1.rerank(model="rerank-english-v3.0", query="Paris museum", documents=DOCS, top_n=1, return_documents=True)
    assert [r.index for r in resp1.results] == [2] and resp1.results[0].document.text == DOCS[2]

    async def run_async() -> Any:
        aclient = cohere.AsyncClientV2(api_key="unused", base_url=server)
        return await aclient.rerank(model="rerank-v3.5", query="Paris museum", documents=DOCS, top_n=1)

    assert [r.index for r in asyncio.run(run_async()).results] == [2]


def test_official_cohere_client_sees_errors(server: str) -> None:
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=server)
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        client.rerank(model="m", query="q", documents=["a"], max_tokens_per_doc=10)
    assert info.value.status_code == 400 and "max_tokens_per_doc" in info.value.body["message"]


# ---------------------------------------------------------------------------------------------- TEI


def test_tei_contract(server: str) -> None:
    r = post(server, "/rerank", {"query": "capital of France", "texts": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == len(DOCS)  # every text, no floor, no top_n
    assert [set(x) for x in body] == [{"index", "score"}] * len(DOCS)
    assert body[0]["index"] == 0
    scores = [x["score"] for x in body]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)


def test_tei_raw_scores_and_return_text(server: str) -> None:
    r = post(server, "/rerank", {"query": "capital of France", "texts": DOCS, "raw_scores": True,
                                 "return_text": True, "truncate": True, "truncation_direction": "Right"})
    body = r.json()
    assert [set(x) for x in body] == [{"index", "score", "text"}] * len(DOCS)
    for x in body:
        assert x["text"] == DOCS[x["index"]]
    # The toy model's logit is 8 * (share of query words in the text) - 4: every word for doc 0, none for doc 3.
    by_index = {x["index"]: x["score"] for x in body}
    assert by_index[0] == pytest.approx(4.0) and by_index[3] == pytest.approx(-4.0)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"texts": ["a"]}, 422, "query"),
        ({"query": "q", "documents": ["a"]}, 422, "texts"),
        ({"query": "q", "texts": ["a"], "raw_scores": "yes"}, 422, "raw_scores"),
        ({"query": "q", "texts": ["a"], "truncation_direction": "middle"}, 422, "truncation_direction"),
        ({"query": "q", "texts": ["a"], "truncation_direction": "left"}, 400, "truncation_direction"),
        ({"query": "q", "texts": ["x" * 201]}, 413, "texts[0]"),
        ({"query": "q", "texts": ["x"] * 9}, 413, "9 texts"),
    ],
)
def test_tei_bad_input(server: str, body: dict[str, Any], status: int, fragment: str) -> None:
    r = post(server, "/rerank", body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"message"} and fragment in r.json()["message"]


def test_new_shapes_are_strict_json_and_limited_like_v1(server: str) -> None:
    """The middleware's strict JSON, body limit and document count cover the new paths too."""
    for path, field in (("/v2/rerank", "documents"), ("/rerank", "texts")):
        r = httpx.post(server + path, content=b'{"query": "q", "%s": ["a"], "floor": NaN}' % field.encode(),
                       headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 422 and "NaN" in r.json()["message"], r.text
        r = httpx.post(server + path, json={"query": "q", field: ["a" * 100] * 50}, timeout=10)
        assert r.status_code == 413, r.text


# --------------------------------------------------------------------------------------- service guide


def guide_curls() -> list[tuple[str, dict[str, Any]]]:
    """(path, JSON body) of each ``curl`` command in the service guide (docs/guides/service.md) that posts to
    /v2/rerank or /rerank."""
    text = SERVICE_GUIDE.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        command = block.replace("\\\n", " ")
        for line in command.splitlines():
            if not line.strip().startswith("curl"):
                continue
            words = shlex.split(line)
            url = next(w for w in words if w.startswith("http"))
            path = "/" + url.split("/", 3)[3]
            if path in ("/v2/rerank", "/rerank"):
                out.append((path, json.loads(words[words.index("-d") + 1])))
    return out


def test_the_service_guide_has_curl_examples_for_both_shapes() -> None:
    assert sorted({path for path, _ in guide_curls()}) == ["/rerank", "/v2/rerank"]


@pytest.mark.parametrize("index", [0, 1])
def test_service_guide_curl_example_works(server: str, index: int) -> None:
    path, body = guide_curls()[index]
    r = post(server, path, body)
    assert r.status_code == 200, r.text
    results = r.json() if path == "/rerank" else r.json()["results"]
    documents = body["texts"] if path == "/rerank" else body["documents"]
    assert results and "ibuprofen" in documents[results[0]["index"]].lower()


def test_v2_max_tokens_per_doc_cuts_documents_with_the_models_tokenizer() -> None:
    from funnelrank.rerank.reranker import Reranker

    doc = "The weather was pleasant all week. Children's ibuprofen is dosed at 5-10 mg per kg every 6 hours."
    with Reranker(workers=1, cache_entries=0) as reranker:
        app = create_app(reranker, model_name="default")
        with running_server(app) as url:
            body = {"query": "ibuprofen dose for a child", "documents": [doc]}
            whole = post(url, "/v2/rerank", body).json()
            cut = post(url, "/v2/rerank", {**body, "max_tokens_per_doc": 6}).json()
        assert cut["usage"]["total_tokens"] < whole["usage"]["total_tokens"]
        assert cut["results"][0]["relevance_score"] < 0.5 < whole["results"][0]["relevance_score"]
        model = reranker.scheduler.model
        assert model.truncate_text(doc, 6) == "The weather was pleasant all week"
        assert model.truncate_text("short", 6) == "short"
