"""The write-ahead log of a collection directory, ``DIR/wal.log``: every add and delete since the last commit.

The writer of a collection (the one that holds ``DIR/.save.lock``, :mod:`funnelrank.store.lock`) appends each
add or delete to the log *before* it changes anything in memory and before the call returns, so that an
acknowledged write survives a crash: the next writer to open the directory replays the log on top of the last
commit. A commit (``Collection.save`` / ``commit``) makes everything durable in the committed state and then
replaces the log, atomically, by an empty one that names the new commit. Readers never read the log: they see
the last commit only.

File format (all integers little-endian)::

    header   8 bytes   b"FRWAL\\x00\\x00\\x01" (magic + format version 1)
             32 bytes  the sha256 (raw) of the manifest checksum of the commit this log follows
             4 bytes   CRC32 of the 40 bytes before
    record   8 bytes   payload length
             4 bytes   CRC32 of the payload
             4 bytes   CRC32 of the 12 bytes before (so a damaged length is never trusted)
             payload   b"A" + u64 JSON length + JSON {"ids", "texts", "metadata", "dim"} + float32 vectors
                       (``len(ids) * dim`` of them; none when dim is null), or b"D" + JSON list of ids

Reading it back (:func:`read_log`): a last record that is incomplete (its length runs past the end of the
file), or whose payload fails its CRC32 and ends exactly at the end of the file, or an incomplete or all-zero
tail, is a *torn* write (the process died while appending it, so it was never acknowledged): it is dropped,
never half-applied, and the writer truncates it away. Anything else that fails a check, a damaged record
*followed by more data* above all, is :class:`LogCorruptError`: nothing after it is skipped silently.

Durability (``Collection(durability=...)``): ``"fsync"`` (the default) flushes the log to disk before every
add or delete returns; ``"interval"`` at most every ``sync_interval_ms`` (a background thread flushes what is
pending; a crash of the machine, not of the process, may lose the writes of the last interval); ``"off"``
leaves flushing to the operating system (a process crash loses nothing, a power cut may).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funnelrank._core import IndexFileError
from funnelrank.files import atomic_writer
from funnelrank.store.layout import LOG_FILE, no_duplicate_keys, open_regular

__all__ = ["DAMAGED_LOG_RE", "DURABILITY", "LogContents", "LogCorruptError", "LogRecord", "WriteAheadLog", "read_log",
           "truncate_damaged_log"]

DURABILITY = ("fsync", "interval", "off")
"""The accepted ``durability`` settings."""
MAGIC = b"FRWAL\x00\x00\x01"
HEADER_SIZE = 8 + 32 + 4
DAMAGED_LOG_RE = re.compile(re.escape(LOG_FILE) + r"\.damaged-[0-9a-f]{12}")
"""The name of a damaged log that :func:`truncate_damaged_log` set aside, whole, before cutting it."""
RECORD_HEADER = struct.Struct("<QII")
_U64 = struct.Struct("<Q")


class LogCorruptError(IndexFileError):
    """The write-ahead log is damaged somewhere other than a torn last record: the collection is not opened for
    writing, so that no logged write is skipped silently.

    ``intact`` is the size in bytes of the log's intact beginning (its header and the records before the damaged
    one: what ``funnelrank check DIR --fix --truncate-log`` keeps), or None when the damage is in the header or
    does not fit the commit (then nothing of it can be kept)."""

    intact: int | None = None


def _corrupt_at(message: str, intact: int) -> LogCorruptError:
    exc = LogCorruptError(message)
    exc.intact = intact
    return exc


@dataclass(frozen=True)
class LogRecord:
    """One logged write: an add (ids, texts, metadata and, for a dense collection, vectors) or a delete (ids).

        >>> LogRecord("delete", ["a", "b"])
        LogRecord(kind='delete', ids=['a', 'b'], texts=None, metadata=None, vectors=None)
    """

    kind: str
    ids: list[str]
    texts: list[str] | None = None
    metadata: list[dict[str, Any]] | None = None
    vectors: np.ndarray | None = None

    def encode(self) -> bytes:
        """The record's payload bytes (see the module docstring)."""
        if self.kind == "delete":
            return b"D" + json.dumps(self.ids, ensure_ascii=False).encode("utf-8")
        vectors = None if self.vectors is None else np.ascontiguousarray(self.vectors, dtype="<f4")
        body = json.dumps(
            {"ids": self.ids, "texts": self.texts, "metadata": self.metadata,
             "dim": None if vectors is None else int(vectors.shape[1])},
            ensure_ascii=False, allow_nan=False,
        ).encode("utf-8")
        return b"A" + _U64.pack(len(body)) + body + (b"" if vectors is None else vectors.tobytes())


