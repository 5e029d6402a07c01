"""Request limits and overload settings of the HTTP service."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServiceLimits"]


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for, and how the service sheds load.

    Attributes:
        max_body_bytes: largest request body (413 beyond it, checked while the body streams in).
        max_documents: most documents in one ``/v1/rerank`` call (413 beyond it).
        max_document_chars: longest document, in characters (413 beyond it).
        max_query_chars: longest query, in characters (413 beyond it).
        max_top_k: largest ``top_k`` / ``candidates`` a ``/v1/search`` call may ask for (400 beyond it).
        max_inflight: requests admitted at once (being served); one more gets 503 at once.
        timeout_s: per-request rerank timeout; a request still waiting for the model then gets 503.
        retry_after_s: the ``Retry-After`` header sent with 429 and 503.
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_documents: int = 1000
    max_document_chars: int = 20_000
    max_query_chars: int = 2_000
    max_top_k: int = 1000
    max_inflight: int = 256
    timeout_s: float = 30.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_documents",
            "max_document_chars",
            "max_query_chars",
            "max_top_k",
            "max_inflight",
            "retry_after_s",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
