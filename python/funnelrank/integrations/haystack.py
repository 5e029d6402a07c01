"""Haystack components (``pip install 'funnelrank[haystack]'``, haystack-ai >= 3.0).

* :class:`FunnelRankRanker` -- a ranker ``@component``: ``run(query, documents, top_k, score_threshold)`` reranks
  the documents with the cross-encoder and returns the ``top_k`` that clear the relevance floor, best first,
  with the sigmoid score (0..1) as ``Document.score``. ``warm_up`` loads the model (a pipeline calls it),
  ``run_async`` awaits the shared scheduler, ``to_dict`` / ``from_dict`` serialise it (model directory, top_k,
  score_threshold).
* :class:`FunnelRankRetriever` -- a retriever ``@component`` over a :class:`funnelrank.Pipeline` (or a
  :class:`funnelrank.Collection`): ``run(query, filters, top_k)`` retrieves, reranks and applies the pipeline's
  floor.

    >>> from haystack import Document
    >>> docs = [Document(content="Bananas are rich in potassium."),
    ...         Document(content="Ibuprofen for children is dosed by body weight.")]
    >>> ranker = FunnelRankRanker(top_k=2)
    >>> ranker.warm_up()
    >>> [(d.content, round(d.score, 3)) for d in ranker.run("ibuprofen dose for a child", docs)["documents"]]
    [('Ibuprofen for children is dosed by body weight.', 0.995)]

An empty ``documents`` list means that nothing cleared the floor: "no evidence".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
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

require("haystack", "haystack", "haystack-ai")

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.core.errors import SerializationError  # noqa: E402

__all__ = ["FunnelRankRanker", "FunnelRankRetriever"]


@component
class FunnelRankRanker:
    """Rank Haystack documents with a funnelrank cross-encoder and its relevance floor.

    Args:
        model: a cross-encoder model directory, or None for the default cross-encoder shipped with funnelrank.
        top_k: most documents returned (None: every one that clears the threshold).
        score_threshold: drop documents scoring below it: a score in [0, 1], ``"default"`` (the reranker's, 0.46
            for the default reranker) or None (keep all).
        reranker: share an existing :class:`funnelrank.Reranker` instead of loading `model` (borrowed: its
            owner closes it; such a ranker cannot be serialised).

    ``run`` returns ``{"documents": [...]}``: copies of the given documents with ``score`` set, best first::

        {"documents": [Document(content='Ibuprofen for children is dosed by body weight.', score=0.995)]}

    A document without ``content`` is scored as empty text.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        top_k: int | None = DEFAULT_TOP_K,
        score_threshold: FloorSetting = DEFAULT,
        *,
        reranker: Any = None,
    ) -> None:
        if model is not None and reranker is not None:
            raise ValueError("pass a model directory or a reranker, not both")
        self.model = None if model is None else os.fspath(model)
        self.top_k = check_top_n(top_k, "top_k")
        self.score_threshold = check_floor_setting(score_threshold, "score_threshold")
        self._borrowed = reranker is not None
        self._holder = RerankerHolder(reranker if reranker is not None else self.model)

    def warm_up(self) -> None:
        """Load the cross-encoder (run loads it too when it was not warmed up)."""
        self._holder.get()

    def close(self) -> None:
        """Close the reranker if this ranker loaded it."""
        self._holder.close()

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a dictionary (``init_parameters``: model, top_k, score_threshold)."""
        if self._borrowed:
            raise SerializationError(
                "FunnelRankRanker was built around a Reranker object, which cannot be serialised; build it with "
                "model=<model directory> (or neither, for the default cross-encoder) to serialise it"
            )
        return default_to_dict(self, model=self.model, top_k=self.top_k, score_threshold=self.score_threshold)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunnelRankRanker:
        """Deserialise a dictionary made by :meth:`to_dict`."""
        return default_from_dict(cls, data)

    def _settings(self, top_k: int | None, score_threshold: FloorSetting) -> tuple[int | None, float | None]:
        k = self.top_k if top_k is None else check_top_n(top_k, "top_k")
        threshold = self.score_threshold if score_threshold is None else check_floor_setting(score_threshold,
                                                                                           "score_threshold")
        return k, self._holder.floor(threshold)

    @staticmethod
    def _ranked(documents: list[Document], result: Any) -> dict[str, list[Document]]:
        return {"documents": [dataclasses.replace(documents[i.index], score=i.score) for i in result.items]}

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None, score_threshold: float | None = None
    ) -> dict[str, list[Document]]:
        """Rank `documents` for `query`; `top_k` and `score_threshold` override the component's settings for
        this call (None: the component's; 0.0 keeps every document)."""
        if not documents:
            return {"documents": []}
        k, floor = self._settings(top_k, score_threshold)
        cands = candidates_of(documents, lambda d: d.content, score=lambda d: d.score)
        return self._ranked(documents, self._holder.get().rerank(query, cands, top_k=k, floor=floor))

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None, score_threshold: float | None = None
    ) -> dict[str, list[Document]]:
        """:meth:`run` for asyncio (awaits the reranker's shared scheduler)."""
        if not documents:
            return {"documents": []}
        k, floor = self._settings(top_k, score_threshold)
        cands = candidates_of(documents, lambda d: d.content, score=lambda d: d.score)
        return self._ranked(documents, await self._holder.get().arerank(query, cands, top_k=k, floor=floor))


