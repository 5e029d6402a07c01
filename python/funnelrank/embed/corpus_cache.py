"""Corpus embeddings cached on disk, keyed by content, so re-evaluating a dataset does not re-embed it.

The key is a sha256 over the embedder's :attr:`~funnelrank.embed.Embedder.fingerprint` (model file,
tokenizer, max_seq_length, pooling, normalization) and every (id, text) pair in order: any change to the
model or the corpus is a different file. Files live in ``<cache>/embeddings/<label>/<model>-<key>.npy``
(see :func:`funnelrank.files.cache_dir`), written atomically. A cache file that cannot be read or does not
match (shape, dtype, non-finite values) is reported with a warning and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from funnelrank.embed.embedder import Embedder
from funnelrank.files import atomic_writer, cache_dir

__all__ = ["corpus_cache_path", "embed_corpus"]


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "corpus"


def corpus_cache_path(embedder: Embedder, ids: Sequence[str], texts: Sequence[str], label: str) -> Path:
    """Where the embeddings of (`ids`, `texts`) by `embedder` are cached (the file may not exist)."""
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    digest = hashlib.sha256(embedder.fingerprint.encode())
    for doc_id, text in zip(ids, texts):
        digest.update(b"\x00")
        digest.update(str(doc_id).encode("utf-8", "surrogatepass"))
        digest.update(b"\x01")
        digest.update(str(text).encode("utf-8", "surrogatepass"))
    return cache_dir("embeddings", _safe(label), f"{_safe(embedder.name)}-{digest.hexdigest()[:32]}.npy")


def _load(path: Path, rows: int, dim: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable embedding cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if array.dtype != np.float32 or array.shape != (rows, dim) or not np.isfinite(array).all():
        warnings.warn(
            f"ignoring embedding cache {path}: {array.dtype} {array.shape}, expected float32 ({rows}, {dim})",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return array


def embed_corpus(
    embedder: Embedder,
    ids: Sequence[str],
    texts: Sequence[str],
    *,
    label: str,
    use_cache: bool = True,
    show_progress: bool = False,
) -> tuple[np.ndarray, bool]:
    """Embeddings ``[len(texts), dim]`` of `texts` (row i for ``ids[i]``) and whether they came from the cache.

    `label` names the cache sub-directory (e.g. the dataset name). With `use_cache` false nothing is read
    or written.
    """
    if not use_cache:
        return embedder.embed(texts, show_progress=show_progress, desc=f"embed {label}"), False
    path = corpus_cache_path(embedder, ids, texts, label)
    if path.is_file():
        cached = _load(path, len(texts), embedder.dim)
        if cached is not None:
            return cached, True
    vectors = embedder.embed(texts, show_progress=show_progress, desc=f"embed {label}")
    with atomic_writer(path) as fh:
        np.save(fh, vectors, allow_pickle=False)
    return vectors, False
