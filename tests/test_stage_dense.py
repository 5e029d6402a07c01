"""The eval harness's `dense` and `hybrid` stages on a tiny BEIR set, with the default bi-encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.eval.beir import load_beir
from funnelrank.eval.harness import StageContext, run_evaluation

DOCS = [
    {"_id": "d0", "title": "Heart attack", "text": "Aspirin and early thrombolysis improve survival after myocardial infarction."},
    {"_id": "d1", "title": "Markets", "text": "Equity prices fell sharply as investors worried about interest rates."},
    {"_id": "d2", "title": "Football", "text": "The team won the championship after a penalty shootout."},
    {"_id": "d3", "title": "Photosynthesis", "text": "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."},
    {"_id": "d4", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."},
    {"_id": "d5", "title": "", "text": "Echocardiography measures how well the ventricles pump blood."},
]
QUERIES = [
    {"_id": "q1", "text": "emergency treatment of a heart attack"},
    {"_id": "q2", "text": "how do green leaves make sugar from light"},  # no word shared with d3
]
QRELS = {"test": [("q1", "d0", 1), ("q2", "d3", 1)]}


@pytest.fixture()
def dataset(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_beir(write_beir(tmp_path / "tiny", DOCS, QUERIES, QRELS), "test")


def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding cache under tmp_path; the fp32 model export stays where `make build` put it."""
    from funnelrank.embed import default_model as defaults

    model_dir = defaults.fp32_model_dir()
    monkeypatch.setattr(defaults, "fp32_model_dir", lambda: model_dir)
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))


def test_dense_finds_paraphrases_and_caches_the_corpus(dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _isolated_cache(tmp_path, monkeypatch)
    ctx = StageContext(dataset, {"depth": 5, "embed_threads": 1}, progress=False)
    dense = ctx.stage("dense")
    assert dense.rankings["q1"][0][0] == "d0"
    assert dense.rankings["q2"][0][0] == "d3"
    assert all(len(r) == 5 for r in dense.rankings.values())
    assert dense.extra["embed_cached"] is False and dense.index_seconds is not None
    assert len(dense.latencies_ms or []) == 2
    assert list((tmp_path / "cache" / "embeddings" / "tiny").glob("*.npy"))

    again = StageContext(dataset, {"depth": 5, "embed_threads": 1}, progress=False).stage("dense")
    assert again.extra["embed_cached"] is True
    assert [d for d, _ in again.rankings["q2"]] == [d for d, _ in dense.rankings["q2"]]


def test_hybrid_is_rrf_of_the_bm25_and_dense_stages(dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _isolated_cache(tmp_path, monkeypatch)
    ctx = StageContext(dataset, {"depth": 6, "embed_threads": 1, "hybrid_weights": "1,2"}, progress=False)
    hybrid = ctx.stage("hybrid")
    bm25, dense = ctx.stage("bm25"), ctx.stage("dense")  # the same collection's retrievers, run on their own
    for qid in ("q1", "q2"):
        expected: dict[str, float] = {}
        for weight, ranking in ((1.0, bm25.rankings[qid]), (2.0, dense.rankings[qid])):
            for rank, (doc, _) in enumerate(ranking, start=1):
                expected[doc] = expected.get(doc, 0.0) + weight / (60 + rank)
        got = dict(hybrid.rankings[qid])
        assert set(got) == set(expected)
        for doc, score in expected.items():
            assert got[doc] == pytest.approx(score, rel=1e-5)
        assert [s for _, s in hybrid.rankings[qid]] == sorted(got.values(), reverse=True)
    # Measured on the hybrid query itself (both searches, the query embedding and the fusion), one per query.
    assert hybrid.latencies_ms is not None and len(hybrid.latencies_ms) == 2 and min(hybrid.latencies_ms) > 0
    assert hybrid.extra["fusion"] == "rrf" and hybrid.extra["weights"] == [1.0, 2.0]


def test_report_and_bad_options(dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _isolated_cache(tmp_path, monkeypatch)
    report = run_evaluation(dataset, ["bm25", "dense", "hybrid"], {"embed_threads": 1, "hybrid_fusion": "convex"},
                            progress=False)
    stages = report["stages"]
    assert stages["dense"]["ndcg@10"] == pytest.approx(1.0)
    assert stages["hybrid"]["recall@100"] >= max(stages["bm25"]["recall@100"], stages["dense"]["recall@100"])
    assert stages["hybrid"]["fusion"] == "convex" and stages["dense"]["embed_seconds"] >= 0
    with pytest.raises(ValueError, match="hybrid-weights"):
        run_evaluation(dataset, ["hybrid"], {"hybrid_weights": "1"}, progress=False)
    with pytest.raises(ValueError, match="dense-precision"):
        run_evaluation(dataset, ["dense"], {"dense_model": str(tmp_path), "dense_precision": "int8"}, progress=False)
