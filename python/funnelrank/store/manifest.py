"""A collection's ``manifest.json``: written last by every save (the commit point), checked strictly on read.

The manifest names the data directory of the current generation, its documents file (with the file's sha256
and the document count), its BM25 index and, for a dense collection, its HNSW index and the embedder's
identity (:func:`funnelrank.store.embedders.embedder_identity`). It is checked strictly (exact key set, types,
ranges, safe file names) and by its ``checksum`` field: the sha256 of its canonical JSON (sorted keys, no
whitespace, ASCII) without that field. A manifest without a valid checksum is refused; so is one of format
version 1 (pre-release, before the checksum), with the command that rebuilds it from its documents file.
Anything wrong raises :class:`funnelrank.IndexFileError` naming ``manifest.json`` and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from funnelrank._core import IndexFileError
from funnelrank.checks import brief
from funnelrank.store.embedders import IDENTITY_KEYS
from funnelrank.store.layout import (
    BM25_FILE,
    DATA_RE,
    DELETED_RE,
    DOCS_FILE,
    FORMAT,
    FORMAT_VERSION,
    HNSW_FILE,
    MANIFEST,
    READABLE_VERSIONS,
    no_duplicate_keys,
    open_regular,
)

__all__ = [
    "MANIFEST_MAX_BYTES",
    "MAX_SEGMENTS",
    "manifest_bytes",
    "manifest_checksum",
    "new_manifest",
    "read_manifest",
    "segment_entries",
]

MANIFEST_MAX_BYTES = 1 << 20
"""The largest manifest read (a real one is under 2 KB)."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MAX_DIM = 1 << 20
_MAX_COUNT = (1 << 63) - 1
_KEYS = {2: frozenset({"format", "version", "data", "documents", "docs", "bm25", "dense", "checksum"})}
_KEYS[3] = _KEYS[2] | {"generation", "segments", "deleted"}
MAX_SEGMENTS = 4096
"""The most segments a manifest may name (merges keep a collection far below it)."""


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 (hex) of the manifest's canonical JSON without its ``checksum`` field."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def new_manifest(segments: list[dict[str, Any]], identity: dict[str, Any] | None, generation: int) -> dict[str, Any]:
    """The manifest, with its ``checksum``, of commit number `generation`: its `segments` in insertion order
    (at least one; each ``{"data", "documents", "docs_sha256", "deleted"}``, as :func:`segment_entries` gives
    them), each with a BM25 index and, when `identity` (the
    :func:`~funnelrank.store.embedders.embedder_identity` of its embedder) is not None, an HNSW index.

    The first segment is described by the fields a version-2 manifest has (``data``, ``documents``, ``docs``,
    ``bm25``, ``dense``), the others in ``segments``; ``deleted`` maps a segment's data directory to its
    deletion bitmap ``{"file", "sha256", "count"}``."""
    first = segments[0]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "generation": generation,
        "data": first["data"],
        "documents": first["documents"],
        "docs": {"file": DOCS_FILE, "sha256": first["docs_sha256"]},
        "bm25": {"file": BM25_FILE},
        "dense": {"file": HNSW_FILE, "embedder": identity} if identity is not None else None,
        "segments": [{k: seg[k] for k in ("data", "documents", "docs_sha256")} for seg in segments[1:]],
        "deleted": {seg["data"]: seg["deleted"] for seg in segments if seg["deleted"] is not None},
    }
    manifest["checksum"] = manifest_checksum(manifest)
    return manifest


