"""`funnelrank serve` as a real subprocess (the CLI path) with a tiny real ONNX cross-encoder, and
`funnelrank search --model` with the same model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from funnelrank.cli.main import main
from funnelrank.store.collection import Collection
from service_helpers import free_port

DOCS = ["the cat sat on the mat", "dogs chase cats", "stock markets fell", "a recipe for bread"]


@pytest.fixture(scope="module")
def model_dir(tiny_cross_encoder_dir: Path) -> Path:
    return tiny_cross_encoder_dir


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    c = Collection(dense=False)
    c.add([f"d{i}" for i in range(len(DOCS))], DOCS, [{"i": i} for i in range(len(DOCS))])
    out = tmp_path_factory.mktemp("col") / "col"
    c.save(out)
    return out


@pytest.fixture(scope="module")
def served(model_dir: Path, collection_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "funnelrank", "serve", str(collection_dir), "--model", str(model_dir),
         "--port", str(port), "--max-documents", "50"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "funnelrank serve did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def test_served_rerank_and_search(served: str, model_dir: Path) -> None:
    from funnelrank.rerank.cross_encoder import CrossEncoder

    health = httpx.get(served + "/health", timeout=5).json()
    assert health["collection"] == {"documents": 4, "dense": False} and health["model"] == model_dir.name
    r = httpx.post(served + "/v1/rerank", json={"query": "cats", "documents": DOCS, "top_n": 4}, timeout=30)
    assert r.status_code == 200, r.text
    got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    # The service returns exactly what the model computes for these pairs.
    expected, _ = CrossEncoder.from_pretrained(model_dir).predict("cats", DOCS)
    assert sorted(got) == [0, 1, 2, 3]
    assert np.allclose([got[i] for i in range(4)], expected, atol=1e-5)
    r = httpx.post(served + "/v1/search", json={"query": "cats", "floor": 0, "filter": {"i": {"lte": 1}}}, timeout=30)
    assert r.status_code == 200, r.text
    assert sorted(x["id"] for x in r.json()["results"]) == ["d0", "d1"]
    r = httpx.post(served + "/v1/rerank", json={"query": "q", "documents": ["x"] * 51}, timeout=30)
    assert r.status_code == 413


def test_search_cli_with_model(collection_dir: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", str(collection_dir), "cats", "--model", str(model_dir), "--floor", "0", "--json"]
    assert main([*argv, "--stage1-weight", "0"]) == 0  # rerank order alone: by score
    data = json.loads(capsys.readouterr().out)
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True) and all(r["logit"] is not None for r in data["results"])
    assert {"bm25", "rerank"} <= set(data["timings_ms"])
    assert main([*argv, "--stage1-weight", "1"]) == 0  # stage-1 order, same rerank scores
    fused = json.loads(capsys.readouterr().out)
    assert [r["stage1"]["bm25"]["rank"] for r in fused["results"]] == list(range(1, len(scores) + 1))
    assert sorted(r["score"] for r in fused["results"]) == sorted(scores)
    assert main([*argv, "--stage1-weight", "1.5"]) == 2
    assert "stage1_weight must be in [0, 1]" in capsys.readouterr().err


def test_serve_bad_arguments(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "nothing"), "--model", str(model_dir)]) == 2
    assert "no such collection directory" in capsys.readouterr().err
    assert main(["serve", "--no-collection", "--model", str(tmp_path / "nomodel")]) == 2
    assert "nomodel" in capsys.readouterr().err



def test_cli_works_without_the_serve_extra_and_serve_says_what_is_missing() -> None:
    """`funnelrank eval` etc. must not need FastAPI; `serve` names the extra instead of a traceback."""
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'prometheus_client'):\n"
        "    sys.modules[name] = None  # as if the serve extra were not installed\n"
        "from funnelrank.cli.main import main\n"
        "try:\n"
        "    main(['eval', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "sys.exit(main(['serve', '--no-collection']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "usage: funnelrank eval" in proc.stdout
    assert "funnelrank[serve]" in proc.stderr and "fastapi" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def serve_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`funnelrank serve ...` run in process up to the point where uvicorn would start: returns
    ``run(argv) -> (exit code, uvicorn config)``, with the toy overlap model instead of a real one."""
    from service_helpers import overlap_reranker

    made: list[Any] = []
    configs: list[Any] = []

    class NoServer:
        def __init__(self, config: Any) -> None:
            configs.append(config)

        def run(self) -> None:
            pass

    def reranker(*args: Any, **kwargs: Any) -> Any:
        made.append(overlap_reranker())
        return made[-1]

    monkeypatch.setattr("uvicorn.Server", NoServer)
    monkeypatch.setattr("funnelrank.rerank.Reranker", reranker)
    monkeypatch.delenv("FUNNELRANK_API_KEY", raising=False)

    def run(argv: list[str]) -> tuple[int, Any]:
        code = main(["serve", "--no-collection", *argv])
        return code, configs[-1] if configs else None

    yield run
    for r in made:
        r.scheduler.close()


