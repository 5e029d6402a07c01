"""Checking a saved collection without loading an embedder (``funnelrank check DIR``), and fixing what a
check finds that funnelrank wrote (``funnelrank check DIR --fix``).

A check runs the checks a load runs (:mod:`funnelrank.store.load`: the manifest, every file it names and their
cross-references), reporting every problem instead of stopping at the first, then lists every entry of the
directory that the manifest does not reference.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from funnelrank._core import IndexFileError
from funnelrank.files import atomic_writer_leftovers
from funnelrank.store.layout import DATA_RE, DELETED_RE, LOCK_FILE, LOG_FILE, MANIFEST, READERS_DIR, fsync_dir
from funnelrank.store.load import read_commit
from funnelrank.store.lock import WriterLock
from funnelrank.store.manifest import read_manifest, segment_entries
from funnelrank.store.readers import LeaseScan, scan_leases
from funnelrank.store.wal import DAMAGED_LOG_RE, LogCorruptError, read_log, truncate_damaged_log

__all__ = ["CheckReport", "check_collection"]


@dataclass
class CheckReport:
    """What :func:`check_collection` found in a collection directory.

    Attributes:
        path: the directory.
        problems: one clear message per problem, each naming its file (empty: the collection is sound).
        unreferenced: entries no manifest refers to (older generations, leftovers of interrupted saves, stray
            files), with why each is listed.
        removed: what ``fix`` removed.
        pinned: entries the manifest does not reference but a live reader's lease does (the commit it opened,
            :mod:`funnelrank.store.readers`): neither problems nor unreferenced, and never removed.
        kept: unreferenced entries that ``fix`` left alone, with why.
        truncated: what ``truncate_log`` did to a log damaged in its middle (empty: nothing).
        log: what the write-ahead log holds (empty: there is none), e.g. ``"wal.log: 3 writes since the last
            commit (the next writer replays them)"``.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    unreferenced: list[tuple[Path, str]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)
    pinned: list[tuple[Path, str]] = field(default_factory=list)
    log: str = ""
    truncated: str = ""

    @property
    def ok(self) -> bool:
        """No problem is left."""
        return not self.problems


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def check_collection(path: str | os.PathLike[str], *, fix: bool = False, truncate_log: bool = False) -> CheckReport:
    """Verify a saved collection without loading an embedder: the manifest (checksum, schema), every file
    it names (the documents file's sha256 and contents, each index file's own checksum) and their
    cross-references (document counts, ids in order, vector dimension); then list every entry of the
    directory that the manifest does not reference.

    Problems: anything :meth:`Collection.load <funnelrank.store.collection.Collection.load>` would refuse,
    and unreferenced files other than older data directories (a save keeps the previous generation for
    readers; those are listed, not problems). With `fix`, the directory's writer lock is taken
    (:class:`~funnelrank.store.lock.CollectionLockedError` when a writer holds it) and unreferenced entries that
    funnelrank wrote are removed: leftover temporary files, stray files in the current data directory, and older
    data directories (only when the current generation verified clean: otherwise they may be the last good
    copy), and stale reader leases (of readers that are gone). A referenced file is never removed, nor a file of
    a commit a live reader holds a lease on (listed in ``pinned``), nor a file whose name funnelrank never writes
    (a user's file is listed and kept).

    A write-ahead log damaged in its middle (a record failing its checksum with more after it) is a problem that
    ``fix`` alone leaves as it is: with `truncate_log` too (``--fix --truncate-log``), the log is cut back to the
    records before the damaged one (the writes logged from it on are no longer replayed), after the whole damaged
    log is set aside as ``wal.log.damaged-<12 hex>`` (listed, kept, not a problem; delete it once you no longer
    need it).

        >>> report = check_collection("my-collection")   # doctest: +SKIP
        >>> report.ok, report.problems
        (True, [])
    """
    root = Path(path)
    report = CheckReport(root)
    if truncate_log and not fix:
        raise ValueError("truncate_log (--truncate-log) cuts the write-ahead log: it needs fix (--fix) as well")
    if not root.is_dir():
        raise ValueError(f"{root}: no such collection directory")
    lock = None
    if fix:
        read_manifest(root)  # refuse to drop a lock file into something that is not a collection
        lock = WriterLock.acquire(root)
    try:
        _check_into(root, report, fix, truncate_log)
    finally:
        if lock is not None:
            lock.release()
    return report


