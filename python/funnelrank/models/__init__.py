"""Models that ship inside the funnelrank package (package data; no network needed to load them).

``reranker-minilm-l6/``: funnelrank's default cross-encoder (see its MODEL_CARD.md). It is a `CrossEncoder`
model directory: ``model.onnx``, ``tokenizer.json``, ``tokenizer_config.json``, ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_RERANKER", "default_reranker_path"]

DEFAULT_RERANKER = "reranker-minilm-l6"
"""Directory name of the default cross-encoder under this package."""


def default_reranker_path() -> Path:
    """Directory of the default cross-encoder shipped with funnelrank (for ``CrossEncoder.from_pretrained``).

    Raises FileNotFoundError (naming the missing file) if the installed package lacks it."""
    path = Path(__file__).resolve().parent / DEFAULT_RERANKER
    for name in ("model.onnx", "tokenizer.json", "config.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"the default reranker is incomplete: {path / name} is missing")
    return path
