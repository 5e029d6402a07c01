"""What callers hand a :class:`~funnelrank.store.collection.Collection`, checked before anything changes: the
ids, texts, metadata and vectors of an add, and the ``k`` (and HNSW beam) of a search, capped at what the
indexes hold."""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from funnelrank.checks import check_text
from funnelrank.retrieve.filters import validate_metadata
from funnelrank.store.documents import Document

__all__ = ["check_additions", "check_ids", "clamp_k", "dense_limits", "document_columns"]


def check_ids(ids: Any, what: str) -> list[str]:
    """`ids` as a list of non-empty, distinct, valid Unicode strings; ValueError naming `what` otherwise."""
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of str, not a single string")
    out = list(ids)
    seen: set[str] = set()
    for i, doc_id in enumerate(out):
        check_text(doc_id, f"{what}[{i}]", type_error=ValueError)
        if not doc_id:
            raise ValueError(f"{what}[{i}] is empty")
        if doc_id in seen:
            raise ValueError(f"{what} repeats {doc_id!r}")
        seen.add(doc_id)
    return out


def check_additions(
    ids: Sequence[str],
    texts: Sequence[str],
    metadata: Sequence[Mapping[str, Any] | None] | None,
    vectors: Any | None,
    dim: int | None,
) -> tuple[list[str], list[str], list[dict[str, Any]], np.ndarray | None]:
    """(ids, texts, metadata, vectors) of an add, checked (see ``Collection.add``): the metadata as private
    copies (``{}`` for none), the vectors as a contiguous float32 matrix (None when not given). `dim` is the
    dense index's dimension (None: the collection has none, so no vectors may be given)."""
    ids = check_ids(ids, "ids")
    if isinstance(texts, (str, bytes)):
        raise ValueError("texts must be a sequence of str, not a single string")
    texts = list(texts)
    if len(texts) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(texts)} texts")
    for i, text in enumerate(texts):
        check_text(text, f"texts[{i}] (id {ids[i]!r})", type_error=ValueError)
    metas: list[dict[str, Any]]
    if metadata is None:
        metas = [{} for _ in ids]
    else:
        metadata = list(metadata)
        if len(metadata) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
        metas = [
            {} if m is None else copy.deepcopy(validate_metadata(m, where=f"metadata[{i}] (id {ids[i]!r})"))
            for i, m in enumerate(metadata)
        ]
    given = None
    if vectors is not None:
        if dim is None:
            raise ValueError("vectors given, but this collection has no dense index (dense=False)")
        given = np.ascontiguousarray(vectors, dtype=np.float32)
        if given.ndim != 2 or given.shape != (len(ids), dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {dim}), got {given.shape}")
        if not np.isfinite(given).all():
            raise ValueError("vectors hold a NaN or infinite value")
    return ids, texts, metas, given


def document_columns(
    documents: Iterable[Document | Mapping[str, Any]],
) -> tuple[list[str], list[str], list[Mapping[str, Any] | None]]:
    """(ids, texts, metadata) of :class:`Document` objects or ``{"id", "text", "metadata"?}`` dicts; ValueError
    for anything else, or a dict without an id or a text."""
    ids: list[str] = []
    texts: list[str] = []
    metas: list[Mapping[str, Any] | None] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, Document):
            ids.append(doc.id)
            texts.append(doc.text)
            metas.append(doc.metadata)
        elif isinstance(doc, Mapping):
            if "id" not in doc or "text" not in doc:
                raise ValueError(f"document {i} needs 'id' and 'text' fields, has {sorted(doc)}")
            ids.append(doc["id"])
            texts.append(doc["text"])
            metas.append(doc.get("metadata"))
        else:
            raise ValueError(f"document {i} must be a Document or a dict, got {type(doc).__name__}")
    return ids, texts, metas


def clamp_k(k: Any, size: int) -> Any:
    """`k` capped at `size` (at least 1): asking for more hits than there are documents returns them all, and
    must not make the core allocate for 10**12 results. A `k` that is not an integer, or is below 1, is passed
    on unchanged for the core to refuse."""
    if isinstance(k, bool):
        return k
    try:
        value = operator.index(k)
    except TypeError:
        return k
    cap = max(int(size), 1)
    return cap if value > cap else k


def dense_limits(k: Any, size: int, ef_search: int) -> tuple[Any, int | None]:
    """(k, ef) for an HNSW search over `size` live vectors whose own beam is `ef_search`: both capped at `size`
    (ef None: the index's own ef_search, when that is no wider than the index)."""
    k = clamp_k(k, size)
    widest = max(size, k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else 1)
    return k, (widest if int(ef_search) > widest else None)
