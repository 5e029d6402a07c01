"""calibrate-floor: known separable thresholds are found, Otsu without qrels, the CLI and its PNG."""

from __future__ import annotations

import json
from pathlib import Path

import funnelrank.cli.main as cli
import numpy as np
import pytest
from funnelrank.eval.calibrate import floor_point, load_qrels, otsu_threshold, recommend_floor


def synthetic(rng: np.random.Generator, n_queries: int = 40, overlap: bool = False):
    """Per query: 3 relevant scores in [0.62, 0.97], 30 non-relevant in [0.01, 0.38] (or overlapping)."""
    records, qrels = [], {}
    for q in range(n_queries):
        qid = f"q{q}"
        rel = rng.uniform(0.45 if overlap else 0.62, 0.97, 3)
        non = rng.uniform(0.01, 0.6 if overlap else 0.38, 30)
        qrels[qid] = {f"{qid}-r{i}": 1 for i in range(3)} | {f"{qid}-n0": 0}
        records += [{"query_id": qid, "id": f"{qid}-r{i}", "score": float(s)} for i, s in enumerate(rel)]
        records += [{"query_id": qid, "id": f"{qid}-n{i}", "score": float(s)} for i, s in enumerate(non)]
    return records, qrels


def arrays(records, qrels):
    scores = np.array([r["score"] for r in records])
    labels = np.array([qrels[r["query_id"]].get(r["id"], 0) > 0 for r in records])
    qids = np.array([r["query_id"] for r in records], dtype=object)
    return scores, labels, qids


@pytest.mark.parametrize("objective", ["f1", "youden"])
def test_separable_traces_give_a_separating_floor(objective: str) -> None:
    scores, labels, qids = arrays(*synthetic(np.random.default_rng(0)))
    rec = recommend_floor(scores, qids, labels, objective=objective)
    assert scores[~labels].max() < rec.floor < scores[labels].min()
    assert rec.at_floor.precision == 1.0 and rec.at_floor.recall == 1.0 and rec.at_floor.f1 == 1.0
    assert rec.at_floor.youden_j == 1.0 and rec.at_floor.no_evidence_queries == 0.0
    assert rec.n_relevant == 120 and rec.n_queries == 40
    assert [a.floor for a in rec.alternatives] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_overlapping_traces_f1_floor_beats_every_grid_floor() -> None:
    scores, labels, qids = arrays(*synthetic(np.random.default_rng(1), overlap=True))
    rec = recommend_floor(scores, qids, labels)
    assert all(rec.at_floor.f1 >= a.f1 for a in rec.alternatives)
    assert 0.4 < rec.floor < 0.65
    strict = recommend_floor(scores, qids, labels, target_precision=0.95)
    assert strict.at_floor.precision >= 0.95
    # The lowest such floor: one step lower (next distinct score) falls below the target precision.
    lower = scores[scores < strict.floor].max()
    assert floor_point(scores, lower, qids, labels).precision < 0.95
    with pytest.raises(ValueError, match="precision"):
        recommend_floor(np.array([0.9, 0.8]), np.array(["a", "a"], dtype=object), np.array([False, True]),
                        target_precision=1.0)


def test_otsu_finds_the_valley_without_labels() -> None:
    rng = np.random.default_rng(2)
    low, high = rng.uniform(0.0, 0.3, 500), rng.uniform(0.7, 1.0, 80)
    t = otsu_threshold(np.concatenate([low, high]))
    assert low.max() < t < high.min()
    rec = recommend_floor(np.concatenate([low, high]), np.array(["q"] * 580, dtype=object))
    assert rec.method == "otsu" and rec.at_floor.precision is None
    with pytest.raises(ValueError, match="distinct"):
        otsu_threshold(np.array([0.5, 0.5]))


def test_qrels_formats(tmp_path: Path) -> None:
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n")
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 2\n")
    assert load_qrels(beir) == load_qrels(trec) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ValueError, match=r":2: expected 3 columns"):
        load_qrels(bad)


