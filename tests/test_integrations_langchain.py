"""funnelrank in LangChain: the compressor inside LangChain's own ContextualCompressionRetriever and an LCEL
chain, the retriever over a Pipeline, sync and async, with the default cross-encoder (offline)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from funnelrank import Collection, Pipeline, Reranker
from funnelrank.integrations.langchain import FunnelRankCompressor, FunnelRankRetriever
from funnelrank.rerank.policy import DEFAULT_FLOOR
from integration_cases import OFF_TOPIC, QUERY, TEXTS
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough


class ListRetriever(BaseRetriever):
    """Stage 1 stand-in: returns the documents in the given (poor) order."""

    documents: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.documents)


@pytest.fixture(scope="module")
def reranker() -> Iterator[Reranker]:
    with Reranker() as r:  # the default cross-encoder, loaded once for the module
        yield r


@pytest.fixture()
def documents() -> list[Document]:
    return [Document(page_content=t, metadata={"source": f"doc{i}"}) for i, t in enumerate(TEXTS)]


def test_compressor_is_a_langchain_document_compressor(reranker: Reranker) -> None:
    assert isinstance(FunnelRankCompressor(reranker=reranker), BaseDocumentCompressor)


def test_contextual_compression_retriever_puts_the_answer_first(reranker: Reranker,
                                                                documents: list[Document]) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=FunnelRankCompressor(reranker=reranker, top_n=2), base_retriever=ListRetriever(documents=documents)
    )
    kept = retriever.invoke(QUERY)
    assert [d.page_content for d in kept] == [TEXTS[3], TEXTS[2]]  # children first, then adults
    assert [d.metadata["source"] for d in kept] == ["doc3", "doc2"]  # the documents' own metadata kept
    scores = [d.metadata["relevance_score"] for d in kept]
    assert scores[0] > scores[1] + 0.05 and scores[1] >= DEFAULT_FLOOR  # the answer clearly above the near-miss
    assert "relevance_score" not in documents[3].metadata  # the input documents are not changed


def test_async_contextual_compression_retriever(reranker: Reranker, documents: list[Document]) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=FunnelRankCompressor(reranker=reranker, top_n=1), base_retriever=ListRetriever(documents=documents)
    )
    kept = asyncio.run(retriever.ainvoke(QUERY))
    assert [d.page_content for d in kept] == [TEXTS[3]]
    assert asyncio.run(retriever.ainvoke(OFF_TOPIC)) == []


def test_nothing_clears_the_floor_gives_an_empty_list(reranker: Reranker, documents: list[Document]) -> None:
    compressor = FunnelRankCompressor(reranker=reranker)
    assert compressor.compress_documents(documents, OFF_TOPIC) == []
    assert asyncio.run(compressor.acompress_documents(documents, OFF_TOPIC)) == []
    # floor=None keeps every document, best first, so the floor is what emptied the list.
    everything = FunnelRankCompressor(reranker=reranker, floor=None).compress_documents(documents, OFF_TOPIC)
    assert len(everything) == len(TEXTS) and all(d.metadata["relevance_score"] < DEFAULT_FLOOR for d in everything)


def test_floor_setting_drops_documents_below_it(reranker: Reranker, documents: list[Document]) -> None:
    all_scores = FunnelRankCompressor(reranker=reranker, floor=None, top_n=None).compress_documents(documents, QUERY)
    scores = {d.page_content: d.metadata["relevance_score"] for d in all_scores}
    assert [d.page_content for d in all_scores][0] == TEXTS[3]
    floor = (scores[TEXTS[3]] + scores[TEXTS[2]]) / 2  # between the answer and the runner-up
    kept = FunnelRankCompressor(reranker=reranker, floor=floor, top_n=None).compress_documents(documents, QUERY)
    assert [d.page_content for d in kept] == [TEXTS[3]]


def test_lcel_chain(reranker: Reranker, documents: list[Document]) -> None:
    compressor = FunnelRankCompressor(reranker=reranker, top_n=2)
    chain = RunnableParallel(docs=ListRetriever(documents=documents), query=RunnablePassthrough()) | RunnableLambda(
        lambda x: compressor.compress_documents(x["docs"], x["query"]),
        afunc=lambda x: compressor.acompress_documents(x["docs"], x["query"]),
    ) | RunnableLambda(lambda docs: [d.page_content for d in docs])
    assert chain.invoke(QUERY) == [TEXTS[3], TEXTS[2]]
    assert asyncio.run(chain.ainvoke(QUERY)) == [TEXTS[3], TEXTS[2]]


def test_retriever_over_a_pipeline(reranker: Reranker) -> None:
    with Pipeline.from_texts(TEXTS, metadata=[{"lang": "en", "n": i} for i in range(len(TEXTS))],
                             reranker=reranker) as pipe:
        retriever = FunnelRankRetriever(pipeline=pipe, top_k=2)
        assert isinstance(retriever, BaseRetriever)
        docs = retriever.invoke(QUERY)
        assert [(d.id, d.page_content) for d in docs] == [("3", TEXTS[3]), ("2", TEXTS[2])]
        assert docs[0].metadata["n"] == 3 and docs[0].metadata["relevance_score"] >= DEFAULT_FLOOR
        assert [d.id for d in asyncio.run(retriever.ainvoke(QUERY))] == ["3", "2"]
        assert retriever.invoke(OFF_TOPIC) == [] and asyncio.run(retriever.ainvoke(OFF_TOPIC)) == []
        only_adults = FunnelRankRetriever(pipeline=pipe, filter={"n": {"lt": 3}})
        assert [d.id for d in only_adults.invoke(QUERY)][0] == "2"


def test_retriever_over_a_collection_with_the_default_reranker() -> None:
    collection = Collection(dense=False)
    collection.add([f"d{i}" for i in range(len(TEXTS))], TEXTS)
    with FunnelRankRetriever(pipeline=collection, top_k=1) as retriever:
        assert [d.id for d in retriever.invoke(QUERY)] == ["d3"]


def test_default_reranker_is_loaded_and_closed_by_the_compressor(documents: list[Document]) -> None:
    with FunnelRankCompressor(top_n=1) as compressor:  # reranker=None: the shipped default, owned
        assert [d.page_content for d in compressor.compress_documents(documents, QUERY)] == [TEXTS[3]]
        holder: Any = compressor._holder
        assert holder.loaded
    assert not holder.loaded


@pytest.mark.parametrize("bad", [{"top_n": 0}, {"top_n": 1.5}, {"floor": 1.5}, {"floor": "high"}, {"reranker": 3}])
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        FunnelRankCompressor(**bad)


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "funnelrank.integrations.langchain")
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # import langchain_core -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'funnelrank\[langchain\]'"):
        importlib.import_module("funnelrank.integrations.langchain")
