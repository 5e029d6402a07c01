"""The layout of a collection directory, and the strict reading and durable writing its files get.

Layout::

    DIR/manifest.json              format name + version, document count, embedder identity, which data dir,
                                   and a sha256 checksum of the manifest itself (:mod:`funnelrank.store.manifest`)
    DIR/.save.lock                 the writer lock (flock), holding the writer's pid (:mod:`funnelrank.store.lock`)
    DIR/wal.log                    the write-ahead log: the writes since the last commit (:mod:`funnelrank.store.wal`)
    DIR/.readers/<gen>-<pid>-<12 hex>.lease  a reader's lease on the commit it opened (:mod:`funnelrank.store.readers`)
    DIR/data-<12 hex>/docs.jsonl   one {"id", "text", "metadata"} object per line (:mod:`funnelrank.store.docs_file`)
    DIR/data-<12 hex>/bm25.idx     the BM25 index (checksummed index file)
    DIR/data-<12 hex>/hnsw.idx     the HNSW index, for dense collections (checksummed index file)
    DIR/data-<12 hex>/del-<12 hex>.bits  the segment's deletion bitmap, when some of its documents were deleted

Each ``data-<12 hex>`` directory is an immutable *segment* (its documents, BM25 and HNSW indexes); the manifest
names the segments of the current commit, in insertion order, and the deletion bitmap of each.

A commit (:mod:`funnelrank.store.save`) writes the new segment (the documents added since the last commit) and
the changed deletion bitmaps, and then replaces the manifest; a load (:mod:`funnelrank.store.load`) reads the generation the manifest names; a check
(:mod:`funnelrank.store.check`) verifies it and lists what no manifest refers to.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

from funnelrank.checks import brief

__all__ = [
    "BM25_FILE",
    "DATA_PREFIX",
    "DATA_RE",
    "DELETED_RE",
    "DOCS_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "HNSW_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "MANIFEST",
    "READABLE_VERSIONS",
    "READERS_DIR",
    "fsync_dir",
    "fsync_file",
    "no_duplicate_keys",
    "open_regular",
]

FORMAT = "funnelrank-collection"
"""The ``format`` field of every collection manifest."""
FORMAT_VERSION = 3
"""The manifest version written; 2 added the ``checksum`` field (version 1 was never released), 3 the
``generation``, the ``segments`` after the first and the ``deleted`` documents of each (a version-2 manifest
is a version-3 one with a single segment and no deletions: it loads as it is, and the first commit into it
writes version 3)."""
READABLE_VERSIONS = (2, 3)
"""The manifest versions this funnelrank reads."""
MANIFEST = "manifest.json"
"""The manifest's file name: the commit point of every save."""
LOCK_FILE = ".save.lock"
"""The writer lock's file name."""
READERS_DIR = ".readers"
"""The directory of the reader leases (:mod:`funnelrank.store.readers`): the files of a leased commit are kept."""
LOG_FILE = "wal.log"
"""The write-ahead log's file name (written by the writer only; readers never read it)."""
DOCS_FILE = "docs.jsonl"
"""The documents file's name in a data directory."""
BM25_FILE = "bm25.idx"
"""The BM25 index file's name in a data directory."""
HNSW_FILE = "hnsw.idx"
"""The HNSW index file's name in a data directory (dense collections only)."""
DATA_PREFIX = "data-"
"""What every data directory's name starts with."""
DATA_RE = re.compile(r"data-[0-9a-f]{12}")
"""The full name of a data directory (a segment): :data:`DATA_PREFIX` and 12 hex digits."""
DELETED_RE = re.compile(r"del-[0-9a-f]{12}\.bits")
"""The full name of a deletion bitmap in a data directory (one bit per document of its documents file, in order:
set = deleted since the segment was written)."""


def fsync_dir(path: Path) -> None:
    """Flush directory `path`'s entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush file `path`'s contents to disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading in binary mode; OSError when it is not a regular file (a FIFO, a device, a
    directory: refused without blocking, as the index loaders do)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook`` that refuses (ValueError) an object repeating a key, which the
    default hook would silently resolve to the last value."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {brief(key)} appears twice")
        out[key] = value
    return out