def _check_into(root: Path, report: CheckReport, fix: bool, truncate_log: bool = False) -> None:
    try:
        _, manifest = read_manifest(root)
    except IndexFileError as exc:
        report.problems.append(str(exc))
        if fix:
            report.problems.append(f"{root}: the manifest cannot be read, so what it references is unknown: "
                                   "nothing was removed")
        return
    errors: list[str] = []
    read_commit(root, manifest, errors)
    report.problems.extend(errors)
    sound = not errors
    referenced: dict[str, set[str]] = {}  # data directory -> the files of it the manifest names
    for seg in segment_entries(manifest):
        files = referenced.setdefault(seg["data"], set())
        files.update(f for f in (seg["docs_file"], seg["bm25_file"], seg["hnsw_file"]) if f)
        if seg["deleted"]:
            files.add(seg["deleted"]["file"])
    manifest_temps = {p.name for p in atomic_writer_leftovers(root / MANIFEST)}
    log_temps = {p.name for p in atomic_writer_leftovers(root / LOG_FILE)}
    stale_log = _check_log(root, manifest["checksum"], report, truncate_log)
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

    leases = scan_leases(root, remove_stale=False)
    _note_leases(root, leases, note)

    def pinned(entry: Path, data: str, bitmap: str | None = None) -> bool:
        """Whether a live reader's lease keeps `entry` (then it is listed as pinned)."""
        if leases.unreadable:
            why = f"kept: a reader's lease cannot be read ({leases.unreadable[0]}), so what it pins is unknown"
        elif data in leases.pinned and (bitmap is None or bitmap in leases.pinned[data]):
            why = "kept for a reader: a live reader lease's commit names it"
        else:
            return False
        report.pinned.append((entry, why))
        return True

    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in (MANIFEST, LOCK_FILE, READERS_DIR) or name in referenced or (name == LOG_FILE and not stale_log):
            continue
        if name == LOG_FILE:
            note(entry, "the write-ahead log of an earlier commit: every write in it is committed",
                 problem=False, ours=True)
            continue
        if DAMAGED_LOG_RE.fullmatch(name):
            report.unreferenced.append((entry, "a damaged write-ahead log set aside by --truncate-log: delete it "
                                               "once you no longer need the writes after its damage"))
            if fix:
                report.kept.append((entry, "kept: check never removes a set-aside log"))
            continue
        if name in log_temps:
            note(entry, "a temporary write-ahead log left by an interrupted commit", problem=True, ours=True)
            continue
        if DATA_RE.fullmatch(name) and entry.is_dir() and not entry.is_symlink():
            if pinned(entry, name):
                continue
            note(entry, "an older data generation, or an interrupted save's: the next save removes it",
                 problem=False, ours=True)
        elif name in manifest_temps:
            note(entry, "a temporary manifest left by an interrupted save", problem=True, ours=True)
        else:
            note(entry, "not part of the collection", problem=True, ours=False)
    for data, files in referenced.items():
        current = root / data
        if not current.is_dir() or current.is_symlink():
            continue
        for entry in sorted(current.iterdir()):
            if entry.name in files:
                continue
            if DELETED_RE.fullmatch(entry.name) and pinned(entry, data, entry.name):
                continue
            if DELETED_RE.fullmatch(entry.name):  # a segment's data directory is funnelrank's alone
                note(entry, "a deletion bitmap of an earlier commit: the next commit removes it", problem=False,
                     ours=True)
            else:
                note(entry, "a stray file in the collection's data directory", problem=True, ours=True)
    if fix:
        for entry in removable:
            older = (entry.parent == root and DATA_RE.fullmatch(entry.name)) or DELETED_RE.fullmatch(entry.name)
            if older and not sound:
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
            fsync_dir(root)
    report.problems.extend(stray.values())


def _note_leases(root: Path, leases: LeaseScan, note: Callable[..., None]) -> None:
    """List stale reader leases (removable) and files in ``DIR/.readers`` that are not leases (kept)."""
    for entry in leases.stale:
        note(entry, "a stale reader lease: its reader is gone", problem=False, ours=True)
    folder = root / READERS_DIR
    if folder.is_dir() and not folder.is_symlink():
        known = set(leases.stale) | set(leases.live)
        for entry in sorted(folder.iterdir()):
            if entry not in known and not entry.name.startswith(".tmp-"):
                note(entry, "not a reader lease", problem=True, ours=False)
    elif os.path.lexists(folder):
        note(folder, "not the reader lease directory funnelrank writes", problem=True, ours=False)


def _check_log(root: Path, base: str, report: CheckReport, truncate: bool = False) -> bool:
    """Read the write-ahead log (when there is one) past the commit with manifest checksum `base` into
    `report`; returns whether it is stale (it follows an earlier commit, so nothing in it is pending). With
    `truncate`, a log damaged in its middle is cut back to its intact records (the whole of it set aside)."""
    path = root / LOG_FILE
    if not os.path.lexists(path):
        return False
    try:
        contents = read_log(path, base)
    except LogCorruptError as exc:
        if exc.intact is None:
            report.problems.append(str(exc))
            return False
        if not truncate:
            report.problems.append(f"{exc} (`funnelrank check DIR --fix --truncate-log` cuts the log back to the "
                                   "records before the damage, setting the whole log aside first)")
            return False
        aside = truncate_damaged_log(path, exc.intact)
        report.truncated = (f"{path}: cut back to its first {exc.intact} bytes (the records before the damage); "
                            f"the whole damaged log is in {aside}")
        return _check_log(root, base, report)
    except IndexFileError as exc:
        report.problems.append(str(exc))
        return False
    if contents.stale:
        return True
    torn = f"; a torn last record of {contents.torn} bytes (never acknowledged) is dropped" if contents.torn else ""
    report.log = (f"{path}: {len(contents.records)} write(s) since the last commit (the next writer replays "
                  f"them){torn}")
    return False
