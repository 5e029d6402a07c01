"""Readers keep their commit alive (Lucene's point-in-time readers): reader leases in ``DIR/.readers/``.

A reader (``Collection.load(DIR)``) takes a *lease* on the commit it opens: a file
``DIR/.readers/<generation>-<pid>-<12 hex>.lease`` holding a copy of that commit's manifest, on which it holds a
shared ``flock`` for as long as the collection object is open (``close()``, the end of a ``with`` block, garbage
collection or interpreter exit remove it). The writer's cleanup after a commit (:mod:`funnelrank.store.save`) and
``funnelrank check --fix`` (:mod:`funnelrank.store.check`) keep every file a live lease's manifest names.

Crash safety: a lease is live while its ``flock`` is held, and the kernel drops that lock when the reader's
process dies, however it dies (SIGKILL included; a reused pid does not matter). The writer tests each lease
with a non-blocking exclusive ``flock``: when it gets it, the lease is *stale* and removed, and pins nothing.
A lease is created under a temporary name, locked, written, and only then renamed to its ``.lease`` name, so the
writer never mistakes a lease being created for a stale one.

The race with the writer: a reader reads the manifest, takes the lease, then reads the manifest again; only when
it is unchanged is the commit pinned (the writer's cleanup after any later commit lists the leases after that
commit's manifest replaced this one, so it sees the lease); otherwise it lets the lease go and starts over on
the new manifest. Without ``fcntl`` (not POSIX), or in a directory the reader may not write (read-only media),
there is no lease: the reader loads as before, unpinned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funnelrank.store.layout import DATA_RE, READERS_DIR

__all__ = ["LEASE_RE", "LeaseScan", "ReaderLease", "manifest_files", "scan_leases"]

LEASE_RE = re.compile(r"(\d{1,19})-(\d{1,10})-[0-9a-f]{12}\.lease")
"""The name of a reader lease in ``DIR/.readers``: the pinned commit's generation, the reader's pid, 12 random hex."""
_TEMP_RE = re.compile(r"\.tmp-\d{1,10}-[0-9a-f]{12}")
_LEASE_MAX_BYTES = (1 << 20) + 1


def manifest_files(*manifests: dict[str, Any] | None) -> dict[str, set[str]]:
    """The data directories (-> the deletion bitmaps in them) that `manifests` name, read leniently (a damaged
    manifest names what it can), e.g. ``{"data-0a1b2c3d4e5f": {"del-00112233aabb.bits"}}``."""
    out: dict[str, set[str]] = {}
    for manifest in manifests:
        if not isinstance(manifest, dict):
            continue
        names = [manifest.get("data")]
        segs = manifest.get("segments")
        if isinstance(segs, list):
            names += [seg.get("data") for seg in segs if isinstance(seg, dict)]
        for name in names:
            if isinstance(name, str) and DATA_RE.fullmatch(name):
                out.setdefault(name, set())
        deleted = manifest.get("deleted")
        if isinstance(deleted, dict):
            for name, entry in deleted.items():
                if name in out and isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    out[name].add(entry["file"])
    return out


def _release(path: Path, fd: int, pid: int) -> None:
    if os.getpid() != pid:  # a forked child: the lease is its parent's (closing its copy keeps the lock)
        with contextlib.suppress(OSError):
            os.close(fd)
        return
    with contextlib.suppress(OSError):
        path.unlink()  # first: a writer testing it meanwhile finds it gone, or still locked
    with contextlib.suppress(OSError):
        os.close(fd)


class ReaderLease:
    """A reader's lease on one commit of a collection directory (see the module docstring).

        >>> raw, manifest = read_manifest(Path("my-collection"))                  # doctest: +SKIP
        >>> lease = ReaderLease.take(Path("my-collection"), raw, manifest["generation"])   # doctest: +SKIP
        >>> lease.generation, lease.path.name                                      # doctest: +SKIP
        (7, '7-4242-0a1b2c3d4e5f.lease')
        >>> lease.release()                                                        # doctest: +SKIP
    """

    def __init__(self, path: Path, fd: int, generation: int) -> None:
        self.path = path
        self.generation = generation
        self._finalizer = weakref.finalize(self, _release, path, fd, os.getpid())

    @classmethod
    def take(cls, root: Path, manifest_raw: bytes, generation: int) -> ReaderLease | None:
        """Lease the commit whose manifest bytes are `manifest_raw` (number `generation`) in `root`; None when
        leases are not possible here (no ``fcntl``, or `root` is not writable for this process)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return None
        folder = root / READERS_DIR
        for _ in range(3):  # a writer may remove the temporary file between its creation and its flock: again
            token = secrets.token_hex(6)
            temp = folder / f".tmp-{os.getpid()}-{token}"
            try:
                folder.mkdir(exist_ok=True)
                fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                             | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError:
                return None  # read-only media, or no permission: an unpinned reader, as before leases
            final = folder / f"{generation}-{os.getpid()}-{token}.lease"
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # before the lease has its name: a writer never sees it unlocked
                os.write(fd, manifest_raw)
                os.rename(temp, final)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    temp.unlink()
                os.close(fd)
                if isinstance(exc, FileNotFoundError):
                    continue
                if isinstance(exc, OSError):
                    return None
                raise
            return cls(final, fd, generation)
        return None

    @property
    def held(self) -> bool:
        """Whether the lease is still held (not released)."""
        return self._finalizer.alive

    def release(self) -> None:
        """Remove the lease (idempotent): the writer's next cleanup may remove the commit's files."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"ReaderLease({str(self.path)!r}, held={self.held})"


@dataclass
class LeaseScan:
    """What :func:`scan_leases` found in ``DIR/.readers``.

    Attributes:
        pinned: the data directories (-> deletion bitmaps) the live leases' commits name.
        live: the live leases (their readers hold them).
        stale: leases and temporary lease files no reader holds (removed when the scan was asked to).
        unreadable: live leases whose manifest copy could not be read: what they pin is unknown, so a cleanup
            must keep every older data directory.
    """

    pinned: dict[str, set[str]] = field(default_factory=dict)
    live: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def _unlocked(path: Path) -> tuple[bool, bytes | None]:
    """(whether no process holds `path`'s flock, its contents when it is held); (False, None) when it is gone
    or cannot be opened (then it is left alone)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False, os.pread(fd, _LEASE_MAX_BYTES, 0)
        return True, None
    except OSError:
        return False, None
    finally:
        os.close(fd)  # drops the exclusive lock taken on a stale lease


def scan_leases(root: Path, *, remove_stale: bool) -> LeaseScan:
    """The reader leases of collection directory `root` (see :class:`LeaseScan`); with `remove_stale`, the stale
    ones are removed (call it under the writer lock)."""
    scan = LeaseScan()
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows: no leases are ever taken
        return scan
    folder = root / READERS_DIR
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return scan
    for entry in entries:
        if not (LEASE_RE.fullmatch(entry.name) or _TEMP_RE.fullmatch(entry.name)):
            continue
        stale, raw = _unlocked(entry)
        if stale:
            scan.stale.append(entry)
            if remove_stale:
                with contextlib.suppress(OSError):
                    entry.unlink()
            continue
        if raw is None or _TEMP_RE.fullmatch(entry.name):
            continue  # gone meanwhile, or a lease still being created (its reader checks the manifest after)
        scan.live.append(entry)
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            manifest = None
        if not isinstance(manifest, dict):
            scan.unreadable.append(entry)
            continue
        for name, bitmaps in manifest_files(manifest).items():
            scan.pinned.setdefault(name, set()).update(bitmaps)
    return scan
