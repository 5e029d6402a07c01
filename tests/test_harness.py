"""The stage registry and harness, with fake stages registered here (no index needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.eval import harness
from funnelrank.eval.beir import BeirDataset, Document, Query, load_beir
from funnelrank.eval.harness import (
    StageContext,
    StageOutput,
    default_options,
    known_stages,
    register_stage,
    run_evaluation,
)

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def fake_stages() -> Iterator[None]:
    """Register the fake stages for one test, then restore the registry as it was."""
    harness._load_stage_modules()  # the real stages, so that restoring the registry keeps them
    saved = dict(harness._REGISTRY)

    @register_stage("fake_perfect", help="test: the qrels' relevant docs, best grade first")
    def fake_perfect(ctx: StageContext) -> StageOutput:
        _count("fake_perfect")
        rankings = {
            qid: [(d, float(g)) for d, g in sorted(ctx.dataset.qrels[qid].items(), key=lambda e: -e[1]) if g > 0]
            for qid in ctx.dataset.queries
        }
        return StageOutput(rankings=rankings, query_seconds=0.5, index_seconds=2.0, latencies_ms=[1.0, 2.0, 3.0])

    @register_stage("fake_reversed", help="test: every document, in reverse corpus order")
    def fake_reversed(ctx: StageContext) -> StageOutput:
        _count("fake_reversed")
        ids = ctx.dataset.doc_ids()[::-1]
        return StageOutput({q: [(d, -float(i)) for i, d in enumerate(ids)] for q in ctx.dataset.queries}, 1.0)

    @register_stage("fake_fused", help="test: depends on fake_perfect and fake_reversed")
    def fake_fused(ctx: StageContext) -> StageOutput:
        _count("fake_fused")
        a, b = ctx.stage("fake_perfect"), ctx.stage("fake_reversed")
        rankings = {q: (a.rankings[q] + [e for e in b.rankings[q] if e[0] not in dict(a.rankings[q])]) for q in a.rankings}
        return StageOutput(rankings, query_seconds=0.25, extra={"fused_from": ["fake_perfect", "fake_reversed"]})

    @register_stage("fake_cycle_a")
    def fake_cycle_a(ctx: StageContext) -> StageOutput:
        return ctx.stage("fake_cycle_b")

    @register_stage("fake_cycle_b")
    def fake_cycle_b(ctx: StageContext) -> StageOutput:
        return ctx.stage("fake_cycle_a")

    yield
    harness._REGISTRY.clear()
    harness._REGISTRY.update(saved)


def _dataset(with_run: bool) -> BeirDataset:
    corpus = {f"d{i}": Document(f"d{i}", "", f"text {i}") for i in range(6)}
    qrels = {"q1": {"d0": 2, "d3": 1, "d5": 0}, "q2": {"d4": 1}}
    run = {"q1": [("d3", 9.0), ("d1", 8.0), ("d0", 7.0)], "q2": [("d4", 1.0), ("d2", 0.5)]} if with_run else None
    queries = {"q1": Query("q1", "one"), "q2": Query("q2", "two")}
    return BeirDataset("mini", Path("."), "test", corpus, queries, qrels, run)


def test_perfect_stage_scores_one_and_reports_timings() -> None:
    report = run_evaluation(_dataset(False), ["fake_perfect"], progress=False)
    stage = report["stages"]["fake_perfect"]
    assert report["dataset"] == "mini" and report["split"] == "test" and report["num_queries"] == 2
    assert stage["ndcg@10"] == 1.0 and stage["recall@100"] == 1.0 and stage["mrr@10"] == 1.0
    assert stage["qps"] == 4.0  # 2 queries / 0.5 s of query phase; index time excluded
    assert stage["index_seconds"] == 2.0 and stage["latency_ms_p50"] == 2.0
    worse = run_evaluation(_dataset(False), ["fake_reversed"], progress=False)["stages"]["fake_reversed"]
    assert 0.0 < worse["ndcg@10"] < 1.0 and worse["recall@100"] == 1.0


def test_dependencies_computed_once_and_reused() -> None:
    CALLS.clear()
    report = run_evaluation(_dataset(False), ["fake_perfect", "fake_fused", "fake_reversed"], progress=False)
    assert CALLS == {"fake_perfect": 1, "fake_reversed": 1, "fake_fused": 1}
    assert list(report["stages"]) == ["fake_perfect", "fake_fused", "fake_reversed"]
    assert report["stages"]["fake_fused"]["fused_from"] == ["fake_perfect", "fake_reversed"]
    CALLS.clear()
    only = run_evaluation(_dataset(False), ["fake_fused"], progress=False)
    assert list(only["stages"]) == ["fake_fused"]  # dependencies run, but only requested stages reported


def test_rerank_source_rule() -> None:
    with_run = StageContext(_dataset(True), progress=False)
    assert with_run.rerank_source() == "run"
    assert StageContext(_dataset(False), progress=False).rerank_source() == "bm25"
    assert StageContext(_dataset(True), {"rerank_from": "bm25"}, progress=False).rerank_source() == "bm25"
    with pytest.raises(ValueError, match="needs a run file"):
        StageContext(_dataset(False), {"rerank_from": "run"}, progress=False).rerank_source()


def test_run_stage_scores_the_run_file_without_qps() -> None:
    stage = run_evaluation(_dataset(True), ["run"], progress=False)["stages"]["run"]
    # q1: d3 (1) at rank 1, d0 (2) at rank 3; ideal 2, 1.  q2: d4 at rank 1 -> 1.0.
    import math

    q1 = (1 / math.log2(2) + 2 / math.log2(4)) / (2 / math.log2(2) + 1 / math.log2(3))
    assert stage["ndcg@10"] == pytest.approx((q1 + 1.0) / 2, abs=1e-6)
    assert stage["qps"] is None and stage["mrr@10"] == 1.0
    with pytest.raises(ValueError, match='stage "run" needs'):
        run_evaluation(_dataset(False), ["run"], progress=False)


def test_errors_unknown_stage_option_cycle_depth() -> None:
    with pytest.raises(ValueError, match=r'unknown stage "nope"; known stages: .*bm25.*'):
        run_evaluation(_dataset(False), ["fake_perfect", "nope"], progress=False)
    with pytest.raises(ValueError, match='unknown option "k3"'):
        run_evaluation(_dataset(False), ["fake_perfect"], {"k3": 1}, progress=False)
    with pytest.raises(ValueError, match="dependency cycle: fake_cycle_a -> fake_cycle_b -> fake_cycle_a"):
        run_evaluation(_dataset(False), ["fake_cycle_a"], progress=False)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        StageContext(_dataset(False), {"depth": 0})
    with pytest.raises(ValueError, match="no stages given"):
        run_evaluation(_dataset(False), [], progress=False)


def test_registry_lists_builtin_stages_and_their_option_defaults() -> None:
    assert {"bm25", "run"} <= set(known_stages())
    opts = default_options()
    assert opts["k1"] == 1.2 and opts["b"] == 0.75 and opts["depth"] == 100 and opts["rerank_from"] is None
    with pytest.raises(ValueError, match="already registered"):
        register_stage("fake_perfect")(lambda ctx: StageOutput({}, None))


def test_on_loaded_fixture(tmp_path: Path) -> None:
    root = write_beir(
        tmp_path / "fx",
        docs=[{"_id": "a", "title": "", "text": "x"}, {"_id": "b", "title": "", "text": "y"}],
        queries=[{"_id": "q", "text": "x"}],
        qrels={"test": [("q", "b", 1)]},
        run=[("q", "a", 1, 2.0), ("q", "b", 2, 1.0)],
    )
    stage = run_evaluation(load_beir(root), ["run"], progress=False)["stages"]["run"]
    assert stage["mrr@10"] == 0.5 and stage["recall@100"] == 1.0
