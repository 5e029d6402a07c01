"""nDCG@k / Recall@k / MRR@k against pytrec_eval (trec_eval) and ranx on fixtures built here."""

from __future__ import annotations

import math
import random

import pytest
from funnelrank.eval.metrics import (
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    recall_at_k,
    trec_eval_order,
)

pytrec_eval = pytest.importorskip("pytrec_eval")

Rankings = dict[str, list[tuple[str, float]]]


def _fixture(seed: int, graded: bool, ties: bool = False) -> tuple[dict[str, dict[str, int]], Rankings]:
    """Random qrels and rankings over 300 docs: 40 queries, some relevant docs never retrieved, some
    retrieved docs unjudged, zero grades, a query with no results, one judged only with grade 0, one
    ranked but not judged. Scores strictly decreasing (no ties) unless `ties`."""
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    run: Rankings = {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 30))
        qrels[qid] = {d: (rng.choice([0, 1, 1, 2, 3]) if graded else rng.choice([0, 1, 1])) for d in judged}
        pool = judged[: rng.randint(0, len(judged))] + rng.sample(docs, rng.randint(0, 150))
        ranked = list(dict.fromkeys(rng.sample(pool, len(pool))))
        if ties:
            run[qid] = [(d, float(rng.randint(0, 8))) for d in ranked]
            run[qid] = trec_eval_order(run[qid])
        else:
            run[qid] = [(d, 1000.0 - i - rng.random() * 0.5) for i, d in enumerate(ranked)]
    qrels["q0"] = {d: 1 for d in rng.sample(docs, 3)}
    run["q0"] = []  # judged, no results
    qrels["q1"] = {d: 0 for d in rng.sample(docs, 5)}  # judged, nothing relevant
    run["q_unjudged"] = [("d001", 3.0), ("d002", 2.0)]
    return qrels, run


def _pytrec(qrels: dict[str, dict[str, int]], run: Rankings) -> dict[str, dict[str, float]]:
    """Per-query trec_eval figures: ndcg_cut_10, recall_100, and recip_rank on the top-10 cut (= MRR@10)."""
    as_dict = {q: {d: s for d, s in r} for q, r in run.items() if r}
    top10 = {q: {d: s for d, s in trec_eval_order(r)[:10]} for q, r in run.items() if r}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(as_dict)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        q: {"ndcg@10": full[q]["ndcg_cut_10"], "recall@100": full[q]["recall_100"], "mrr@10": rr[q]["recip_rank"]}
        for q in full
    }


@pytest.mark.parametrize("graded", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_pytrec_eval_per_query_and_mean(seed: int, graded: bool) -> None:
    qrels, run = _fixture(seed, graded)
    ours = evaluate(run, qrels)
    ref = _pytrec(qrels, run)
    assert ours.num_queries == len(qrels)
    assert set(ref) <= set(qrels) and "q0" not in ref  # pytrec_eval drops queries without results
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        for qid in qrels:
            expected = ref[qid][metric] if qid in ref else 0.0  # trec_eval -c: missing counts 0
            assert ours.per_query[metric][qid] == pytest.approx(expected, abs=1e-12), (metric, qid)
        mean_c = math.fsum(ref[q][metric] if q in ref else 0.0 for q in qrels) / len(qrels)
        assert ours.mean[metric] == pytest.approx(mean_c, abs=1e-12)
    # The fixture exercises what it claims to.
    assert ours.per_query["ndcg@10"]["q1"] == 0.0 and ours.per_query["recall@100"]["q0"] == 0.0
    assert 0.0 < ours.mean["ndcg@10"] < 1.0


@pytest.mark.parametrize("seed", [4, 5])
def test_matches_ranx(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    qrels, run = _fixture(seed, graded=True)
    # ranx needs at least one positive judgment and one result per query: compare on those queries.
    keep = [q for q in qrels if run.get(q) and any(g > 0 for g in qrels[q].values())]
    rq = ranx.Qrels({q: {d: g for d, g in qrels[q].items() if g > 0} for q in keep})
    rr = ranx.Run({q: dict(run[q]) for q in keep})
    ref = ranx.evaluate(rq, rr, ["ndcg@10", "recall@100", "mrr@10"], return_mean=False)
    ours = evaluate({q: run[q] for q in keep}, {q: qrels[q] for q in keep})
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        ranx_by_q = dict(zip(rq.keys(), ref[metric]))
        for qid in keep:
            assert ours.per_query[metric][qid] == pytest.approx(float(ranx_by_q[qid]), abs=1e-9), (metric, qid)


def test_ties_evaluated_in_given_order_and_trec_order_matches_pytrec_eval() -> None:
    qrels, run = _fixture(7, graded=True, ties=True)
    assert any(a[1] == b[1] for r in run.values() for a, b in zip(r, r[1:]))  # the fixture has ties
    ref = _pytrec(qrels, run)
    ours = evaluate(run, qrels)  # already in trec_eval order
    for qid in ref:
        assert ours.per_query["ndcg@10"][qid] == pytest.approx(ref[qid]["ndcg@10"], abs=1e-12)
    # Our figures follow the given order, not the scores: reversing tied blocks changes nDCG here.
    judged = {"a": 0, "b": 3}
    ranking = [("b", 1.0), ("a", 1.0)]
    assert ndcg_at_k([d for d, _ in ranking], judged, 10) == 1.0
    assert trec_eval_order(ranking) == [("b", 1.0), ("a", 1.0)]
    assert ndcg_at_k(["a", "b"], judged, 10) < 1.0


def test_hand_computed_values() -> None:
    judged = {"a": 3, "b": 2, "c": 0, "x": 1}
    ranked = ["c", "a", "z", "b"]
    dcg = 3 / math.log2(3) + 2 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, judged, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranked, judged, 1) == 0.0  # only "c" (grade 0) in the top 1
    assert recall_at_k(ranked, judged, 10) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, judged, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(ranked, judged, 10) == 0.5
    assert mrr_at_k(ranked, judged, 1) == 0.0
    assert ndcg_at_k(["a", "b", "x"], judged, 3) == 1.0  # perfect ranking


def test_duplicate_document_in_ranking_is_an_error() -> None:
    with pytest.raises(ValueError, match='document "a" more than once'):
        evaluate({"q": [("a", 2.0), ("b", 1.0), ("a", 0.5)]}, {"q": {"a": 1}})


def test_bad_metric_and_cutoff() -> None:
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    for bad in ("ndcg", "map@10", "ndcg@0", "recall@x"):
        with pytest.raises(ValueError, match="unknown metric"):
            parse_metric(bad)
    with pytest.raises(ValueError, match="positive integer"):
        ndcg_at_k(["a"], {"a": 1}, 0)


def test_no_judged_queries_gives_zero_means() -> None:
    result = evaluate({"q": [("a", 1.0)]}, {})
    assert result.num_queries == 0 and result.mean == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
