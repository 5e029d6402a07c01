"""`funnelrank eval` end to end on tiny BEIR directories written here (and once on the real scifact)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.cli.main import main

DOCS = [
    {"_id": "cat", "title": "Cats", "text": "The domestic cat purrs and hunts mice at night."},
    {"_id": "dog", "title": "Dogs", "text": "A loyal dog barks at strangers and fetches sticks."},
    {"_id": "fish", "title": "Goldfish", "text": "Goldfish swim in freshwater aquariums and ponds."},
    {"_id": "bird", "title": "Parrots", "text": "Parrots mimic human speech and eat seeds."},
    {"_id": "horse", "title": "Horses", "text": "Horses gallop across meadows and graze on grass."},
]
QUERIES = [
    {"_id": "q1", "text": "which animal purrs and hunts mice"},
    {"_id": "q2", "text": "dog that barks at strangers"},
    {"_id": "q3", "text": "parrots mimic speech"},
    {"_id": "q4", "text": "unjudged query about horses"},
]
QRELS = {"test": [("q1", "cat", 1), ("q2", "dog", 2), ("q2", "horse", 0), ("q3", "bird", 1)], "train": [("q4", "horse", 1)]}
# A run that ranks every judged query's relevant document first: nDCG@10 must be exactly 1.
PERFECT_RUN = [
    ("q1", "cat", 1, 3.0), ("q1", "dog", 2, 1.0),
    ("q2", "dog", 1, 5.0), ("q2", "horse", 2, 4.0),
    ("q3", "bird", 1, 2.0),
]


@pytest.fixture()
def animals(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "animals", DOCS, QUERIES, QRELS, run=PERFECT_RUN)


def _eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object, one line
    return json.loads(out)


def _check_schema(report: dict, dataset: str, stages: list[str]) -> None:
    assert report["dataset"] == dataset and report["split"] == "test"
    assert list(report["stages"]) == stages
    for stage in report["stages"].values():
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            assert isinstance(stage[metric], float) and 0.0 <= stage[metric] <= 1.0
        assert "qps" in stage


def test_perfect_run_scores_one(animals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _eval_json(capsys, str(animals), "--stages", "run")
    _check_schema(report, "animals", ["run"])
    assert report["num_queries"] == 3  # the test split's judged queries only
    run = report["stages"]["run"]
    assert run["ndcg@10"] == 1.0 and run["recall@100"] == 1.0 and run["mrr@10"] == 1.0 and run["qps"] is None


def test_table_output(animals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(animals), "--stages", "run", "--quiet"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("animals / test: 3 judged queries, 5 documents")
    assert lines[1].split() == ["stage", "nDCG@10", "Recall@100", "MRR@10", "nDCG@10", "95%", "CI", "QPS", "p50", "ms",
                                "p99", "ms", "index", "s"]
    assert lines[3].split()[:6] == ["run", "1.0000", "1.0000", "1.0000", "1.0000-1.0000", "-"]
    assert captured.err == ""  # --quiet


def test_errors_are_clear(animals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(animals), "--stages", "bm25,nope"]) == 2
    assert 'unknown stage "nope"; known stages: run, bm25' in capsys.readouterr().err
    assert main(["eval", str(animals), "--split", "dev"]) == 2
    assert "available splits: test, train" in capsys.readouterr().err
    (animals / "run.bm25.tsv").unlink()
    assert main(["eval", str(animals), "--stages", "run"]) == 2
    assert 'stage "run" needs' in capsys.readouterr().err


def test_confidence_intervals_and_paired_comparisons(animals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A run that is perfect on q1 and q2 but misses q3's only relevant document.
    (animals / "run.bm25.tsv").write_text(
        "query-id\tcorpus-id\trank\tscore\nq1\tcat\t1\t3.0\nq2\tdog\t1\t5.0\nq3\tfish\t1\t2.0\n", encoding="utf-8"
    )
    report = _eval_json(capsys, str(animals), "--stages", "bm25,run", "--compare", "run:bm25", "--quiet")
    run, bm25 = report["stages"]["run"], report["stages"]["bm25"]
    assert run["ndcg@10"] == pytest.approx(2 / 3) and bm25["ndcg@10"] == 1.0
    lo, hi = run["ci"]["ndcg@10"]
    assert 0.0 <= lo < 2 / 3 < hi == 1.0  # resampling the 3 queries: anywhere from 0 to 3 perfect ones
    assert bm25["ci"] == {"ndcg@10": [1.0, 1.0], "recall@100": [1.0, 1.0], "mrr@10": [1.0, 1.0]}
    comparisons = {c["metric"]: c for c in report["comparisons"]}
    assert set(comparisons) == {"ndcg@10", "recall@100", "mrr@10"}
    c = comparisons["ndcg@10"]
    assert (c["a"], c["b"], c["queries"], c["wins"], c["losses"], c["ties"]) == ("run", "bm25", 3, 0, 1, 2)
    assert c["difference"] == pytest.approx(-1 / 3) and c["ci_low"] == pytest.approx(-1.0) and c["ci_high"] == 0.0
    # One query differs: either sign of it is as extreme as observed, so one query is no evidence at all.
    assert c["p_value"] == 1.0
    # Per-query figures, one JSON line per (stage, judged query), agree with the means.
    per_query = animals / "out" / "per_query.jsonl"
    report = _eval_json(capsys, str(animals), "--stages", "bm25,run", "--per-query", str(per_query), "--quiet")
    assert report["per_query_file"] == str(per_query) and "per_query" not in report
    rows = [json.loads(line) for line in per_query.read_text(encoding="utf-8").splitlines()]
    assert [(r["stage"], r["query_id"]) for r in rows] == [(s, q) for s in ("bm25", "run") for q in ("q1", "q2", "q3")]
    assert {r["query_id"]: r["ndcg@10"] for r in rows if r["stage"] == "run"} == {"q1": 1.0, "q2": 1.0, "q3": 0.0}
    assert set(rows[0]) == {"stage", "query_id", "ndcg@10", "recall@100", "mrr@10"}
    # `funnelrank compare` reads two such files: here the run (file 1) against BM25 (file 2).
    only_bm25 = animals / "out" / "bm25.jsonl"
    _eval_json(capsys, str(animals), "--stages", "bm25", "--per-query", str(only_bm25), "--quiet")
    assert main(["compare", str(per_query), str(only_bm25), "--stage-a", "run", "--json"]) == 0
    saved = {c["metric"]: c for c in json.loads(capsys.readouterr().out)["comparisons"]}
    assert saved["ndcg@10"] == {**comparisons["ndcg@10"], "a": "per_query.jsonl:run", "b": "bm25.jsonl:bm25"}
    assert main(["compare", str(per_query), str(only_bm25), "--stage-a", "run", "--metrics", "mrr@10"]) == 0
    out = capsys.readouterr().out
    assert "per_query.jsonl:run - bm25.jsonl:bm25 on 3 queries" in out and "mrr@10" in out and "ndcg@10" not in out
    (animals / "out" / "bad.jsonl").write_text('{"stage": "x", "query_id": "q1", "ndcg@10": "high"}\n', encoding="utf-8")
    (animals / "out" / "other.jsonl").write_text('{"stage": "x", "query_id": "q1", "map": 1.0}\n', encoding="utf-8")
    (animals / "out" / "q1.jsonl").write_text('{"stage": "x", "query_id": "q1", "ndcg@10": 1.0}\n', encoding="utf-8")
    (animals / "out" / "twice.jsonl").write_text('{"stage": "x", "query_id": "q1", "ndcg@10": 1.0}\n' * 2, encoding="utf-8")
    for argv, message in (
        ([str(per_query), str(only_bm25)], "holds stages bm25, run: say which one"),
        ([str(per_query), str(only_bm25), "--stage-a", "rerank"], 'has no stage "rerank"'),
        ([str(per_query), str(only_bm25), "--stage-a", "run", "--metrics", "map"], 'metric "map" is not in both'),
        ([str(per_query), str(only_bm25), "--stage-a", "run", "--metrics", ","], "no metric to compare: --metrics is empty"),
        ([str(animals / "out" / "other.jsonl"), str(only_bm25)], "no metric to compare: the files share none"),
        ([str(animals / "out" / "bad.jsonl"), str(only_bm25)], 'bad.jsonl:1: metric "ndcg@10" is not a number'),
        ([str(animals / "nope.jsonl"), str(only_bm25)], "nope.jsonl: file not found"),
        ([str(animals / "out" / "q1.jsonl"), str(only_bm25)], 'query "q2" is scored only by bm25.jsonl:bm25'),
        ([str(animals / "out" / "twice.jsonl"), str(only_bm25)], 'twice.jsonl:2: query "q1" appears twice'),
    ):
        assert main(["compare", *argv]) == 2
        assert message in capsys.readouterr().err
    # No --compare: nothing to compare here (no rerank stage); the table prints none.
    assert _eval_json(capsys, str(animals), "--stages", "bm25,run", "--quiet")["comparisons"] == []
    assert main(["eval", str(animals), "--stages", "bm25,run", "--compare", "run:bm25", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "paired comparisons" in out and "run - bm25  ndcg@10" in out and "0 better, 1 worse, 2 equal of 3" in out
    for bad, message in (("run:rerank", 'stage "rerank" is not among the evaluated stages'),
                         ("run", 'two different stages as "A:B"'), ("run:run", "two different stages")):
        assert main(["eval", str(animals), "--stages", "bm25,run", "--compare", bad, "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_json_stdout_is_one_object_in_a_subprocess(animals: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "funnelrank", "eval", str(animals), "--stages", "run", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert json.loads(proc.stdout)["stages"]["run"]["ndcg@10"] == 1.0
    assert "running on animals/test" in proc.stderr  # progress goes to stderr


def test_bm25_stage_end_to_end(animals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _eval_json(capsys, str(animals), "--stages", "bm25,run", "--k1", "0.9", "--b", "0.4")
    _check_schema(report, "animals", ["bm25", "run"])
    bm25 = report["stages"]["bm25"]
    # Each judged query shares its distinctive words with its relevant document only.
    assert bm25["ndcg@10"] == 1.0 and bm25["mrr@10"] == 1.0
    assert bm25["qps"] > 0 and bm25["qps_threads"] == 1 and bm25["queries"] == 3
    assert bm25["index_seconds"] >= 0 and bm25["latency_ms_p99"] >= bm25["latency_ms_p50"] > 0
    assert (bm25["k1"], bm25["b"]) == (0.9, 0.4)


@pytest.mark.data
def test_scifact_bm25_reaches_lucene_reference(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _eval_json(capsys, str(shared_data / "scifact"), "--stages", "bm25", "--quiet")
    bm25 = report["stages"]["bm25"]
    assert report["num_queries"] == 300
    assert bm25["ndcg@10"] >= 0.679, bm25  # Lucene BM25 (bm25s, k1=1.2, b=0.75) on the same data


@pytest.mark.data
def test_trec_dl19_bm25_run_scores_as_published(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _eval_json(capsys, str(shared_data / "trec-dl19"), "--stages", "run", "--quiet")
    assert report["stages"]["run"]["ndcg@10"] == pytest.approx(0.5058, abs=5e-5)  # Anserini's trec_eval figure


def test_query_ids_restrict_the_evaluated_queries(animals: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# validation slice\nq2\n\nq1\nq2\n", encoding="utf-8")
    report = _eval_json(capsys, str(animals), "--stages", "run", "--query-ids", str(ids))
    assert report["num_queries"] == 2 and report["query_ids_file"] == str(ids)
    assert report["stages"]["run"]["queries"] == 2 and report["stages"]["run"]["ndcg@10"] == 1.0
    # The mean is over the listed queries only: a run that misses q3 would otherwise score 2/3.
    ids.write_text("q1\nq4\n", encoding="utf-8")  # q4 is judged in train, not in test
    capsys.readouterr()
    for body, message in (
        ("q1\nq4\n", '1 query ids are not judged queries of split "test": "q4"'),
        ("# nothing\n", "no query ids in the file"),
        ("q1 q2\n", "expected one query id per line"),
    ):
        ids.write_text(body, encoding="utf-8")
        assert main(["eval", str(animals), "--stages", "run", "--query-ids", str(ids)]) == 2
        assert message in capsys.readouterr().err
    assert main(["eval", str(animals), "--stages", "run", "--query-ids", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: file not found" in capsys.readouterr().err


@pytest.mark.data
def test_heldout_ids_are_the_training_validation_slice(shared_data: Path) -> None:
    from funnelrank.eval.beir import load_beir
    from funnelrank.train.data import load_scifact

    out = subprocess.run(
        [sys.executable, "-m", "funnelrank.train", "heldout-ids", "scifact", "--data", str(shared_data)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    split = load_scifact(shared_data)
    assert out == split.val_qids and 60 <= len(out) <= 130 and not set(out) & set(split.train_qids)
    train = load_beir(shared_data / "scifact", "train").with_queries(out)
    assert list(train.queries) == [q for q in train.qrels] and len(train.qrels) == len(out)
    test_ids = set(load_beir(shared_data / "scifact", "test").qrels)
    assert not set(out) & test_ids
