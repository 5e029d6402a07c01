"""What the benchmarks share about where they run: where the evaluation data lives, what this process holds,
and how a sampled corpus is written (bench_bm25.py, bench_bm25_large.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

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


def write_sampled_corpus(path: Path, n_docs: int, vocab: np.ndarray, cdf: np.ndarray,
                         draw_lengths: Callable[[int], np.ndarray], rng: np.random.Generator) -> None:
    """Writes `n_docs` documents, one per line, atomically: per document a length from ``draw_lengths(n)``,
    then that many words of `vocab` drawn by the cumulative distribution `cdf` with `rng` (deterministic for
    the same arguments and generator state)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        chunk = 50_000
        for start in range(0, n_docs, chunk):
            n = min(chunk, n_docs - start)
            lens = draw_lengths(n)
            total = int(lens.sum())
            ranks = np.minimum(np.searchsorted(cdf, rng.random(total)), len(vocab) - 1)
            seps = np.full(total, " ", dtype=object)
            seps[np.cumsum(lens) - 1] = "\n"
            items = np.empty(2 * total, dtype=object)
            items[0::2] = vocab[ranks]
            items[1::2] = seps
            f.write("".join(items.tolist()))
    tmp.replace(path)
