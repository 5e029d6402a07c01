"""Rerank fusion: the fused order (weighted RRF of the cross-encoder and stage-1 orders), the floor still on
the cross-encoder score, the Reranker/Pipeline options, and choosing the weight from traces (tune-fusion)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import funnelrank.cli.main as cli
import numpy as np
import pytest
from funnelrank.candidates import Candidate
from funnelrank.eval.fusion_tuning import parse_grid, sweep_fusion
from funnelrank.rerank import Reranker, RerankScheduler
from funnelrank.rerank.fusion import RERANK_FUSION_K, check_fusion, check_stage1_weight, fused_order, rerank_order
from funnelrank.rerank.policy import DEFAULT_STAGE1_WEIGHT, default_stage1_weight
from funnelrank.rerank.traces import group_traces, read_traces
from rerank_fakes import ScoreInTextModel

BAD_WEIGHTS = [-0.1, 1.5, math.nan, math.inf, True, "0.5", None]


def reference_fused(scores: list[float], ranks: list[int], w: float, k: float = RERANK_FUSION_K) -> list[float]:
    """The fused score written out from the formula (test oracle)."""
    by_score = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rerank_rank = {i: r + 1 for r, i in enumerate(by_score)}
    return [(1 - w) / (k + rerank_rank[i]) + w / (k + ranks[i]) for i in range(len(scores))]


# ---------------------------------------------------------------------------------------------- fused_order
def test_weight_zero_is_the_cross_encoder_order_and_one_the_stage1_order() -> None:
    rng = np.random.default_rng(7)
    scores = rng.random(50)
    scores[[3, 9]] = scores[20]  # ties keep input order
    ranks = [int(r) + 1 for r in rng.permutation(50)]
    order, fused = fused_order(scores, ranks, 0.0, fusion="rrf")
    assert fused is None
    assert order == sorted(range(50), key=lambda i: (-scores[i], i))
    order, fused = fused_order(scores, ranks, 1.0, fusion="rrf")
    assert order == sorted(range(50), key=lambda i: ranks[i])
    assert fused is not None and fused[order[0]] == pytest.approx(1.0 / (RERANK_FUSION_K + 1))


def test_intermediate_weight_follows_the_formula() -> None:
    rng = np.random.default_rng(11)
    scores = rng.random(40).tolist()
    ranks = [int(r) + 1 for r in rng.permutation(40)]
    for w in (0.2, 0.5, 0.8):
        order, fused = fused_order(scores, ranks, w, fusion="rrf")
        expected = reference_fused(scores, ranks, w)
        assert fused is not None
        np.testing.assert_allclose(fused, expected, rtol=1e-6)
        values = [expected[i] for i in order]
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
        assert sorted(order) == list(range(40))


def test_fusion_moves_a_stage1_favourite_up() -> None:
    # The cross-encoder puts candidate 3 last; stage 1 put it first; equal weights lift it above the middle.
    scores = [0.9, 0.8, 0.7, 0.1]
    ranks = [2, 3, 4, 1]
    assert fused_order(scores, ranks, 0.0, fusion="rrf")[0] == [0, 1, 2, 3]
    assert fused_order(scores, ranks, 0.5, fusion="rrf")[0] == [0, 3, 1, 2]


def test_nan_scores_rank_last_and_missing_stage1_ranks_go_after_ranked() -> None:
    assert rerank_order([0.2, math.nan, 0.5]) == [2, 0, 1]
    order, _ = fused_order([0.1, 0.2, 0.3], [None, 1, 2], 1.0, fusion="rrf")
    assert order == [1, 2, 0]


@pytest.mark.parametrize("weight", BAD_WEIGHTS)
def test_bad_weights_are_rejected(weight: object) -> None:
    with pytest.raises(ValueError, match="stage1_weight"):
        check_stage1_weight(weight)
    with pytest.raises(ValueError, match="stage1_weight"):
        fused_order([0.5], [1], weight, fusion="rrf")  # type: ignore[arg-type]


def minmax(x: list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def test_convex_fusion_follows_the_formula_and_its_ends() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=30).tolist()
    scores = (1 / (1 + np.exp(-np.asarray(logits)))).tolist()
    ranks = [int(r) + 1 for r in rng.permutation(30)]
    s1 = [100.0 - r + rng.random() * 0.5 for r in ranks]  # decreasing with the stage-1 rank
    for w in (0.3, 0.8):
        order, fused = fused_order(scores, ranks, w, fusion="convex", logits=logits, stage1_scores=s1)
        expected = (1 - w) * minmax(logits) + w * minmax(s1)
        assert fused is not None
        np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)
        assert order == sorted(range(30), key=lambda i: -expected[i])
    assert fused_order(scores, ranks, 0.0, fusion="convex")[0] == rerank_order(scores)  # no stage-1 scores needed
    order, _ = fused_order(scores, ranks, 1.0, fusion="convex", logits=logits, stage1_scores=s1)
    assert order == sorted(range(30), key=lambda i: ranks[i])
    # Convex weighs score gaps, RRF only ranks: a clear cross-encoder winner keeps first place against a
    # stage-1 lead by a hair under convex fusion, not under RRF.
    args = ([0.99, 0.5, 0.007], [2, 1, 3], 0.6)
    gaps = {"logits": [5.0, 0.0, -5.0], "stage1_scores": [0.49, 0.5, 0.0]}
    assert fused_order(*args, fusion="convex", **gaps)[0][0] == 0
    assert fused_order(*args, fusion="rrf")[0][0] == 1


def test_convex_fusion_needs_stage1_scores_and_bad_methods_are_rejected() -> None:
    with pytest.raises(ValueError, match="needs a finite stage-1 score for every candidate"):
        fused_order([0.2, 0.3], [1, 2], 0.5, fusion="convex", stage1_scores=[1.0, None])
    with pytest.raises(ValueError, match="needs a finite stage-1 score"):
        fused_order([0.2, 0.3], [1, 2], 0.5, fusion="convex", stage1_scores=[1.0, math.nan])
    for bad in ("RRF", "sum", None, 1):
        with pytest.raises(ValueError, match="fusion must be one of rrf, convex"):
            check_fusion(bad)
        with pytest.raises(ValueError, match="fusion must be one of"):
            fused_order([0.2], [1], 0.5, fusion=bad)  # type: ignore[arg-type]


def test_mismatched_lengths_and_empty_input() -> None:
    with pytest.raises(ValueError, match="2 scores but 1 stage-1 ranks"):
        fused_order([0.1, 0.2], [1], 0.5, fusion="rrf")
    assert fused_order([], [], 0.5, fusion="rrf")[0] == []
    assert 0.0 <= DEFAULT_STAGE1_WEIGHT <= 1.0
    assert default_stage1_weight("hybrid") == DEFAULT_STAGE1_WEIGHT
    assert [default_stage1_weight(s) for s in ("bm25", "dense", "run")] == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------- Reranker
@pytest.fixture()
def reranker() -> Iterator[Reranker]:
    sched = RerankScheduler(ScoreInTextModel(), max_wait_ms=0)
    yield Reranker(scorer=sched, fusion="rrf")  # these tests fuse by rank; the default fusion is convex
    sched.close()


# Stage-1 order: a, b, c, d, e; cross-encoder order: e, d, c, b, a (scores 0.9 .. 0.3 by rank reversed).
CANDS = [
    Candidate("a", "a [s=0.3]", 1, 30.0),
    Candidate("b", "b [s=0.45]", 2, 20.0),
    Candidate("c", "c [s=0.6]", 3, 10.0),
    Candidate("d", "d [s=0.75]", 4, 5.0),
    Candidate("e", "e [s=0.9]", 5, 1.0),
]


def test_reranker_default_is_pure_cross_encoder_order(reranker: Reranker) -> None:
    res = reranker.rerank("q", CANDS, top_k=None, floor=None)
    assert [i.id for i in res] == ["e", "d", "c", "b", "a"] and res.stage1_weight == 0.0
    assert all(i.fused_score is None for i in res)


def test_floor_uses_the_cross_encoder_score_whatever_the_weight(reranker: Reranker) -> None:
    for w in (0.0, 0.3, 0.7, 1.0):
        res = reranker.rerank("q", CANDS, top_k=None, floor=0.5, stage1_weight=w)
        assert sorted(i.id for i in res) == ["c", "d", "e"], w  # kept = CE score >= 0.5, not fused order
        assert all(i.score >= 0.5 for i in res)
    res = reranker.rerank("q", CANDS, top_k=None, floor=0.5, stage1_weight=1.0)
    assert [i.id for i in res] == ["c", "d", "e"]  # stage-1 order among the kept
    first = res.items[0]
    assert first.score == pytest.approx(0.6, abs=1e-6) and first.stage1_rank == 3 and first.stage1_score == 10.0
    assert first.fused_score == pytest.approx(1.0 / (RERANK_FUSION_K + 3), rel=1e-6)
    assert reranker.rerank("q", CANDS, floor=0.95, stage1_weight=1.0).no_evidence


def test_top_k_cuts_the_fused_order_after_the_floor(reranker: Reranker) -> None:
    res = reranker.rerank("q", CANDS, top_k=2, floor=0.4, stage1_weight=1.0)
    assert [i.id for i in res] == ["b", "c"]  # a (0.3) fails the floor, then stage-1 order
    res = reranker.rerank("q", CANDS, top_k=2, floor=0.4, stage1_weight=0.0)
    assert [i.id for i in res] == ["e", "d"]


def test_candidates_without_a_stage1_rank_come_after_the_ranked_ones(reranker: Reranker) -> None:
    # "x" (no rank) sits first in the input; its input position (1) must not count as stage-1 rank 1, which
    # "b" holds: at w = 1 the order is the stage-1 order with the unranked last, as fused_order gives it.
    cands = [Candidate("x", "x [s=0.8]", None, None), Candidate("a", "a [s=0.3]", 2, None),
             Candidate("b", "b [s=0.45]", 1, None)]
    res = reranker.rerank("q", cands, top_k=None, floor=None, stage1_weight=1.0)
    assert [i.id for i in res] == ["b", "a", "x"]
    order, _ = fused_order([0.8, 0.3, 0.45], [None, 2, 1], 1.0, fusion="rrf")
    assert [cands[i].id for i in order] == [i.id for i in res]
    assert res.items[2].stage1_rank is None


def test_reranker_convex_fusion_keeps_the_floor(reranker: Reranker) -> None:
    # Stage-1 scores of CANDS fall with the rank; w = 1 gives the stage-1 order among the kept.
    res = reranker.rerank("q", CANDS, top_k=None, floor=0.5, stage1_weight=1.0, fusion="convex")
    assert [i.id for i in res] == ["c", "d", "e"] and res.fusion == "convex"
    res = reranker.rerank("q", CANDS, top_k=None, floor=None, stage1_weight=0.5, fusion="convex")
    assert sorted(i.id for i in res) == ["a", "b", "c", "d", "e"] and all(i.fused_score is not None for i in res)
    with pytest.raises(ValueError, match="fusion must be one of"):
        reranker.rerank("q", CANDS, fusion="max")
    with pytest.raises(ValueError, match="needs a finite stage-1 score"):
        reranker.rerank("q", ["x [s=0.5]", "y [s=0.6]"], stage1_weight=0.5, fusion="convex")  # strings: no scores


def test_reranker_weight_default_and_errors(tmp_path: Path) -> None:
    sched = RerankScheduler(ScoreInTextModel(), max_wait_ms=0)
    try:
        with pytest.raises(ValueError, match="stage1_weight"):
            Reranker(scorer=sched, stage1_weight=2.0)
        traces = tmp_path / "t.jsonl"
        r = Reranker(scorer=sched, stage1_weight=1.0, top_k=None, floor=None, traces=traces)
        assert [i.id for i in r.rerank("q", CANDS, query_id="q1")] == ["a", "b", "c", "d", "e"]
        with pytest.raises(ValueError, match="stage1_weight"):
            r.rerank("q", CANDS, stage1_weight=-1)
        r.close()
        recs = read_traces(traces)
        # Traces keep the cross-encoder's own rank and the weight that ordered the results.
        assert {x["id"]: x["rerank_rank"] for x in recs} == {"e": 1, "d": 2, "c": 3, "b": 4, "a": 5}
        assert {x["stage1_weight"] for x in recs} == {1.0}
    finally:
        sched.close()


# ---------------------------------------------------------------------------------------------- tuning
def _traces(path: Path, queries: dict[str, list[tuple[str, float, int]]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for qid, cands in queries.items():
            for doc, score, rank in cands:
                rec = {"query_id": qid, "query": "q", "id": doc, "score": score, "logit": math.log(score / (1 - score)),
                       "stage1_rank": rank, "stage1_score": 1.0 / rank}
                fh.write(json.dumps(rec) + "\n")
    return path


def _qrels(path: Path, judged: dict[str, list[str]]) -> Path:
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, docs in judged.items() for d in docs]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _synthetic(stage1_right: bool, n_queries: int = 6) -> dict[str, list[tuple[str, float, int]]]:
    """Per query 20 candidates; the relevant one ("rel") is first for stage 1 or for the cross-encoder, and
    the other order buries it."""
    out = {}
    for q in range(n_queries):
        cands = []
        for i in range(20):
            doc = "rel" if i == 0 else f"x{i}"
            stage1_rank = i + 1 if stage1_right else 20 - i
            score = 0.9 - 0.04 * i if not stage1_right else 0.1 + 0.04 * i
            cands.append((doc, score, stage1_rank))
        out[f"q{q}"] = cands
    return out


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
@pytest.mark.parametrize("stage1_right, best", [(True, 1.0), (False, 0.0)])
def test_sweep_finds_the_order_that_is_right(tmp_path: Path, stage1_right: bool, best: float, fusion: str) -> None:
    queries, skipped = group_traces(read_traces(_traces(tmp_path / "t.jsonl", _synthetic(stage1_right))))
    qrels = {f"q{q}": {"rel": 1} for q in range(6)}
    sweep = sweep_fusion(queries, qrels, [0.0, 1.0], fusions=[fusion])
    assert skipped == 0 and sweep.n_queries == 6 and sweep.n_pairs == 120
    by_w = {p.stage1_weight: p.metrics["ndcg@10"] for p in sweep.points}
    assert by_w[best] == pytest.approx(1.0)
    assert by_w[1.0 - best] == 0.0  # the relevant doc is 20th: outside the top 10
    assert sweep.best.stage1_weight == best and {p.fusion for p in sweep.points} == {fusion}
    # The best is compared with the other end only (it IS one of the ends here): 1 - 0 in nDCG@10 on all 6.
    (c,) = sweep.comparisons
    assert c["b"] == ("cross-encoder alone" if best == 1.0 else "stage-1 order alone")
    assert c["difference"] == pytest.approx(1.0) and (c["wins"], c["losses"], c["ties"]) == (6, 0, 0)
    assert c["p_value"] == pytest.approx(2 / 64, abs=0.01)  # 2 of the 2^6 sign assignments are as extreme


def test_sweep_over_both_methods(tmp_path: Path) -> None:
    queries, _ = group_traces(read_traces(_traces(tmp_path / "t.jsonl", _synthetic(True))))
    sweep = sweep_fusion(queries, {f"q{q}": {"rel": 1} for q in range(6)}, [0.0, 0.5, 1.0], fusions=["rrf", "convex"])
    assert [(p.fusion, p.stage1_weight) for p in sweep.points] == [
        ("rrf", 0.0), ("rrf", 0.5), ("rrf", 1.0), ("convex", 0.5), ("convex", 1.0)
    ]  # weight 0 is the same order for every method: scored once
    with pytest.raises(ValueError, match="fusion must be one of"):
        sweep_fusion(queries, {"q0": {"rel": 1}}, fusions=["best"])
    no_logits = tmp_path / "nl.jsonl"
    no_logits.write_text(json.dumps({"query_id": "q0", "id": "a", "score": 0.5, "stage1_rank": 1}) + "\n")
    with pytest.raises(ValueError, match="convex fusion needs traced logits"):
        sweep_fusion(group_traces(read_traces(no_logits))[0], {"q0": {"a": 1}}, fusions=["convex"])


def test_sweep_ties_go_to_the_smaller_weight_and_unjudged_queries_are_left_out(tmp_path: Path) -> None:
    queries, _ = group_traces(read_traces(_traces(tmp_path / "t.jsonl", _synthetic(False, 3))))
    sweep = sweep_fusion(queries, {"q0": {"rel": 1}, "q1": {"rel": 1}}, [0.0, 0.1, 0.2])
    assert sweep.n_queries == 2 and any("1 traced queries absent" in n for n in sweep.notes)
    assert sweep.best.stage1_weight == 0.0  # 0.1 and 0.2 keep "rel" first too: a tie, the smaller wins
    with pytest.raises(ValueError, match="no traced query id appears in the qrels"):
        sweep_fusion(queries, {"zz": {"rel": 1}})
    with pytest.raises(ValueError, match="stage1_weight"):
        sweep_fusion(queries, {"q0": {"rel": 1}}, [0.5, 1.5])
    with pytest.raises(ValueError, match="unknown metric"):
        sweep_fusion(queries, {"q0": {"rel": 1}}, metric="ndcg")


def test_traces_of_two_runs_in_one_file_are_refused(tmp_path: Path) -> None:
    data = _synthetic(True, 1)
    path = _traces(tmp_path / "t.jsonl", data)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"query_id": "q0", "id": "rel", "score": 0.5, "stage1_rank": 1}) + "\n")
    with pytest.raises(ValueError, match="twice"):
        group_traces(read_traces(path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query_id": "q0", "id": "a", "score": 0.5, "stage1_rank": 0}) + "\n")
    with pytest.raises(ValueError, match="stage1_rank must be a positive integer"):
        group_traces(read_traces(bad))


def test_parse_grid() -> None:
    assert parse_grid("0.5, 0,0.5,1") == [0.0, 0.5, 1.0]
    for text, msg in (("", "empty"), ("0,x", "not a number"), ("0,1.2", "stage1_weight")):
        with pytest.raises(ValueError, match=msg):
            parse_grid(text)


def test_tune_fusion_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces = _traces(tmp_path / "t.jsonl", _synthetic(True))
    qrels = _qrels(tmp_path / "qrels.tsv", {f"q{q}": ["rel"] for q in range(6)})
    assert cli.main(["tune-fusion", str(traces), "--qrels", str(qrels), "--grid", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "best: fusion rrf, stage1_weight 1" in out and "<- best" in out and "(cross-encoder order alone)" in out
    assert "the best against" in out and "cross-encoder alone  +1.0000  [+1.0000, +1.0000]" in out
    assert "6 better, 0 worse, 0 equal of 6" in out
    assert cli.main(["tune-fusion", str(traces), "--qrels", str(qrels), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # Equal weights tie "rel" (ranks 1 and 20) with the candidate ranked 20 and 1; input order puts rel first.
    assert report["best"]["stage1_weight"] == 0.5 and len(report["points"]) == 21 + 20  # rrf, convex (w > 0)
    assert report["best"]["metrics"]["ndcg@10"] == 1.0
    assert report["metric"] == "ndcg@10" and report["n_queries"] == 6
    assert [c["b"] for c in report["comparisons"]] == ["cross-encoder alone", "stage-1 order alone"]
    assert report["comparisons"][1]["difference"] == 0.0 and report["comparisons"][1]["p_value"] == 1.0
