"""One funnel: `funnelrank eval`'s stages rank exactly as `Pipeline.search` does for a user, and the front door
(`Reranker().rank`, `Pipeline.from_texts`) works with the shipped models."""

from __future__ import annotations

from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank import Pipeline, Reranker
from funnelrank.eval.beir import load_beir
from funnelrank.eval.harness import StageContext
from funnelrank.rerank import RerankResult, SchedulerClosedError
from funnelrank.rerank.policy import DEFAULT_FLOOR

DOCS = [
    {"_id": "d0", "title": "Heart attack", "text": "Aspirin and early thrombolysis improve survival after myocardial infarction."},
    {"_id": "d1", "title": "Markets", "text": "Equity prices fell sharply as investors worried about interest rates."},
    {"_id": "d2", "title": "Football", "text": "The team won the championship after a penalty shootout."},
    {"_id": "d3", "title": "Photosynthesis", "text": "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."},
    {"_id": "d4", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."},
    {"_id": "d5", "title": "", "text": "Echocardiography measures how well the ventricles pump blood after a heart attack."},
    {"_id": "d6", "title": "Aspirin", "text": "Aspirin is a pain reliever; children should not take it for viral fevers."},
    {"_id": "d7", "title": "Leaves", "text": "Chlorophyll in green leaves absorbs light, mostly red and blue."},
    {"_id": "d8", "title": "Rates", "text": "The central bank raised interest rates to fight inflation."},
    # BM25 bait: the query's words, none of its meaning.
    {"_id": "d9", "title": "Light", "text": "How do green traffic lights make drivers go? Green light, green light."},
]
QUERIES = [
    {"_id": "q1", "text": "emergency treatment of a heart attack"},
    {"_id": "q2", "text": "how do green leaves make sugar from light"},
    {"_id": "q3", "text": "why did stock prices drop when interest rates rose"},
]
QRELS = {"test": [("q1", "d0", 1), ("q2", "d3", 1), ("q3", "d1", 1)]}
DEPTH = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_beir(write_beir(tmp_path_factory.mktemp("funnel") / "tiny", DOCS, QUERIES, QRELS), "test")


@pytest.fixture(scope="module")
def user_pipeline_args() -> tuple[list[str], list[str]]:
    """What a user indexes: the BEIR convention, title + " " + text."""
    ids = [str(d["_id"]) for d in DOCS]
    texts = [f"{d['title']} {d['text']}" if d["title"] else str(d["text"]) for d in DOCS]
    return ids, texts


@pytest.fixture(scope="module")
def reranker():  # type: ignore[no-untyped-def]
    with Reranker() as r:
        yield r


def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding cache under tmp_path; the fp32 bi-encoder export stays where `make build` put it."""
    from funnelrank.embed import default_model as defaults

    model_dir = defaults.fp32_model_dir()
    monkeypatch.setattr(defaults, "fp32_model_dir", lambda: model_dir)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))


def _user_rankings(pipe: Pipeline) -> dict[str, list[str]]:
    return {str(q["_id"]): [r.id for r in pipe.search(str(q["text"])).results] for q in QUERIES}


@pytest.mark.parametrize("stage", ["bm25", "dense", "hybrid"])
def test_stage1_stages_rank_as_pipeline_search(stage: str, dataset, user_pipeline_args, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _isolated_cache(tmp_path, monkeypatch)
    evaluated = StageContext(dataset, {"depth": DEPTH}, progress=False).stage(stage).rankings
    ids, texts = user_pipeline_args
    pipe = Pipeline.from_texts(texts, ids, dense=True, retriever=stage, reranker=None, candidates=DEPTH, top_k=DEPTH)
    user = _user_rankings(pipe)
    assert {q: [d for d, _ in ranking] for q, ranking in evaluated.items()} == user
    assert all(user.values()) and (stage == "bm25" or all(len(r) == DEPTH for r in user.values()))


@pytest.mark.parametrize("source", ["bm25", "hybrid"])
def test_rerank_stage_ranks_as_pipeline_search(source: str, dataset, user_pipeline_args, reranker,  # type: ignore[no-untyped-def]
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolated_cache(tmp_path, monkeypatch)
    options = {"depth": DEPTH, "rerank_depth": DEPTH, "rerank_from": source}
    evaluated = StageContext(dataset, options, progress=False, stages=["rerank"]).stage("rerank")
    ids, texts = user_pipeline_args
    # The user's defaults: the default reranker and, for this retriever, the default rerank fusion.
    pipe = Pipeline.from_texts(texts, ids, dense=True, retriever=source, reranker=reranker, candidates=DEPTH,
                               top_k=DEPTH, floor=None)
    assert evaluated.extra["stage1_weight"] == pipe.stage1_weight
    promise = evaluated.extra["floor_promise"]  # measured from the same pass, at the default floor and top 10
    assert promise["floor"] == DEFAULT_FLOOR and promise["top_k"] == 10 and promise["unanswerable_queries"] == len(QUERIES)
    user = _user_rankings(pipe)
    assert {q: [d for d, _ in ranking] for q, ranking in evaluated.rankings.items()} == user
    # The cross-encoder ran, so the test compares reranked lists, not stage 1's twice: the stage's scores are
    # its sigmoids, not stage 1's, and with no stage-1 weight (bm25) it also reorders. (Hybrid fuses with
    # weight 0.8, which on this tiny set keeps stage 1's order.)
    stage1 = Pipeline.from_texts(texts, ids, dense=True, retriever=source, reranker=None, candidates=DEPTH, top_k=DEPTH)
    stage1_scores = {str(q["_id"]): [r.score for r in stage1.search(str(q["text"])).results] for q in QUERIES}
    assert {q: [s for _, s in ranking] for q, ranking in evaluated.rankings.items()} != stage1_scores
    assert source != "bm25" or _user_rankings(stage1) != user


def test_reranker_rank_is_the_one_obvious_call(reranker: Reranker) -> None:
    docs = ["gzip.compress(data): compress data", "json.dumps(obj): serialize an object to a JSON string",
            "a recipe for chocolate chip cookies"]
    result = reranker.rank("serialize a Python object to JSON", docs, top_k=2)
    assert isinstance(result, RerankResult) and not result.no_evidence
    assert [item.index for item in result][0] == 1 and result.items[0].text == docs[1]
    scores = [item.score for item in result]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert len(result) <= 2 and all(s >= reranker.floor for s in scores)  # type: ignore[operator]
    printed = str(result)
    assert printed.startswith("RerankResult(no_evidence=False") and "[1] json.dumps" in printed
    refused = reranker.rank("a good recipe for chocolate chip cookies", docs[:2])
    assert refused.no_evidence and refused.items == [] and refused.max_score is not None


def test_reranker_and_pipeline_close_their_threads() -> None:
    with Reranker() as r:
        assert r.rank("q", ["a passage"], floor=None).items
    with pytest.raises(SchedulerClosedError):
        r.rank("q", ["a passage"])
    with Pipeline.from_texts(["Cats sleep on mats.", "Dogs chase cats."], dense=False) as pipe:
        assert pipe.search("where do cats sleep").results[0].id == "0"
    with pytest.raises(SchedulerClosedError):
        pipe.search("where do cats sleep")
