"""LlamaIndex components (``pip install 'funnelrank[llamaindex]'``, llama-index-core >= 0.14).

* :class:`FunnelRankRerank` -- a ``BaseNodePostprocessor``: reranks retrieved nodes with the cross-encoder and
  keeps the ``top_n`` that clear the relevance floor, best first, with the sigmoid score (0..1) as the node's
  score. Use it in ``node_postprocessors=[...]`` of a query engine, or call ``postprocess_nodes``.
* :class:`FunnelRankRetriever` -- a ``BaseRetriever`` over a :class:`funnelrank.Pipeline` (or a
  :class:`funnelrank.Collection`): ``retrieve(query)`` retrieves, reranks and applies the pipeline's floor.

    >>> from llama_index.core.schema import NodeWithScore, TextNode
    >>> nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in
    ...          ["Bananas are rich in potassium.", "Ibuprofen for children is dosed by body weight."]]
    >>> with FunnelRankRerank(top_n=2) as rerank:
    ...     kept = rerank.postprocess_nodes(nodes, query_str="ibuprofen dose for a child")
    >>> [(n.node.get_content(), round(n.score, 3)) for n in kept]
    [('Ibuprofen for children is dosed by body weight.', 0.995)]

An empty list means that nothing cleared the floor: "no evidence".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from funnelrank.integrations._common import (
    DEFAULT,
    FloorSetting,
    RerankerHolder,
    as_pipeline,
    candidates_of,
    check_floor_setting,
    check_top_n,
    require,
)
from funnelrank.rerank.policy import DEFAULT_TOP_K

require("llama_index.core", "llamaindex", "llama-index-core")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.callbacks import CallbackManager  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402

__all__ = ["FunnelRankRerank", "FunnelRankRetriever"]


def _text(node: NodeWithScore) -> str:
    return node.node.get_content(metadata_mode=MetadataMode.NONE)


class FunnelRankRerank(BaseNodePostprocessor):
    """Rerank LlamaIndex nodes with a funnelrank cross-encoder and its relevance floor.

    Args:
        reranker: a :class:`funnelrank.Reranker` (borrowed: its owner closes it), a model directory, or None
            for the default cross-encoder shipped with funnelrank (loaded on first use, closed by :meth:`close`).
        top_n: most nodes kept (None: every one that clears the floor).
        floor: drop nodes scoring below it: a score in [0, 1], ``"default"`` (the reranker's, 0.46 for the
            default reranker) or None (keep all).

    The kept nodes are the given nodes with the cross-encoder's score, best first::

        [NodeWithScore(node=TextNode(text='Ibuprofen for children is dosed by body weight.', ...), score=0.995)]

    The node's text is scored without its metadata (``MetadataMode.NONE``).
    """

    top_n: int | None = Field(default=DEFAULT_TOP_K, description="most nodes kept (None: all above the floor)")
    floor: FloorSetting = Field(default=DEFAULT, description="score in [0, 1], 'default' (the reranker's) or None")
    _holder: RerankerHolder = PrivateAttr()

    def __init__(self, reranker: Any = None, top_n: int | None = DEFAULT_TOP_K, floor: FloorSetting = DEFAULT,
                 **kwargs: Any) -> None:
        # pydantic fields of this class; mypy (without the pydantic plugin) sees only the base's signature
        super().__init__(top_n=check_top_n(top_n), floor=check_floor_setting(floor), **kwargs)  # type: ignore[call-arg]
        self._holder = RerankerHolder(reranker)

    @classmethod
    def class_name(cls) -> str:
        return "FunnelRankRerank"

    def _prepare(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[Any, str, list[Any]]:
        if query_bundle is None:
            raise ValueError("FunnelRankRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                             "or pass a query_bundle")
        return self._holder.get(), query_bundle.query_str, candidates_of(nodes, _text, score=lambda n: n.score)

    @staticmethod
    def _kept(nodes: Sequence[NodeWithScore], result: Any) -> list[NodeWithScore]:
        return [NodeWithScore(node=nodes[item.index].node, score=item.score) for item in result.items]

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        reranker, query, cands = self._prepare(nodes, query_bundle)
        result = reranker.rerank(query, cands, top_k=self.top_n, floor=self._holder.floor(self.floor))
        return self._kept(nodes, result)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        reranker, query, cands = self._prepare(nodes, query_bundle)
        result = await reranker.arerank(query, cands, top_k=self.top_n, floor=self._holder.floor(self.floor))
        return self._kept(nodes, result)

    def close(self) -> None:
        """Close the reranker if this postprocessor loaded it."""
        self._holder.close()

    def __enter__(self) -> FunnelRankRerank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FunnelRankRetriever(BaseRetriever):
    """A LlamaIndex retriever over a :class:`funnelrank.Pipeline`: retrieve, rerank, floor.

    Args:
        pipeline: a :class:`funnelrank.Pipeline` (borrowed), or a :class:`funnelrank.Collection` (a pipeline
            with the default reranker is built over it and closed by :meth:`close`).
        top_k: results per query (None: the pipeline's ``top_k``).
        filter: a funnelrank metadata filter applied in stage 1 (:mod:`funnelrank.retrieve.filters` syntax).

    The floor is the pipeline's. Each result is a ``TextNode`` with the document's id, text and metadata, scored
    by the cross-encoder::

        retriever.retrieve("ibuprofen dose for a child")
        [NodeWithScore(node=TextNode(id_='2', text='Ibuprofen for children is dosed by body weight.'), score=0.995)]

    An empty list means that nothing cleared the floor.
    """

    def __init__(self, pipeline: Any, *, top_k: int | None = None, filter: dict[str, Any] | None = None,
                 callback_manager: CallbackManager | None = None, **kwargs: Any) -> None:
        self.pipeline, self._owned = as_pipeline(pipeline)
        self.top_k = check_top_n(top_k, "top_k")
        self.filter = filter
        super().__init__(callback_manager=callback_manager, **kwargs)

    @staticmethod
    def _nodes(response: Any) -> list[NodeWithScore]:
        return [
            NodeWithScore(node=TextNode(id_=r.id, text=r.text, metadata=dict(r.metadata)), score=r.score)
            for r in response.results
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(self.pipeline.search(query_bundle.query_str, self.filter, top_k=self.top_k))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(await self.pipeline.asearch(query_bundle.query_str, self.filter, top_k=self.top_k))

    def close(self) -> None:
        """Close the pipeline if this retriever built it (from a collection)."""
        if self._owned:
            self.pipeline.close()

    def __enter__(self) -> FunnelRankRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
