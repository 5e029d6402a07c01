"""What the benchmarks share about where they run: where the evaluation data lives and what this process holds
(bench_bm25.py, bench_bm25_large.py)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$FUNNELRANK_SHARED_DATA``, else the first of ``../shared/data`` and ``/work/shared/data`` that exists
    (``../shared/data`` when neither does)."""
    env = os.environ.get("FUNNELRANK_SHARED_DATA")
    if env:
        return Path(env)
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmHWM``, ``VmRSS``, ...); RuntimeError where there is none."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
