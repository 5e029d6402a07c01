"""Retrievers behind one protocol: candidates carry their document and stage-1 hits; a hybrid over one
collection (fusing raw hits, one allow-list) equals the generic fusion of its inputs' candidates."""

from __future__ import annotations

import pytest
from funnelrank.candidates import Candidate, CandidateList, Stage1Hit
from funnelrank.retrieve.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Retriever,
    RunRetriever,
    make_retriever,
)
from funnelrank.store.collection import Collection

DOCS = {
    "json": ("The json module encodes and decodes JSON documents.", {"kind": "module"}),
    "re": ("The re module provides regular expression matching.", {"kind": "module"}),
    "csv": ("The csv module reads and writes CSV files.", {"kind": "module"}),
    "banana": ("Bananas are yellow fruit, rich in potassium.", {"kind": "food"}),
    "pickle": ("The pickle module serializes Python objects to bytes.", {"kind": "module"}),
}


@pytest.fixture(scope="module")
def collection() -> Collection:
    c = Collection(dense=True)
    c.add(list(DOCS), [t for t, _ in DOCS.values()], [m for _, m in DOCS.values()])
    return c


def test_every_retriever_speaks_the_protocol(collection: Collection) -> None:
    run = RunRetriever({"q1": [("re", 3.0), ("gone", 2.0), ("json", 1.0)]}, lambda d: DOCS[d][0] if d in DOCS else None)
    for r in (BM25Retriever(collection), DenseRetriever(collection), make_retriever(collection, "hybrid"), run):
        assert isinstance(r, Retriever)
    got = run.retrieve("any text", 5, query_id="q1")
    assert [(c.id, c.rank) for c in got.candidates] == [("re", 1), ("json", 2)] and run.missing == 1
    with pytest.raises(ValueError, match="query_id"):
        run.retrieve("any text", 5)
    with pytest.raises(ValueError, match="filter"):
        run.retrieve("any text", 5, query_id="q1", filter={"kind": "module"})


def test_candidates_carry_document_and_hits(collection: Collection) -> None:
    got = BM25Retriever(collection).retrieve("module for JSON documents", 3, filter={"kind": "module"})
    first = got.candidates[0]
    assert isinstance(first, Candidate) and first.id == "json" and first.text == DOCS["json"][0]
    assert first.metadata == {"kind": "module"} and first.stage1 == {"bm25": Stage1Hit(1, first.score)}
    assert {"filter", "bm25"} <= set(got.timings_ms)
    assert all(c.metadata["kind"] == "module" for c in got.candidates)


def test_shared_hybrid_equals_the_generic_fusion_of_its_inputs(collection: Collection) -> None:
    for method in ("rrf", "convex"):
        shared = HybridRetriever(BM25Retriever(collection), DenseRetriever(collection), method=method, weights=(1, 2))
        generic = HybridRetriever(BM25Retriever(collection), DenseRetriever(collection), method=method, weights=(1, 2))
        generic._shared = False  # the path for inputs that are not over one collection
        for query in ("python module that serializes objects", "yellow fruit"):
            a, b = shared.retrieve(query, 4).candidates, generic.retrieve(query, 4).candidates
            assert [(c.id, c.rank, c.text, dict(c.stage1)) for c in a] == [(c.id, c.rank, c.text, dict(c.stage1)) for c in b]
            assert pytest.approx([c.score for c in a]) == [c.score for c in b]
            assert all(set(c.stage1) == {"bm25", "dense", "fused"} for c in a)
        batch = shared.retrieve_batch(["yellow fruit", "regular expressions"], 4)
        assert [c.id for c in batch[0].candidates] == [c.id for c in shared.retrieve("yellow fruit", 4).candidates]


def test_hybrid_of_a_collection_and_a_run(collection: Collection) -> None:
    run = RunRetriever({"q": [("banana", 9.0), ("csv", 1.0)]}, lambda d: DOCS[d][0])
    hybrid = HybridRetriever(BM25Retriever(collection), run)
    got = hybrid.retrieve("csv files", 5, query_id="q").candidates
    assert {c.id for c in got} >= {"banana", "csv"} and got[0].id == "csv"  # in both lists: fused first
    assert got[0].stage1["bm25"] is not None and got[0].stage1["run"] == Stage1Hit(2, 1.0)
    with pytest.raises(ValueError, match="two different retrievers"):
        HybridRetriever(BM25Retriever(collection), BM25Retriever(collection))
    with pytest.raises(ValueError, match="weights"):
        HybridRetriever(BM25Retriever(collection), run, weights=(0, 0))


def test_candidate_list_makes_each_candidate_once_and_only_when_read() -> None:
    made: list[int] = []

    def make(i: int) -> Candidate:
        made.append(i)
        return Candidate(f"d{i}", f"text {i}", rank=i + 1)

    cands = CandidateList(100, make)
    assert len(cands) == 100 and made == []
    assert [c.id for c in cands[:3]] == ["d0", "d1", "d2"] and made == [0, 1, 2]
    assert cands[-1].rank == 100 and cands[2] is cands[:3][2] and made == [0, 1, 2, 99]
    with pytest.raises(IndexError, match="out of range"):
        cands[100]
    assert list(cands) == [make(i) for i in range(100)] == cands  # iteration fills in the rest, once
    assert sorted(made[:100]) == list(range(100)) and cands != [make(0)]


def test_pipeline_without_rerank_makes_only_what_it_returns(collection: Collection,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from funnelrank import candidates as cand_module
    from funnelrank.pipeline import Pipeline

    calls = {"n": 0}
    real = cand_module.CandidateList._at

    def counting(self: CandidateList, i: int) -> Candidate:
        if self._made[i] is None:
            calls["n"] += 1
        return real(self, i)

    monkeypatch.setattr(cand_module.CandidateList, "_at", counting)
    resp = Pipeline(collection, "bm25", reranker=None, candidates=5, top_k=2).search("module files")
    assert len(resp.results) == 2 and resp.candidates >= 3 and calls["n"] == 2


def test_candidates_of_documents_deleted_after_the_search_are_dropped_and_ranks_renumbered() -> None:
    c = Collection(dense=False)
    c.add(["a", "b", "c"], ["cats sleep on mats", "cats chase mice", "cats and dogs"])
    retriever = BM25Retriever(c)
    ids, scores = retriever._hits("cats", 3, None, {})
    c.delete([ids[0]])
    got = retriever._candidates(ids, scores)
    assert [x.id for x in got] == list(ids[1:]) and [x.rank for x in got] == [1, 2]
    assert [x.stage1["bm25"].rank for x in got] == [1, 2] and got[0].score == pytest.approx(float(scores[1]))