def test_serve_access_defaults_and_options(serve_app: Any, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient
    from funnelrank.serve.server import HeaderTimeoutH11Protocol

    body = {"query": "q", "documents": ["q"]}
    # Defaults: loopback bind, loopback Host headers only (DNS rebinding), no key, docs on.
    code, config = serve_app([])
    assert code == 0 and config.host == "127.0.0.1"
    assert issubclass(config.http, HeaderTimeoutH11Protocol) and config.http.header_timeout_s == 10.0
    assert config.timeout_keep_alive == 5 and config.h11_max_incomplete_event_size == 16 * 1024
    local = TestClient(config.app, base_url="http://127.0.0.1:8000")
    assert local.post("/v1/rerank", json=body).status_code == 200
    assert local.get("/docs").status_code == 200
    assert TestClient(config.app, base_url="http://localhost").get("/health").status_code == 200
    r = TestClient(config.app, base_url="http://rebound.example").get("/health")
    assert r.status_code == 400 and "not a trusted host" in r.json()["message"]
    assert "no API key" in capsys.readouterr().err

    # The key from the environment; --cors-origin; --no-docs; --trusted-host; --header-timeout.
    monkeypatch.setenv("FUNNELRANK_API_KEY", "env-key")
    code, config = serve_app(["--cors-origin", "https://a.example", "--cors-origin", "https://b.example", "--no-docs",
                              "--trusted-host", "api.example", "--header-timeout", "3"])
    assert code == 0 and config.http.header_timeout_s == 3.0
    client = TestClient(config.app, base_url="http://api.example")
    assert client.post("/v1/rerank", json=body).status_code == 401
    assert client.post("/v1/rerank", json=body, headers={"Authorization": "Bearer env-key"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/docs", headers={"Authorization": "Bearer env-key"}).status_code == 404
    preflight = client.options("/v1/rerank",
                               headers={"Origin": "https://b.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://b.example"
    assert TestClient(config.app, base_url="http://127.0.0.1").get("/health").status_code == 400  # not listed
    assert "API key required" in capsys.readouterr().err

    # --api-key wins over the environment; a non-loopback bind accepts any Host and warns when there is no key.
    code, config = serve_app(["--api-key", "flag-key", "--host", "0.0.0.0"])
    client = TestClient(config.app, base_url="http://anything.example")
    assert client.post("/v1/rerank", json=body, headers={"Authorization": "Bearer env-key"}).status_code == 401
    assert client.post("/v1/rerank", json=body, headers={"Authorization": "Bearer flag-key"}).status_code == 200
    assert "warning" not in capsys.readouterr().err
    monkeypatch.delenv("FUNNELRANK_API_KEY")
    code, config = serve_app(["--host", "0.0.0.0", "--trusted-host", "*"])
    assert TestClient(config.app, base_url="http://anything.example").get("/health").status_code == 200
    assert "reachable from other machines and no API key is set" in capsys.readouterr().err


def test_serve_cache_entries_reaches_the_reranker(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvicorn")
    from funnelrank.rerank.reranker import DEFAULT_CACHE_ENTRIES
    from service_helpers import overlap_reranker

    seen: list[dict[str, Any]] = []
    made: list[Any] = []

    class NoServer:
        def __init__(self, config: Any) -> None:
            pass

        def run(self) -> None:
            pass

    def reranker(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        made.append(overlap_reranker())
        return made[-1]

    monkeypatch.setattr("uvicorn.Server", NoServer)
    monkeypatch.setattr("funnelrank.rerank.Reranker", reranker)
    try:
        assert main(["serve", "--no-collection"]) == 0 and seen[-1]["cache_entries"] == DEFAULT_CACHE_ENTRIES
        assert main(["serve", "--no-collection", "--cache-entries", "0"]) == 0 and seen[-1]["cache_entries"] == 0
        assert main(["serve", "--no-collection", "--cache-entries", "-1"]) == 2
    finally:
        for r in made:
            r.scheduler.close()
