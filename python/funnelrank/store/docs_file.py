"""A collection's documents file, ``docs.jsonl``: one ``{"id", "text", "metadata"}`` object per line, in
insertion order, checked on read by the sha256 and the document count the manifest records."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from funnelrank._core import IndexFileError
from funnelrank.checks import brief, check_text
from funnelrank.retrieve.filters import validate_metadata
from funnelrank.store.documents import Document
from funnelrank.store.layout import no_duplicate_keys, open_regular

__all__ = ["read_docs", "write_docs"]

_DOC_KEYS = frozenset({"id", "text", "metadata"})


def write_docs(path: Path, docs: Iterable[Document]) -> str:
    """Write `docs` to a new documents file at `path`, flushed to disk; returns the file's sha256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
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
    return digest.hexdigest()


def read_docs(path: Path, sha256: str, count: int) -> list[Document]:
    """The documents of the file at `path`, verified: its sha256 is `sha256`, it holds `count` documents with
    distinct non-empty ids, and each text and metadata is what ``Collection.add`` accepts. IndexFileError naming
    the file and what is wrong otherwise."""
    try:
        with open_regular(path) as fh:
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
            obj = json.loads(line.decode("utf-8"), object_pairs_hook=no_duplicate_keys)  # strict UTF-8
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
