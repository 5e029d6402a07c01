"""Where a cross-encoder's files come from: a local directory holding ``model.onnx`` (or ``onnx/model.onnx``),
``tokenizer.json`` and ``config.json``, or, when online and ``huggingface_hub`` is installed, a Hub repository
id (an ONNX export in the repository, else the checkpoint exported on first use).

    >>> from funnelrank.models import default_reranker_path
    >>> find_onnx(default_reranker_path(), None).name
    'model.onnx'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["PRECISIONS", "find_onnx", "model_max_length", "num_labels", "resolve_model_dir"]

# Files looked for in a model directory, in order of preference.
_ONNX_CANDIDATES = ("model.onnx", "onnx/model.onnx")
_REQUIRED_FILES = ("tokenizer.json", "config.json")
_HUB_PATTERNS = ["model.onnx", "onnx/model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"]

PRECISIONS: tuple[str, ...] = ("fp32", "int8")
"""What `CrossEncoder.from_pretrained(precision=...)` accepts."""


def num_labels(config: dict[str, Any]) -> int:
    """Logits per pair the model emits, from ``config.json`` (``id2label`` or ``num_labels``; 1 by default)."""
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    n = config.get("num_labels")
    return int(n) if isinstance(n, int) else 1


def model_max_length(config: dict[str, Any], tok_config: dict[str, Any]) -> int:
    """The longest pair the model takes, in tokens, from its config and tokenizer config."""
    limit = 512
    pos = config.get("max_position_embeddings")
    if isinstance(pos, int) and pos > 0:
        model_type = str(config.get("model_type", ""))
        if "roberta" in model_type or model_type == "camembert":
            pos -= 2  # RoBERTa-style position ids start after the padding index
        limit = min(limit, pos)
    tok_max = tok_config.get("model_max_length")
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limit = min(limit, tok_max)
    return limit


def find_onnx(directory: Path, onnx_file: str | None) -> Path:
    """The ONNX file in `directory`: `onnx_file` when given, else the first of ``model.onnx``,
    ``onnx/model.onnx``; FileNotFoundError naming what is missing."""
    names = (onnx_file,) if onnx_file else _ONNX_CANDIDATES
    for name in names:
        path = directory / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no ONNX model in {directory}: looked for {', '.join(names)}. Export a Hugging Face checkpoint with "
        "`python -m funnelrank.models.export_cross_encoder SRC_DIR OUT_DIR`."
    )


def _check_dir(directory: Path, onnx_file: str | None) -> None:
    find_onnx(directory, onnx_file)
    missing = [name for name in _REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"cross-encoder directory {directory} lacks {', '.join(missing)}")


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not name.startswith((".", "/", "~"))
        and not any(c in name for c in ("\\", " ", ":"))
    )


def resolve_model_dir(name_or_path: str | os.PathLike[str], *, onnx_file: str | None, revision: str | None) -> Path:
    """The local directory of `name_or_path`: the directory itself, or a Hub repository downloaded (and
    exported to ONNX when it has none); FileNotFoundError or ValueError saying what to do."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        _check_dir(path, onnx_file)
        return path
    name = os.fspath(name_or_path)
    looked_for = f"model.onnx or onnx/model.onnx, {' and '.join(_REQUIRED_FILES)}"
    if path.exists():
        raise NotADirectoryError(f"cross-encoder path {path} is a file; expected a directory with {looked_for}")
    if not _looks_like_hub_id(name):
        raise FileNotFoundError(f"cross-encoder {name!r} not found: no directory at {path.resolve()} (with {looked_for})")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(
            f"cross-encoder {name!r} is not a local directory, and loading it from the Hugging Face Hub needs "
            "huggingface_hub: `pip install 'funnelrank[hub]'`, or pass a local directory with " + looked_for
        ) from None
    patterns = [onnx_file, "tokenizer.json", "config.json", "tokenizer_config.json"] if onnx_file else _HUB_PATTERNS
    try:
        local = Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, network error: huggingface_hub raises many types
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        hint = "HF_HUB_OFFLINE is set; unset it to download, " if offline else ""
        raise FileNotFoundError(
            f"could not get cross-encoder {name!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            f"{hint}check the name and the network, or pass a local directory with {looked_for}"
        ) from exc
    try:
        _check_dir(local, onnx_file)
    except FileNotFoundError as exc:
        if onnx_file is not None:
            raise
        return _exported_hub_checkpoint(name, revision, snapshot_download, reason=str(exc))
    return local


_HUB_CHECKPOINT_PATTERNS = ["config.json", "*.safetensors", "pytorch_model.bin", "tokenizer.json",
                            "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "*.model",
                            "merges.txt", "vocab.json"]


def _exported_hub_checkpoint(name: str, revision: str | None, snapshot_download: Any, *, reason: str) -> Path:
    """A Hub repository without an ONNX file: its checkpoint, downloaded, exported to ONNX once and cached
    (``<cache>/hub-onnx/<org>--<name>--<commit>``); later loads, online or offline, use the cached export."""
    from funnelrank.files import cache_dir

    checkpoint = Path(snapshot_download(repo_id=name, revision=revision, allow_patterns=_HUB_CHECKPOINT_PATTERNS))
    out = cache_dir("hub-onnx", f"{name.replace('/', '--')}--{checkpoint.name}")
    if (out / "model.onnx").is_file():
        return out
    if not (checkpoint / "config.json").is_file() or not any(
            (checkpoint / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        raise FileNotFoundError(f"Hub repository {name!r} has no ONNX export ({reason}) and no transformers "
                                "checkpoint (config.json + model.safetensors or pytorch_model.bin) to export")
    try:
        from funnelrank.models.export_cross_encoder import export_cross_encoder
    except ImportError as exc:
        raise FileNotFoundError(
            f"Hub repository {name!r} has no ONNX export ({reason}); exporting its checkpoint once needs torch and "
            f"transformers (`pip install 'funnelrank[dev]'`), or export it yourself with "
            f"`python -m funnelrank.models.export_cross_encoder` and pass the directory ({exc})") from None
    tokenizer_dir = checkpoint
    if not (checkpoint / "tokenizer.json").is_file():  # a slow-tokenizer repository: write its tokenizer.json
        from transformers import AutoTokenizer

        tokenizer_dir = out.parent / f"{out.name}.tokenizer"
        AutoTokenizer.from_pretrained(str(checkpoint), use_fast=True).save_pretrained(str(tokenizer_dir))
    return export_cross_encoder(checkpoint, out, tokenizer_dir=tokenizer_dir, overwrite=True)
