"""Reading documents to index from files: JSONL, BEIR dataset directories, and plain text.

Used by ``funnelrank index``. :func:`read_sources` yields :class:`funnelrank.store.collection.Document` objects
and raises ValueError naming the file (and line) for malformed input or an id seen before (with where it
was first seen), FileNotFoundError for missing paths.

* ``*.jsonl`` / ``*.json`` lines: one JSON object per line; the id, text, optional title and metadata come
  from configurable fields (:class:`JsonlFields`). Numeric ids are turned into strings.
* A BEIR directory (holding ``corpus.jsonl``): ``title + " " + text`` as the text, ``metadata`` kept.
* ``*.txt``: one document per file (id = the path relative to the source root, text = the whole file), or
  one per non-empty line (id = ``<file id>:<line number>``).
* A directory that is not a BEIR dataset: every ``*.txt`` and ``*.jsonl`` under it, in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnelrank.store.documents import Document

__all__ = ["TXT_MODES", "JsonlFields", "read_sources"]

TXT_MODES: tuple[str, ...] = ("file", "line")
"""How plain text files split into documents."""


@dataclass(frozen=True)
class JsonlFields:
    """Which JSONL fields hold what. `metadata_fields` copies top-level fields into the metadata too."""

    id: str = "id"
    text: str = "text"
    title: str | None = "title"
    metadata: str | None = "metadata"
    metadata_fields: tuple[str, ...] = ()


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: invalid UTF-8 at byte {exc.start} ({exc.reason})") from None


def _read_jsonl(path: Path, fields: JsonlFields) -> Iterator[tuple[str, Document]]:
    from funnelrank.eval.beir import DatasetFormatError
    from funnelrank.eval.beir import _read_jsonl as read_objects

    for lineno, obj in read_objects(path):
        doc_id: Any = obj.get(fields.id)
        if doc_id is None and fields.id == "id":
            doc_id = obj.get("_id")  # BEIR-style files work without flags
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            raise DatasetFormatError(path, lineno, f"field {fields.id!r} (the id) must be a non-empty string")
        text = obj.get(fields.text)
        if not isinstance(text, str):
            raise DatasetFormatError(path, lineno, f"field {fields.text!r} (the text) must be a string")
        title = obj.get(fields.title) if fields.title else None
        if title is not None and not isinstance(title, str):
            raise DatasetFormatError(path, lineno, f"field {fields.title!r} (the title) must be a string")
        metadata: dict[str, Any] = {}
        if fields.metadata and obj.get(fields.metadata) is not None:
            meta = obj[fields.metadata]
            if not isinstance(meta, dict):
                raise DatasetFormatError(path, lineno, f"field {fields.metadata!r} (metadata) must be an object")
            metadata.update(meta)
        for name in fields.metadata_fields:
            if name in obj:
                metadata[name] = obj[name]
        yield f"{path}:{lineno}", Document(doc_id, f"{title} {text}" if title else text, metadata)


def _read_beir(root: Path) -> Iterator[tuple[str, Document]]:
    from funnelrank.eval.beir import load_corpus

    path = root / "corpus.jsonl"
    for doc in load_corpus(path).values():  # ids already checked unique within the file
        yield str(path), Document(doc.id, doc.full_text, dict(doc.metadata))


def _read_txt(path: Path, doc_id: str, mode: str) -> Iterator[tuple[str, Document]]:
    text = _read_text(path)
    if mode == "file":
        yield str(path), Document(doc_id, text, {"source": doc_id})
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"{path}:{lineno}", Document(f"{doc_id}:{lineno}", line, {"source": doc_id, "line": lineno})


def read_sources(
    sources: Sequence[str | Path], *, fields: JsonlFields | None = None, txt_mode: str = "file"
) -> Iterator[Document]:
    """Yield the documents of every source path in order (see the module docstring for the formats).

    An id may appear once across all sources: a repeat raises ValueError naming both places."""
    first_seen: dict[str, str] = {}
    for origin, doc in _located_documents(sources, fields or JsonlFields(), txt_mode):
        if doc.id in first_seen:
            raise ValueError(f"{origin}: duplicate document id {doc.id!r} (first seen at {first_seen[doc.id]})")
        first_seen[doc.id] = origin
        yield doc


def _located_documents(
    sources: Sequence[str | Path], fields: JsonlFields, txt_mode: str
) -> Iterator[tuple[str, Document]]:
    """(where, document) for every document of every source, in order."""
    if txt_mode not in TXT_MODES:
        raise ValueError(f"txt_mode must be one of {', '.join(TXT_MODES)}, got {txt_mode!r}")
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if path.is_dir():
            if (path / "corpus.jsonl").is_file():
                yield from _read_beir(path)
                continue
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
            if not files:
                raise ValueError(f"{path}: a directory with no corpus.jsonl (BEIR) and no .txt or .jsonl files")
            for f in files:
                rel = f.relative_to(path).as_posix()
                yield from (_read_jsonl(f, fields) if f.suffix == ".jsonl" else _read_txt(f, rel, txt_mode))
        elif path.suffix in (".jsonl", ".json", ".ndjson"):
            yield from _read_jsonl(path, fields)
        elif path.suffix == ".txt":
            yield from _read_txt(path, path.name, txt_mode)
        else:
            raise ValueError(f"{path}: unsupported source (expected .jsonl, .txt, or a directory)")
