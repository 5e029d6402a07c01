"""Issue 28: readers keep their commit alive (Lucene's point-in-time readers). A reader's lease
(DIR/.readers/<generation>-<pid>-<hex>.lease, flock-held) keeps every file of the commit it opened through later
commits and merges, also while it is still loading; closing it lets the next commit remove them; a SIGKILLed
reader's lease pins nothing; `check --fix` never removes a pinned file."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path

import pytest
from funnelrank.store import load as load_module
from funnelrank.store.check import check_collection
from funnelrank.store.collection import Collection
from funnelrank.store.layout import READERS_DIR
from funnelrank.store.load import read_commit
from funnelrank.store.manifest import read_manifest
from funnelrank.store.readers import ReaderLease, scan_leases

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="reader leases need flock")


def data_dirs(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name.startswith("data-")}


def files_of(root: Path) -> set[Path]:
    return {p for d in data_dirs(root) for p in (root / d).iterdir()}


def writer_with_history(root: Path) -> Collection:
    col = Collection(dense=False)
    col.add(["a", "b", "c"], ["cat dog", "dog river", "stone cloud"])
    col.save(root)
    col.add(["d"], ["cat cat"])
    col.delete(["b"])
    col.commit()  # two segments, a deletion bitmap
    return col


def later_commits(col: Collection) -> None:
    """Two commits and a merge: without a lease, the first commits' files would all be gone."""
    col.add(["e"], ["moon"])
    col.commit()
    col.delete(["a"])
    col.commit()
    col.merge()


def test_a_reader_keeps_its_commit_through_commits_and_a_merge(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    raw, manifest = read_manifest(root)
    reader = Collection.load(root)
    assert reader.pinned == manifest["generation"]
    before = files_of(root)
    later_commits(writer)
    assert before <= files_of(root)  # every file of the pinned commit is still there
    read_commit(root, manifest)  # and the commit still reads whole, checksums and all (a reopen would work)
    assert reader.ids() == ["a", "c", "d"] and reader.search_bm25("cat", k=3)[0] == ["d", "a"]
    assert Collection.load(root).ids() == ["c", "d", "e"]  # new readers see the last commit

    reader.close()
    assert reader.pinned is None and not any((root / READERS_DIR).iterdir())
    assert reader.ids() == ["a", "c", "d"]  # still answers from memory
    writer.add(["f"], ["sun"])
    writer.commit()
    assert not ({p.parent.name for p in before} & data_dirs(root))  # the merge folded them; unpinned, they went
    assert check_collection(root).pinned == []
    writer.close()


def test_a_reader_still_loading_keeps_its_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    real = load_module._load_generation
    calls = []

    def slow_load(*args: object) -> object:  # the writer commits twice and merges while the reader loads
        if not calls:
            calls.append(1)
            later_commits(writer)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(load_module, "_load_generation", slow_load)
    reader = Collection.load(root)
    assert calls and reader.ids() == ["a", "c", "d"]  # the commit it began with, whole: no retry was needed
    reader.close()
    writer.close()


def test_a_commit_between_manifest_and_lease_makes_the_reader_lease_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    real = ReaderLease.take
    calls = []

    def take(root_: Path, raw: bytes, generation: int) -> ReaderLease | None:
        if not calls:
            calls.append(generation)
            writer.add(["z"], ["late"])
            writer.commit()  # lands after the reader read the manifest, before its lease exists
        return real(root_, raw, generation)

    monkeypatch.setattr(ReaderLease, "take", staticmethod(take))
    with Collection.load(root) as reader:
        assert reader.pinned == calls[0] + 1 and "z" in reader
        assert len(list((root / READERS_DIR).iterdir())) == 1  # the first lease was let go
    writer.close()


def test_a_sigkilled_readers_lease_does_not_pin_forever(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    before, before_files = data_dirs(root), files_of(root)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: a reader in another process
        try:
            reader = Collection.load(root)
            os.write(write_end, b"loaded\n")
            signal.pause()
            reader.close()
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        assert os.read(read_end, 16) == b"loaded\n"
        later_commits(writer)
        assert before_files <= files_of(root)  # pinned by the live reader in the other process
        assert len(scan_leases(root, remove_stale=False).live) == 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
    lease = list((root / READERS_DIR).iterdir())
    assert len(lease) == 1 and lease[0].name.split("-")[1] == str(pid)  # left behind by the kill
    report = check_collection(root)
    assert report.ok and any(p == lease[0] and "stale" in why for p, why in report.unreferenced)
    writer.add(["y"], ["after the kill"])
    writer.commit()  # the stale lease is seen (its flock died with the reader) and removed
    assert not list((root / READERS_DIR).iterdir())
    assert not (before & data_dirs(root))
    writer.close()


def test_check_fix_never_removes_a_pinned_file(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    reader = Collection.load(root)
    before = files_of(root)
    later_commits(writer)
    writer.close()
    fixed = check_collection(root, fix=True)
    assert fixed.ok, fixed.problems
    assert before <= files_of(root)
    assert {p.name for p, _ in fixed.pinned} >= data_dirs(root) - {read_manifest(root)[1]["data"]}
    assert not any(p in before or p.parent in {q.parent for q in before} for p in fixed.removed)
    reader.close()
    fixed = check_collection(root, fix=True)  # now they go
    assert fixed.ok and not fixed.pinned and not (before & files_of(root))
    assert check_collection(root).unreferenced == []


def test_a_live_lease_that_cannot_be_read_keeps_every_older_file(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer = writer_with_history(root)
    before = data_dirs(root)
    (root / READERS_DIR).mkdir(exist_ok=True)
    bad = root / READERS_DIR / f"1-{os.getpid()}-0123456789ab.lease"
    bad.write_bytes(b"\x00not a manifest")
    with open(bad, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # a live reader holds it
        later_commits(writer)
        assert before <= data_dirs(root)
        assert check_collection(root).pinned
    writer.add(["x"], ["now it is stale"])
    writer.commit()
    assert not bad.exists() and not (before & data_dirs(root))
    writer.close()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_collection_loads_unpinned(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer_with_history(root).close()
    root.chmod(0o555)
    try:
        reader = Collection.load(root)
        assert reader.pinned is None and reader.ids() == ["a", "c", "d"]
    finally:
        root.chmod(0o755)


def test_where_no_lease_can_be_taken_a_reader_loads_unpinned(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer_with_history(root).close()
    (root / READERS_DIR).write_bytes(b"")  # not a directory: no lease possible (as on read-only media)
    reader = Collection.load(root)
    assert reader.pinned is None and reader.ids() == ["a", "c", "d"]
    assert any("reader lease directory" in p for p in check_collection(root).problems)
