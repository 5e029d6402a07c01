"""Issue 28: SIGKILL a writer (durability="fsync") at random moments during adds, deletes, commits and merges; every
acknowledged write is there after the reopen, nothing is half-applied, and `check --fix` leaves no unreferenced
file (the full count: bench/bench_crash.py); the same for a dense collection, whose HNSW indexes must then hold exactly
the live documents' vectors."""

from __future__ import annotations

from pathlib import Path

from crash_harness import crash_trials


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    stats = crash_trials(tmp_path / "col", trials=20, seed=28, max_wait=0.5, merges=True)
    print("\n" + stats.summary())
    assert stats.failures == []
    assert stats.kills == 20 and stats.acknowledged > 100
    assert stats.in_flight["none"] < 20  # most kills landed inside an operation


def test_sigkill_dense_loses_no_acknowledged_write_and_no_vector(tmp_path: Path) -> None:
    stats = crash_trials(tmp_path / "col", trials=8, seed=29, max_wait=0.4, merges=True, dense=True)
    print("\n" + stats.summary())
    assert stats.failures == []
    assert stats.kills == 8 and stats.acknowledged > 40
