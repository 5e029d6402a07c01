"""Request bodies of the HTTP service (pydantic models: wrong types are answered with 422). The middleware
already refuses NaN, Infinity and out-of-range numbers in the JSON itself; ``floor`` also refuses them here.

``/v1/rerank`` follows Cohere's v1 rerank API (which Jina's rerank API shares): ``query``, ``documents``
(strings or ``{"text": ...}`` objects), ``top_n``, ``return_documents``, ``model``; unknown fields Cohere clients
may send (``max_chunks_per_doc``, ``rank_fields``, ...) are ignored. ``/v2/rerank`` follows Cohere's v2:
``documents`` are strings, ``max_tokens_per_doc`` caps the document tokens read (``priority``,
``relevant_spans`` are ignored). ``/rerank`` follows Hugging Face text-embeddings-inference (TEI): ``query``,
``texts``, ``raw_scores``, ``return_text``, ``truncate``, ``truncation_direction``.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = ["RerankDocument", "RerankRequest", "RerankV2Request", "SearchRequest", "TEIRerankRequest"]


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


class RerankV2Request(BaseModel):
    """Body of ``POST /v2/rerank`` (Cohere's v2 rerank: documents are plain strings)."""

    model_config = ConfigDict(extra="ignore")
    query: StrictStr
    documents: list[StrictStr]
    top_n: StrictInt | None = Field(default=None, ge=1)
    max_tokens_per_doc: StrictInt | None = Field(
        default=None, ge=1, description="Cohere: long documents are truncated to this many tokens (default 4096)"
    )
    model: StrictStr | None = None
    floor: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="funnelrank extension: drop results scoring below it"
    )


class TEIRerankRequest(BaseModel):
    """Body of ``POST /rerank`` (Hugging Face text-embeddings-inference's rerank route)."""

    model_config = ConfigDict(extra="ignore")
    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = Field(default=False, description="the cross-encoder's logits instead of sigmoid scores")
    return_text: StrictBool = False
    truncate: StrictBool | None = Field(
        default=None, description="accepted; funnelrank always truncates pairs to the model's max_length"
    )
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"


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
    explain: StrictBool = Field(
        default=False, description="funnelrank extension: add 'funnel', every candidate with its stage-1 and rerank "
        "scores (what the playground draws)"
    )
