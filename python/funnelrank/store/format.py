"""A collection on disk: one directory, saved atomically as a whole, written by one writer at a time.

Layout::

    DIR/manifest.json              format name + version, document count, embedder identity, which data dir,
                                   and a sha256 checksum of the manifest itself
    DIR/.save.lock                 the writer lock (flock), holding the writer's pid: one writer at a time
    DIR/data-<12 hex>/docs.jsonl   one {"id", "text", "metadata"} object per line (sha256 in the manifest)
    DIR/data-<12 hex>/bm25.idx     the BM25 index (checksummed index file)
    DIR/data-<12 hex>/hnsw.idx     the HNSW index, for dense collections (checksummed index file)

**One writer**: the first save of a :class:`~funnelrank.store.collection.Collection` into a directory (or
``Collection.load(DIR, writer=True)``) takes the directory's writer lock, an exclusive ``flock`` on
``DIR/.save.lock``, and the collection object keeps it until ``close()`` (or until it is garbage-collected, or
its process exits: the kernel then releases it, so a killed writer never blocks the next one). Another writer
(another process, or another collection object in this one) fails at once with
:class:`CollectionLockedError` naming the directory and the holder's pid. Readers take no lock.

**Saving** writes a fresh ``data-<random>`` directory, fsyncs every file and the directory, and only then
replaces ``manifest.json`` atomically (temporary file + fsync + rename): the manifest is the commit point. A
crash or kill at any moment before it leaves the old manifest pointing at the old, untouched data directory;
after it, the new one is complete. The data directory of the generation just replaced is *kept*, so that a
reader that read the old manifest an instant earlier can still finish; older generations and the leftovers of
failed or killed saves (data directories no manifest points at, the manifest writer's temporary files; only
names this module creates) are removed by the next successful save. After a successful save the directory
holds at most two data directories.

**Loading** takes no lock. It reads the manifest, then the generation the manifest names; when a part of it
is missing because saves meanwhile replaced the manifest and removed that generation, it starts over on the
new manifest (up to :data:`LOAD_ATTEMPTS` times). A reader sees one whole generation, old or new, never a mix.

The manifest is checked strictly (exact key set, types, ranges, safe file names) and by its ``checksum`` field:
the sha256 of its canonical JSON (sorted keys, no whitespace, ASCII) without that field. A manifest without a
valid checksum is refused; so is one of format version 1 (pre-release, before the checksum), with the command
that rebuilds it from its documents file. The docs file's sha256 and document count are verified, each index
file verifies its own checksum, and a data directory holding an HNSW index the manifest does not name (a
dense collection whose ``"dense"`` was edited to null) is refused. Anything missing or corrupt raises
:class:`funnelrank.IndexFileError` naming the file (``manifest.json``, ``docs.jsonl``, ...) and what is wrong.
:func:`check_collection` runs the same checks without loading an embedder (``funnelrank check DIR``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnelrank._core import IndexFileError
from funnelrank.checks import brief, check_text
from funnelrank.files import atomic_writer, atomic_writer_leftovers
from funnelrank.retrieve.filters import validate_metadata
from funnelrank.store.documents import Document

if TYPE_CHECKING:  # only for annotations: Collection imports this module (save/load), never the reverse
    from funnelrank.store.collection import Collection

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LOAD_ATTEMPTS",
    "LOCK_FILE",
    "MANIFEST",
    "CheckReport",
    "CollectionLockedError",
    "WriterLock",
    "check_collection",
    "load_collection",
    "save_collection",
]

FORMAT = "funnelrank-collection"
FORMAT_VERSION = 2
"""The manifest version written and read; 2 added the ``checksum`` field (version 1 was never released)."""
READABLE_VERSIONS = (2,)
MANIFEST = "manifest.json"
LOCK_FILE = ".save.lock"
DOCS_FILE = "docs.jsonl"
BM25_FILE = "bm25.idx"
HNSW_FILE = "hnsw.idx"
LOAD_ATTEMPTS = 5
"""How many manifests a load tries when saves keep replacing the generation it is reading."""

_DATA_PREFIX = "data-"
_DATA_RE = re.compile(r"data-[0-9a-f]{12}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MANIFEST_MAX_BYTES = 1 << 20  # a real manifest is under 2 KB
_MAX_DIM = 1 << 20
_MAX_COUNT = (1 << 63) - 1
_KEYS = {2: frozenset({"format", "version", "data", "documents", "docs", "bm25", "dense", "checksum"})}
_EMBEDDER_KEYS = frozenset({"name", "fingerprint", "dim", "model_dir", "onnx_path"})
_DOC_KEYS = frozenset({"id", "text", "metadata"})

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _open_regular(path: Path) -> Any:
    """`path` opened for reading in binary mode; OSError when it is not a regular file (a FIFO, a device, a
    directory: refused without blocking, as the index loaders do)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


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


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 (hex) of the manifest's canonical JSON without its ``checksum`` field."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