def test_cli_with_and_without_qrels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records, qrels = synthetic(np.random.default_rng(3))
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in records))
    qfile = tmp_path / "qrels.tsv"
    qfile.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    png = tmp_path / "hist.png"
    assert cli.main(["calibrate-floor", str(traces), "--qrels", str(qfile), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    floor = float(out.split("recommended floor:")[1].split()[0])
    scores, labels, _ = arrays(records, qrels)
    assert scores[~labels].max() < floor < scores[labels].min()
    assert "recommended" in out and "prec" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    assert cli.main(["calibrate-floor", str(traces), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["method"] == "otsu" and 0.3 < rec["floor"] < 0.7

    assert cli.main(["calibrate-floor", str(tmp_path / "missing.jsonl")]) == 2
    assert "no trace file" in capsys.readouterr().err
    other = tmp_path / "other.tsv"
    other.write_text("query-id\tcorpus-id\tscore\nzz\td\t1\n")
    assert cli.main(["calibrate-floor", str(traces), "--qrels", str(other)]) == 2
    assert "qrels" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["calibrate-floor", "tune-fusion"])
def test_empty_trace_files_are_a_clear_error(tmp_path: Path, command: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Both trace readers refuse empty trace files with one message (read_traces(allow_empty=False))."""
    empty = tmp_path / "t.jsonl"
    empty.write_text("")
    qrels = tmp_path / "q.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert cli.main([command, str(empty), "--qrels", str(qrels)]) == 2
    assert "the trace files hold no records" in capsys.readouterr().err


def _brute_promise_floor(records, qrels, min_kept: float, top_k: int) -> float:
    """The highest traced score level keeping >= min_kept answerable queries, by trying every level."""
    from funnelrank.eval.floor_promise import floor_promise
    from funnelrank.rerank.policy import RankPolicy
    from funnelrank.rerank.traces import group_traces

    ranked = group_traces(records)[0]
    levels = sorted({r["score"] for r in records})
    good = [f for f in levels
            if floor_promise(ranked, qrels, RankPolicy(floor=f, top_k=top_k))["answerable_kept"] >= min_kept]
    return max(good)


@pytest.mark.parametrize("min_kept", [0.5, 0.8, 0.95])
def test_promise_floor_is_the_highest_floor_keeping_enough_answers(min_kept: float) -> None:
    from funnelrank.eval.calibrate import promise_floor
    from funnelrank.eval.floor_promise import floor_promise
    from funnelrank.rerank.policy import RankPolicy
    from funnelrank.rerank.traces import group_traces

    records, qrels = synthetic(np.random.default_rng(11), n_queries=15, overlap=True)
    rec = promise_floor(records, qrels, min_kept=min_kept, top_k=3)
    highest = _brute_promise_floor(records, qrels, min_kept, 3)
    below = max(r["score"] for r in records if r["score"] < highest)
    assert below < rec.floor < highest  # the midpoint under the highest level that keeps enough
    ranked = group_traces(records)[0]
    at = floor_promise(ranked, qrels, RankPolicy(floor=rec.floor, top_k=3))
    assert at["answerable_kept"] >= min_kept and rec.promise == at
    above = min(r["score"] for r in records if r["score"] > highest)
    assert floor_promise(ranked, qrels, RankPolicy(floor=above, top_k=3))["answerable_kept"] < min_kept
    assert "refused" in rec.notes[0]


def test_promise_floor_refuses_more_as_it_keeps_less() -> None:
    from funnelrank.eval.calibrate import promise_floor

    rng = np.random.default_rng(12)
    records, qrels = [], {}
    for q in range(60):  # one answer per query, 20 non-answers whose scores reach as high as the answers'
        qrels[f"q{q}"] = {f"q{q}-a": 1}
        records.append({"query_id": f"q{q}", "id": f"q{q}-a", "score": float(rng.uniform(0.3, 0.99))})
        records += [{"query_id": f"q{q}", "id": f"q{q}-n{i}", "score": float(s)}
                    for i, s in enumerate(rng.uniform(0.01, 0.95 * rng.uniform(0.3, 1.0), 20))]
    recs = [promise_floor(records, qrels, min_kept=m, top_k=10) for m in (0.9, 0.75, 0.5)]
    assert recs[0].floor <= recs[1].floor <= recs[2].floor
    refused = [r.promise["unanswerable_refused"] for r in recs]
    assert refused[0] <= refused[1] <= refused[2] and refused[2] > refused[0]


def test_promise_floor_says_when_no_floor_keeps_enough(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from funnelrank.eval.calibrate import promise_floor

    records = [{"query_id": "q1", "id": "junk", "score": 0.9, "rerank_rank": 1},
               {"query_id": "q1", "id": "answer", "score": 0.8, "rerank_rank": 2},
               {"query_id": "q2", "id": "answer2", "score": 0.7, "rerank_rank": 1},
               {"query_id": "q2", "id": "junk2", "score": 0.1, "rerank_rank": 2}]
    qrels = {"q1": {"answer": 1}, "q2": {"answer2": 1}}
    with pytest.raises(ValueError, match="only 0.500"):
        promise_floor(records, qrels, min_kept=0.9, top_k=1)  # q1's answer is never in its top 1
    rec = promise_floor(records, qrels, min_kept=1.0, top_k=2)
    assert rec.floor == pytest.approx(0.4)  # between 0.1 and 0.7: at 0.8 q2's answer would be lost
    assert rec.promise["unanswerable_refused"] == 0.5  # q1's junk (0.9) clears the floor, q2's (0.1) does not
    with pytest.raises(ValueError, match="min_kept"):
        promise_floor(records, qrels, min_kept=0.0)

    traces = tmp_path / "t.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in records))
    qfile = tmp_path / "q.tsv"
    qfile.write_text("query-id\tcorpus-id\tscore\nq1\tanswer\t1\nq2\tanswer2\t1\n")
    assert cli.main(["calibrate-floor", str(traces), "--qrels", str(qfile), "--min-kept", "1", "--top-k", "2",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["floor"] == pytest.approx(0.4) and out["promise"]["answerable_kept"] == 1.0
    assert cli.main(["calibrate-floor", str(traces), "--min-kept", "0.9"]) == 2
    assert "--min-kept needs --qrels" in capsys.readouterr().err


def test_promise_floor_refuses_two_runs_in_one_trace_file() -> None:
    from funnelrank.eval.calibrate import promise_floor

    records = [{"query_id": "q1", "id": "d1", "score": 0.9, "rerank_rank": 1}] * 2
    with pytest.raises(ValueError, match="twice"):
        promise_floor(records, {"q1": {"d1": 1}}, min_kept=0.5)
