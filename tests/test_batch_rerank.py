"""Batch reranking of a run (funnelrank.serve.ray_data, `funnelrank rerank-run`): on the local Ray cluster its
run file matches `funnelrank eval --stages rerank` in-process (scores per (query, doc), order, metrics)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import funnelrank.cli.main as cli  # noqa: E402
from beir_fixtures import write_beir  # noqa: E402
from funnelrank.eval.beir import DatasetFormatError, load_beir, load_run  # noqa: E402
from funnelrank.eval.harness import run_evaluation  # noqa: E402
from funnelrank.rerank.traces import read_traces
from funnelrank.serve.ray_data import rerank_run, reranking_tasks, write_trec_run  # noqa: E402

DEPTH = 5


def _dataset(root: Path) -> Path:
    topics = ["aspirin fever", "ibuprofen dose", "vitamin d bones", "sleep memory"]
    docs = [{"_id": f"d{i}", "title": f"note {i}", "text": f"document {i} on {topics[i % 4]} and item {i * 7 % 5}"}
            for i in range(16)]
    queries = [{"_id": f"q{j}", "text": f"what about {t}"} for j, t in enumerate(topics)]
    queries.append({"_id": "q9", "text": "an unjudged query"})
    qrels = {"test": [(f"q{j}", f"d{j + 4 * r}", 1 + r % 2) for j in range(4) for r in range(2)]}
    run = []
    for j in range(4):
        order = [(j + 3 * r) % 16 for r in range(7)]  # 7 candidates each; the rerank depth is 5
        run += [(f"q{j}", f"d{i}", r + 1, 20.0 - r) for r, i in enumerate(order)]
    run += [("q9", "d0", 1, 1.0)]
    return write_beir(root, docs, queries, qrels, run)


def test_ray_batch_rerank_matches_eval_rerank(
    ray_cluster: object, tiny_cross_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset(tmp_path / "tiny")
    traces = tmp_path / "traces.jsonl"
    dataset = load_beir(root, "test")
    report = run_evaluation(dataset, ["run", "rerank"], {"rerank_model": str(tiny_cross_encoder_dir),
                                                         "rerank_depth": DEPTH, "rerank_traces": str(traces)},
                            progress=False)
    in_process = report["stages"]["rerank"]
    records = read_traces(traces)
    expected = {q: sorted((r for r in records if r["query_id"] == q), key=lambda r: r["rerank_rank"])
                for q in dataset.queries}

    out = tmp_path / "out" / "reranked.trec"
    argv = ["rerank-run", str(root / "run.bm25.tsv"), "--data", str(root), "--out", str(out), "--ray",
            "--model", str(tiny_cross_encoder_dir), "--depth", str(DEPTH), "--concurrency", "2",
            "--batch-queries", "1", "--json", "--quiet"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ray"] is True and summary["queries"] == 5 and summary["lines"] == 4 * DEPTH + 1
    lines = out.read_text().splitlines()
    assert lines[0].split()[1] == "Q0" and lines[0].split()[5] == "funnelrank" and len(lines[0].split()) == 6
    batch = load_run(out)
    for qid, recs in expected.items():
        assert [d for d, _ in batch[qid]] == [r["id"] for r in recs]  # the same ranking
        for (_, score), rec in zip(batch[qid], recs):
            assert score == pytest.approx(rec["score"], abs=1e-6)  # the same score per (query, doc)
    assert [d for d, _ in batch["q9"]] == ["d0"]  # an unjudged query of the run is reranked too

    # `funnelrank eval --run-file` scores the batch job's run as the in-process rerank stage scored itself.
    assert cli.main(["eval", str(root), "--run-file", str(out), "--stages", "run", "--json", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out)["stages"]["run"]
    assert scored["source"] == str(out)
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert scored[metric] == pytest.approx(in_process[metric], abs=1e-6)
    assert in_process["ndcg@10"] != pytest.approx(report["stages"]["run"]["ndcg@10"])  # reranking changed it

    # In-process, the same scorer gives the same run; --split keeps only that split's judged queries.
    text = {d.id: d.full_text for d in dataset.corpus.values()}
    queries = {q.id: q.text for q in dataset.queries.values()} | {"q9": "an unjudged query"}
    local = rerank_run(load_run(root / "run.bm25.tsv"), queries, text, model=tiny_cross_encoder_dir, depth=DEPTH)
    assert list(local) == list(batch)
    for qid in local:
        assert [d for d, _ in local[qid]] == [d for d, _ in batch[qid]]
        assert [s for _, s in local[qid]] == pytest.approx([s for _, s in batch[qid]], abs=1e-6)
    out2 = tmp_path / "split.trec"
    assert cli.main(["rerank-run", str(root / "run.bm25.tsv"), "--data", str(root), "--out", str(out2), "--model",
                     str(tiny_cross_encoder_dir), "--depth", str(DEPTH), "--split", "test", "--quiet"]) == 0
    split_run = load_run(out2)
    assert sorted(split_run) == sorted(dataset.queries)
    assert all([d for d, _ in split_run[q]] == [d for d, _ in batch[q]] for q in split_run)


def test_trec_run_round_trip_and_atomic_write(tmp_path: Path) -> None:
    run = {"q1": [("d2", 0.987654321), ("d1", 1e-7)], "q2": []}
    path = tmp_path / "r.trec"
    assert write_trec_run(path, run, tag="x") == 2
    assert path.read_text() == "q1 Q0 d2 1 0.987654321 x\nq1 Q0 d1 2 1e-07 x\n"
    assert load_run(path) == {"q1": [("d2", 0.987654321), ("d1", 1e-7)]}
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run(path, {"q 1": [("d1", 1.0)]})
    assert path.read_text().startswith("q1 Q0 d2")  # a failed write leaves the old file whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.trec"]  # and no temporary file behind


def test_bad_input_is_refused_clearly(tmp_path: Path, tiny_cross_encoder_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _dataset(tmp_path / "tiny")
    out = tmp_path / "out.trec"
    base = ["--data", str(root), "--out", str(out), "--model", str(tiny_cross_encoder_dir), "--quiet"]
    assert cli.main(["rerank-run", str(tmp_path / "nope.tsv"), *base]) == 2
    assert "nope.tsv: run file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("q0\td1\t1\n")
    assert cli.main(["rerank-run", str(bad), *base]) == 2
    assert "bad.tsv:1: expected 4 columns" in capsys.readouterr().err
    bad.write_text("q0 Q0 d1 one 2.0 tag\n")
    with pytest.raises(DatasetFormatError, match='bad rank "one"'):
        load_run(bad)
    unknown_doc = tmp_path / "unknown-doc.tsv"
    unknown_doc.write_text("q0\tzz\t1\t2.0\n")
    assert cli.main(["rerank-run", str(unknown_doc), *base]) == 2
    assert "ranked document ids are not in the corpus: 'zz'" in capsys.readouterr().err
    unknown_q = tmp_path / "unknown-q.tsv"
    unknown_q.write_text("qq\td1\t1\t2.0\n")
    assert cli.main(["rerank-run", str(unknown_q), *base]) == 2
    assert "query ids of the run have no query text: 'qq'" in capsys.readouterr().err
    assert cli.main(["rerank-run", str(root / "run.bm25.tsv"), *base, "--depth", "0"]) == 2
    assert "--depth must be >= 1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="ranked twice"):
        reranking_tasks({"q": [("d", 1.0), ("d", 0.5)]}, {"q": "x"}, {"d": "y"})
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        rerank_run({"q": [("d", 1.0)]}, {"q": "x"}, {"d": "y"}, model=tiny_cross_encoder_dir, concurrency=0)
    assert cli.main(["eval", str(root), "--run-file", str(tmp_path / "missing.trec"), "--stages", "run",
                     "--quiet"]) == 2
    assert "missing.trec: run file not found" in capsys.readouterr().err
