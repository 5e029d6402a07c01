"""The depth advisor: a traced rerank replayed at shallower depths, and the shallowest depth advised only
when its nDCG@10 is not measurably below the full depth's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from funnelrank.cli.main import main
from funnelrank.eval.depth import advise_depth, parse_depths, replay_order
from funnelrank.eval.fusion_tuning import TracedQuery


def _records(rel_rank: int, n_queries: int = 40, depth: int = 40) -> list[dict]:
    """Per query `depth` candidates; the relevant one sits at stage-1 rank `rel_rank` (or 1..rel_rank cycling)
    and the cross-encoder scores it highest."""
    out = []
    for q in range(n_queries):
        r = 1 + q % rel_rank
        for rank in range(1, depth + 1):
            score = 0.99 if rank == r else 0.5 - rank / (4 * depth)
            out.append({"query_id": f"q{q}", "id": f"q{q}-d{rank}", "score": score, "stage1_rank": rank})
    return out


def _qrels(n_queries: int = 40, rel_rank: int = 1) -> dict[str, dict[str, int]]:
    return {f"q{q}": {f"q{q}-d{1 + q % rel_rank}": 1} for q in range(n_queries)}


def test_replay_reranks_only_the_head() -> None:
    q = TracedQuery(["a", "b", "c", "d"], np.array([0.1, 0.2, 0.9, 0.8]), [1, 2, 3, 4], np.full(4, np.nan), [None] * 4)
    assert replay_order(q, 2) == ["b", "a", "c", "d"]
    assert replay_order(q, 4) == ["c", "d", "b", "a"]
    assert replay_order(q, 10) == ["c", "d", "b", "a"]


def test_shallow_depth_is_advised_when_answers_sit_high() -> None:
    # Every answer is within stage-1 rank 5: depth 10 loses nothing against 40.
    report = advise_depth(_records(5), _qrels(rel_rank=5), depths=[5, 10, 20])
    assert report.full_depth == 40 and [p.depth for p in report.points] == [5, 10, 20, 40]
    assert report.recommended == 5
    assert all(p.ndcg10 == pytest.approx(1.0) for p in report.points)


def test_a_depth_that_loses_answers_is_not_advised() -> None:
    # Answers at stage-1 ranks 1..30 (then 1..10 again): depth 10 misses half of them; only 40 (full) is safe.
    report = advise_depth(_records(30), _qrels(rel_rank=30), depths=[10, 20], pairs_per_s=100.0)
    by = {p.depth: p for p in report.points}
    assert by[10].recall == pytest.approx(0.5) and by[10].ci_high < -0.01
    assert by[40].recall == 1.0 and by[40].ms_per_query == pytest.approx(400.0)
    assert report.recommended == 40


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no traced query id appears in the qrels"):
        advise_depth(_records(5), {"other": {"x": 1}})
    recs = _records(5, n_queries=2)
    del recs[0]["stage1_rank"]
    with pytest.raises(ValueError, match="no stage1_rank"):
        advise_depth(recs, _qrels(2, 5))
    for bad in ("", "0", "ten"):
        with pytest.raises(ValueError):
            parse_depths(bad)
    assert parse_depths("30, 10,10") == [10, 30]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces = tmp_path / "t.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in _records(5)), encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, docs in _qrels(rel_rank=5).items() for d in docs), encoding="utf-8")
    assert main(["advise-depth", str(traces), "--qrels", str(qrels), "--depths", "5,10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommended"] == 5 and out["full_depth"] == 40
    assert main(["advise-depth", str(traces), "--qrels", str(qrels)]) == 0
    assert "advised depth: 10 of 40" in capsys.readouterr().out