# ---------------------------------------------------------------------------------------------------- saving


class CollectionLockedError(OSError):
    """Another writer holds a collection directory's writer lock (see :class:`WriterLock`)."""


class WriterLock:
    """The exclusive writer lock of a collection directory: an ``flock`` on ``DIR/.save.lock`` held from
    :meth:`acquire` until :meth:`release` (or until this object is garbage-collected, or its process exits).

    The lock file holds the writer's pid, so that a refused writer can say who holds it. The file itself is
    never removed (removing it would let two writers lock different files). A forked child does not own its
    parent's lock: :attr:`held` is False there, and a save in the child takes (and fails to take) a lock of its
    own. Without ``fcntl`` (not POSIX) there is no lock: every acquire succeeds.

        >>> lock = WriterLock.acquire(Path("my-collection"))   # doctest: +SKIP
        >>> WriterLock.acquire(Path("my-collection"))          # doctest: +SKIP
        Traceback (most recent call last):
        CollectionLockedError: my-collection is locked for writing by another writer (pid 4242) ...
        >>> lock.release()                                      # doctest: +SKIP
    """

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self._fd = fd
        self._pid = os.getpid()

    @classmethod
    def acquire(cls, root: Path) -> WriterLock:
        """Lock `root` for writing, or raise :class:`CollectionLockedError` at once (never waits)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return cls(root, -1)
        path = root / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise OSError(f"{root}: cannot open the writer lock file {path} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            who = "pid unknown" if holder is None else f"pid {holder}"
            if holder == os.getpid():
                who += ": another Collection object in this process"
            raise CollectionLockedError(
                f"{root} is locked for writing by another writer ({who}; lock file {path}): one writer at a "
                "time. Close the other writer (Collection.close()) or let it exit; readers (Collection.load) "
                "are not blocked"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it, for the next writer's error message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(root, fd)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._fd >= 0 and self._pid == os.getpid()

    def release(self) -> None:
        """Release the lock (idempotent). In a forked child this only closes the inherited descriptor: the
        parent keeps its lock."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"WriterLock({str(self.root)!r}, held={self.held})"


