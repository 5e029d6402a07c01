"""The writer side of a :class:`~funnelrank.store.collection.Collection`: the directory it commits into (its
*home*), the writer locks it holds, and the write-ahead log there (:mod:`funnelrank.store.wal`).

A collection gets a home when it is loaded with ``writer=True`` (the log there is replayed) or on its first
``save`` into a directory; from then on every add and delete is logged there before it is acknowledged, and
each ``save`` into the home (or ``commit()``) is a commit that starts an empty log. A save into another
directory is an export: a full copy, with that directory's lock, but no log there.
"""

from __future__ import annotations

import os
from pathlib import Path

from funnelrank.store.lock import WriterLock, lock_key
from funnelrank.store.wal import LogRecord, WriteAheadLog

__all__ = ["WriterState"]


class WriterState:
    """Home directory, writer locks and write-ahead log of one collection (see the module docstring).

        >>> state = WriterState("fsync", 100)
        >>> state.home is None, state.log(LogRecord("delete", ["a"]))   # no home yet: nothing is logged
        (True, None)
    """

    def __init__(self, durability: str, interval_ms: int) -> None:
        WriteAheadLog(Path("."), durability, interval_ms)  # checks both settings now, before any write
        self.durability = durability
        self.interval_ms = interval_ms
        self.locks: dict[str, WriterLock] = {}  # lock_key(directory) -> its lock
        self.home: Path | None = None
        self.wal: WriteAheadLog | None = None
        self._pid = os.getpid()

    def _active(self) -> bool:
        """Whether this process writes the home's log (a forked child does not: it does not hold the lock)."""
        return self.wal is not None and self._pid == os.getpid()

    def log(self, record: LogRecord) -> int | None:
        """Log `record` in the home's log before it is applied; returns the mark for :meth:`unlog` (None when
        there is no log: a collection without a home keeps its writes in memory until its first save)."""
        if not self._active():
            return None
        assert self.wal is not None
        return self.wal.append(record)

    def unlog(self, mark: int | None) -> None:
        """Take back the record logged at `mark` (applying it failed)."""
        if mark is not None and self._active():
            assert self.wal is not None
            self.wal.undo(mark)

    def open_home(self, root: Path, base: str) -> list[LogRecord]:
        """Make `root` (whose writer lock is held, committed at manifest checksum `base`) the home; returns the
        log records to replay on top of that commit."""
        self.wal, records = WriteAheadLog.open(root, base, durability=self.durability, interval_ms=self.interval_ms)
        self.home = root
        self._pid = os.getpid()
        return records

    def committed(self, root: Path, base: str) -> None:
        """A save into `root` just committed at manifest checksum `base`: when `root` is the home (or the
        collection has none yet, which makes it the home), start an empty log following that commit."""
        if self.home is not None and lock_key(self.home) != lock_key(root):
            return  # an export
        if self.wal is None or not self._active():
            self.wal = WriteAheadLog(root, self.durability, self.interval_ms)
            self._pid = os.getpid()
        self.wal.reset(base)
        self.home = root

    def close(self) -> None:
        """Flush and close the log and release every lock (idempotent); the collection has no home after it."""
        wal, self.wal, self.home = self.wal, None, None
        if wal is not None and self._pid == os.getpid():
            wal.close()
        locks, self.locks = list(self.locks.values()), {}
        for lock in locks:
            lock.release()
