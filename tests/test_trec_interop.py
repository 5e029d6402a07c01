"""TREC interop: TREC qrels and run files in (`funnelrank eval --qrels/--run-file`, `funnelrank rerank-run`), TREC
runs out (`funnelrank eval --out-run`), scored by pytrec_eval (trec_eval) to the same figures; the shared trec-dl19
BM25 run converted to TREC format scores as its BEIR form does."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.cli.main import main
from funnelrank.eval.beir import load_qrels, load_run
from funnelrank.eval.metrics import trec_eval_order

pytrec_eval = pytest.importorskip("pytrec_eval")

WORDS = ("apple banana cherry delta echo falcon garnet harbor island jungle kernel lantern meadow nectar orbit "
         "pepper quartz river saddle timber umber velvet willow xenon yonder zephyr").split()


def _dataset(root: Path) -> tuple[Path, Path]:
    """A BEIR directory of 60 seeded random documents and 12 queries, and the same judgments as a TREC qrels
    file (the directory's own qrels/test.tsv judges one query fewer: --qrels must be what is scored)."""
    rng = random.Random(29)
    docs = [{"_id": f"d{i:02d}", "title": "", "text": " ".join(rng.choices(WORDS, k=8 + i))}  # lengths differ: no ties
            for i in range(60)]
    queries = [{"_id": f"q{i}", "text": " ".join(rng.sample(WORDS, 3))} for i in range(12)]
    judged = []
    for q in queries:
        terms = set(q["text"].split())
        matching = [d["_id"] for d in docs if len(terms & set(d["text"].split())) >= 2]
        for doc_id in matching[:6]:
            judged.append((q["_id"], doc_id, rng.choice([0, 1, 2, 3])))
    judged += [("q0", "d59", 1), ("q11", "d58", 1)]
    write_beir(root, docs, queries, {"test": [j for j in judged if j[0] != queries[-1]["_id"]]})
    trec_qrels = root.parent / "qrels.trec"
    trec_qrels.write_text("".join(f"{q} 0 {d} {g}\n" for q, d, g in judged), encoding="utf-8")
    return root, trec_qrels


def _eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["eval", *argv, "--json", "--quiet"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _trec_eval_means(qrels_file: Path, run_file: Path) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 as trec_eval computes them from the two files (pytrec_eval's own
    parsers), averaged over every judged query (a judged query without results counts 0, as trec_eval -c)."""
    with open(qrels_file) as fh:
        qrels = pytrec_eval.parse_qrel(fh)
    with open(run_file) as fh:
        run = pytrec_eval.parse_run(fh)
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(trec_eval_order(list(r.items()))[:10]) for q, r in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(qrels)
    return {
        "ndcg@10": math.fsum(full[q]["ndcg_cut_10"] for q in full) / n,
        "recall@100": math.fsum(full[q]["recall_100"] for q in full) / n,
        "mrr@10": math.fsum(rr[q]["recip_rank"] for q in rr) / n,
    }


def test_trec_qrels_read_like_beir_qrels(tmp_path: Path) -> None:
    trec = tmp_path / "q.trec"
    trec.write_text("q1 0 d1 2\nq1 0 d2 0\nq2\t0\td1\t1\n", encoding="utf-8")
    beir = tmp_path / "q.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td1\t1\n", encoding="utf-8")
    assert load_qrels(trec) == load_qrels(beir) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": 1}}
    trec.write_text("q1 0 d1 2\nq1 0 d1 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r'q\.trec:2: duplicate judgment for query "q1", document "d1"'):
        load_qrels(trec)
    trec.write_text("q1 0 d1 2 extra column\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q\.trec:1: expected 3 columns .* or 4 \(TREC\), got 6"):
        load_qrels(trec)


def test_eval_out_run_is_scored_the_same_by_trec_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, trec_qrels = _dataset(tmp_path / "rand")
    out = tmp_path / "runs" / "{stage}.trec"
    report = _eval_json(capsys, str(root), "--stages", "bm25", "--qrels", str(trec_qrels), "--out-run", str(out))
    assert report["num_queries"] == 12 and report["qrels_file"] == str(trec_qrels)  # the TREC file's 12, not 11
    written = tmp_path / "runs" / "bm25.trec"
    assert report["out_runs"] == {"bm25": str(written)}
    lines = written.read_text().splitlines()
    first = lines[0].split()
    assert len(first) == 6 and first[1] == "Q0" and first[3] == "1" and first[5] == "funnelrank-bm25"
    run = load_run(written)  # funnelrank reads back what it wrote: the same rankings, ranks 1..n per query
    assert all(trec_eval_order(r) == r for r in run.values())  # no ties: trec_eval sees funnelrank's order
    ours = report["stages"]["bm25"]
    ref = _trec_eval_means(trec_qrels, written)
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert ours[metric] == pytest.approx(ref[metric], abs=1e-6), metric
    assert 0.0 < ours["ndcg@10"] < 1.0
    # The written run is a run like any other: `--run-file` scores it as given, to the same figures.
    again = _eval_json(capsys, str(root), "--stages", "run", "--run-file", str(written), "--qrels", str(trec_qrels))
    assert again["stages"]["run"]["ndcg@10"] == pytest.approx(ours["ndcg@10"], abs=1e-9)


def test_out_run_stage_choice_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, trec_qrels = _dataset(tmp_path / "rand")
    run_file = tmp_path / "given.trec"
    run_file.write_text("q0 Q0 d03 1 9.5 anserini\nq0 Q0 d07 2 9.5 anserini\nq1 Q0 d01 1 3.0 anserini\n")
    out = tmp_path / "one.trec"
    report = _eval_json(capsys, str(root), "--stages", "run,bm25", "--run-file", str(run_file), "--out-run", str(out),
                        "--out-run-stage", "run")
    assert report["out_runs"] == {"run": str(out)}
    assert out.read_text().splitlines() == ["q0 Q0 d03 1 9.5 funnelrank-run", "q0 Q0 d07 2 9.5 funnelrank-run",
                                            "q1 Q0 d01 1 3.0 funnelrank-run"]
    # Tied scores: written as given, with a note that trec_eval orders ties by document id (d07 before d03).
    assert main(["eval", str(root), "--stages", "run", "--run-file", str(run_file), "--out-run", str(out)]) == 0
    assert "1 of 11 queries of stage run have tied or rising scores" in capsys.readouterr().err
    for argv, message in (
        (["--stages", "bm25", "--out-run", str(out), "--out-run-stage", "run"],
         '--out-run-stage "run" is not among the evaluated stages (bm25)'),
        (["--stages", "bm25", "--out-run-stage", "bm25"], "--out-run-stage needs --out-run FILE"),
        (["--stages", "bm25", "--out-run", str(tmp_path / "{stage}"), "--out-run-stage", "bm25"],
         "give one or the other"),
        (["--stages", "bm25", "--qrels", str(tmp_path / "none.trec")], "none.trec: qrels file not found"),
    ):
        assert main(["eval", str(root), *argv]) == 2
        assert message in capsys.readouterr().err


def test_rerank_run_reads_trec_runs_and_qrels(tmp_path: Path, tiny_cross_encoder_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An Anserini-style TREC run and TREC qrels give `rerank-run` the same input as their BEIR forms."""
    root, trec_qrels = _dataset(tmp_path / "rand")
    beir_run = tmp_path / "run.tsv"
    assert main(["eval", str(root), "--stages", "bm25", "--quiet", "--qrels", str(trec_qrels),
                 "--out-run", str(tmp_path / "bm25.trec")]) == 0
    run = load_run(tmp_path / "bm25.trec")
    beir_run.write_text("query-id\tcorpus-id\trank\tscore\n" + "".join(
        f"{q}\t{d}\t{i}\t{s!r}\n" for q, r in run.items() for i, (d, s) in enumerate(r, 1)))
    capsys.readouterr()
    outs = []
    for name, source, judged in (("beir", beir_run, ["--split", "test"]),
                                 ("trec", tmp_path / "bm25.trec", ["--qrels", str(trec_qrels)])):
        out = tmp_path / f"reranked-{name}.trec"
        assert main(["rerank-run", str(source), "--data", str(root), "--out", str(out), "--model",
                     str(tiny_cross_encoder_dir), "--depth", "5", "--quiet", *judged]) == 0
        outs.append(load_run(out))
    beir_out, trec_out = outs
    assert set(trec_out) - set(beir_out) == {"q11"}  # the TREC qrels judge one more query than the split
    assert {q: r for q, r in trec_out.items() if q != "q11"} == beir_out
    assert all(len(r) == 5 for r in trec_out.values())


@pytest.mark.data
def test_trec_dl19_bm25_run_in_trec_format_scores_as_its_beir_form(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared trec-dl19 BM25 run (BEIR run format), converted to an Anserini-style TREC run and its qrels to
    TREC qrels, gives the `run` stage the same nDCG@10 as the BEIR folder (0.5058, Anserini's published figure);
    the run written back with --out-run gives pytrec_eval the same figure."""
    data = shared_data / "trec-dl19"
    if not (data / "run.bm25.tsv").is_file():
        pytest.skip(f"{data / 'run.bm25.tsv'} not found (shared trec-dl19 data absent)")
    run = load_run(data / "run.bm25.tsv")
    trec_run = tmp_path / "dl19.bm25.trec"
    trec_run.write_text("".join(f"{q} Q0 {d} {i} {s!r} Anserini\n" for q, r in run.items()
                                for i, (d, s) in enumerate(r, 1)))
    qrels = load_qrels(data / "qrels" / "test.tsv")
    trec_qrels = tmp_path / "dl19.qrels"
    trec_qrels.write_text("".join(f"{q} 0 {d} {g}\n" for q, judged in qrels.items() for d, g in judged.items()))

    beir = _eval_json(capsys, str(data), "--stages", "run")
    out = tmp_path / "written.trec"
    trec = _eval_json(capsys, str(data), "--stages", "run", "--run-file", str(trec_run), "--qrels", str(trec_qrels),
                      "--out-run", str(out))
    assert trec["num_queries"] == beir["num_queries"] == 43
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert trec["stages"]["run"][metric] == beir["stages"]["run"][metric], metric
    assert beir["stages"]["run"]["ndcg@10"] == pytest.approx(0.5058, abs=5e-5)
    assert _trec_eval_means(trec_qrels, out)["ndcg@10"] == pytest.approx(0.5058, abs=5e-5)
