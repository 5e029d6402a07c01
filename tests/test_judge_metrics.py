"""The judge's figures: the floor's promise (answerable kept / unanswerable refused) and near-miss scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from funnelrank.cli.main import main
from funnelrank.eval.floor_promise import floor_promise
from funnelrank.eval.nearmiss import NearMissCase, load_cases, score_cases
from funnelrank.rerank.policy import DEFAULT_FLOOR, RankPolicy
from funnelrank.rerank.traces import TracedQuery

QRELS = {"q1": {"d1": 1}, "q2": {"d9": 1}, "q3": {"d5": 2, "d6": 0}}


def traced(pairs: list[tuple[str, float]]) -> TracedQuery:
    """A query's candidates (id, rerank score) in stage-1 order, as traces hold them."""
    n = len(pairs)
    return TracedQuery([d for d, _ in pairs], np.array([s for _, s in pairs]), list(range(1, n + 1)),
                       np.full(n, np.nan), [None] * n)


def promise(ranked: dict[str, list[tuple[str, float]]], floor: float, top_k: int) -> dict[str, object]:
    return floor_promise({q: traced(c) for q, c in ranked.items()}, QRELS, RankPolicy(floor=floor, top_k=top_k))


def test_floor_promise_counts_by_hand() -> None:
    ranked = {
        "q1": [("d1", 0.9), ("d2", 0.2)],          # answer kept; without d1 nothing clears 0.4: refused
        "q2": [("d3", 0.8), ("d4", 0.1)],          # no relevant candidate: not answerable; d3 clears: not refused
        "q3": [("d6", 0.7), ("d5", 0.5), ("d7", float("nan"))],  # d6 is judged grade 0, so it is junk
    }
    p = promise(ranked, 0.4, 10)
    assert p["answerable_queries"] == 2 and p["unanswerable_queries"] == 3
    assert p["answerable_kept"] == 1.0                         # q1 and q3 keep their answer
    assert p["unanswerable_refused"] == pytest.approx(1 / 3)   # only q1 is refused (NaN never clears)
    # top_k cuts: with top 1, q3 returns d6 (grade 0) and loses its answer.
    assert promise(ranked, 0.4, 1)["answerable_kept"] == 0.5
    # The two ends: floor 0 keeps every answer and refuses nothing; floor 1 the reverse.
    zero, one = promise(ranked, 0.0, 10), promise(ranked, 1.0, 10)
    assert zero["answerable_kept"] == 1.0 and zero["unanswerable_refused"] == 0.0
    assert one["answerable_kept"] == 0.0 and one["unanswerable_refused"] == 1.0
    low, high = p["unanswerable_refused_ci"]  # type: ignore[misc]
    assert 0.0 <= low <= p["unanswerable_refused"] <= high <= 1.0  # type: ignore[operator]
    with pytest.raises(ValueError, match="floor"):
        promise(ranked, 1.5, 10)  # the policy refuses it
    assert promise({}, 0.4, 10)["answerable_kept"] is None


def test_near_miss_scores_by_hand() -> None:
    cases = [NearMissCase("q", "pos", ["a", "b", "c"])] * 4
    scores = [
        [0.9, 0.1, 0.2, 0.3],  # first, gated
        [0.9, 0.1, 0.5, 0.3],  # first, not gated (0.5 >= 0.4)
        [0.5, 0.6, 0.2, 0.3],  # second
        [0.3, 0.3, 0.2, 0.1],  # tie with a near-miss: not first, rank 2; not gated (pos < floor)
    ]
    r = score_cases(cases, scores, floor=0.4)
    assert r["answer_first"] == 0.5 and r["gated_cleanly"] == 0.25
    assert r["mrr"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    # AUC: pos against the 12 near-miss scores, ties half.
    pos, neg = [0.9, 0.9, 0.5, 0.3], [x for row in scores for x in row[1:]]
    expected = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert r["auc"] == pytest.approx(expected)
    assert "gated_cleanly" not in score_cases(cases, scores)
    with pytest.raises(ValueError, match="expected 4 scores"):
        score_cases(cases, [[0.1]] * 4)


def test_load_cases_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no near-miss cases"):
        load_cases(tmp_path)
    (tmp_path / "cases.jsonl").write_text('{"q": "x", "pos": "y", "neg": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="cases.jsonl:1"):
        load_cases(tmp_path)
    (tmp_path / "cases.jsonl").write_text('{"q": "x", "pos": "y", "neg": ["z"]}\n{bad\n', encoding="utf-8")
    with pytest.raises(ValueError, match="cases.jsonl:2: not JSON"):
        load_cases(tmp_path)


def test_nearmiss_command_with_the_default_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        {"q": "compress data with gzip", "pos": "gzip.compress(data): compress data in one shot.",
         "neg": ["json.dumps(obj): serialize obj to a JSON formatted str.", "Bananas are rich in potassium."]},
        {"q": "serialize an object to JSON", "pos": "json.dumps(obj): serialize obj to a JSON formatted str.",
         "neg": ["gzip.compress(data): compress data in one shot.", "Bananas are rich in potassium."]},
    ]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    assert main(["nearmiss", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 2 and report["reranker"]["answer_first"] == 1.0
    assert report["reranker"]["floor"] == DEFAULT_FLOOR and "gated_cleanly" in report["reranker"]
    assert report["bi_encoder"]["answer_first"] == 1.0 and "gated_cleanly" not in report["bi_encoder"]
    assert main(["nearmiss", str(tmp_path / "missing")]) == 2
    assert "no near-miss cases" in capsys.readouterr().err
