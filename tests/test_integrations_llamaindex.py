"""funnelrank in LlamaIndex: the node postprocessor inside LlamaIndex's own RetrieverQueryEngine (no LLM:
the no-text synthesizer), the retriever over a Pipeline, sync and async, with the default cross-encoder
(offline)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from funnelrank import Pipeline, Reranker
from funnelrank.integrations.llamaindex import FunnelRankRerank, FunnelRankRetriever
from funnelrank.rerank.policy import DEFAULT_FLOOR
from integration_cases import OFF_TOPIC, QUERY, TEXTS
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode


class ListRetriever(BaseRetriever):
    """Stage 1 stand-in: returns the nodes in the given (poor) order, all scored 1.0."""

    def __init__(self, texts: list[str]) -> None:
        self.nodes = [NodeWithScore(node=TextNode(id_=f"n{i}", text=t, metadata={"i": i}), score=1.0)
                      for i, t in enumerate(texts)]
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self.nodes)


@pytest.fixture(scope="module")
def reranker() -> Iterator[Reranker]:
    with Reranker() as r:  # the default cross-encoder, loaded once for the module
        yield r


def engine(retriever: BaseRetriever, postprocessor: BaseNodePostprocessor | None) -> RetrieverQueryEngine:
    return RetrieverQueryEngine(retriever=retriever, response_synthesizer=NoText(llm=MockLLM()),
                                node_postprocessors=[postprocessor] if postprocessor else [])


def test_is_a_node_postprocessor(reranker: Reranker) -> None:
    rerank = FunnelRankRerank(reranker=reranker, top_n=2)
    assert isinstance(rerank, BaseNodePostprocessor) and rerank.class_name() == "FunnelRankRerank"
    assert rerank.top_n == 2 and rerank.floor == "default"


def test_query_engine_with_the_postprocessor_puts_the_answer_first(reranker: Reranker) -> None:
    qe = engine(ListRetriever(TEXTS), FunnelRankRerank(reranker=reranker, top_n=2))
    nodes = qe.query(QUERY).source_nodes
    assert [n.node.node_id for n in nodes] == ["n3", "n2"]  # children first, then adults
    assert nodes[0].node.metadata == {"i": 3}
    assert nodes[0].score is not None and nodes[1].score is not None and nodes[0].score > nodes[1].score >= DEFAULT_FLOOR
    assert [n.node.node_id for n in asyncio.run(qe.aquery(QUERY)).source_nodes] == ["n3", "n2"]


def test_nothing_clears_the_floor(reranker: Reranker) -> None:
    qe = engine(ListRetriever(TEXTS), FunnelRankRerank(reranker=reranker))
    assert qe.query(OFF_TOPIC).source_nodes == []
    assert asyncio.run(qe.aquery(OFF_TOPIC)).source_nodes == []
    nodes = ListRetriever(TEXTS).nodes
    everything = FunnelRankRerank(reranker=reranker, floor=None).postprocess_nodes(nodes, query_str=OFF_TOPIC)
    assert len(everything) == len(TEXTS) and all((n.score or 0) < DEFAULT_FLOOR for n in everything)


def test_postprocess_nodes_directly(reranker: Reranker) -> None:
    nodes = ListRetriever(TEXTS).nodes
    rerank = FunnelRankRerank(reranker=reranker, top_n=None, floor=None)
    ranked = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert ranked[0].node.node_id == "n3" and len(ranked) == len(TEXTS)
    scores = [n.score for n in ranked]
    assert scores == sorted(scores, reverse=True)
    async_ranked = asyncio.run(rerank.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY)))
    assert [n.node.node_id for n in async_ranked] == [n.node.node_id for n in ranked]
    assert nodes[3].score == 1.0  # the input nodes keep their scores
    with pytest.raises(ValueError, match="needs the query"):
        rerank.postprocess_nodes(nodes)


def test_retriever_over_a_pipeline_in_a_query_engine(reranker: Reranker) -> None:
    with Pipeline.from_texts(TEXTS, metadata=[{"n": i} for i in range(len(TEXTS))], reranker=reranker) as pipe:
        retriever = FunnelRankRetriever(pipe, top_k=2)
        nodes = retriever.retrieve(QUERY)
        assert [(n.node.node_id, n.node.get_content()) for n in nodes] == [("3", TEXTS[3]), ("2", TEXTS[2])]
        assert nodes[0].node.metadata == {"n": 3} and (nodes[0].score or 0) >= DEFAULT_FLOOR
        assert [n.node.node_id for n in asyncio.run(retriever.aretrieve(QUERY))] == ["3", "2"]
        assert retriever.retrieve(OFF_TOPIC) == []
        qe = engine(retriever, None)
        assert [n.node.node_id for n in qe.query(QUERY).source_nodes] == ["3", "2"]
        assert asyncio.run(qe.aquery(OFF_TOPIC)).source_nodes == []
        filtered = FunnelRankRetriever(pipe, filter={"n": {"lt": 3}})
        assert filtered.retrieve(QUERY)[0].node.node_id == "2"


def test_default_reranker_is_loaded_and_closed() -> None:
    with FunnelRankRerank(top_n=1) as rerank:
        assert [n.node.node_id for n in rerank.postprocess_nodes(ListRetriever(TEXTS).nodes, query_str=QUERY)] == ["n3"]


@pytest.mark.parametrize("bad", [{"top_n": 0}, {"floor": -0.1}, {"floor": "low"}, {"reranker": 1}])
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        FunnelRankRerank(**bad)


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "funnelrank.integrations.llamaindex")
    monkeypatch.setitem(sys.modules, "llama_index.core", None)
    with pytest.raises(ImportError, match=r"pip install 'funnelrank\[llamaindex\]'"):
        importlib.import_module("funnelrank.integrations.llamaindex")
