"""Request limits and overload settings of the HTTP service.

Which limits are servable. A request is refused (413) unless it fits every limit below, and the binding one is
usually ``max_request_tokens``, not ``max_documents``: model time grows with tokens, and a pair costs at most
the model's ``max_length`` tokens however long its document (the rest is truncated). The defaults are sized so
that the largest request they allow finishes within 80% of ``timeout_s`` (what admission control,
:mod:`funnelrank.serve.admission`, allows a request) at :data:`REFERENCE_TOKENS_PER_S`; the service guide
("How the default limits were sized") gives the measurement behind that figure. On faster hardware raise
``max_request_tokens`` (``funnelrank serve --max-request-tokens``): admission control still refuses, with 413,
a request that the measured throughput says cannot finish within the timeout even alone.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REFERENCE_TOKENS_PER_S", "ServiceLimits"]

REFERENCE_TOKENS_PER_S = 1000.0
"""Model throughput (tokens/s) the default limits are sized for (the service guide says where it comes from)."""


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask for, and how the service sheds load.

    Attributes:
        max_body_bytes: largest request body (413 beyond it, checked while the body streams in).
        max_documents: most documents in one ``/v1/rerank`` call (413 beyond it).
        max_document_chars: longest document, in characters (413 beyond it).
        max_query_chars: longest query, in characters (413 beyond it).
        max_request_tokens: most model tokens one ``/v1/rerank`` call may need, as estimated before
            tokenizing (:func:`funnelrank.serve.admission.estimate_tokens`: about 3 characters per token,
            at most the model's ``max_length`` per pair); 413 beyond it. Sized so that a request at the limit is
            servable on the reference machine (module doc).
        max_top_k: largest ``top_k`` / ``candidates`` a ``/v1/search`` call may ask for (400 beyond it).
        max_inflight: requests admitted at once (body received, being served); one more gets 503 at once. A
            request counts only once its whole body has arrived, so slow clients cannot take the slots.
        timeout_s: per-request rerank timeout; a request still waiting for the model then gets 503.
        retry_after_s: the ``Retry-After`` header sent with 429 and 503.
        body_timeout_s: time a client has to send the whole body after its headers (408 and the connection
            is closed beyond it).
        header_timeout_s: time a new connection has to send its first request's headers (the connection is
            closed beyond it); enforced by the server protocol of :func:`funnelrank.serve.server.server_config`.
        max_receiving_bytes: most body bytes buffered at once for requests still being received (one more
            chunk gets 503): with ``max_inflight`` x ``max_body_bytes`` for admitted requests, it bounds the
            memory that request bodies can take however many clients connect.
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_documents: int = 1000
    max_document_chars: int = 20_000
    max_query_chars: int = 2_000
    max_request_tokens: int = 16_384
    max_top_k: int = 1000
    max_inflight: int = 256
    timeout_s: float = 30.0
    retry_after_s: int = 1
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_receiving_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_documents",
            "max_document_chars",
            "max_query_chars",
            "max_request_tokens",
            "max_top_k",
            "max_inflight",
            "retry_after_s",
            "max_receiving_bytes",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("timeout_s", "body_timeout_s", "header_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_receiving_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_receiving_bytes={self.max_receiving_bytes} is below max_body_bytes={self.max_body_bytes}: "
                "a body of the allowed size could never be received"
            )
