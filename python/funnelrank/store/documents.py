"""`Document`: one stored document (string id, text, JSON metadata).

The low-level record shared by :mod:`funnelrank.store.collection` (which holds documents in memory and re-exports
:class:`Document`) and :mod:`funnelrank.store.docs_file` (which writes and reads them); it imports no other
funnelrank module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document", "copy_document"]


@dataclass(frozen=True)
class Document:
    """One stored document.

    A collection keeps its own copy of the metadata and hands out copies (:meth:`Collection.get`,
    iteration, search results), so changing a Document's metadata changes nothing stored: its filters
    stay consistent. To change a document's metadata, delete it and add it again."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def copy_document(doc: Document) -> Document:
    """`doc` with a metadata dict of its own (nested values included)."""
    return Document(doc.id, doc.text, copy.deepcopy(doc.metadata) if doc.metadata else {})
