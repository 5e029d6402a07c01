"""The service on Ray Serve (funnelrank.serve.ray_serve), on the real 3-node local cluster fixture: sharded answers
equal one node's, and killed replicas lose nothing but explicit 503s."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")
requests = pytest.importorskip("requests")

from funnelrank import Collection, Pipeline  # noqa: E402
from funnelrank.rerank import Reranker  # noqa: E402
from funnelrank.retrieve.sharded import write_shards  # noqa: E402

WORDS = "cat dog bird fish mat sleep chase sing swim red blue green fast slow big small".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def corpus() -> Collection:
    rng = random.Random(5)
    texts: dict[str, None] = {}
    while len(texts) < 80:
        texts[" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10)))] = None
    c = Collection(hnsw={"ef_search": 1000})
    c.add([f"d{i}" for i in range(80)], list(texts), [{"lang": rng.choice(["en", "de"])} for _ in range(80)])
    return c


@pytest.fixture(scope="module")
def served(ray_cluster: Any, corpus: Collection, tiny_cross_encoder_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app deployed on the cluster: ingress, an autoscaling reranker deployment (2 to 3 replicas), 2 shards;
    yields its base URL."""
    from funnelrank.serve.ray_serve import ServiceConfig, build_app, run
    from ray import serve

    shards = write_shards(corpus, tmp_path_factory.mktemp("served") / "shards", 2)
    port = _free_port()
    config = ServiceConfig(model=str(tiny_cross_encoder_dir), model_name="tiny", shard_timeout_s=5.0)
    run(build_app(str(shards), config, replicas="auto", min_replicas=2, max_replicas=3, target_ongoing_requests=16,
                  replica_cpus=0.5, shard_cpus=0.25), port=port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) for _ in range(n)]


@pytest.mark.parametrize("retriever", ["bm25", "dense", "hybrid"])
def test_sharded_search_over_serve_equals_one_node(served: str, corpus: Collection, retriever: str) -> None:
    with Pipeline(corpus, retriever, reranker=None, candidates=30) as one:
        for flt in (None, {"lang": "en"}):
            for q in _queries(6, len(retriever)):
                want = one.search(q, flt, top_k=20)
                r = requests.post(f"{served}/v1/search", json={"query": q, "top_k": 20, "candidates": 30,
                                                               "retriever": retriever, "rerank": False,
                                                               "filter": flt}, timeout=60)
                assert r.status_code == 200, r.text
                got = r.json()["results"]
                assert [(x["id"], x["score"]) for x in got] == [(x.id, x.score) for x in want.results], (q, flt)


def test_rerank_and_search_over_serve_score_as_in_process(served: str, corpus: Collection,
                                                          tiny_cross_encoder_dir: Path) -> None:
    docs = ["cat sleep mat", "dog chase bird", "fish swim"]
    r = requests.post(f"{served}/v1/rerank", json={"query": "cat sleep", "documents": docs}, timeout=60)
    assert r.status_code == 200, r.text
    with Reranker(tiny_cross_encoder_dir) as local:
        want = local.rerank("cat sleep", docs, stage1_weight=0.0, floor=None)  # /v1/rerank applies no floor unless asked
        assert [(x["index"], pytest.approx(x["relevance_score"], abs=1e-6)) for x in r.json()["results"]] == \
            [(i.index, i.score) for i in want.items]
        with Pipeline(corpus, "hybrid", reranker=local, candidates=20, floor=None) as pipe:
            expect = pipe.search("cat sleep mat", top_k=5)
    r = requests.post(f"{served}/v1/search", json={"query": "cat sleep mat", "top_k": 5, "candidates": 20,
                                                   "floor": 0}, timeout=60)
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["results"]] == [x.id for x in expect.results]


def test_health_reports_every_shard_and_errors_stay_json(served: str) -> None:
    h = requests.get(f"{served}/health", timeout=30)
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and [s["up"] for s in body["shards"]] == [True, True]
    assert sum(s["documents"] for s in body["shards"]) == 80
    bad = requests.post(f"{served}/v1/search", json={"query": "cat", "filter": {"lang": {"$eq": 1}}}, timeout=30)
    assert bad.status_code == 400 and "unknown operator" in bad.json()["message"]
    assert requests.post(f"{served}/v1/rerank", data=b"x" * ((8 << 20) + 1), timeout=30).status_code == 413
    assert requests.get(f"{served}/nowhere", timeout=30).status_code == 404


def test_replicas_auto_deploys_an_autoscaling_reranker(served: str) -> None:
    """``--replicas auto`` reaches Serve as an autoscaling config (min/max/target), and serves from min replicas."""
    import ray
    from ray.serve.context import _get_global_client

    details = ray.get(_get_global_client()._controller.get_serve_instance_details.remote())
    reranker = details["applications"]["funnelrank"]["deployments"]["reranker"]
    scaling = reranker["deployment_config"]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (2, 3, 16)
    assert len(_replicas("reranker")) == 2
    assert requests.post(f"{served}/v1/rerank", json={"query": "cat", "documents": ["a cat", "a dog"]},
                         timeout=30).status_code == 200


def test_bad_replica_settings_fail_before_deploying() -> None:
    from funnelrank.serve.ray_serve import ServiceConfig, build_app

    config = ServiceConfig(model="unused", model_name="unused")
    for kwargs in ({"replicas": 0}, {"replicas": "many"}, {"replicas": True},
                   {"replicas": "auto", "min_replicas": 3, "max_replicas": 2}, {"shard_replicas": 0}):
        with pytest.raises(ValueError):
            build_app(None, config, **kwargs)


def _replicas(deployment: str) -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith(f"SERVE_REPLICA::funnelrank#{deployment}#"))


def test_killed_replicas_lose_nothing_but_explicit_503s(served: str) -> None:
    import ray

    outcomes: list[tuple[float, int, bool]] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            q = " ".join(rng.choice(WORDS) for _ in range(2))
            try:
                r = requests.post(f"{served}/v1/search", json={"query": q, "top_k": 3, "candidates": 10}, timeout=60)
                outcomes.append((time.monotonic(), r.status_code, "retry-after" in r.headers))
            except requests.RequestException as exc:  # a dropped connection: the failure this test forbids
                errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        rerankers, shard0 = _replicas("reranker"), _replicas("shard-0")
        assert len(rerankers) == 2 and len(shard0) == 1
        ray.kill(ray.get_actor(rerankers[0], namespace="serve"), no_restart=True)
        time.sleep(1.0)
        ray.kill(ray.get_actor(shard0[0], namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        deadline = killed_at + 120
        recovered = False
        while time.monotonic() < deadline:
            time.sleep(1.0)
            replaced = (len(_replicas("reranker")) == 2 and rerankers[0] not in _replicas("reranker")
                        and _replicas("shard-0") and shard0[0] not in _replicas("shard-0"))
            health = requests.get(f"{served}/health", timeout=30).json()
            recent = [s for when, s, _ in outcomes if when > time.monotonic() - 2.0]
            if replaced and health["status"] == "ok" and recent and all(s == 200 for s in recent):
                recovered = True
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=70)
    assert not errors, errors[:3]
    statuses = {s for _, s, _ in outcomes}
    assert statuses <= {200, 503}, statuses
    assert all(has_retry for _, s, has_retry in outcomes if s == 503)
    assert recovered, "the killed replicas were not replaced, or requests did not succeed again"
    assert sum(s == 200 for when, s, _ in outcomes if when > killed_at) > 0
