"""Models that ship inside the funnelrank package (package data; no network needed to load them).

``reranker-minilm-l6/``: funnelrank's default cross-encoder (see its MODEL_CARD.md). It holds
``model.onnx`` (committed once), ``tokenizer.json``, ``tokenizer_config.json``, ``config.json`` and, after a
retrain, ``weights.patch.npz``: the retrained weights as a patch over the committed ``model.onnx``
(:mod:`funnelrank.models.weight_patch`). The first load applies the patch once and keeps the patched model
directory in funnelrank's cache (:func:`funnelrank.files.cache_dir`); later loads reuse it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from funnelrank.files import atomic_directory, cache_dir, file_sha256

__all__ = ["PACKAGED_RERANKER", "PATCH_FILE", "default_reranker_path"]

PACKAGED_RERANKER = "reranker-minilm-l6"
"""Directory name of the default cross-encoder under this package."""

PATCH_FILE = "weights.patch.npz"
"""Name of the weight patch in a packaged model directory."""

_MODEL_FILES = ("model.onnx", "tokenizer.json", "config.json")
_COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json", "MODEL_CARD.md")


def default_reranker_path() -> Path:
    """Directory of the default cross-encoder shipped with funnelrank (for ``CrossEncoder.from_pretrained``).

    Without a weight patch this is the package directory itself. With one, it is the patched model directory in
    funnelrank's cache, written (atomically) on first use. Raises FileNotFoundError (naming the missing file)
    if the installed package lacks part of the model, ValueError if its patch does not fit its model."""
    path = Path(__file__).resolve().parent / PACKAGED_RERANKER
    for name in _MODEL_FILES:
        if not (path / name).is_file():
            raise FileNotFoundError(f"the default reranker is incomplete: {path / name} is missing")
    patch = path / PATCH_FILE
    if not patch.is_file():
        return path
    return _patched_copy(path, patch)


def _patched_copy(path: Path, patch: Path) -> Path:
    from funnelrank.models.weight_patch import apply_patch

    target = cache_dir("models", f"{PACKAGED_RERANKER}-{file_sha256(patch)[:16]}")
    if all((target / name).is_file() for name in _MODEL_FILES):
        return target
    try:
        # An incomplete directory (files deleted by hand) is replaced; a complete one is never touched.
        with atomic_directory(target, overwrite=target.exists()) as staging:
            apply_patch(path / "model.onnx", patch, staging / "model.onnx")
            for name in _COPIED_FILES:
                if (path / name).is_file():
                    shutil.copyfile(path / name, staging / name)
    except PermissionError as exc:
        raise PermissionError(f"cannot write the default reranker to {target} ({exc}); set $FUNNELRANK_CACHE to a "
                              "writable directory") from exc
    except OSError:
        # Another process finished the same directory first (the final rename found it there): use theirs.
        if not all((target / name).is_file() for name in _MODEL_FILES):
            raise
    return target
