"""Reading a sentence-transformers-style model directory: where the ONNX file and tokenizer are, and
how the model pools and normalizes (from its sentence-transformers config files).

Layout understood (all optional except the tokenizer and an ONNX file)::

    tokenizer.json                  Hugging Face fast-tokenizer file (required)
    model.onnx | onnx/model.onnx    the network (required unless an ONNX path is given explicitly)
    sentence_bert_config.json       {"max_seq_length": 256, ...}
    modules.json                    the module list; a "...Normalize" module means L2-normalized output
    1_Pooling/config.json           {"pooling_mode_mean_tokens": true, ...} (path taken from modules.json)
    config.json                     transformer config; max_position_embeddings caps max_seq_length

Defaults when a file is absent: max_seq_length from the tokenizer's truncation setting, else 512; mean
pooling; L2 normalization on (vectors are meant for cosine / inner-product search).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ONNX_CANDIDATES", "POOLING_MODES", "ModelFiles", "read_model_dir"]

ONNX_CANDIDATES: tuple[str, ...] = ("model.onnx", "onnx/model.onnx")
"""Where an ONNX file is looked for inside a model directory, in order."""

POOLING_MODES: tuple[str, ...] = ("cls", "max", "mean", "mean_sqrt_len")
"""Supported pooling modes, in the order sentence-transformers concatenates them when several are on."""

_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
_UNSUPPORTED_POOLING_KEYS = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
DEFAULT_MAX_SEQ_LENGTH = 512


@dataclass(frozen=True)
class ModelFiles:
    """What an embedder needs to know about a model directory."""

    root: Path
    onnx_path: Path
    tokenizer_path: Path
    max_seq_length: int
    pooling: tuple[str, ...]
    normalize: bool
    dim: int | None
    """Output dimension when the config states it (``word_embedding_dimension``), else None."""


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model config {path}: {exc}") from exc


def _find_onnx(root: Path, onnx_path: str | os.PathLike[str] | None) -> Path:
    if onnx_path is not None:
        path = Path(onnx_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file not found: {path}")
        return path
    for rel in ONNX_CANDIDATES:
        if (root / rel).is_file():
            return root / rel
    looked = ", ".join(str(root / rel) for rel in ONNX_CANDIDATES)
    raise FileNotFoundError(
        f"no ONNX model in {root} (looked for {looked}); export one "
        "(python -m funnelrank.models.export_embedder for all-MiniLM-L6-v2) or pass onnx_path="
    )


def _pooling(root: Path, modules: list[dict[str, Any]] | None) -> tuple[tuple[str, ...], int | None]:
    pool_dir = "1_Pooling"
    for module in modules or []:
        if str(module.get("type", "")).endswith("Pooling"):
            pool_dir = str(module.get("path") or pool_dir)
            break
    config_path = root / pool_dir / "config.json"
    if not config_path.is_file():
        return ("mean",), None
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    for key in _UNSUPPORTED_POOLING_KEYS:
        if config.get(key):
            raise ValueError(f"{config_path}: {key} is not supported (supported: {', '.join(POOLING_MODES)})")
    modes = tuple(mode for mode in POOLING_MODES if config.get(_POOLING_KEYS[mode]))
    if not modes:
        raise ValueError(f"{config_path}: no pooling mode is enabled (supported: {', '.join(POOLING_MODES)})")
    dim = config.get("word_embedding_dimension")
    return modes, (int(dim) * len(modes) if isinstance(dim, int) else None)


def read_model_dir(model_dir: str | Path, *, onnx_path: str | os.PathLike[str] | None = None) -> ModelFiles:
    """Inspect `model_dir` and return its :class:`ModelFiles`.

    `onnx_path` overrides where the network is read from (e.g. a quantized ONNX file shipped apart from
    the tokenizer and configs). Raises FileNotFoundError naming every path looked for when the directory,
    tokenizer or ONNX file is missing, and ValueError for unreadable or unsupported configs.
    """
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"model directory not found: {root}")
    tokenizer_path = root / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"no tokenizer in {root} (looked for {tokenizer_path}; only fast-tokenizer tokenizer.json files "
            "are supported)"
        )
    onnx = _find_onnx(root, onnx_path)

    modules: list[dict[str, Any]] | None = None
    if (root / "modules.json").is_file():
        raw = _read_json(root / "modules.json")
        if not isinstance(raw, list):
            raise ValueError(f"{root / 'modules.json'}: expected a JSON list of modules")
        modules = [m for m in raw if isinstance(m, dict)]
    normalize = True if modules is None else any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    pooling, dim = _pooling(root, modules)

    max_len: int | None = None
    if (root / "sentence_bert_config.json").is_file():
        value = _read_json(root / "sentence_bert_config.json").get("max_seq_length")
        max_len = int(value) if isinstance(value, int) else None
    if max_len is None:
        truncation = _read_json(tokenizer_path).get("truncation") or {}
        value = truncation.get("max_length") if isinstance(truncation, dict) else None
        max_len = int(value) if isinstance(value, int) else DEFAULT_MAX_SEQ_LENGTH
    if (root / "config.json").is_file():
        positions = _read_json(root / "config.json").get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            max_len = min(max_len, positions)
    if max_len < 2:
        raise ValueError(f"{root}: max_seq_length must be >= 2, got {max_len}")
    return ModelFiles(
        root=root,
        onnx_path=onnx,
        tokenizer_path=tokenizer_path,
        max_seq_length=max_len,
        pooling=pooling,
        normalize=normalize,
        dim=dim,
    )