def _lock_holder(fd: int) -> int | None:
    """The pid a lock file records (None when it holds none)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 1 << 31 else None


def _ours(name: str, manifest_leftovers: set[str]) -> bool:
    """Whether an entry of a collection directory has a name this module creates."""
    return name == LOCK_FILE or bool(_DATA_RE.fullmatch(name)) or name in manifest_leftovers


def _check_target(root: Path) -> str | None:
    """Refuse (ValueError) a directory that holds something other than a funnelrank collection; returns the
    data directory the current manifest names (None when there is none or it cannot be read)."""
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            with _open_regular(manifest_path) as fh:
                current = json.loads(fh.read(_MANIFEST_MAX_BYTES + 1).decode("utf-8"))
            ours = isinstance(current, dict) and current.get("format") == FORMAT
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            ours = False
        if not ours:
            raise ValueError(f"{manifest_path} is not a funnelrank collection manifest; choose a new directory")
        data = current.get("data")
        return data if isinstance(data, str) and _DATA_RE.fullmatch(data) else None
    leftovers = {p.name for p in atomic_writer_leftovers(manifest_path)}
    if any(not _ours(p.name, leftovers) for p in root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no funnelrank collection; choose a new directory")
    return None


def _remove_stale(root: Path, keep: set[str | None]) -> None:
    """Remove data directories other than `keep` and the manifest writer's leftovers (call under the lock:
    then no other save is writing any of them)."""
    for entry in root.iterdir():
        if _DATA_RE.fullmatch(entry.name) and entry.name not in keep and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    for leftover in atomic_writer_leftovers(root / MANIFEST):
        with contextlib.suppress(OSError):
            leftover.unlink()


def lock_key(root: Path) -> str:
    """The key a writer's locks are kept under: the directory's resolved path."""
    return str(root.resolve())


def save_collection(collection: Collection, path: str | os.PathLike[str], locks: dict[str, WriterLock]) -> None:
    """Write `collection` to directory `path` (created if needed) atomically; see the module docstring.

    Refuses (ValueError) a non-empty directory that is not a collection, so user files are never mixed in.
    Takes the directory's writer lock unless `locks` (the writer's, by :func:`lock_key`) already holds it, and
    keeps it there after a successful save (a failed save releases a lock it took); raises
    :class:`CollectionLockedError` at once when another writer holds it.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    _check_target(root)  # before creating the lock file: never drop one into a user's directory
    key = lock_key(root)
    lock = locks.get(key)
    fresh = lock is None or not lock.held
    if fresh:
        lock = WriterLock.acquire(root)
    try:
        previous = _check_target(root)  # again under the lock: the previous writer may have changed it
        while True:
            data_name = _DATA_PREFIX + secrets.token_hex(6)
            data = root / data_name
            try:
                data.mkdir()
                break
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue
        try:
            docs = list(collection._docs.values())
            digest = hashlib.sha256()
            with open(data / DOCS_FILE, "wb") as fh:
                for doc in docs:
                    line = json.dumps(
                        {"id": doc.id, "text": doc.text, "metadata": doc.metadata},
                        ensure_ascii=False,
                        allow_nan=False,
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

            manifest: dict[str, Any] = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "data": data_name,
                "documents": len(docs),
                "docs": {"file": DOCS_FILE, "sha256": digest.hexdigest()},
                "bm25": {"file": BM25_FILE},
                "dense": (
                    {"file": HNSW_FILE, "embedder": embedder_identity(collection.embedder)}
                    if collection._hnsw is not None
                    else None
                ),
            }
            manifest["checksum"] = manifest_checksum(manifest)
            with atomic_writer(root / MANIFEST) as fh:
                fh.write(json.dumps(manifest, indent=2).encode("utf-8"))
        except BaseException:
            shutil.rmtree(data, ignore_errors=True)
            raise
        _remove_stale(root, keep={data_name, previous})
    except BaseException:
        if fresh:
            assert lock is not None
            lock.release()
        raise
    assert lock is not None
    locks[key] = lock


# ---------------------------------------------------------------------------------------------------- loading


def _corrupt(path: Path, what: str) -> IndexFileError:
    return IndexFileError(f"{path}: corrupt manifest ({what})")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {brief(key)} appears twice")
        out[key] = value
    return out


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
    if not isinstance(data, str) or not _DATA_RE.fullmatch(data):
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
        identity = _object(dense["embedder"], _EMBEDDER_KEYS, "'dense.embedder'", path)
        _string(identity["name"], "'dense.embedder.name'", path)
        _string(identity["fingerprint"], "'dense.embedder.fingerprint'", path)
        _integer(identity["dim"], 1, _MAX_DIM, "'dense.embedder.dim'", path)
        _string(identity["model_dir"], "'dense.embedder.model_dir'", path, optional=True)
        _string(identity["onnx_path"], "'dense.embedder.onnx_path'", path, optional=True)
    checksum = manifest["checksum"]
    if not isinstance(checksum, str) or not _SHA256_RE.fullmatch(checksum):
        raise _corrupt(path, f"'checksum' must be 64 hex digits, got {brief(checksum)}")
    if checksum != manifest_checksum(manifest):
        raise _corrupt(path, "checksum mismatch: it was changed or damaged after it was written")


