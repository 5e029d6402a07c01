"""One writer at a time: the writer lock of a collection directory.

The first save of a :class:`~funnelrank.store.collection.Collection` into a directory (or
``Collection.load(DIR, writer=True)``) takes the directory's writer lock, an exclusive ``flock`` on
``DIR/.save.lock``, and the collection object keeps it until ``close()`` (or until it is garbage-collected, or
its process exits: the kernel then releases it, so a killed writer never blocks the next one). Another writer
(another process, or another collection object in this one) fails at once with
:class:`CollectionLockedError` naming the directory and the holder's pid. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from funnelrank.store.layout import LOCK_FILE

__all__ = ["CollectionLockedError", "WriterLock", "lock_key"]


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


def lock_key(root: Path) -> str:
    """The key a writer's locks are kept under: the directory's resolved path."""
    return str(root.resolve())
