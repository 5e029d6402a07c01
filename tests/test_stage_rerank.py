"""The eval harness's `rerank` stage on a tiny BEIR set with a run file and a tiny random cross-encoder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("transformers")

import funnelrank.cli.main as cli  # noqa: E402
from beir_fixtures import write_beir  # noqa: E402
from funnelrank.eval.beir import load_beir  # noqa: E402
from funnelrank.eval.harness import run_evaluation  # noqa: E402
from funnelrank.rerank import CrossEncoder
from funnelrank.rerank.traces import read_traces
from rerank_fakes import build_tiny_cross_encoder  # noqa: E402


def test_rerank_stage_reorders_run_candidates_and_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, model_dir = build_tiny_cross_encoder(tmp_path)
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document number {i} about topic {i % 3}"} for i in range(8)]
    queries = [{"_id": "q1", "text": "topic one"}, {"_id": "q2", "text": "topic two"}]
    qrels = {"test": [("q1", "d1", 1), ("q1", "d4", 1), ("q2", "d2", 2), ("q2", "d0", 0)]}
    run = [(q, f"d{i}", r + 1, 10.0 - r) for q in ("q1", "q2") for r, i in enumerate((7, 1, 4, 2, 0, 5))]
    root = write_beir(tmp_path / "tiny", docs, queries, qrels, run)
    traces = tmp_path / "traces.jsonl"
    dataset = load_beir(root, "test")
    report = run_evaluation(
        dataset, ["run", "rerank"],
        {"rerank_model": str(model_dir), "rerank_depth": 5, "rerank_traces": str(traces)}, progress=False,
    )
    stage = report["stages"]["rerank"]
    assert stage["rerank_from"] == "run" and stage["rerank_depth"] == 5 and stage["queries"] == 2
    # By default the rerank stage is compared with its candidate source, on every metric.
    assert [(c["a"], c["b"], c["metric"]) for c in report["comparisons"]] == [
        ("rerank", "run", m) for m in ("ndcg@10", "recall@100", "mrr@10")
    ]
    for c in report["comparisons"]:
        assert c["difference"] == pytest.approx(stage[c["metric"]] - report["stages"]["run"][c["metric"]], abs=2e-6)
    assert stage["stage1_weight"] == 0.0  # the tuned weight is for hybrid candidates only
    assert 0.0 <= stage["ndcg@10"] <= 1.0 and stage["latency_ms_p50"] > 0
    records = read_traces(traces)
    assert len(records) == 10 and {r["query_id"] for r in records} == {"q1", "q2"}
    ce = CrossEncoder.from_pretrained(model_dir)
    for qid, text in (("q1", "topic one"), ("q2", "topic two")):
        cand_ids = ["d7", "d1", "d4", "d2", "d0"]  # the run's top 5
        scores, _ = ce.predict(text, [dataset.corpus[d].full_text for d in cand_ids])
        recs = {r["id"]: r for r in records if r["query_id"] == qid}
        assert set(recs) == set(cand_ids)
        for d, s in zip(cand_ids, scores):
            assert recs[d]["score"] == pytest.approx(s, abs=1e-6)
            assert recs[d]["stage1_rank"] == cand_ids.index(d) + 1
        expected = [cand_ids[i] for i in np.argsort(-scores, kind="stable")]
        assert [r["id"] for r in sorted(recs.values(), key=lambda r: r["rerank_rank"])] == expected
    # The traces feed calibrate-floor with the dataset's qrels.
    assert cli.main(["calibrate-floor", str(traces), "--qrels", str(root / "qrels" / "test.tsv")]) == 0
    assert "recommended floor" in capsys.readouterr().out


def test_rerank_stage_without_model_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNELRANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FUNNELRANK_RERANKER", raising=False)
    monkeypatch.setattr("funnelrank.models.PACKAGED_RERANKER", "no-such-model")  # as if the package lacked it
    root = write_beir(tmp_path / "tiny", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "x"}],
                      {"test": [("q1", "d1", 1)]}, [("q1", "d1", 1, 1.0)])
    with pytest.raises(FileNotFoundError, match="FUNNELRANK_RERANKER"):
        run_evaluation(load_beir(root, "test"), ["rerank"], progress=False)


def test_rerank_stage_fusion_weight(tmp_path: Path) -> None:
    _, model_dir = build_tiny_cross_encoder(tmp_path)
    docs = [{"_id": f"d{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(8)]
    queries = [{"_id": "q1", "text": "topic one"}]
    qrels = {"test": [("q1", "d4", 1)]}
    run = [("q1", f"d{i}", r + 1, 10.0 - r) for r, i in enumerate((7, 1, 4, 2, 0, 5))]
    dataset = load_beir(write_beir(tmp_path / "tiny", docs, queries, qrels, run), "test")

    def stage(weight: float, fusion: str = "rrf") -> dict:
        opts = {"rerank_model": str(model_dir), "rerank_stage1_weight": weight, "rerank_fusion": fusion}
        return run_evaluation(dataset, ["run", "rerank"], opts, progress=False)["stages"]

    for fusion in ("rrf", "convex"):
        stages = stage(1.0, fusion)  # stage-1 order alone: the run's figures
        assert stages["rerank"]["stage1_weight"] == 1.0 and stages["rerank"]["fusion"] == fusion
        for metric in ("ndcg@10", "mrr@10"):
            assert stages["rerank"][metric] == pytest.approx(stages["run"][metric])
    ce = CrossEncoder.from_pretrained(model_dir)
    cand_ids = ["d7", "d1", "d4", "d2", "d0", "d5"]
    scores, _ = ce.predict("topic one", [dataset.corpus[d].full_text for d in cand_ids])
    rank = [cand_ids[i] for i in np.argsort(-scores, kind="stable")].index("d4") + 1
    assert stage(0.0)["rerank"]["mrr@10"] == pytest.approx(1.0 / rank, abs=1e-6)  # cross-encoder order alone
    with pytest.raises(ValueError, match="stage1_weight"):
        stage(1.5)
    with pytest.raises(ValueError, match="fusion must be one of"):
        stage(0.5, "max")


def test_rerank_stage_runs_a_variant_and_a_cascade(tmp_path: Path) -> None:
    """--rerank-cascade: the model's top KEEP in its order and scores, the pruned below the floor;
    --rerank-variant int8 loads the derived variant; both are named in the report."""
    _, model_dir = build_tiny_cross_encoder(tmp_path)
    docs = [{"_id": f"d{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(8)]
    queries = [{"_id": "q1", "text": "topic one"}]
    run = [("q1", f"d{i}", r + 1, 10.0 - r) for r, i in enumerate((7, 1, 4, 2, 0, 5))]
    dataset = load_beir(write_beir(tmp_path / "tiny", docs, queries, {"test": [("q1", "d4", 1)]}, run), "test")
    traces = tmp_path / "cascade.jsonl"
    opts = {"rerank_model": str(model_dir), "rerank_cascade": "fp32@2", "rerank_traces": str(traces)}
    stage = run_evaluation(dataset, ["rerank"], opts, progress=False)["stages"]["rerank"]
    assert stage["cascade"] == "fp32@2" and stage["variant"] == "fp32"
    cand_ids = ["d7", "d1", "d4", "d2", "d0", "d5"]
    scores, _ = CrossEncoder.from_pretrained(model_dir).predict("topic one", [dataset.corpus[d].full_text
                                                                               for d in cand_ids])
    top2 = [cand_ids[i] for i in np.argsort(-scores, kind="stable")[:2]]
    ranked = sorted(read_traces(traces), key=lambda r: r["rerank_rank"])
    assert [r["id"] for r in ranked[:2]] == top2
    for r in ranked[:2]:
        assert r["score"] == pytest.approx(scores[cand_ids.index(r["id"])], abs=1e-5)
    assert all(r["score"] < 1e-10 for r in ranked[2:]) and len(ranked) == 6
    int8 = run_evaluation(dataset, ["rerank"], {"rerank_model": str(model_dir), "rerank_variant": "int8"},
                          progress=False)["stages"]["rerank"]
    assert int8["variant"] == "int8" and int8["cascade"] is None and 0.0 <= int8["ndcg@10"] <= 1.0
    with pytest.raises(ValueError, match="cascade"):
        run_evaluation(dataset, ["rerank"], {"rerank_model": str(model_dir), "rerank_cascade": "int8@0"},
                       progress=False)
