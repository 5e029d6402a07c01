"""funnelrank in Haystack: the ranker and the retriever as components of Haystack's own Pipeline (run and
run_async), serialisation, with the default cross-encoder (offline)."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before haystack is imported: no network

import pytest
from funnelrank import Pipeline, Reranker
from funnelrank.integrations.haystack import FunnelRankRanker, FunnelRankRetriever
from funnelrank.rerank.policy import DEFAULT_FLOOR
from haystack import Document
from haystack import Pipeline as HaystackPipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from integration_cases import OFF_TOPIC, QUERY, TEXTS

MODULE = "funnelrank.integrations.haystack"


@pytest.fixture(scope="module")
def reranker() -> Iterator[Reranker]:
    with Reranker() as r:  # the default cross-encoder, loaded once for the module
        yield r


def documents() -> list[Document]:
    return [Document(id=f"d{i}", content=t, meta={"i": i}) for i, t in enumerate(TEXTS)]


def bm25_then_ranker(ranker: FunnelRankRanker) -> HaystackPipeline:
    store = InMemoryDocumentStore()
    store.write_documents(documents())
    pipe = HaystackPipeline()
    pipe.add_component("bm25", InMemoryBM25Retriever(store, top_k=10))
    pipe.add_component("ranker", ranker)
    pipe.connect("bm25.documents", "ranker.documents")
    return pipe


def ids(out: dict[str, Any], name: str) -> list[str]:
    return [d.id for d in out[name]["documents"]]


def test_ranker_in_a_haystack_pipeline_puts_the_answer_first(reranker: Reranker) -> None:
    pipe = bm25_then_ranker(FunnelRankRanker(top_k=2, reranker=reranker))
    out = pipe.run({"bm25": {"query": QUERY}, "ranker": {"query": QUERY}})
    docs = out["ranker"]["documents"]
    assert [d.id for d in docs] == ["d3", "d2"]  # children first, then adults
    assert docs[0].meta == {"i": 3} and docs[0].score is not None and docs[1].score is not None
    assert docs[0].score > docs[1].score >= DEFAULT_FLOOR
    out = asyncio.run(pipe.run_async({"bm25": {"query": QUERY}, "ranker": {"query": QUERY}}))
    assert ids(out, "ranker") == ["d3", "d2"]


def test_nothing_clears_the_threshold(reranker: Reranker) -> None:
    pipe = HaystackPipeline()
    pipe.add_component("ranker", FunnelRankRanker(reranker=reranker))
    assert pipe.run({"ranker": {"query": OFF_TOPIC, "documents": documents()}})["ranker"]["documents"] == []
    out = asyncio.run(pipe.run_async({"ranker": {"query": OFF_TOPIC, "documents": documents()}}))
    assert out["ranker"]["documents"] == []
    # score_threshold=0.0 for this call keeps every document: the threshold is what emptied the list.
    out = pipe.run({"ranker": {"query": OFF_TOPIC, "documents": documents(), "score_threshold": 0.0}})
    assert len(out["ranker"]["documents"]) == len(TEXTS)


def test_run_settings_per_call(reranker: Reranker) -> None:
    ranker = FunnelRankRanker(reranker=reranker, top_k=None, score_threshold=None)
    docs = documents()
    ranked = ranker.run(QUERY, docs)["documents"]
    assert [d.id for d in ranked][0] == "d3" and len(ranked) == len(TEXTS)
    scores = [d.score for d in ranked]
    assert scores == sorted(scores, reverse=True)
    assert [d.id for d in ranker.run(QUERY, docs, top_k=1)["documents"]] == ["d3"]
    between = ((scores[0] or 0) + (scores[1] or 0)) / 2
    assert [d.id for d in ranker.run(QUERY, docs, score_threshold=between)["documents"]] == ["d3"]
    assert [d.id for d in asyncio.run(ranker.run_async(QUERY, docs, top_k=1))["documents"]] == ["d3"]
    assert all(d.score is None for d in docs)  # the input documents are not changed
    assert ranker.run(QUERY, [])["documents"] == []


def test_warm_up_serialisation_round_trip() -> None:
    ranker = FunnelRankRanker(top_k=3, score_threshold=0.5)
    data = ranker.to_dict()
    assert data == {"type": f"{MODULE}.FunnelRankRanker",
                    "init_parameters": {"model": None, "top_k": 3, "score_threshold": 0.5}}
    again = FunnelRankRanker.from_dict(data)
    assert (again.model, again.top_k, again.score_threshold) == (None, 3, 0.5)
    pipe = bm25_then_ranker(again)
    loaded = HaystackPipeline.from_dict(pipe.to_dict(), allowed_modules=[MODULE])
    loaded.warm_up()  # loads the default cross-encoder
    out = loaded.run({"bm25": {"query": QUERY}, "ranker": {"query": QUERY}})
    assert ids(out, "ranker")[0] == "d3"
    loaded.get_component("ranker").close()


def test_a_borrowed_reranker_is_not_serialisable(reranker: Reranker) -> None:
    with pytest.raises(SerializationError, match="model="):
        FunnelRankRanker(reranker=reranker).to_dict()


def test_retriever_component_over_a_pipeline(reranker: Reranker) -> None:
    with Pipeline.from_texts(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))],
                             metadata=[{"n": i} for i in range(len(TEXTS))], reranker=reranker) as funnel:
        pipe = HaystackPipeline()
        pipe.add_component("retriever", FunnelRankRetriever(funnel, top_k=2))
        out = pipe.run({"retriever": {"query": QUERY}})
        docs = out["retriever"]["documents"]
        assert [(d.id, d.content) for d in docs] == [("d3", TEXTS[3]), ("d2", TEXTS[2])]
        assert docs[0].meta == {"n": 3} and (docs[0].score or 0) >= DEFAULT_FLOOR
        assert ids(asyncio.run(pipe.run_async({"retriever": {"query": QUERY}})), "retriever") == ["d3", "d2"]
        assert pipe.run({"retriever": {"query": OFF_TOPIC}})["retriever"]["documents"] == []
        out = pipe.run({"retriever": {"query": QUERY, "filters": {"n": {"lt": 3}}, "top_k": 1}})
        assert ids(out, "retriever") == ["d2"]
        with pytest.raises(ValueError, match="not Haystack's"):
            FunnelRankRetriever(funnel, filters={"field": "meta.n", "operator": "<", "value": 3})
        with pytest.raises(SerializationError):
            FunnelRankRetriever(funnel).to_dict()


@pytest.mark.parametrize("bad", [{"top_k": 0}, {"score_threshold": 2.0}, {"score_threshold": "x"},
                                 {"model": "m", "reranker": object()}])
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        FunnelRankRanker(**bad)


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, MODULE)
    monkeypatch.setitem(sys.modules, "haystack", None)
    with pytest.raises(ImportError, match=r"pip install 'funnelrank\[haystack\]'"):
        importlib.import_module(MODULE)
