"""Retrievers behind one protocol: candidates carry their document and stage-1 hits; a hybrid over one
collection (fusing raw hits, one allow-list) equals the generic fusion of its inputs' candidates."""

from __future__ import annotations

import pytest

from funnelrank.candidates import Candidate, Stage1Hit
from funnelrank.collection import Collection
from funnelrank.retrieval import (BM25Retriever, DenseRetriever, HybridRetriever, Retriever, RunRetriever,
                                  make_retriever)

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