def _frame(payload: bytes) -> bytes:
    head = struct.pack("<QI", len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _header(base: str) -> bytes:
    raw = MAGIC + hashlib.sha256(base.encode("ascii")).digest()
    return raw + struct.pack("<I", zlib.crc32(raw))


def _decode(payload: bytes) -> LogRecord:
    """The record of a payload that passed its CRC; ValueError when it is not a well-formed record."""
    kind, rest = payload[:1], payload[1:]
    if kind == b"D":
        ids = json.loads(rest.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError("a delete record must hold a list of ids")
        return LogRecord("delete", ids)
    if kind != b"A" or len(rest) < 8:
        raise ValueError(f"unknown record kind {kind!r}")
    (size,) = _U64.unpack_from(rest)
    if size > len(rest) - 8:
        raise ValueError("an add record's JSON runs past its end")
    body = json.loads(rest[8 : 8 + size].decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    if not isinstance(body, dict) or body.keys() != {"ids", "texts", "metadata", "dim"}:
        raise ValueError("an add record must hold ids, texts, metadata and dim")
    ids, texts, metas, dim = body["ids"], body["texts"], body["metadata"], body["dim"]
    if not (isinstance(ids, list) and isinstance(texts, list) and isinstance(metas, list)
            and len(ids) == len(texts) == len(metas)
            and all(isinstance(i, str) for i in ids) and all(isinstance(t, str) for t in texts)
            and all(isinstance(m, dict) for m in metas)):
        raise ValueError("an add record's ids, texts and metadata must be lists of one length")
    raw = rest[8 + size :]
    vectors = None
    if dim is not None:
        if type(dim) is not int or dim < 1 or len(raw) != len(ids) * dim * 4:
            raise ValueError("an add record's vectors do not match its dimension")
        vectors = np.frombuffer(raw, dtype="<f4").reshape(len(ids), dim).astype(np.float32)
    elif raw:
        raise ValueError("an add record without vectors has trailing bytes")
    return LogRecord("add", ids, texts, metas, vectors)


@dataclass
class LogContents:
    """What :func:`read_log` found: the records to replay (in order), where the last whole record ends, and how
    many bytes of a torn last record follow it (0: none).

        >>> read_log(Path("my-collection/wal.log"), base)   # doctest: +SKIP
        LogContents(records=[LogRecord(kind='add', ...)], end=1234, torn=0, stale=False)
    """

    records: list[LogRecord]
    end: int
    torn: int
    stale: bool = False


def read_log(path: Path, base: str) -> LogContents:
    """The records of log `path` past the commit whose manifest checksum is `base`. A log that follows another
    commit (an older one: the commit that replaced it was interrupted before it reset the log) is ``stale``: its
    writes are all in the commit already, so it has nothing to replay. A torn last record is dropped (``torn``
    says how many bytes it has); any other damage raises :class:`LogCorruptError` naming the file, the record
    and its offset."""
    try:
        with open_regular(path) as fh:
            raw = fh.read()
    except OSError as exc:
        raise IndexFileError(f"{path}: cannot read the write-ahead log ({exc})") from None
    if len(raw) < HEADER_SIZE:
        if raw == _header(base)[: len(raw)] or not raw.strip(b"\x00"):
            return LogContents([], 0, len(raw))  # a reset interrupted before its rename never shows; be lenient
        raise LogCorruptError(f"{path}: not a funnelrank write-ahead log (short header)")
    head = raw[:HEADER_SIZE]
    if head[:8] != MAGIC or zlib.crc32(head[:40]) != struct.unpack_from("<I", head, 40)[0]:
        raise LogCorruptError(f"{path}: not a funnelrank write-ahead log, or its header is damaged")
    if head != _header(base):
        return LogContents([], HEADER_SIZE, 0, stale=True)
    records: list[LogRecord] = []
    pos = HEADER_SIZE
    while pos < len(raw):
        where = f"{path}: record {len(records) + 1} at byte {pos}"
        rest = len(raw) - pos
        if rest < RECORD_HEADER.size:
            return LogContents(records, pos, rest)  # an incomplete record header: torn
        length, crc, head_crc = RECORD_HEADER.unpack_from(raw, pos)
        if zlib.crc32(raw[pos : pos + 12]) != head_crc:
            if not raw[pos:].strip(b"\x00"):
                return LogContents(records, pos, rest)  # a zero-filled tail (a crash of the machine): torn
            raise _corrupt_at(f"{where}: damaged record header, with data after it; the records before it "
                              "are intact. Nothing is skipped: move the log aside to open the collection at "
                              "its last commit (losing the writes logged after it), or restore it", pos)
        end = pos + RECORD_HEADER.size + length
        if end > len(raw):
            return LogContents(records, pos, rest)  # the last record was cut short: torn
        payload = raw[pos + RECORD_HEADER.size : end]
        if zlib.crc32(payload) != crc:
            if end == len(raw):
                return LogContents(records, pos, rest)  # the last record, half written: torn
            raise _corrupt_at(f"{where}: checksum mismatch, with {len(raw) - end} bytes of records after "
                              "it; nothing is skipped: move the log aside to open the collection at its "
                              "last commit (losing the writes logged after it), or restore it", pos)
        try:
            records.append(_decode(payload))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _corrupt_at(f"{where}: not a valid record ({exc})", pos) from None
        pos = end
    return LogContents(records, pos, 0)


def truncate_damaged_log(path: Path, intact: int) -> Path:
    """Cut log `path` back to its first `intact` bytes (:attr:`LogCorruptError.intact`: the header and the records
    before the damaged one), atomically, after setting the whole damaged log aside as ``wal.log.damaged-<12 hex>``
    beside it (a hard link: nothing copied, nothing lost); returns that path. The writes logged from the damaged
    record on are no longer replayed. Call it under the writer lock (``funnelrank check DIR --fix --truncate-log``).

        >>> try:                                              # doctest: +SKIP
        ...     read_log(path, base)
        ... except LogCorruptError as exc:
        ...     aside = truncate_damaged_log(path, exc.intact)
    """
    if intact < HEADER_SIZE:
        raise ValueError(f"{path}: a log keeps at least its {HEADER_SIZE}-byte header, got {intact}")
    with open_regular(path) as fh:
        kept = fh.read(intact)
    aside = path.with_name(f"{path.name}.damaged-{secrets.token_hex(6)}")
    os.link(path, aside)
    with atomic_writer(path) as out:
        out.write(kept)
    return aside


class WriteAheadLog:
    """The open log of the collection directory whose writer lock this process holds (see the module docstring).

    :meth:`open` reads it back (the records to replay) and makes it ready to append; :meth:`append` logs one
    record with the chosen durability; :meth:`undo` takes back the last record when applying it failed;
    :meth:`reset` starts an empty log after a commit.

        >>> log, pending = WriteAheadLog.open(Path("my-collection"), manifest_checksum)   # doctest: +SKIP
        >>> log.append(LogRecord("delete", ["a"]))                                         # doctest: +SKIP
    """

    def __init__(self, root: Path, durability: str, interval_ms: int) -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(map(repr, DURABILITY))}, got {durability!r}")
        if type(interval_ms) is not int or not 1 <= interval_ms <= 3_600_000:
            raise ValueError(f"sync_interval_ms must be an integer in [1, 3600000], got {interval_ms!r}")
        self.path = root / LOG_FILE
        self.durability = durability
        self.interval = interval_ms / 1000.0
        self._fd = -1
        self._size = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        self._lock = threading.Lock()  # the descriptor's life and the dirty flag (the flusher runs beside writes)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.broken: str | None = None

    @classmethod
    def open(cls, root: Path, base: str, *, durability: str = "fsync",
             interval_ms: int = 100) -> tuple[WriteAheadLog, list[LogRecord]]:
        """The log of `root` following the commit with manifest checksum `base`, and the records to replay.
        A missing or stale log is replaced by an empty one; a torn last record is cut off the file."""
        log = cls(root, durability, interval_ms)
        records: list[LogRecord] = []
        if log.path.exists():
            contents = read_log(log.path, base)
            if contents.stale or contents.end < HEADER_SIZE:
                log.reset(base)
                return log, []
            records = contents.records
            log._fd = os.open(log.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            if contents.torn:
                os.ftruncate(log._fd, contents.end)
                os.fsync(log._fd)
            log._size = contents.end
        else:
            log.reset(base)
        return log, records

    def reset(self, base: str) -> None:
        """Replace the log, atomically, by an empty one following the commit with manifest checksum `base`."""
        with atomic_writer(self.path) as fh:
            fh.write(_header(base))
        fd = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        with self._lock:
            old, self._fd, self._size, self._dirty = self._fd, fd, HEADER_SIZE, False
        if old >= 0:
            os.close(old)
        self.broken = None

    def append(self, record: LogRecord) -> int:
        """Log `record` (flushed to disk first when durability is ``"fsync"``); returns the log's size before it,
        for :meth:`undo`. On a failure to write, the partial record is cut off again and the error raised."""
        if self.broken is not None:
            raise OSError(f"{self.path}: the write-ahead log failed earlier ({self.broken}); reopen the collection")
        data = _frame(record.encode())
        mark = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, self._size)
                self._size += written
                view = view[written:]
            self._after_write()
        except BaseException:
            self.undo(mark)
            raise
        return mark

    def _after_write(self) -> None:
        if self.durability == "fsync":
            os.fsync(self._fd)
        elif self.durability == "interval":
            now = time.monotonic()
            if now - self._last_sync >= self.interval:
                os.fsync(self._fd)
                self._last_sync = now
            else:
                with self._lock:
                    self._dirty = True
                self._start_flusher()

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="funnelrank-wal-sync", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def sync(self) -> None:
        """Flush what is pending to disk (a no-op when nothing is)."""
        with self._lock:
            if self._dirty and self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                self._dirty = False
                self._last_sync = time.monotonic()

    def undo(self, mark: int) -> None:
        """Cut the log back to `mark` (what :meth:`append` returned): the record after it was never applied.
        When even that fails, the log refuses every later append (the collection must be reopened)."""
        try:
            os.ftruncate(self._fd, mark)
            if self.durability != "off":
                os.fsync(self._fd)
            self._size = mark
        except OSError as exc:
            self.broken = str(exc)

    def close(self) -> None:
        """Flush and close the log (idempotent)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                if self.durability != "off":
                    os.fsync(fd)
            os.close(fd)

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self.path)!r}, durability={self.durability!r}, bytes={self._size})"