def _read_manifest(root: Path) -> tuple[bytes, dict[str, Any]]:
    """(the manifest's bytes, the checked manifest)."""
    path = root / MANIFEST
    if not root.is_dir():
        raise IndexFileError(f"{root}: no such collection directory")
    try:
        with _open_regular(path) as fh:
            raw = fh.read(_MANIFEST_MAX_BYTES + 1)
    except FileNotFoundError:
        raise IndexFileError(f"{root} is not a funnelrank collection: {MANIFEST} is missing") from None
    except OSError as exc:
        raise IndexFileError(f"{path}: cannot read the manifest ({exc})") from None
    if len(raw) > _MANIFEST_MAX_BYTES:
        raise _corrupt(path, f"larger than {_MANIFEST_MAX_BYTES} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise _corrupt(path, "nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _corrupt(path, str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{path}: not a funnelrank collection manifest")
    version = manifest.get("version")
    if version == 1 and type(version) is int:
        data = manifest.get("data")
        docs = data if isinstance(data, str) and _DATA_RE.fullmatch(data) else "data-<...>"
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


def _read_docs(path: Path, sha256: str, count: int) -> list[Document]:
    try:
        with _open_regular(path) as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        raise IndexFileError(f"{path}: missing documents file") from None
    except OSError as exc:
        raise IndexFileError(f"{path}: cannot read the documents file ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise IndexFileError(f"{path}: documents file is corrupt (checksum mismatch)")
    docs = []
    seen: set[str] = set()
    try:
        for lineno, line in enumerate(raw.splitlines(), start=1):
            obj = json.loads(line.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)  # strict UTF-8
            if not isinstance(obj, dict) or obj.keys() != _DOC_KEYS:
                raise ValueError(f"line {lineno} is not an {{id, text, metadata}} object")
            doc_id, text, metadata = obj["id"], obj["text"], obj["metadata"]
            if not isinstance(doc_id, str) or not doc_id or doc_id in seen:
                raise ValueError(f"line {lineno}: bad or repeated id {brief(doc_id)}")
            if not isinstance(text, str) or not isinstance(metadata, dict):
                raise ValueError(f"line {lineno}: the text must be a string and the metadata an object")
            check_text(doc_id, f"line {lineno}: the id", type_error=ValueError)  # no lone surrogates
            check_text(text, f"line {lineno}: the text", type_error=ValueError)
            validate_metadata(metadata, where=f"line {lineno}: the metadata")  # what add() accepts, no more
            seen.add(doc_id)
            docs.append(Document(doc_id, text, metadata))
    except RecursionError:
        raise IndexFileError(f"{path}: documents file is corrupt (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexFileError(f"{path}: documents file is corrupt ({exc})") from None
    if len(docs) != count:
        raise IndexFileError(f"{path}: holds {len(docs)} documents, the manifest says {count}")
    return docs


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


def _read_generation(
    root: Path, manifest: dict[str, Any], errors: list[str] | None = None
) -> tuple[list[Document], Any, Any | None]:
    """(documents, BM25 index, HNSW index or None) of the generation `manifest` names, each part verified
    (checksums, counts, ids in order, dimension) and cross-checked; IndexFileError naming the file otherwise.
    Needs no embedder. With `errors`, every problem is appended there instead (the parts that could not be
    read are then None / empty), so that a check reports them all."""
    from funnelrank._core import BM25Index, HNSWIndex

    def problem(exc: Exception) -> None:
        if errors is None:
            raise exc
        errors.append(str(exc))

    def load(path: Path, what: str, loader: Callable[[str], Any]) -> Any:
        if not path.is_file():
            problem(IndexFileError(f"{path}: missing {what} index file"))
            return None
        try:
            return loader(str(path))
        except (IndexFileError, ValueError) as exc:
            problem(exc)
            return None

    data = root / manifest["data"]
    if not data.is_dir():
        problem(IndexFileError(f"{data}: the collection's data directory is missing"))
        return [], None, None
    docs: list[Document] | None = None
    try:
        docs = _read_docs(data / manifest["docs"]["file"], manifest["docs"]["sha256"], manifest["documents"])
    except IndexFileError as exc:
        problem(exc)
    bm25_path = data / manifest["bm25"]["file"]
    bm25 = load(bm25_path, "BM25", BM25Index.load)
    if bm25 is not None and docs is not None:
        if len(bm25) != len(docs):
            problem(IndexFileError(f"{bm25_path}: holds {len(bm25)} documents, the collection {len(docs)}"))
        elif bm25.ids() != [doc.id for doc in docs]:  # a save writes both in insertion order
            problem(IndexFileError(
                f"{bm25_path}: its document ids are not those of {manifest['docs']['file']}, in order"
            ))
    dense = manifest["dense"]
    hnsw = None
    if not dense:
        stray = data / HNSW_FILE
        if os.path.lexists(stray):  # a save writes it only for a dense collection: "dense" was edited away
            problem(IndexFileError(
                f"{root / MANIFEST}: says the collection has no dense index, but its data directory holds "
                f"{stray}; refusing to drop the dense index silently (restore the manifest, or re-index)"
            ))
    else:
        hnsw_path = data / dense["file"]
        hnsw = load(hnsw_path, "HNSW", HNSWIndex.load)
        if hnsw is not None and docs is not None and len(hnsw) != len(docs):
            problem(IndexFileError(
                f"{hnsw_path}: holds {len(hnsw)} vectors, the collection {len(docs)} documents"
            ))
        if hnsw is not None and int(hnsw.dim) != dense["embedder"]["dim"]:
            problem(IndexFileError(
                f"{hnsw_path}: holds {hnsw.dim}-dimensional vectors, the manifest says {dense['embedder']['dim']}"
            ))
    return docs or [], bm25, hnsw


def _load_generation(
    cls: type[Collection], root: Path, manifest: dict[str, Any], embedder: Any | None, found: dict[str, Any]
) -> Collection:
    """The collection generation `manifest` names (`found` caches embedders found from manifests)."""
    docs, bm25, hnsw = _read_generation(root, manifest)
    dense = manifest["dense"]
    if dense:
        identity = dense["embedder"]
        if embedder is None:
            key = json.dumps(identity, sort_keys=True)
            if key not in found:
                found[key] = find_embedder(identity, root / MANIFEST)
            embedder = found[key]
        elif identity["fingerprint"] and getattr(embedder, "fingerprint", None) != identity["fingerprint"]:
            raise ValueError(
                f"{root}: embedder {getattr(embedder, 'name', '?')!r} is not the one the collection was built "
                f"with ({identity['name']!r}); its vectors would not match the index"
            )
    return cls._from_parts(
        docs=docs, bm25_index=bm25, hnsw_index=hnsw, embedder=embedder if hnsw is not None else None,
        bm25_params={}, hnsw_params={},
    )


def _manifest_bytes(root: Path) -> bytes | None:
    try:
        with _open_regular(root / MANIFEST) as fh:
            return fh.read(_MANIFEST_MAX_BYTES + 1)
    except OSError:
        return None


def load_collection(
    cls: type[Collection], path: str | os.PathLike[str], *, embedder: Any | None = None, writer: bool = False
) -> Collection:
    """Load the collection in directory `path`; see the module docstring. With `writer`, the directory's writer
    lock is taken first (:class:`CollectionLockedError` at once when another writer holds it) and handed to the
    loaded collection, which keeps it until ``close()``."""
    root = Path(path)
    lock = None
    if writer:
        _read_manifest(root)  # a collection directory (never drop a lock file anywhere else)
        lock = WriterLock.acquire(root)
    try:
        collection = _load_latest(cls, root, embedder)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if lock is not None:
        collection._writer_locks[lock_key(root)] = lock
    return collection


def _load_latest(cls: type[Collection], root: Path, embedder: Any | None) -> Collection:
    found: dict[str, Any] = {}
    attempt = 0
    while True:
        attempt += 1
        raw, manifest = _read_manifest(root)
        try:
            return _load_generation(cls, root, manifest, embedder, found)
        except IndexFileError:
            # A save may have replaced the manifest and removed this generation while we read it: then the
            # new manifest names a complete generation; try it. An unchanged manifest means real damage.
            if attempt >= LOAD_ATTEMPTS or _manifest_bytes(root) == raw:
                raise


# ---------------------------------------------------------------------------------------------------- checking


@dataclass
class CheckReport:
    """What :func:`check_collection` found in a collection directory.

    Attributes:
        path: the directory.
        problems: one clear message per problem, each naming its file (empty: the collection is sound).
        unreferenced: entries no manifest refers to (older generations, leftovers of interrupted saves, stray
            files), with why each is listed.
        removed: what ``fix`` removed.
        kept: unreferenced entries that ``fix`` left alone, with why.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    unreferenced: list[tuple[Path, str]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem is left."""
        return not self.problems


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def check_collection(path: str | os.PathLike[str], *, fix: bool = False) -> CheckReport:
    """Verify a saved collection without loading an embedder: the manifest (checksum, schema), every file
    it names (the documents file's sha256 and contents, each index file's own checksum) and their
    cross-references (document counts, ids in order, vector dimension); then list every entry of the
    directory that the manifest does not reference.

    Problems: anything :meth:`Collection.load <funnelrank.store.collection.Collection.load>` would refuse, and
    unreferenced files other than older data directories (a save keeps the previous generation for readers;
    those are listed, not problems). With `fix`, the directory's writer lock is taken
    (:class:`CollectionLockedError` when a writer holds it) and unreferenced entries that funnelrank wrote are
    removed: leftover temporary files, stray files in the current data directory, and older data directories
    (only when the current generation verified clean: otherwise they may be the last good copy). A referenced
    file is never removed, nor a file whose name funnelrank never writes (a user's file is listed and kept).

        >>> report = check_collection("my-collection")   # doctest: +SKIP
        >>> report.ok, report.problems
        (True, [])
    """
    root = Path(path)
    report = CheckReport(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such collection directory")
    lock = None
    if fix:
        _read_manifest(root)  # refuse to drop a lock file into something that is not a collection
        lock = WriterLock.acquire(root)
    try:
        _check_into(root, report, fix)
    finally:
        if lock is not None:
            lock.release()
    return report


def _check_into(root: Path, report: CheckReport, fix: bool) -> None:
    try:
        _, manifest = _read_manifest(root)
    except IndexFileError as exc:
        report.problems.append(str(exc))
        if fix:
            report.problems.append(f"{root}: the manifest cannot be read, so what it references is unknown: "
                                   "nothing was removed")
        return
    errors: list[str] = []
    _read_generation(root, manifest, errors)
    report.problems.extend(errors)
    sound = not errors
    current = root / manifest["data"]
    referenced = {manifest["docs"]["file"], manifest["bm25"]["file"]}
    if manifest["dense"]:
        referenced.add(manifest["dense"]["file"])
    manifest_temps = {p.name for p in atomic_writer_leftovers(root / MANIFEST)}
    stray: dict[Path, str] = {}  # unreferenced entries that are problems -> their message
    removable: list[Path] = []

    def note(entry: Path, why: str, *, problem: bool, ours: bool) -> None:
        report.unreferenced.append((entry, why))
        if problem:
            stray[entry] = f"{entry}: unreferenced ({why})"
        if ours:
            removable.append(entry)
        elif fix:
            report.kept.append((entry, "not a name funnelrank writes: left for you to move or delete"))

    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in (MANIFEST, LOCK_FILE) or entry == current:
            continue
        if _DATA_RE.fullmatch(name) and entry.is_dir() and not entry.is_symlink():
            note(entry, "an older data generation, or an interrupted save's: the next save removes it",
                 problem=False, ours=True)
        elif name in manifest_temps:
            note(entry, "a temporary manifest left by an interrupted save", problem=True, ours=True)
        else:
            note(entry, "not part of the collection", problem=True, ours=False)
    if current.is_dir() and not current.is_symlink():
        for entry in sorted(current.iterdir()):
            if entry.name not in referenced:  # a data directory is funnelrank's alone: anything else is stray
                note(entry, "a stray file in the collection's data directory", problem=True, ours=True)
    if fix:
        for entry in removable:
            if entry.parent == root and _DATA_RE.fullmatch(entry.name) and not sound:
                report.kept.append((entry, "kept: the current generation has problems, so this older one may "
                                           "be the last good copy"))
                continue
            try:
                _remove_entry(entry)
            except OSError as exc:
                report.kept.append((entry, f"could not be removed ({exc.strerror or exc})"))
                continue
            report.removed.append(entry)
            stray.pop(entry, None)
        if report.removed:
            _fsync_dir(root)
    report.problems.extend(stray.values())
