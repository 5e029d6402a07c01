"""Request bodies of the HTTP service (pydantic models: wrong types are answered with 422). The middleware
already refuses NaN, Infinity and out-of-range numbers in the JSON itself; ``floor`` also refuses them here.

``/v1/rerank`` follows Cohere's rerank API: ``query``, ``documents`` (strings or ``{"text": ...}``
objects), ``top_n``, ``return_documents``, ``model``; unknown fields Cohere clients may send
(``max_chunks_per_doc``, ``rank_fields``, ...) are ignored.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = ["RerankDocument", "RerankRequest", "SearchRequest"]


class RerankDocument(BaseModel):
    """A document given as an object; only ``text`` is used."""

    model_config = ConfigDict(extra="ignore")
    text: StrictStr


class RerankRequest(BaseModel):
    """Body of ``POST /v1/rerank``."""

    model_config = ConfigDict(extra="ignore")
    query: StrictStr
    documents: list[Union[StrictStr, RerankDocument]]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    model: StrictStr | None = None
    floor: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="funnelrank extension: drop results scoring below it"
    )

    def texts(self) -> list[str]:
        """The documents' texts, in request order."""
        return [d if isinstance(d, str) else d.text for d in self.documents]


class SearchRequest(BaseModel):
    """Body of ``POST /v1/search``."""

    model_config = ConfigDict(extra="forbid")
    query: StrictStr
    top_k: StrictInt = Field(default=10, ge=1)
    candidates: StrictInt | None = Field(default=None, ge=1)
    filter: dict[str, Any] | None = None
    floor: StrictFloat | StrictInt | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    retriever: StrictStr | None = None
    rerank: StrictBool = True
