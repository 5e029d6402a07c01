"""Dense embeddings: the ONNX Runtime bi-encoder, its default model, and cached corpus embeddings."""

from __future__ import annotations

from funnelrank.embed.corpus_cache import corpus_cache_path, embed_corpus
from funnelrank.embed.default_model import DEFAULT_MODEL, DEFAULT_PRECISION, PRECISIONS
from funnelrank.embed.embedder import Embedder, default_embedder
from funnelrank.embed.model_dir import ModelFiles, read_model_dir

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
