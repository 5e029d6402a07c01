"""LangChain components (``pip install 'funnelrank[langchain]'``, langchain-core >= 1.0).

* :class:`FunnelRankCompressor` -- a ``BaseDocumentCompressor``: reranks the documents a retriever found with
  the cross-encoder, keeps the ``top_n`` that clear the relevance floor, best first, each with its score in
  ``metadata["relevance_score"]`` (sigmoid, 0..1). Use it in a ``ContextualCompressionRetriever`` or call
  ``compress_documents`` / ``acompress_documents`` yourself.
* :class:`FunnelRankRetriever` -- a ``BaseRetriever`` over a :class:`funnelrank.Pipeline` (or a
  :class:`funnelrank.Collection`): ``invoke(query)`` retrieves, reranks and applies the pipeline's floor.

    >>> from langchain_core.documents import Document
    >>> docs = [Document("Aspirin is not for children with a viral fever."),
    ...         Document("Ibuprofen for children is dosed by body weight."), Document("Bananas are rich in potassium.")]
    >>> with FunnelRankCompressor(top_n=2) as compressor:
    ...     kept = compressor.compress_documents(docs, "ibuprofen dose for a child")
    >>> [(d.page_content, round(d.metadata["relevance_score"], 3)) for d in kept]
    [('Ibuprofen for children is dosed by body weight.', 0.995)]

An empty list means that nothing cleared the floor: "no evidence".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

require("langchain_core", "langchain", "langchain-core")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import ConfigDict, PrivateAttr, field_validator  # noqa: E402

__all__ = ["FunnelRankCompressor", "FunnelRankRetriever"]


class FunnelRankCompressor(BaseDocumentCompressor):
    """Rerank LangChain documents with a funnelrank cross-encoder and its relevance floor.

    Args:
        reranker: a :class:`funnelrank.Reranker` (borrowed: its owner closes it), a model directory, or None
            for the default cross-encoder shipped with funnelrank (loaded on first use, closed by :meth:`close`).
        top_n: most documents kept (None: every one that clears the floor).
        floor: drop documents scoring below it: a score in [0, 1], ``"default"`` (the reranker's, 0.46 for the
            default reranker) or None (keep all).

    The kept documents are copies of the given ones with ``metadata["relevance_score"]`` added, best first::

        [Document(page_content='Ibuprofen for children is dosed by body weight.',
                  metadata={'relevance_score': 0.995})]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = None
    top_n: int | None = DEFAULT_TOP_K
    floor: FloorSetting = DEFAULT
    _holder: RerankerHolder = PrivateAttr()

    @field_validator("top_n")
    @classmethod
    def _top_n(cls, value: Any) -> int | None:
        return check_top_n(value)

    @field_validator("floor", mode="before")
    @classmethod
    def _floor(cls, value: Any) -> FloorSetting:
        return check_floor_setting(value)

    def model_post_init(self, context: Any, /) -> None:
        self._holder = RerankerHolder(self.reranker)

    def _scored(self, documents: Sequence[Document], result: Any) -> list[Document]:
        return [
            documents[item.index].model_copy(
                update={"metadata": {**documents[item.index].metadata, "relevance_score": item.score}}
            )
            for item in result.items
        ]

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The `documents` that clear the floor for `query`, best first, at most `top_n`, each with
        ``metadata["relevance_score"]``; an empty list when none does."""
        if not documents:
            return []
        reranker = self._holder.get()
        cands = candidates_of(documents, lambda d: d.page_content, metadata=lambda d: d.metadata)
        result = reranker.rerank(query, cands, top_k=self.top_n, floor=self._holder.floor(self.floor))
        return self._scored(documents, result)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """:meth:`compress_documents` for asyncio (awaits the reranker's shared scheduler)."""
        if not documents:
            return []
        reranker = self._holder.get()
        cands = candidates_of(documents, lambda d: d.page_content, metadata=lambda d: d.metadata)
        result = await reranker.arerank(query, cands, top_k=self.top_n, floor=self._holder.floor(self.floor))
        return self._scored(documents, result)

    def close(self) -> None:
        """Close the reranker if this compressor loaded it."""
        self._holder.close()

    def __enter__(self) -> FunnelRankCompressor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FunnelRankRetriever(BaseRetriever):
    """A LangChain retriever over a :class:`funnelrank.Pipeline`: retrieve, rerank, floor.

    Args:
        pipeline: a :class:`funnelrank.Pipeline` (borrowed), or a :class:`funnelrank.Collection` (a pipeline
            with the default reranker is built over it and closed by :meth:`close`).
        top_k: results per query (None: the pipeline's ``top_k``).
        filter: a funnelrank metadata filter applied in stage 1 (:mod:`funnelrank.retrieve.filters` syntax,
            e.g. ``{"year": {"gte": 2020}}``).

    The floor is the pipeline's (``Pipeline(..., floor=...)``). Each document carries the result's id, its
    metadata and ``metadata["relevance_score"]``::

        retriever.invoke("ibuprofen dose for a child")
        [Document(id='2', page_content='Ibuprofen for children is dosed by body weight.',
                  metadata={'relevance_score': 0.995})]

    An empty list means that nothing cleared the floor.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any
    top_k: int | None = None
    filter: dict[str, Any] | None = None
    _pipe: Any = PrivateAttr()
    _owned: bool = PrivateAttr(default=False)

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: Any) -> int | None:
        return check_top_n(value, "top_k")

    def model_post_init(self, context: Any, /) -> None:
        self._pipe, self._owned = as_pipeline(self.pipeline)

    @staticmethod
    def _documents(response: Any) -> list[Document]:
        return [
            Document(page_content=r.text, id=r.id, metadata={**r.metadata, "relevance_score": r.score})
            for r in response.results
        ]

    def _filter(self, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get("filter", self.filter)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        response = self._pipe.search(query, self._filter(kwargs), top_k=kwargs.get("top_k", self.top_k))
        return self._documents(response)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        response = await self._pipe.asearch(query, self._filter(kwargs), top_k=kwargs.get("top_k", self.top_k))
        return self._documents(response)

    def close(self) -> None:
        """Close the pipeline if this retriever built it (from a collection)."""
        if self._owned:
            self._pipe.close()

    def __enter__(self) -> FunnelRankRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