def segment_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The segments of a checked manifest (version 2: its one segment), in insertion order, each
    ``{"data", "documents", "docs_sha256", "deleted", "docs_file", "bm25_file", "hnsw_file"}`` (``deleted``:
    the deletion bitmap entry or None; ``hnsw_file`` None without a dense index), e.g.
    ``[{"data": "data-0a1b2c3d4e5f", "documents": 2, ..., "deleted": None, ...}]``."""
    dense = manifest["dense"]
    deleted = manifest.get("deleted", {})
    out = [{"data": manifest["data"], "documents": manifest["documents"], "docs_sha256": manifest["docs"]["sha256"],
            "docs_file": manifest["docs"]["file"], "bm25_file": manifest["bm25"]["file"],
            "hnsw_file": dense["file"] if dense else None}]
    for seg in manifest.get("segments", []):
        out.append({**seg, "docs_file": DOCS_FILE, "bm25_file": BM25_FILE, "hnsw_file": HNSW_FILE if dense else None})
    for seg in out:
        seg["deleted"] = deleted.get(seg["data"])
    return out


def manifest_bytes(root: Path) -> bytes | None:
    """The raw bytes of `root`'s manifest (at most :data:`MANIFEST_MAX_BYTES` + 1), or None when it cannot be
    read: to tell whether a save replaced it meanwhile."""
    try:
        with open_regular(root / MANIFEST) as fh:
            return fh.read(MANIFEST_MAX_BYTES + 1)
    except OSError:
        return None


def read_manifest(root: Path) -> tuple[bytes, dict[str, Any]]:
    """(the manifest's bytes, the checked manifest) of collection directory `root`; IndexFileError naming the
    manifest and what is wrong when it is missing, unreadable, of an unsupported version, or fails the checks."""
    path = root / MANIFEST
    if not root.is_dir():
        raise IndexFileError(f"{root}: no such collection directory")
    try:
        with open_regular(path) as fh:
            raw = fh.read(MANIFEST_MAX_BYTES + 1)
    except FileNotFoundError:
        raise IndexFileError(f"{root} is not a funnelrank collection: {MANIFEST} is missing") from None
    except OSError as exc:
        raise IndexFileError(f"{path}: cannot read the manifest ({exc})") from None
    if len(raw) > MANIFEST_MAX_BYTES:
        raise _corrupt(path, f"larger than {MANIFEST_MAX_BYTES} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except RecursionError:
        raise _corrupt(path, "nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _corrupt(path, str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{path}: not a funnelrank collection manifest")
    version = manifest.get("version")
    if version == 1 and type(version) is int:
        data = manifest.get("data")
        docs = data if isinstance(data, str) and DATA_RE.fullmatch(data) else "data-<...>"
        raise IndexFileError(
            f"{path}: collection format version 1 (a pre-release format without a checksum) cannot be verified "
            f"and is not loaded; its documents are kept: rebuild the collection from them with "
            f"`funnelrank index {root / docs / DOCS_FILE} --out NEW_DIR`"
        )
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise IndexFileError(
            f"{path}: collection format version {brief(version)} is not supported "
            f"(this funnelrank reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
            "re-index with `funnelrank index`"
        )
    _check_manifest(manifest, version, path)
    return raw, manifest


def _corrupt(path: Path, what: str) -> IndexFileError:
    return IndexFileError(f"{path}: corrupt manifest ({what})")


def _object(value: Any, keys: frozenset[str], where: str, path: Path) -> dict[str, Any]:
    """`value` if it is a JSON object with exactly `keys`; IndexFileError otherwise."""
    if not isinstance(value, dict):
        raise _corrupt(path, f"{where} must be an object, got {type(value).__name__}")
    missing, extra = keys - value.keys(), value.keys() - keys
    if missing:
        raise _corrupt(path, f"bad or missing {where} field(s): {', '.join(map(repr, sorted(missing)))}")
    if extra:
        shown = ", ".join(brief(k) for k in sorted(extra)[:5])
        raise _corrupt(path, f"unexpected {where} field(s): {shown}")
    return value


def _integer(value: Any, lo: int, hi: int, where: str, path: Path) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise _corrupt(path, f"{where} must be an integer in [{lo}, {hi}], got {brief(value)}")
    return value


def _string(value: Any, where: str, path: Path, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise _corrupt(path, f"{where} must be a string, got {brief(value)}")
    return value


def _file_name(value: Any, path: Path) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 255
        or any(c in value for c in "/\\\x00")
        or value in (".", "..")
    ):
        raise _corrupt(path, f"bad file name {brief(value)}")
    return value


def _check_manifest(manifest: dict[str, Any], version: int, path: Path) -> None:
    """The strict schema: exact keys, types and ranges (IndexFileError naming the manifest and the field)."""
    _object(manifest, _KEYS[version], "top-level", path)
    data = manifest["data"]
    if not isinstance(data, str) or not DATA_RE.fullmatch(data):
        raise _corrupt(path, f"bad data directory {brief(data)}")
    _integer(manifest["documents"], 0, _MAX_COUNT, "'documents'", path)
    docs = _object(manifest["docs"], frozenset({"file", "sha256"}), "'docs'", path)
    _file_name(docs["file"], path)
    if not isinstance(docs["sha256"], str) or not _SHA256_RE.fullmatch(docs["sha256"]):
        raise _corrupt(path, f"'docs' sha256 must be 64 hex digits, got {brief(docs['sha256'])}")
    _file_name(_object(manifest["bm25"], frozenset({"file"}), "'bm25'", path)["file"], path)
    dense = manifest["dense"]
    if dense is not None:
        dense = _object(dense, frozenset({"file", "embedder"}), "'dense'", path)
        _file_name(dense["file"], path)
        identity = _object(dense["embedder"], IDENTITY_KEYS, "'dense.embedder'", path)
        _string(identity["name"], "'dense.embedder.name'", path)
        _string(identity["fingerprint"], "'dense.embedder.fingerprint'", path)
        _integer(identity["dim"], 1, _MAX_DIM, "'dense.embedder.dim'", path)
        _string(identity["model_dir"], "'dense.embedder.model_dir'", path, optional=True)
        _string(identity["onnx_path"], "'dense.embedder.onnx_path'", path, optional=True)
    if version >= 3:
        _check_segments(manifest, path)
    checksum = manifest["checksum"]
    if not isinstance(checksum, str) or not _SHA256_RE.fullmatch(checksum):
        raise _corrupt(path, f"'checksum' must be 64 hex digits, got {brief(checksum)}")
    if checksum != manifest_checksum(manifest):
        raise _corrupt(path, "checksum mismatch: it was changed or damaged after it was written")


def _sha256(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise _corrupt(path, f"{where} must be 64 hex digits, got {brief(value)}")
    return value


def _check_segments(manifest: dict[str, Any], path: Path) -> None:
    """The version-3 fields: ``generation``, the ``segments`` after the first (distinct data directories) and
    the ``deleted`` bitmaps (of those segments only, each deleting at least one and at most all documents)."""
    _integer(manifest["generation"], 0, _MAX_COUNT, "'generation'", path)
    segments = manifest["segments"]
    if not isinstance(segments, list) or len(segments) >= MAX_SEGMENTS:
        raise _corrupt(path, f"'segments' must be a list of fewer than {MAX_SEGMENTS}, got {brief(segments)}")
    sizes = {manifest["data"]: manifest["documents"]}
    for i, seg in enumerate(segments):
        seg = _object(seg, frozenset({"data", "documents", "docs_sha256"}), f"'segments[{i}]'", path)
        data = seg["data"]
        if not isinstance(data, str) or not DATA_RE.fullmatch(data) or data in sizes:
            raise _corrupt(path, f"bad or repeated data directory {brief(data)} in 'segments[{i}]'")
        sizes[data] = _integer(seg["documents"], 0, _MAX_COUNT, f"'segments[{i}].documents'", path)
        _sha256(seg["docs_sha256"], f"'segments[{i}].docs_sha256'", path)
    deleted = manifest["deleted"]
    if not isinstance(deleted, dict):
        raise _corrupt(path, f"'deleted' must be an object, got {brief(deleted)}")
    for data, entry in deleted.items():
        if data not in sizes:
            raise _corrupt(path, f"'deleted' names {brief(data)}, which is not a segment")
        entry = _object(entry, frozenset({"file", "sha256", "count"}), f"'deleted[{data}]'", path)
        if not isinstance(entry["file"], str) or not DELETED_RE.fullmatch(entry["file"]):
            raise _corrupt(path, f"bad deletion bitmap name {brief(entry['file'])}")
        _sha256(entry["sha256"], f"'deleted[{data}].sha256'", path)
        _integer(entry["count"], 1, max(sizes[data], 1), f"'deleted[{data}].count'", path)
