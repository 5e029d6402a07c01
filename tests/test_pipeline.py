"""Pipeline: stage-1 retrievers, traces, filters, the reranker with its floor, batch search."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from funnelrank.pipeline import Pipeline, Result, SearchResponse, Stage1Hit
from funnelrank.store.collection import Collection
from service_helpers import overlap_reranker

DOCS = {
    "json": ("The json module encodes and decodes JSON documents in Python.", {"kind": "module", "year": 2020}),
    "re": ("The re module provides regular expression matching operations.", {"kind": "module", "year": 2021}),
    "os": ("The os module is a portable way of using operating system functionality.", {"kind": "module"}),
    "csv": ("The csv module reads and writes tabular data in CSV format.", {"kind": "module", "year": 2020}),
    "banana": ("Bananas are yellow fruit, rich in potassium.", {"kind": "food", "year": 2020}),
    "pickle": ("The pickle module serializes Python objects to bytes.", {"kind": "module", "year": 2019}),
}


@pytest.fixture(scope="module")
def embedder() -> object:
    from funnelrank.embed import Embedder

    return Embedder.default()


@pytest.fixture(scope="module")
def bm25_collection() -> Collection:
    c = Collection(dense=False)
    c.add(list(DOCS), [t for t, _ in DOCS.values()], [m for _, m in DOCS.values()])
    return c


@pytest.fixture(scope="module")
def dense_collection(embedder: object) -> Collection:
    c = Collection(dense=True, embedder=embedder)
    c.add(list(DOCS), [t for t, _ in DOCS.values()], [m for _, m in DOCS.values()])
    return c


@pytest.fixture(scope="module")
def reranker() -> Iterator[object]:
    r = overlap_reranker()
    yield r
    r.scheduler.close()


def test_bm25_only_without_reranker(bm25_collection: Collection) -> None:
    pipe = Pipeline(bm25_collection, reranker=None, top_k=3)
    assert pipe.retriever.name == "bm25"
    resp = pipe.search("module for JSON documents")
    assert isinstance(resp, SearchResponse) and not resp.no_evidence
    assert [r.id for r in resp.results][0] == "json" and len(resp.results) == 3
    first = resp.results[0]
    assert isinstance(first, Result) and first.logit is None and first.text == DOCS["json"][0]
    assert first.metadata == DOCS["json"][1]
    assert first.stage1 == {"bm25": Stage1Hit(1, first.score)}
    assert [r.stage1["bm25"].rank for r in resp.results] == [1, 2, 3]  # type: ignore[union-attr]
    assert {"bm25", "total"} <= set(resp.timings_ms) and "rerank" not in resp.timings_ms
    assert Pipeline(bm25_collection, reranker=None).search("zebra unicorn").no_evidence


def test_rerank_scores_floor_and_no_evidence(bm25_collection: Collection, reranker: object) -> None:
    pipe = Pipeline(bm25_collection, reranker=reranker, top_k=3, floor=0.5)
    resp = pipe.search("regular expression matching")
    assert [r.id for r in resp.results] == ["re"]  # the overlap model: only "re" holds these words
    top = resp.results[0]
    assert top.score > 0.9 and top.logit is not None and top.logit > 2
    assert top.stage1["bm25"] is not None and top.stage1["bm25"].rank == 1
    assert {"bm25", "rerank", "total"} <= set(resp.timings_ms)
    # BM25 finds candidates for an off-topic query sharing one word, but nothing clears the floor.
    off = pipe.search("module of knitting patterns and yarn")
    assert off.candidates > 0 and off.results == [] and off.no_evidence
    # Without a floor the best junk comes back, sorted by rerank score.
    everything = Pipeline(bm25_collection, reranker=reranker, top_k=10, floor=None).search("python module")
    scores = [r.score for r in everything.results]
    assert len(scores) == everything.candidates and scores == sorted(scores, reverse=True)


def test_filter_applies_in_stage1(bm25_collection: Collection, reranker: object) -> None:
    pipe = Pipeline(bm25_collection, reranker=reranker, top_k=10, floor=None)
    resp = pipe.search("module", filter={"year": 2020, "kind": "module"})
    assert sorted(r.id for r in resp.results) == ["csv", "json"]
    assert resp.candidates == 2
    with pytest.raises(ValueError, match="unknown operator"):
        pipe.search("module", filter={"year": {"approx": 2020}})


def test_hybrid_traces(dense_collection: Collection, reranker: object) -> None:
    pipe = Pipeline(dense_collection, reranker=reranker, candidates=6, top_k=6, floor=None)
    assert pipe.retriever.name == "hybrid"
    resp = pipe.search("serialize python objects")
    assert {"bm25", "embed", "dense", "fusion", "rerank", "total"} <= set(resp.timings_ms)
    assert resp.results[0].id == "pickle"
    fused_ranks = sorted(r.stage1["fused"].rank for r in resp.results)  # type: ignore[union-attr]
    assert fused_ranks == list(range(1, len(resp.results) + 1))
    for r in resp.results:
        assert set(r.stage1) == {"bm25", "dense", "fused"}
        assert r.stage1["dense"] is not None  # every doc is within the dense top-6
    stage1_only = Pipeline(dense_collection, "dense", reranker=None, top_k=2).search("yellow fruit")
    assert stage1_only.results[0].id == "banana" and set(stage1_only.results[0].stage1) == {"dense"}
    assert -1.0 <= stage1_only.results[0].score <= 1.0


def test_search_batch_matches_search(dense_collection: Collection, reranker: object) -> None:
    pipe = Pipeline(dense_collection, reranker=reranker, top_k=3, floor=0.3)
    queries = ["json documents", "operating system", "regular expression", "knitting"]
    batch = pipe.search_batch(queries)
    single = [pipe.search(q) for q in queries]
    assert [[(r.id, round(r.score, 6)) for r in b.results] for b in batch] == [
        [(r.id, round(r.score, 6)) for r in s.results] for s in single
    ]
    assert [b.no_evidence for b in batch] == [s.no_evidence for s in single]
    assert batch[-1].no_evidence
    assert pipe.search_batch([]) == []


def test_bad_arguments(bm25_collection: Collection) -> None:
    with pytest.raises(ValueError, match="needs a dense collection"):
        Pipeline(bm25_collection, "hybrid", reranker=None)
    with pytest.raises(ValueError, match="retriever must be one of"):
        Pipeline(bm25_collection, "magic", reranker=None)
    with pytest.raises(ValueError, match="candidates"):
        Pipeline(bm25_collection, candidates=0, reranker=None)
    with pytest.raises(ValueError, match="floor must be a score in"):
        Pipeline(bm25_collection, reranker=None, floor=1.5)
    pipe = Pipeline(bm25_collection, reranker=None)
    with pytest.raises(ValueError, match="query is empty"):
        pipe.search("  ")
    with pytest.raises(ValueError, match="must be str"):
        pipe.search(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single string"):
        pipe.search_batch("one string")


def test_to_dict_is_json_ready(bm25_collection: Collection) -> None:
    import json

    resp = Pipeline(bm25_collection, reranker=None, top_k=2).search("json module")
    data = json.loads(json.dumps(resp.to_dict()))
    assert data["results"][0]["stage1"]["bm25"] == {"rank": 1, "score": pytest.approx(resp.results[0].score)}
    assert data["no_evidence"] is False and data["query"] == "json module"


def test_rerank_fusion_orders_by_stage1_and_keeps_the_floor(dense_collection: Collection, reranker: object) -> None:
    from funnelrank.rerank.policy import DEFAULT_FUSION, DEFAULT_STAGE1_WEIGHT

    default = Pipeline(dense_collection, reranker=reranker)
    assert (default.stage1_weight, default.fusion) == (DEFAULT_STAGE1_WEIGHT, DEFAULT_FUSION)
    # The weight was chosen for hybrid candidates: other retrievers default to the cross-encoder order alone.
    assert Pipeline(dense_collection, "bm25", reranker=reranker).stage1_weight == 0.0
    assert Pipeline(dense_collection, "dense", reranker=reranker, stage1_weight=0.3).stage1_weight == 0.3
    query = "python module for objects"
    pure = Pipeline(dense_collection, reranker=reranker, top_k=6, floor=None, stage1_weight=0).search(query)
    scores = [r.score for r in pure.results]
    assert scores == sorted(scores, reverse=True)
    stage1 = Pipeline(dense_collection, reranker=reranker, top_k=6, floor=None, stage1_weight=1.0).search(query)
    assert [r.stage1["fused"].rank for r in stage1.results] == list(range(1, 7))  # type: ignore[union-attr]
    assert {r.id: r.score for r in stage1.results} == {r.id: r.score for r in pure.results}  # same rerank scores
    floor = 0.5
    kept = Pipeline(dense_collection, reranker=reranker, top_k=6, floor=floor, stage1_weight=1.0).search(query)
    assert {r.id for r in kept.results} == {r.id for r in pure.results if r.score >= floor}
    convex = Pipeline(dense_collection, reranker=reranker, top_k=6, floor=floor, stage1_weight=1.0, fusion="convex")
    # Stage-1 (hybrid RRF) scores fall with the rank: convex fusion at w = 1 is the stage-1 order too.
    assert [r.id for r in convex.search(query).results] == [r.id for r in kept.results]
    for bad in (-0.5, 2.0, float("nan"), "half"):
        with pytest.raises(ValueError, match="stage1_weight"):
            Pipeline(dense_collection, reranker=reranker, stage1_weight=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fusion must be one of"):
        Pipeline(dense_collection, reranker=reranker, fusion="max")
