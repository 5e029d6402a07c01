"""Which bi-encoder a collection embeds with: the default one, what a saved collection records of it, and
finding it again from that record.

The embedder classes live in :mod:`funnelrank.embed`, which is imported only when an embedder is actually
needed (it loads ONNX Runtime), so that a BM25-only collection never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["IDENTITY_KEYS", "default_embedder_or_none", "embedder_identity", "find_embedder"]

IDENTITY_KEYS = frozenset({"name", "fingerprint", "dim", "model_dir", "onnx_path"})
"""The fields of an :func:`embedder_identity` (the manifest's ``dense.embedder`` object has exactly these)."""


def default_embedder_or_none() -> Any | None:
    """The default bi-encoder, or None when it is not available on this machine."""
    try:
        from funnelrank.embed import Embedder
    except ImportError:
        return None
    try:
        return Embedder.default()
    except (FileNotFoundError, ValueError):
        return None


def embedder_identity(embedder: Any) -> dict[str, Any]:
    """What a saved collection records of its embedder, to find it again (:func:`find_embedder`):
    ``{"name", "fingerprint", "dim", "model_dir", "onnx_path"}``."""
    files = getattr(embedder, "files", None)
    root = getattr(files, "root", None)
    onnx = getattr(files, "onnx_path", None)
    return {
        "name": str(getattr(embedder, "name", type(embedder).__name__)),
        "fingerprint": str(getattr(embedder, "fingerprint", "")),
        "dim": int(embedder.dim),
        "model_dir": str(Path(root).resolve()) if root is not None else None,
        "onnx_path": str(Path(onnx).resolve()) if onnx is not None else None,
    }


def find_embedder(identity: dict[str, Any], manifest_path: Path) -> Any:
    """The embedder an :func:`embedder_identity` describes (the default one by precision, or its model
    directory), checked by fingerprint; ValueError naming `manifest_path` when it cannot be found here."""
    from funnelrank.embed import Embedder, default_embedder

    name = str(identity.get("name", ""))
    candidates: list[Callable[[], Any]] = []
    for precision in ("fp32", "int8"):
        if name.endswith(f"-{precision}"):
            candidates.append(lambda p=precision: default_embedder(p))  # type: ignore[misc]
    if identity.get("model_dir"):
        candidates.append(lambda: Embedder(identity["model_dir"], onnx_path=identity.get("onnx_path"), name=name))
    errors = []
    for make in candidates:
        try:
            embedder = make()
        except (FileNotFoundError, ValueError) as exc:
            errors.append(str(exc))
            continue
        if embedder.fingerprint == identity.get("fingerprint"):
            return embedder
        errors.append(f"{embedder.name} has a different fingerprint")
    raise ValueError(
        f"{manifest_path}: the collection was embedded with {name!r} (fingerprint "
        f"{str(identity.get('fingerprint'))[:12]}...), which cannot be found here"
        + (f" ({'; '.join(errors)})" if errors else "")
        + "; pass embedder= to Collection.load"
    )
