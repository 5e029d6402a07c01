"""The playground page's server side: served at / as package data, public static files with a same-origin-only
Content-Security-Policy, /v1/search's "explain" funnel and "floor", --no-playground (no browser here: see
tests/test_playground_browser.py for the page itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from funnelrank.rerank.policy import DEFAULT_FLOOR
from funnelrank.serve.app import create_app
from funnelrank.serve.playground import CONTENT_SECURITY_POLICY, PLAYGROUND_PATHS, playground_file
from service_helpers import TOY_DOCS, overlap_reranker, running_server


def toy_collection() -> Any:
    """TOY_DOCS in a BM25 collection, ids fr, banana, louvre, knit."""
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    collection.add(["fr", "banana", "louvre", "knit"], TOY_DOCS)
    return collection


@contextmanager
def served(**options: Any) -> Iterator[str]:
    reranker = overlap_reranker()
    app = create_app(reranker, collection=toy_collection(), model_name="overlap-toy", **options)
    try:
        with running_server(app) as url:
            yield url
    finally:
        reranker.scheduler.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served(api_key="k", trusted_hosts=["127.0.0.1", "localhost"]) as url:
        yield url


def test_page_and_files_are_served_without_the_key_with_a_same_origin_policy(server: str) -> None:
    assert PLAYGROUND_PATHS == ("/", "/playground/playground.css", "/playground/playground.js")
    types = {"/": "text/html", "/playground/playground.css": "text/css", "/playground/playground.js": "text/javascript"}
    for path in PLAYGROUND_PATHS:
        r = httpx.get(server + path, timeout=10)  # no key: the page must load to ask for one
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith(types[path])
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert r.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(server + "/?q=x&floor=0.3", timeout=10).text
    assert page == playground_file("index.html").decode() and "<title>funnelrank playground</title>" in page
    # Nothing from another origin: no absolute URL in the page or its script; the policy allows 'self' only.
    for name in ("index.html", "playground.js", "playground.css"):
        text = playground_file(name).decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "style-src 'self'"):
        assert directive in CONTENT_SECURITY_POLICY
    # The API behind it still needs the key; an unknown file under /playground/ is a 404 like any other path.
    assert httpx.post(server + "/v1/search", json={"query": "Paris"}, timeout=10).status_code == 401
    r = httpx.get(server + "/playground/secret.txt", headers={"Authorization": "Bearer k"}, timeout=10)
    assert r.status_code == 404
    # Counted in the metrics under their own paths.
    metrics = httpx.get(server + "/metrics", headers={"Authorization": "Bearer k"}, timeout=10).text
    assert 'endpoint="/",status="200"' in metrics and 'endpoint="/playground/playground.js"' in metrics
    # The trusted-host rule covers the page too (DNS rebinding).
    assert httpx.get(server + "/", headers={"Host": "attacker.example"}, timeout=10).status_code == 400


def test_search_explain_returns_the_funnel_and_the_floor(server: str) -> None:
    auth = {"Authorization": "Bearer k"}
    r = httpx.post(server + "/v1/search", json={"query": "capital of France", "explain": True}, headers=auth,
                   timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["floor"] == DEFAULT_FLOOR and body["no_evidence"] is False
    assert [x["id"] for x in body["results"]] == ["fr"]
    funnel = body["funnel"]
    assert [e["id"] for e in funnel] == ["fr", "louvre"] and [e["stage1_rank"] for e in funnel] == [1, 2]
    assert set(funnel[0]) == {"id", "text", "stage1_rank", "stage1_score", "score", "kept"}
    assert funnel[0]["kept"] is True and funnel[1]["kept"] is False
    assert funnel[0]["score"] == pytest.approx(body["results"][0]["score"])
    assert funnel[1]["score"] < DEFAULT_FLOOR < funnel[0]["score"]  # "louvre" shares one word of three: below the floor
    assert funnel[0]["stage1_score"] > funnel[1]["stage1_score"] > 0
    # Additive: without "explain" the response has no funnel (and says its floor); without rerank no scores.
    plain = httpx.post(server + "/v1/search", json={"query": "capital of France"}, headers=auth, timeout=10).json()
    assert "funnel" not in plain and plain["floor"] == DEFAULT_FLOOR
    stage1 = httpx.post(server + "/v1/search", json={"query": "France", "rerank": False, "explain": True},
                        headers=auth, timeout=10).json()
    assert stage1["floor"] is None and all(e["score"] is None for e in stage1["funnel"])
    r = httpx.post(server + "/v1/search", json={"query": "France", "explain": "yes"}, headers=auth, timeout=10)
    assert r.status_code == 422 and "explain" in r.json()["message"]
    health = httpx.get(server + "/health", timeout=10).json()
    assert health["floor"] == DEFAULT_FLOOR


def test_no_playground_means_no_page() -> None:
    with served(playground=False) as url:
        for path in PLAYGROUND_PATHS:
            r = httpx.get(url + path, timeout=10)
            assert r.status_code == 404 and r.json() == {"message": f"not found: GET {path}"}
        assert httpx.get(url + "/health", timeout=10).status_code == 200


def test_no_playground_flag_reaches_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from funnelrank.cli.main import main

    seen: dict[str, Any] = {}

    def fake_build_service(config: Any, collection: Any = None) -> Any:
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("funnelrank.serve.config.build_service", fake_build_service)
    for argv, expected in ((["serve", "--no-collection"], True), (["serve", "--no-collection", "--no-playground"], False)):
        with pytest.raises(SystemExit):
            main(argv)
        assert seen.pop("config").playground is expected


def test_the_page_ships_as_package_data() -> None:
    """The three files are inside the package (scikit-build-core's wheel.packages copies every file of
    python/funnelrank, as it does the default reranker's model files), read through importlib.resources."""
    from importlib import resources

    folder = resources.files("funnelrank.serve").joinpath("playground")
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "playground.css", "playground.js"]
    js = playground_file("playground.js").decode()
    assert "innerHTML" not in js  # texts from the collection are set as text, never parsed as HTML
    assert 'fetch(path' in js and '"v1/search"' in js and '"v1/rerank"' in js and 'call("health")' in js
