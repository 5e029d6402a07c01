"""Issue 28, first part: index saves remove the temporary files of killed saves (never a live process's), one
writer per collection directory (a second one fails fast, readers are never blocked), and `funnelrank check`
verifies a collection or an index file offline and removes (--fix) only unreferenced files funnelrank wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import funnelrank.store.save as store_save
import numpy as np
import pytest
from funnelrank._core import BM25Index, HNSWIndex, stale_temp_files
from funnelrank.cli.main import main
from funnelrank.core import IndexFileError
from funnelrank.store.collection import Collection
from funnelrank.store.lock import CollectionLockedError
from crash_harness import HashEmbedder
from test_collection_hardening import small


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ stale temporary files of index saves


def _bm25() -> BM25Index:
    index = BM25Index()
    index.add(["a", "b"], ["the quick brown fox", "a lazy dog sleeps"])
    return index


def _hnsw() -> HNSWIndex:
    index = HNSWIndex(4, metric="cosine")
    index.add(["a", "b"], np.eye(4, dtype=np.float32)[:2])
    return index


@pytest.mark.parametrize("make", [_bm25, _hnsw], ids=["bm25", "hnsw"])
def test_index_save_removes_stale_temp_files_of_dead_processes_only(tmp_path: Path, make: object) -> None:
    index = make()  # type: ignore[operator]
    path = tmp_path / "x.idx"
    gone = dead_pid()
    dead = tmp_path / f"x.idx.tmp-{gone}-1f2e3d"  # what a save killed mid-write leaves
    live = tmp_path / f"x.idx.tmp-{os.getpid()}-4c5b6a"  # a save running now in a live process (this one)
    other = tmp_path / f"y.idx.tmp-{gone}-77"  # another target's
    odd = tmp_path / f"x.idx.tmp-{gone}-notHex"  # not a name a save writes
    for p in (dead, live, other, odd):
        p.write_bytes(b"partial")
    assert stale_temp_files(path) == [str(dead)]
    index.save(path)
    assert not dead.exists()
    assert live.exists() and other.exists() and odd.exists()
    assert type(index).load(path).ids() == index.ids()  # type: ignore[attr-defined]
    assert stale_temp_files(path) == []


def test_a_live_process_temp_file_is_never_removed(tmp_path: Path) -> None:
    """Another process in the middle of its save (alive, sleeping) keeps its temporary file."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"x.idx.tmp-{sleeper.pid}-abc"
        live.write_bytes(b"in progress")
        _bm25().save(tmp_path / "x.idx")
        assert live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert stale_temp_files(tmp_path / "x.idx") == [str(live)]  # now it is stale
    _bm25().save(tmp_path / "x.idx")
    assert not live.exists()


# ------------------------------------------------------------------ one writer

