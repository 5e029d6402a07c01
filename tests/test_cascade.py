"""The two-pass cascade (funnelrank.rerank.cascade): the exact model rescores only the first pass's top keep,
rescored candidates carry exact scores, pruned ones never rank above them nor clear a floor, keep >= N is the
exact model itself, bad specs fail clearly; and the guard measures a cascade like any other variant."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from beir_fixtures import write_beir
from funnelrank.eval.beir import load_beir
from funnelrank.eval.optimize import check_variants, guard, variant_options
from funnelrank.models import default_reranker_path
from funnelrank.rerank import CrossEncoder, Reranker, RerankScheduler
from funnelrank.rerank.cascade import (
    PRUNED_LOGIT,
    CascadeScorer,
    CascadeSpec,
    cascade_logits,
    merge_logits,
    rescore_indices,
)

PASSAGES = [
    "Children's ibuprofen: give 5-10 mg per kg every 6 to 8 hours.",
    "Adults may take 200-400 mg of ibuprofen every 4 to 6 hours for pain.",
    "Adult fleas live two to three months; without a host a week or two.",
    "Cats sleep up to sixteen hours a day, mostly in short naps.",
    "Ibuprofen is a non-steroidal anti-inflammatory drug.",
    "Paracetamol dosing for children also depends on body weight.",
]
QUERY = "ibuprofen dose for a child"


# ------------------------------------------------------------------ the spec
@pytest.mark.parametrize("text, spec", [
    ("int8-128@30", CascadeSpec("int8", 30, 128)),
    ("cascade-int8-128@30", CascadeSpec("int8", 30, 128)),
    ("states-prefix@20", CascadeSpec("states-prefix", 20, None)),
    ("states-prefix-64@5", CascadeSpec("states-prefix", 5, 64)),
    ("fp32-64@25", CascadeSpec("fp32", 25, 64)),
])
def test_spec_parses_and_names_round_trip(text: str, spec: CascadeSpec) -> None:
    assert CascadeSpec.parse(text) == spec
    assert CascadeSpec.parse(spec.name) == spec


@pytest.mark.parametrize("text, match", [
    ("bf16-128@30", "first pass must be one of"),
    ("int8-128@0", "keep must be an int >= 1"),
    ("int8@", "is not FIRST"),
    ("int8-128", "is not FIRST"),
    ("int8-4@3", "max_length must be an int >= 8"),
    ("", "is not FIRST"),
])
def test_bad_specs_raise_a_clear_value_error(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CascadeSpec.parse(text)


def test_first_pass_options_are_the_variants_load_options() -> None:
    assert CascadeSpec("int8", 3).first_pass_options() == {"precision": "int8"}
    assert CascadeSpec("states-prefix", 3).first_pass_options() == {"reuse_passage_states": "prefix"}
    assert CascadeSpec("fp32", 3, 64).first_pass_options() == {}


# ------------------------------------------------------------------ selection and merging
def test_rescore_indices_takes_the_top_keep_ties_in_input_order_nan_last() -> None:
    x = np.array([1.0, 3.0, np.nan, 3.0, 2.0, -1.0])
    assert rescore_indices(x, 2).tolist() == [1, 3]
    assert rescore_indices(x, 3).tolist() == [1, 3, 4]
    assert rescore_indices(x, 5).tolist() == [0, 1, 3, 4, 5]  # the NaN is the one left out
    assert rescore_indices(x, 6).tolist() == list(range(6))
    assert rescore_indices(x, 100).tolist() == list(range(6))


@pytest.mark.parametrize("keep", [0, -3, True, 2.5, None])
def test_bad_keep_raises_value_error(keep: object) -> None:
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        rescore_indices(np.zeros(4), keep)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        cascade_logits("q", ["a", "b"], lambda q, ps: np.zeros(len(ps)), lambda q, ps: np.zeros(len(ps)),
                       keep)  # type: ignore[arg-type]


def test_pruned_logits_sit_below_every_rescored_one_even_below_the_sentinel() -> None:
    out = merge_logits(5, np.array([1, 3]), np.array([2.0, 0.5]))
    assert out.tolist() == [PRUNED_LOGIT, 2.0, PRUNED_LOGIT, 0.5, PRUNED_LOGIT]
    low = merge_logits(4, np.array([0, 2]), np.array([-40.0, -35.0]))
    assert low[[1, 3]].tolist() == [-41.0, -41.0] and low[0] == -40.0 and low[2] == -35.0


def test_merge_rejects_mismatched_or_bad_positions() -> None:
    with pytest.raises(ValueError, match="2 rescored positions but 1 exact logits"):
        merge_logits(4, np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="distinct and in"):
        merge_logits(4, np.array([0, 0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="distinct and in"):
        merge_logits(4, np.array([0, 4]), np.array([1.0, 2.0]))


def test_cascade_rescores_only_the_first_pass_top_and_keeps_pruned_below() -> None:
    seen: dict[str, list[str]] = {}
    passages = [f"p{i}" for i in range(8)]
    first_scores = {f"p{i}": float(s) for i, s in enumerate([5, 1, 7, 3, 6, 0, 2, 4])}
    exact_scores = {f"p{i}": float(s) for i, s in enumerate([-50, 9, -60, 8, -55, 7, 6, 5])}

    def first(q: str, ps: list[str]) -> np.ndarray:
        seen["first"] = ps
        return np.array([first_scores[p] for p in ps])

    def exact(q: str, ps: list[str]) -> np.ndarray:
        seen["exact"] = ps
        return np.array([exact_scores[p] for p in ps])

    logits, idx = cascade_logits("q", passages, first, exact, keep=3)
    assert seen["first"] == passages
    assert seen["exact"] == ["p0", "p2", "p4"]  # the first pass's top 3, in input order
    assert idx.tolist() == [0, 2, 4]
    assert logits[idx].tolist() == [-50.0, -60.0, -55.0]  # the exact model's own logits
    pruned = np.setdiff1d(np.arange(8), idx)
    assert logits[pruned].max() < logits[idx].min()  # even when the exact logits are very low
    order = np.argsort(-logits, kind="stable")
    assert set(order[:3].tolist()) == {0, 2, 4} and order[3:].tolist() == pruned.tolist()  # rest: input order


def test_keep_at_least_n_is_the_exact_model_and_skips_the_first_pass() -> None:
    def first(q: str, ps: list[str]) -> np.ndarray:
        raise AssertionError("the first pass must not run when every candidate is rescored")

    exact = lambda q, ps: np.array([float(len(p)) for p in ps])  # noqa: E731
    logits, idx = cascade_logits("q", ["aa", "b", "cccc"], first, exact, keep=3)
    assert logits.tolist() == [2.0, 1.0, 4.0] and idx.tolist() == [0, 1, 2]


def test_a_first_pass_of_the_wrong_length_is_an_error() -> None:
    with pytest.raises(ValueError, match="first pass returned 2 logits for 3 passages"):
        cascade_logits("q", ["a", "b", "c"], lambda q, ps: np.zeros(2), lambda q, ps: np.zeros(len(ps)), keep=1)


# ------------------------------------------------------------------ on a real (tiny) ONNX cross-encoder
def test_reranker_cascade_scores_the_rescored_exactly_and_never_keeps_a_pruned_one(
    tiny_cross_encoder_dir: Path,
) -> None:
    with Reranker(tiny_cross_encoder_dir, floor=None, top_k=None, workers=1, intra_op_threads=1,
                  cache_entries=0) as plain:
        exact = plain.rank(QUERY, PASSAGES)
    exact_score = {item.index: item.score for item in exact}
    with Reranker(tiny_cross_encoder_dir, floor=None, top_k=None, workers=1, intra_op_threads=1, cache_entries=0,
                  cascade="fp32-16@3") as casc:
        assert casc.first_pass is not None and casc.cascade == CascadeSpec("fp32", 3, 16)
        first = casc.first_pass.score(QUERY, PASSAGES).logits
        got = casc.rank(QUERY, PASSAGES)
        floored = casc.rank(QUERY, PASSAGES, floor=1e-9)
        via_async = asyncio.run(casc.arerank(QUERY, PASSAGES, floor=None, top_k=None))
    rescored = rescore_indices(first, 3).tolist()
    assert [item.index for item in got][:3] == sorted(rescored, key=lambda i: -exact_score[i])
    for item in got.items[:3]:
        assert item.score == pytest.approx(exact_score[item.index], abs=1e-6)
    assert all(item.score < 1e-12 for item in got.items[3:])
    assert [item.index for item in got.items[3:]] == [i for i in range(len(PASSAGES)) if i not in rescored]
    assert {item.index for item in floored} <= set(rescored)
    assert [item.index for item in via_async] == [item.index for item in got]


def test_reranker_cascade_with_keep_at_least_n_equals_the_plain_reranker(tiny_cross_encoder_dir: Path) -> None:
    with Reranker(tiny_cross_encoder_dir, floor=None, top_k=None, workers=1, intra_op_threads=1) as plain:
        exact = plain.rank(QUERY, PASSAGES)
    with Reranker(tiny_cross_encoder_dir, floor=None, top_k=None, workers=1, intra_op_threads=1,
                  cascade=CascadeSpec("fp32", len(PASSAGES), 16)) as casc:
        got = casc.rank(QUERY, PASSAGES)
        assert casc.first_pass is not None and casc.first_pass.stats().pairs == 0  # never needed
    assert [(i.index, i.score) for i in got] == [(i.index, i.score) for i in exact]


def test_cascade_scorer_on_schedulers_matches_cascade_logits(tiny_cross_encoder_dir: Path) -> None:
    ce = CrossEncoder.from_pretrained(tiny_cross_encoder_dir, intra_op_threads=1)
    cheap = CrossEncoder.from_pretrained(tiny_cross_encoder_dir, intra_op_threads=1, max_length=16)
    with RerankScheduler(cheap) as first, RerankScheduler(ce) as exact:
        scores = CascadeScorer(first, exact, 2).score(QUERY, PASSAGES)
    logits, _ = cascade_logits(QUERY, PASSAGES, lambda q, ps: cheap.predict(q, ps)[1],
                               lambda q, ps: ce.predict(q, ps)[1], 2)
    np.testing.assert_allclose(scores.logits, logits, atol=1e-5)


def test_reranker_refuses_a_cascade_without_a_model_to_derive_it_from(tiny_cross_encoder_dir: Path) -> None:
    ce = CrossEncoder.from_pretrained(tiny_cross_encoder_dir, intra_op_threads=1)
    with RerankScheduler(ce) as sched:
        with pytest.raises(ValueError, match="not an existing scorer"):
            Reranker(scorer=sched, cascade="fp32-16@2")
    with pytest.raises(ValueError, match="first pass must be one of"):
        Reranker(tiny_cross_encoder_dir, cascade="fp16@2")


# ------------------------------------------------------------------ the guard
DOCS: list[dict[str, object]] = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(PASSAGES)]
QUERIES: list[dict[str, object]] = [{"_id": "q1", "text": QUERY}, {"_id": "q2", "text": "how long does a flea live"},
           {"_id": "q3", "text": "how much do cats sleep"}]
QRELS = {"validation": [("q1", "d0", 1), ("q2", "d2", 1), ("q3", "d3", 1)]}


def test_guard_measures_cascades_and_keep_n_is_identical_to_fp32(tmp_path: Path) -> None:
    ds = load_beir(write_beir(tmp_path, DOCS, QUERIES, QRELS), "validation")
    report = guard(default_reranker_path(), ds, variants=["cascade-fp32@6", "cascade-int8-64@2"], candidates=6,
                   threads=1)
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["fp32", "cascade-fp32@6", "cascade-int8-64@2"]
    same = rows["cascade-fp32@6"]
    assert same["max_abs_logit_diff"] == 0.0 and same["vs_fp32"]["difference"] == 0.0 and same["kept"]
    assert same["fp32_top10_recall"] == 1.0 and same["options"] == {"cascade": "fp32@6"}
    pruned = rows["cascade-int8-64@2"]
    assert pruned["options"] == {"cascade": "int8-64@2"} and 0.0 <= pruned["fp32_top10_recall"] <= 1.0
    assert pruned["max_abs_logit_diff"] < 1e-3  # the rescored candidates carry the fp32 model's logits
    assert pruned["kendall_tau"] < 1.0  # 4 of 6 candidates were pruned to one tied score


def test_guard_names_a_bad_cascade() -> None:
    with pytest.raises(ValueError, match="cascade-bf16@3"):
        check_variants(["int8", "cascade-bf16@3"])
    with pytest.raises(ValueError, match="unknown variants"):
        variant_options("cascade-int8")
    assert variant_options("cascade-states-prefix-128@20") == {"cascade": "states-prefix-128@20"}


def test_cli_measures_a_cascade_on_the_listed_query_ids(tmp_path: Path, tiny_cross_encoder_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from funnelrank.cli.main import main

    data = write_beir(tmp_path / "data", DOCS, QUERIES, QRELS)
    ids = tmp_path / "ids.txt"
    ids.write_text("# held out\nq1\nq3\n")
    code = main(["optimize", str(tiny_cross_encoder_dir), "--validate", str(data), "--split", "validation",
                 "--candidates", "6", "--query-ids", str(ids), "--variants", "cascade-fp32-16@2", "--threads", "1",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in report["variants"]] == ["fp32", "cascade-fp32-16@2"]
    assert all(r["queries"] == 2 for r in report["variants"])
    assert main(["optimize", str(tiny_cross_encoder_dir), "--validate", str(data), "--split", "validation",
                 "--variants", "cascade-fp32-16@0"]) == 2  # a bad cascade is a usage error, before any model runs
