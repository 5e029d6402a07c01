"""Dense embeddings: the ONNX Runtime bi-encoder, its default model, and cached corpus embeddings."""

from __future__ import annotations

from funnelrank.embedding.corpus_cache import corpus_cache_path, embed_corpus
from funnelrank.embedding.defaults import DEFAULT_MODEL, DEFAULT_PRECISION, PRECISIONS
from funnelrank.embedding.embedder import Embedder, default_embedder
from funnelrank.embedding.model_dir import ModelFiles, read_model_dir

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "Embedder",
    "ModelFiles",
    "corpus_cache_path",
    "default_embedder",
    "embed_corpus",
    "read_model_dir",
]
