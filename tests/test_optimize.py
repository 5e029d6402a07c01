"""`funnelrank optimize`: every variant is measured against fp32 on the same queries, the keep rule is the
fixed +-0.01 interval, a variant the model cannot take is reported as skipped, and the CLI writes the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.cli.main import main
from funnelrank.eval.beir import load_beir
from funnelrank.eval.optimize import GUARD_MARGIN, guard
from funnelrank.models import default_reranker_path

DOCS = [
    {"_id": "kid", "title": "", "text": "Children's ibuprofen: give 5-10 mg per kg every 6 to 8 hours."},
    {"_id": "adult", "title": "", "text": "Adults may take 200-400 mg of ibuprofen every 4 to 6 hours for pain."},
    {"_id": "flea", "title": "", "text": "Adult fleas live two to three months; without a host a week or two."},
    {"_id": "cat", "title": "", "text": "Cats sleep up to sixteen hours a day, mostly in short naps."},
]
QUERIES = [{"_id": "q1", "text": "ibuprofen dose for a child"}, {"_id": "q2", "text": "how long does a flea live"},
           {"_id": "q3", "text": "how much do cats sleep"}]
QRELS = {"validation": [("q1", "kid", 1), ("q2", "flea", 1), ("q3", "cat", 1)]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("guard"), DOCS, QUERIES, QRELS)


def test_guard_measures_every_variant_against_fp32(dataset: Path) -> None:
    report = guard(default_reranker_path(), load_beir(dataset, "validation"), candidates=4, threads=1)
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["fp32", "int8", "states", "states-prefix"]
    assert rows["fp32"]["ndcg@10"] == 1.0  # the cross-encoder puts each answer first
    for name in ("int8", "states", "states-prefix"):
        c = rows[name]["vs_fp32"]
        assert c["queries"] == 3 and c["b"] == "fp32"
        assert rows[name]["kept"] == (-GUARD_MARGIN <= c["ci_low"] and c["ci_high"] <= GUARD_MARGIN)
    assert rows["states"]["max_abs_logit_diff"] < 5e-3 and rows["states"]["kept"]
    assert rows["int8"]["max_abs_logit_diff"] > 1e-3  # int8 really changed the computation
    store = rows["states"]["state_store"]
    assert store["misses"] == 2 and store["hits"] >= 3  # only the two warm-up passages were not precomputed
    assert report["fastest_kept"] in rows and report["speedup_of_fastest_kept"] > 0


def test_a_model_that_cannot_reuse_states_is_reported_skipped(dataset: Path, tiny_cross_encoder_dir: Path) -> None:
    report = guard(tiny_cross_encoder_dir, load_beir(dataset, "validation"), variants=["states"], candidates=4,
                   threads=1)
    rows = {r["variant"]: r for r in report["variants"]}
    assert "segment cross-encoder" in rows["states"]["skipped"] and not rows["states"]["kept"]
    assert report["fastest_kept"] == "fp32"
    with pytest.raises(ValueError, match="unknown variants"):
        guard(tiny_cross_encoder_dir, load_beir(dataset, "validation"), variants=["bf17"])


def test_cli_writes_the_report(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "guard.json"
    code = main(["optimize", str(default_reranker_path()), "--validate", str(dataset), "--split", "validation",
                 "--candidates", "4", "--variants", "fp32,states", "--threads", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "states" in printed and "KEPT" in printed and "fastest kept" in printed
    saved = json.loads(out.read_text())
    assert [r["variant"] for r in saved["variants"]] == ["fp32", "states"]
    assert main(["optimize", str(default_reranker_path()), "--validate", str(dataset), "--split", "test"]) == 2
