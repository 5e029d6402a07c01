"""Filling a collection's stage-1 indexes with many documents: the documents' embeddings (computed, or reused
from the on-disk embedding cache) and BM25 adds in chunks behind a progress bar, each undone on failure."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PROGRESS_MIN_DOCS", "add_to_bm25", "embed_documents"]

PROGRESS_MIN_DOCS = 5000
"""Indexing at least this many documents at once shows progress bars (unless told otherwise)."""
_ADD_CHUNK = 2048
"""Documents per BM25 add call when showing progress (the index grows incrementally)."""


def embed_documents(
    embedder: Any, ids: Sequence[str], texts: Sequence[str], *, cache: str | None, progress: bool
) -> np.ndarray:
    """The embeddings of `texts` by `embedder`, ``[len(texts), dim]`` float32. With `cache` (a label), vectors
    cached on disk by :func:`funnelrank.embed.embed_corpus` for exactly these ids and texts and this embedder are
    reused, and cached otherwise. `progress` shows a progress bar."""
    if cache is not None:
        from funnelrank.embed import embed_corpus

        raw, _ = embed_corpus(embedder, ids, texts, label=cache, show_progress=progress)
    else:
        raw = embedder.embed(texts, show_progress=progress, desc="embed documents")
    return np.ascontiguousarray(raw, dtype=np.float32)


def add_to_bm25(bm25: Any, ids: list[str], texts: list[str], *, progress: bool) -> None:
    """Add documents to the BM25 index `bm25`: at once, or with `progress` in chunks behind a progress bar
    (the chunks added are deleted again when a later one fails or the add is interrupted)."""
    if not progress:
        bm25.add(ids, texts)
        return
    from tqdm import tqdm

    done = 0
    try:
        with tqdm(total=len(ids), desc="index BM25", unit="doc", file=sys.stderr) as bar:
            for start in range(0, len(ids), _ADD_CHUNK):
                bm25.add(ids[start : start + _ADD_CHUNK], texts[start : start + _ADD_CHUNK])
                done = start + len(ids[start : start + _ADD_CHUNK])
                bar.update(len(ids[start : start + _ADD_CHUNK]))
    except BaseException:
        if done:
            bm25.delete(ids[:done])
        raise
