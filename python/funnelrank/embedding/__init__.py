"""Dense embeddings: the ONNX Runtime bi-encoder, its default model, and cached corpus embeddings."""

from __future__ import annotations

from funnelrank.embedding.defaults import DEFAULT_MODEL, DEFAULT_PRECISION, PRECISIONS, default_embedder
from funnelrank.embedding.embedder import Embedder
from funnelrank.embedding.model_dir import ModelFiles, read_model_dir

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "Embedder",
    "ModelFiles",
    "default_embedder",
    "read_model_dir",
]
