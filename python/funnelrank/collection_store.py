"""A collection on disk: one directory, saved atomically as a whole.

Layout::

    DIR/manifest.json          format name + version, document count, embedder identity, which data dir
    DIR/data-<random>/docs.jsonl   one {"id", "text", "metadata"} object per line (sha256 in the manifest)
    DIR/data-<random>/bm25.idx     the BM25 index (checksummed index file)
    DIR/data-<random>/hnsw.idx     the HNSW index, for dense collections (checksummed index file)

Saving writes a fresh ``data-<random>`` directory, fsyncs every file and the directory, and only then
replaces ``manifest.json`` atomically (temporary file + fsync + rename): the manifest is the commit
point. A crash at any moment before it leaves the old manifest pointing at the old, untouched data
directory; after it, the new one is complete. Data directories no manifest points at (from an earlier
save, or a crashed one) are removed by the next successful save.

Loading verifies the manifest, the docs file's sha256 and document count, and lets each index file
verify its own checksum; anything missing or corrupt raises :class:`funnelrank.IndexFileError` naming
the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnelrank._core import IndexFileError
from funnelrank.cache import atomic_writer
from funnelrank.documents import Document

if TYPE_CHECKING:  # only for annotations: Collection imports this module (save/load), never the reverse
    from funnelrank.collection import Collection

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "load_collection", "save_collection"]

FORMAT = "funnelrank-collection"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCS_FILE = "docs.jsonl"
BM25_FILE = "bm25.idx"
HNSW_FILE = "hnsw.idx"
_DATA_PREFIX = "data-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _embedder_identity(embedder: Any) -> dict[str, Any]:
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


def save_collection(collection: Collection, path: str | os.PathLike[str]) -> None:
    """Write `collection` to directory `path` (created if needed) atomically; see the module docstring.

    Refuses (ValueError) a non-empty directory that is not a collection, so user files are never mixed in.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            ours = json.loads(manifest_path.read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ValueError(f"{manifest_path} is not a funnelrank collection manifest; choose a new directory")
    elif any(not p.name.startswith(_DATA_PREFIX) for p in root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no funnelrank collection; choose a new directory")

    data_name = _DATA_PREFIX + secrets.token_hex(6)
    data = root / data_name
    data.mkdir()
    try:
        docs = list(collection._docs.values())
        digest = hashlib.sha256()
        with open(data / DOCS_FILE, "wb") as fh:
            for doc in docs:
                line = json.dumps(
                    {"id": doc.id, "text": doc.text, "metadata": doc.metadata}, ensure_ascii=False, allow_nan=False
                ).encode("utf-8") + b"\n"
                digest.update(line)
                fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        collection._bm25.save(str(data / BM25_FILE))
        _fsync_file(data / BM25_FILE)
        if collection._hnsw is not None:
            collection._hnsw.save(str(data / HNSW_FILE))
            _fsync_file(data / HNSW_FILE)
        _fsync_dir(data)
        _fsync_dir(root)

        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "data": data_name,
            "documents": len(docs),
            "docs": {"file": DOCS_FILE, "sha256": digest.hexdigest()},
            "bm25": {"file": BM25_FILE},
            "dense": (
                {"file": HNSW_FILE, "embedder": _embedder_identity(collection.embedder)}
                if collection._hnsw is not None
                else None
            ),
        }
        with atomic_writer(root / MANIFEST) as fh:
            fh.write(json.dumps(manifest, indent=2).encode("utf-8"))
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    for stale in root.iterdir():  # earlier saves' data, and leftovers of crashed saves
        if stale.is_dir() and stale.name.startswith(_DATA_PREFIX) and stale.name != data_name:
            shutil.rmtree(stale, ignore_errors=True)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise IndexFileError(f"{root}: no such collection directory")
    if not path.is_file():
        raise IndexFileError(f"{root} is not a funnelrank collection: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFileError(f"{path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{path}: not a funnelrank collection manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise IndexFileError(
            f"{path}: collection format version {manifest.get('version')!r} is not supported "
            f"(this funnelrank reads version {FORMAT_VERSION}); re-index with `funnelrank index`"
        )
    try:
        for key in ("data", "documents", "docs", "bm25"):
            if key not in manifest:
                raise KeyError(key)
        int(manifest["documents"])
        str(manifest["docs"]["file"]), str(manifest["docs"]["sha256"]), str(manifest["bm25"]["file"])
        if manifest.get("dense") is not None:
            str(manifest["dense"]["file"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexFileError(f"{path}: corrupt manifest (bad or missing {exc})") from None
    for name in (manifest["docs"]["file"], manifest["bm25"]["file"], (manifest.get("dense") or {}).get("file", "x")):
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise IndexFileError(f"{path}: corrupt manifest (bad file name {name!r})")
    data = manifest["data"]
    if not isinstance(data, str) or not data.startswith(_DATA_PREFIX) or "/" in data or "\\" in data:
        raise IndexFileError(f"{path}: corrupt manifest (bad data directory {data!r})")
    return manifest


def _read_docs(path: Path, sha256: str, count: int) -> list[Document]:
    if not path.is_file():
        raise IndexFileError(f"{path}: missing documents file")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise IndexFileError(f"{path}: documents file is corrupt (checksum mismatch)")
    docs = []
    try:
        for line in raw.splitlines():
            obj = json.loads(line)
            docs.append(Document(obj["id"], obj["text"], obj.get("metadata") or {}))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IndexFileError(f"{path}: documents file is corrupt ({exc})") from None
    if len(docs) != count:
        raise IndexFileError(f"{path}: holds {len(docs)} documents, the manifest says {count}")
    return docs


def _find_embedder(identity: dict[str, Any], manifest_path: Path) -> Any:
    from funnelrank.embedding import Embedder, default_embedder

    name = str(identity.get("name", ""))
    candidates = []
    for precision in ("fp32", "int8"):
        if name.endswith(f"-{precision}"):
            candidates.append(lambda p=precision: default_embedder(p))
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


def load_collection(cls: type[Collection], path: str | os.PathLike[str], *, embedder: Any | None = None) -> Collection:
    """Load the collection in directory `path`; see the module docstring."""
    from funnelrank._core import BM25Index

    root = Path(path)
    manifest = _read_manifest(root)
    data = root / manifest["data"]
    if not data.is_dir():
        raise IndexFileError(f"{data}: the collection's data directory is missing")
    docs = _read_docs(data / manifest["docs"]["file"], manifest["docs"]["sha256"], int(manifest["documents"]))
    bm25_path = data / manifest["bm25"]["file"]
    if not bm25_path.is_file():
        raise IndexFileError(f"{bm25_path}: missing BM25 index file")
    bm25 = BM25Index.load(str(bm25_path))
    if len(bm25) != len(docs):
        raise IndexFileError(f"{bm25_path}: holds {len(bm25)} documents, the collection {len(docs)}")

    hnsw = None
    dense = manifest.get("dense")
    if dense:
        from funnelrank._core import HNSWIndex

        identity = dense.get("embedder") or {}
        if embedder is None:
            embedder = _find_embedder(identity, root / MANIFEST)
        elif identity.get("fingerprint") and getattr(embedder, "fingerprint", None) != identity["fingerprint"]:
            raise ValueError(
                f"{root}: embedder {getattr(embedder, 'name', '?')!r} is not the one the collection was built "
                f"with ({identity.get('name')!r}); its vectors would not match the index"
            )
        hnsw_path = data / dense["file"]
        if not hnsw_path.is_file():
            raise IndexFileError(f"{hnsw_path}: missing HNSW index file")
        hnsw = HNSWIndex.load(str(hnsw_path))
        if len(hnsw) != len(docs):
            raise IndexFileError(f"{hnsw_path}: holds {len(hnsw)} vectors, the collection {len(docs)} documents")
    else:
        embedder = None
    return cls._from_parts(
        docs=docs, bm25_index=bm25, hnsw_index=hnsw, embedder=embedder, bm25_params={}, hnsw_params={}
    )
