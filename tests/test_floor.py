"""Reranker: top-k above an absolute floor, no-evidence results, candidate forms, traces."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from funnelrank.candidates import Candidate
from funnelrank.rerank import Reranker, RerankScheduler
from funnelrank.rerank.policy import DEFAULT_FLOOR
from funnelrank.rerank.traces import TraceWriter, read_traces
from rerank_fakes import ScoreInTextModel


@pytest.fixture()
def reranker() -> Reranker:
    sched = RerankScheduler(ScoreInTextModel(), max_wait_ms=0)
    yield Reranker(scorer=sched)
    sched.close()


DOCS = ["junk [s=0.1]", "good [s=0.9]", "okay [s=0.5]", "meh [s=0.39]", "great [s=0.95]", "fine [s=0.41]"]


def test_keeps_top_k_that_clear_the_floor(reranker: Reranker) -> None:
    res = reranker.rerank("q", DOCS, top_k=3, floor=0.4)
    assert [i.id for i in res.items] == ["4", "1", "2"]
    assert not res.no_evidence and res.n_candidates == 6
    assert res.items[0].score == pytest.approx(0.95, abs=1e-6)
    assert res.items[0].stage1_rank == 5 and res.items[0].text == "great [s=0.95]" and res.items[0].index == 4
    res = reranker.rerank("q", DOCS, top_k=10, floor=0.4)
    assert [i.id for i in res.items] == ["4", "1", "2", "5"]  # 0.39 and 0.1 are dropped
    assert all(i.score >= 0.4 for i in res.items)
    res = reranker.rerank("q", DOCS, top_k=None, floor=None)
    assert len(res) == 6 and [round(i.score, 2) for i in res] == [0.95, 0.9, 0.5, 0.41, 0.39, 0.1]


def test_nothing_clears_the_floor_means_no_evidence(reranker: Reranker) -> None:
    res = reranker.rerank("q", ["a [s=0.3]", "b [s=0.2]", "c"], floor=0.4)
    assert res.items == [] and res.no_evidence
    assert res.max_score == pytest.approx(0.3, abs=1e-6)  # the best junk is reported, not returned
    empty = reranker.rerank("q", [])
    assert empty.no_evidence and empty.max_score is None


def test_defaults_are_top10_and_the_default_floor(reranker: Reranker) -> None:
    docs = [f"d{i} [s=0.{50 + i}]" for i in range(15)] + ["x [s=0.399]"]
    res = reranker.rerank("q", docs)
    assert len(res) == 10 and res.floor == DEFAULT_FLOOR and res.top_k == 10
    assert [i.id for i in res][:2] == ["14", "13"]


@dataclass
class Hit:
    id: str
    text: str
    rank: int
    score: float


def test_candidate_forms_and_stage1_fields(reranker: Reranker) -> None:
    cands = [
        Hit("doc-a", "alpha [s=0.6]", 1, 12.5),
        {"id": "doc-b", "text": "beta [s=0.8]", "rank": 2, "score": 11.0},
        Candidate("doc-c", "gamma [s=0.7]", 3, 10.1),
    ]
    res = reranker.rerank("q", cands, floor=0.0)
    assert [(i.id, i.stage1_rank, i.stage1_score) for i in res] == [
        ("doc-b", 2, 11.0), ("doc-c", 3, 10.1), ("doc-a", 1, 12.5)
    ]
    assert res.items[0].logit == pytest.approx(1.3862944, abs=1e-5)  # logit(0.8)


def test_bad_arguments_are_clear(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="duplicate candidate id"):
        reranker.rerank("q", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(ValueError, match="floor"):
        reranker.rerank("q", DOCS, floor=float("nan"))
    with pytest.raises(ValueError, match="floor"):
        reranker.rerank("q", DOCS, floor=1.5)
    with pytest.raises(ValueError, match="top_k"):
        reranker.rerank("q", DOCS, top_k=0)
    with pytest.raises(TypeError, match="id/text"):
        reranker.rerank("q", [{"text": "no id"}])
    with pytest.raises(TypeError, match="single string"):
        reranker.rerank("q", "just a string")


def test_arerank(reranker: Reranker) -> None:
    async def main() -> list:
        return await asyncio.gather(*(reranker.arerank("q", DOCS, top_k=2) for _ in range(4)))

    for res in asyncio.run(main()):
        assert [i.id for i in res] == ["4", "1"]


def test_traces_one_line_per_candidate_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    sched = RerankScheduler(ScoreInTextModel(), max_wait_ms=1)
    with TraceWriter(path) as tw, Reranker(scorer=sched, traces=tw) as rr:
        def client(t: int) -> None:
            for k in range(10):
                rr.rerank(f"query {t}", DOCS, top_k=2, floor=0.4, query_id=f"q{t}-{k}")

        threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    sched.close()
    records = read_traces(path)
    assert len(records) == 6 * 10 * len(DOCS)
    by_query: dict[str, list[dict]] = {}
    for r in records:
        by_query.setdefault(r["query_id"], []).append(r)
    assert len(by_query) == 60
    for recs in by_query.values():
        assert sorted(r["id"] for r in recs) == sorted(str(i) for i in range(len(DOCS)))
        assert sorted(r["id"] for r in recs if r["kept"]) == ["1", "4"]
        assert sorted(r["rerank_rank"] for r in recs) == list(range(1, len(DOCS) + 1))
        assert all(r["floor"] == 0.4 and r["top_k"] == 2 for r in recs)
        assert {r["stage1_rank"] for r in recs} == set(range(1, len(DOCS) + 1))


def test_trace_reader_skips_torn_last_line_and_rejects_corrupt_ones(tmp_path: Path) -> None:
    good = json.dumps({"query_id": "q", "id": "d", "score": 0.5})
    torn = tmp_path / "torn.jsonl"
    torn.write_text(good + "\n" + good + "\n" + '{"query_id": "q", "id"')
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert len(read_traces(torn)) == 2
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(good + "\nnot json\n" + good + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_traces(corrupt)
    with pytest.raises(FileNotFoundError):
        read_traces(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError):
        TraceWriter(tmp_path / "no-dir" / "t.jsonl")