_SECOND_WRITER = """
import json, sys, time
from funnelrank.store.collection import Collection
from funnelrank.store.lock import CollectionLockedError
root = sys.argv[1]
out = {"reader": Collection.load(root).ids()}
attempts = {
    "save": lambda: Collection(dense=False).save(root),
    "open": lambda: Collection.load(root, writer=True),
}
for name, attempt in attempts.items():
    start = time.perf_counter()
    try:
        attempt()
        out[name] = "ok"
    except CollectionLockedError as exc:
        out[name] = str(exc)
    out[name + "_seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def test_a_second_writer_process_fails_fast_and_readers_are_not_blocked(tmp_path: Path) -> None:
    root = tmp_path / "col"
    writer = small()
    writer.save(root)  # takes the writer lock and keeps it
    run = _run(_SECOND_WRITER, str(root))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["reader"] == ["a", "b"]  # a reader loads while the writer holds the lock
    for name in ("save", "open"):
        assert f"{root} is locked for writing by another writer (pid {os.getpid()}" in out[name], out[name]
        assert out[f"{name}_seconds"] < 2.0  # at once, not after waiting for the writer
    assert Collection.load(root).ids() == ["a", "b"]  # the refused writer changed nothing
    writer.add(["c"], ["a third document"])
    writer.save(root)  # the holder keeps writing
    writer.close()
    run = _run(_SECOND_WRITER, str(root))  # now the other process is the writer
    out = json.loads(run.stdout)
    assert out["save"] == "ok" and out["open"] == "ok"
    assert Collection.load(root).ids() == []  # its (empty) collection was saved


def test_a_writer_in_the_same_process_fails_fast_and_close_releases(tmp_path: Path) -> None:
    root = tmp_path / "col"
    with small() as first:
        first.save(root)
        with pytest.raises(CollectionLockedError, match=r"another Collection object in this process"):
            small().save(root)
        with pytest.raises(CollectionLockedError, match=str(root)):
            Collection.load(root, writer=True)
        first.save(root)  # the holder itself saves again
    opened = Collection.load(root, writer=True)  # released by the with block
    with pytest.raises(CollectionLockedError):
        small().save(root)
    opened.add(["c"], ["more"])
    opened.save(root)
    opened.close()
    assert Collection.load(root).ids() == ["a", "b", "c"]


def test_a_killed_writer_never_blocks_the_next_one(tmp_path: Path) -> None:
    root = tmp_path / "col"
    small().save(root)
    script = (
        "import sys, time\nfrom funnelrank.store.collection import Collection\n"
        "c = Collection.load(sys.argv[1], writer=True)\nprint('locked', flush=True)\ntime.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(CollectionLockedError, match=f"pid {child.pid}"):
            small().save(root)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    small().save(root)  # the kernel released the dead writer's lock


def test_a_failed_first_save_does_not_keep_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "col"
    c = small()

    def failing_writer(path: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(store_save, "atomic_writer", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        c.save(root)
    monkeypatch.undo()
    small().save(root)  # not locked by `c`


# ------------------------------------------------------------------ funnelrank check


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _data_dir(root: Path) -> Path:
    return root / json.loads((root / "manifest.json").read_text())["data"]


@pytest.fixture()
def dense_col(tmp_path: Path) -> Path:
    root = tmp_path / "col"
    with small(dense=True) as c:
        c.save(root)
    with small(dense=True) as c:  # another collection's save rewrites it all: the first generation is kept for
        c.save(root)              # readers (listed, not a problem)
    return root


def test_a_clean_collection_passes(dense_col: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(capsys, str(dense_col))  # no embedder needed
    assert code == 0, err
    assert f"{dense_col}: ok (collection verified)" in out
    assert "an older data generation" in out and err == ""


@pytest.mark.parametrize("name", ["manifest.json", "docs.jsonl", "bm25.idx", "hnsw.idx"])
def test_a_flipped_byte_fails_naming_the_file(dense_col: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = dense_col / name if name == "manifest.json" else _data_dir(dense_col) / name
    raw = bytearray(path.read_bytes())
    at = len(raw) // 2
    raw[at] ^= 0x01 if name != "manifest.json" else 0x20  # a manifest flip that stays valid JSON text
    path.write_bytes(bytes(raw))
    with pytest.raises((IndexFileError, ValueError)):
        Collection.load(dense_col, embedder=HashEmbedder())
    code, _, err = _check(capsys, str(dense_col))
    assert code == 1
    assert f"problem: {path}" in err, err


def test_every_problem_is_reported_not_only_the_first(dense_col: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data_dir(dense_col)
    for name in ("docs.jsonl", "hnsw.idx"):
        raw = bytearray((data / name).read_bytes())
        raw[len(raw) // 2] ^= 0x01
        (data / name).write_bytes(bytes(raw))
    code, _, err = _check(capsys, str(dense_col))
    assert code == 1 and f"problem: {data / 'docs.jsonl'}" in err and f"problem: {data / 'hnsw.idx'}" in err


def test_stray_files_are_listed_and_fix_removes_only_ours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "col"
    with small() as c:
        c.save(root)
    before = Collection.load(root)
    data = _data_dir(root)
    stray = data / "notes-from-a-tool.bin"  # anything in a data directory besides its files is stray
    killed = data / f"bm25.idx.tmp-{dead_pid()}-abc"  # a killed index save's
    manifest_tmp = root / ".manifest.json.k2j_x9a0.tmp"  # a killed manifest write's
    old_generation = root / "data-0123456789ab"
    old_generation.mkdir()
    (old_generation / "docs.jsonl").write_text("{}\n")
    mine = root / "README.txt"  # not a name funnelrank writes: listed, never removed
    for p, text in ((stray, "x"), (killed, "partial"), (manifest_tmp, "{"), (mine, "my notes")):
        p.write_text(text)

    code, out, err = _check(capsys, str(root))
    assert code == 1
    for p in (stray, killed, manifest_tmp, mine, old_generation):
        assert f"unreferenced: {p}" in out, out
    for p in (stray, killed, manifest_tmp, mine):
        assert f"problem: {p}: unreferenced" in err
    assert f"problem: {old_generation}" not in err  # an older generation is expected after a save

    code, out, err = _check(capsys, str(root), "--fix")
    for p in (stray, killed, manifest_tmp, old_generation):
        assert f"removed: {p}" in out and not p.exists()
    assert mine.read_text() == "my notes" and f"kept: {mine}" in out
    assert code == 1 and f"problem: {mine}: unreferenced" in err  # still there, so still reported
    mine.unlink()
    code, out, err = _check(capsys, str(root))
    assert code == 0 and "unreferenced" not in out, (out, err)
    # Every referenced file is still there: the collection loads and answers the same.
    after = Collection.load(root)
    assert after.ids() == before.ids()
    for query in ("hello", "greeting", "world"):
        ids, scores = after.search_bm25(query, k=5)
        expected_ids, expected_scores = before.search_bm25(query, k=5)
        assert ids == expected_ids and np.array_equal(scores, expected_scores)
    assert after.allowed_ids({"tags": "x"}) == ["b"]


def test_fix_keeps_older_generations_when_the_current_one_is_damaged(
    dense_col: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older = [p for p in dense_col.iterdir() if p.name.startswith("data-") and p != _data_dir(dense_col)]
    assert len(older) == 1
    (_data_dir(dense_col) / "bm25.idx").write_bytes(b"damaged")
    code, out, err = _check(capsys, str(dense_col), "--fix")
    assert code == 1 and older[0].is_dir() and f"kept: {older[0]}" in out and "last good copy" in out


def test_fix_fails_fast_while_a_writer_holds_the_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "col"
    writer = small()
    writer.save(root)
    (_data_dir(root) / "stray").write_text("x")
    code, _, err = _check(capsys, str(root), "--fix")
    assert code == 2 and "is locked for writing" in err
    assert (_data_dir(root) / "stray").exists()
    code, _, _ = _check(capsys, str(root))  # checking without --fix needs no lock
    assert code == 1
    writer.close()
    code, out, _ = _check(capsys, str(root), "--fix")
    assert code == 0 and "removed:" in out


def test_check_refuses_what_is_not_a_collection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    code, _, err = _check(capsys, str(tmp_path), "--fix")
    assert code == 2 and "manifest.json is missing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]  # no lock file dropped, nothing removed
    code, _, err = _check(capsys, str(tmp_path / "nothing"))
    assert code == 2 and "no such collection directory or index file" in err


@pytest.mark.parametrize("make", [_bm25, _hnsw], ids=["bm25", "hnsw"])
def test_check_an_index_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object) -> None:
    path = tmp_path / "x.idx"
    make().save(path)  # type: ignore[operator]
    code, out, _ = _check(capsys, str(path))
    assert code == 0 and "index file verified" in out
    leftover = tmp_path / f"x.idx.tmp-{dead_pid()}-ff"
    leftover.write_bytes(b"partial")
    code, out, err = _check(capsys, str(path))
    assert code == 1 and f"unreferenced: {leftover}" in out and f"problem: {leftover}" in err
    code, out, _ = _check(capsys, str(path), "--fix")
    assert code == 0 and f"removed: {leftover}" in out and not leftover.exists()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    code, _, err = _check(capsys, str(path))
    assert code == 1 and f"problem: {path}" in err
    (tmp_path / "other.bin").write_bytes(b"not an index at all")
    code, _, err = _check(capsys, str(tmp_path / "other.bin"))
    assert code == 1 and "not a funnelrank index file" in err

