"""funnelrank.files: atomic directory and file writing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from funnelrank.files import _current_umask, atomic_directory, atomic_writer


def test_umask_is_read_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert _current_umask() == 0o027
        assert _current_umask() == 0o027
    finally:
        os.umask(old)


def test_atomic_directory_appears_whole_with_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_current_umask()
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "b.txt").write_text("b")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old directories left


def test_failed_atomic_writes_leave_the_old_state(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("a")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as staging:
            (staging / "b.txt").write_text("b")
            raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    f = tmp_path / "f.bin"
    f.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(f) as fh:
            fh.write(b"new, partial")
            raise RuntimeError("crash mid-write")
    assert f.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "model"]