def _check_filters(filters: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """funnelrank filters only: Haystack's filter syntax (``{"operator": ..., "conditions": [...]}`` or
    ``{"field": ..., "operator": ..., "value": ...}``) is refused with a message saying so."""
    if filters and "operator" in filters and ("conditions" in filters or "field" in filters):
        raise ValueError(
            "FunnelRankRetriever takes funnelrank metadata filters (e.g. {'year': {'gte': 2020}, 'lang': ['en']}), "
            "not Haystack's {'field', 'operator', 'value'} / {'operator', 'conditions'} syntax"
        )
    return filters


@component
class FunnelRankRetriever:
    """A Haystack retriever over a :class:`funnelrank.Pipeline`: retrieve, rerank, floor.

    Args:
        pipeline: a :class:`funnelrank.Pipeline` (borrowed), or a :class:`funnelrank.Collection` (a pipeline
            with the default reranker is built over it and closed by :meth:`close`).
        top_k: results per query (None: the pipeline's ``top_k``).
        filters: a funnelrank metadata filter (:mod:`funnelrank.retrieve.filters` syntax, not Haystack's).

    The floor is the pipeline's. ``run`` returns ``{"documents": [...]}`` with the documents' ids, text, metadata
    and cross-encoder score::

        {"documents": [Document(id='2', content='Ibuprofen for children is dosed by body weight.', score=0.995)]}

    It holds a live pipeline, so it cannot be serialised (``to_dict`` raises ``SerializationError``).
    """

    def __init__(self, pipeline: Any, top_k: int | None = None, filters: dict[str, Any] | None = None) -> None:
        self.pipeline, self._owned = as_pipeline(pipeline)
        self.top_k = check_top_n(top_k, "top_k")
        self.filters = _check_filters(filters)

    def to_dict(self) -> dict[str, Any]:
        """Always raises: a live pipeline (its collection and models) is not serialisable; build it in code."""
        raise SerializationError("FunnelRankRetriever holds a live funnelrank Pipeline, which cannot be serialised; "
                                 "add it to the Haystack pipeline in code")

    def close(self) -> None:
        """Close the pipeline if this retriever built it (from a collection)."""
        if self._owned:
            self.pipeline.close()

    @staticmethod
    def _documents(response: Any) -> dict[str, list[Document]]:
        return {"documents": [Document(id=r.id, content=r.text, meta=dict(r.metadata), score=r.score)
                              for r in response.results]}

    def _args(self, filters: dict[str, Any] | None, top_k: int | None) -> tuple[Any, int | None]:
        return (_check_filters(filters) if filters is not None else self.filters,
                self.top_k if top_k is None else check_top_n(top_k, "top_k"))

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
            ) -> dict[str, list[Document]]:
        """Retrieve and rerank for `query`; `filters` and `top_k` override the component's for this call."""
        f, k = self._args(filters, top_k)
        return self._documents(self.pipeline.search(query, f, top_k=k))

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
                        ) -> dict[str, list[Document]]:
        """:meth:`run` for asyncio."""
        f, k = self._args(filters, top_k)
        return self._documents(await self.pipeline.asearch(query, f, top_k=k))
