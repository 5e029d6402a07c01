"""Issue 28: the write-ahead log. Adds and deletes are logged before they are acknowledged and replayed by the
next writer; a torn last record is dropped, a damaged one in the middle refused; readers see the last commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import funnelrank.store.segments as store_segments
import numpy as np
import pytest
from funnelrank.store.check import check_collection
from funnelrank.store.collection import Collection
from funnelrank.store.layout import LOG_FILE
from funnelrank.store.wal import HEADER_SIZE, LogCorruptError, LogRecord, read_log
from crash_harness import HashEmbedder


def committed(root: Path, dense: bool = False, durability: str = "fsync") -> Collection:
    """A collection committed into `root` (a, b) and then changed without a commit (c added, a deleted)."""
    col = Collection(dense=dense, embedder=HashEmbedder() if dense else None, durability=durability)
    col.add(["a", "b"], ["hello world", "another greeting"], [{"n": 1}, {"n": 2}])
    col.save(root)
    col.add(["c"], ["a third document"], [{"n": 3}])
    col.delete(["a"])
    return col


def state(col: Collection) -> list[tuple[str, str, dict[str, object]]]:
    return [(d.id, d.text, d.metadata) for d in col]


@pytest.mark.parametrize("durability", ["fsync", "interval", "off"])
@pytest.mark.parametrize("dense", [False, True], ids=["bm25", "dense"])
def test_writes_since_the_commit_are_replayed_by_the_next_writer(tmp_path: Path, dense: bool, durability: str) -> None:
    root = tmp_path / "col"
    col = committed(root, dense, durability)
    expected = state(col)
    col.close()
    assert Collection.load(root, embedder=HashEmbedder() if dense else None).ids() == ["a", "b"]  # a reader: the commit
    with Collection.load(root, embedder=HashEmbedder() if dense else None, writer=True) as again:
        assert state(again) == expected
        assert again.search_bm25("third", 5)[0] == ["c"]
        if dense:
            np.testing.assert_allclose(again.vectors(["c"]), col.vectors(["c"]))
            assert again.search_dense(HashEmbedder().embed_query("a third document"), 1)[0] == ["c"]
        again.commit()
        assert read_log(root / LOG_FILE, _checksum(root)).records == []  # the commit emptied the log
    assert state(Collection.load(root, embedder=HashEmbedder() if dense else None)) == expected


def _checksum(root: Path) -> str:
    from funnelrank.store.manifest import read_manifest

    return str(read_manifest(root)[1]["checksum"])


def test_an_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "col"
    script = (
        "import os, signal, sys\nfrom funnelrank.store.collection import Collection\n"
        "c = Collection(dense=False)\nc.add(['a'], ['first'])\nc.save(sys.argv[1])\n"
        "c.add(['b'], ['second'])\nc.delete(['a'])\nprint('acknowledged', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL and "acknowledged" in done.stdout, done.stderr
    assert Collection.load(root, writer=True).ids() == ["b"]


def _two_records(root: Path) -> tuple[Path, list[int]]:
    """A log holding two records (add c, delete a); returns its path and where each record starts."""
    col = committed(root)
    col.close()
    path = root / LOG_FILE
    raw = path.read_bytes()
    first = HEADER_SIZE
    length = int.from_bytes(raw[first : first + 8], "little")
    return path, [first, first + 16 + length]


@pytest.mark.parametrize("cut", [1, 10, 16, 20, -1])
def test_a_torn_last_record_is_dropped_never_half_applied(tmp_path: Path, cut: int) -> None:
    root = tmp_path / "col"
    path, starts = _two_records(root)
    raw = path.read_bytes()
    path.write_bytes(raw[: (starts[1] + cut) if cut > 0 else len(raw) + cut])  # the delete, cut short
    with Collection.load(root, writer=True) as col:
        assert col.ids() == ["a", "b", "c"]  # the add replayed, the torn delete dropped
        assert path.stat().st_size == starts[1]  # and cut off the file, so later records follow whole ones
        col.delete(["b"])
    assert Collection.load(root, writer=True).ids() == ["a", "c"]


def test_a_zero_filled_tail_is_a_torn_write(tmp_path: Path) -> None:
    root = tmp_path / "col"
    path, _ = _two_records(root)
    with open(path, "ab") as fh:
        fh.write(b"\x00" * 4096)  # what a crash of the machine may leave after the last record
    assert Collection.load(root, writer=True).ids() == ["b", "c"]


@pytest.mark.parametrize("where", ["payload", "header"])
def test_a_damaged_record_in_the_middle_is_a_clear_error(tmp_path: Path, where: str) -> None:
    root = tmp_path / "col"
    path, starts = _two_records(root)
    raw = bytearray(path.read_bytes())
    raw[starts[0] + (30 if where == "payload" else 3)] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(LogCorruptError, match=r"record 1 at byte 44.*nothing is skipped|record 1 at byte 44.*Nothing"):
        Collection.load(root, writer=True)
    assert Collection.load(root).ids() == ["a", "b"]  # readers see the last commit: the log is not theirs
    report = check_collection(root)
    assert not report.ok and any("record 1" in p for p in report.problems)
    Collection.load(root, writer=False).close()
    path.write_bytes(bytes(raw))  # the failed writer released its lock: another one gets the same error
    with pytest.raises(LogCorruptError):
        Collection.load(root, writer=True)


def test_check_truncates_a_log_damaged_in_the_middle_only_with_truncate_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from funnelrank.cli.main import main

    root = tmp_path / "col"
    col = committed(root)  # record 1: add c; record 2: delete a
    col.add(["d"], ["a fourth document"])  # record 3
    col.close()
    path = root / LOG_FILE
    contents = read_log(path, read_log_base(root))
    assert len(contents.records) == 3
    first_len = int.from_bytes(path.read_bytes()[HEADER_SIZE : HEADER_SIZE + 8], "little")
    second = HEADER_SIZE + 16 + first_len
    raw = bytearray(path.read_bytes())
    raw[second + 20] ^= 0x40  # record 2's payload: damaged, with record 3 after it
    path.write_bytes(bytes(raw))
    report = check_collection(root, fix=True)
    assert not report.ok and any("--truncate-log" in p for p in report.problems)
    assert path.read_bytes() == bytes(raw)  # --fix alone never cuts a log
    with pytest.raises(ValueError, match="--fix"):
        check_collection(root, truncate_log=True)
    assert main(["check", str(root), "--truncate-log"]) == 2
    assert main(["check", str(root), "--fix", "--truncate-log"]) == 0
    out = capsys.readouterr().out
    assert "truncated:" in out and f"first {second} bytes" in out
    aside = [p for p in root.iterdir() if p.name.startswith(LOG_FILE + ".damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(raw)  # the whole damaged log, set aside
    assert path.read_bytes() == bytes(raw[:second])
    after = check_collection(root, fix=True)
    assert after.ok and aside[0].exists() and "1 write(s) since the last commit" in after.log
    with Collection.load(root, writer=True) as col:
        assert col.ids() == ["a", "b", "c"]  # record 1 replayed; the damaged record and the one after it are lost


def read_log_base(root: Path) -> str:
    from funnelrank.store.manifest import read_manifest

    return str(read_manifest(root)[1]["checksum"])


def test_a_log_of_an_earlier_commit_is_never_replayed_twice(tmp_path: Path) -> None:
    """A commit killed after its manifest and before it emptied the log leaves a log of the earlier commit."""
    root = tmp_path / "col"
    col = committed(root)
    before = (root / LOG_FILE).read_bytes()
    col.commit()
    col.close()
    (root / LOG_FILE).write_bytes(before)
    report = check_collection(root)
    assert report.ok and LOG_FILE in [e.name for e, _ in report.unreferenced]  # listed, not a problem
    with Collection.load(root, writer=True) as again:
        assert again.ids() == ["b", "c"]
    assert read_log(root / LOG_FILE, _checksum(root)).records == []


def test_a_failed_apply_takes_its_record_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "col"
    col = committed(root)
    size = (root / LOG_FILE).stat().st_size

    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("simulated")

    monkeypatch.setattr(store_segments, "add_to_bm25", broken)
    with pytest.raises(MemoryError):
        col.add(["d"], ["never applied"])
    assert (root / LOG_FILE).stat().st_size == size
    col.close()
    monkeypatch.undo()
    assert Collection.load(root, writer=True).ids() == ["b", "c"]


def test_check_reports_pending_writes_and_fix_removes_a_stale_log(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = committed(root)
    col.close()
    report = check_collection(root)
    assert report.ok and "2 write(s) since the last commit" in report.log
    assert LOG_FILE not in [e.name for e, _ in report.unreferenced]  # a pending log is part of the collection
    col = Collection.load(root, writer=True)
    col.commit()
    before = (root / LOG_FILE).read_bytes()
    col.commit()
    col.close()
    (root / LOG_FILE).write_bytes(before)  # the log of the commit before: stale
    fixed = check_collection(root, fix=True)
    assert fixed.ok and root / LOG_FILE in fixed.removed
    assert Collection.load(root, writer=True).ids() == ["b", "c"]  # a writer starts a new log


def test_bad_settings_and_commit_without_a_home(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        Collection(dense=False, durability="sometimes")
    with pytest.raises(ValueError, match="sync_interval_ms"):
        Collection(dense=False, durability="interval", sync_interval_ms=0)
    col = Collection(dense=False)
    with pytest.raises(ValueError, match="no home directory"):
        col.commit()
    assert col.home is None
    col.save(tmp_path / "col")
    assert col.home == tmp_path / "col"


def test_an_export_is_not_a_commit(tmp_path: Path) -> None:
    col = committed(tmp_path / "home")
    col.save(tmp_path / "copy")  # an export: a full copy, no log there
    assert not (tmp_path / "copy" / LOG_FILE).exists()
    col.add(["d"], ["after the export"])
    col.close()
    assert Collection.load(tmp_path / "home", writer=True).ids() == ["b", "c", "d"]
    assert Collection.load(tmp_path / "copy").ids() == ["b", "c"]


def test_record_round_trip() -> None:
    from funnelrank.store.wal import _decode

    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = LogRecord("add", ["x", "y"], ["t1", "t2 é"], [{}, {"k": [1, "v"]}], vectors)
    back = _decode(record.encode())
    assert (back.ids, back.texts, back.metadata) == (record.ids, record.texts, record.metadata)
    np.testing.assert_array_equal(back.vectors, vectors)
    assert _decode(LogRecord("delete", ["x"]).encode()) == LogRecord("delete", ["x"])
    for bad in (b"Z", b"D{}", b"A" + (99).to_bytes(8, "little") + b"{}"):
        with pytest.raises(ValueError):
            _decode(bad)


def test_a_forked_child_does_not_write_its_parents_log(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = committed(root)
    size = (root / LOG_FILE).stat().st_size
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            col.add(["z"], ["in the child"])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert (root / LOG_FILE).stat().st_size == size
