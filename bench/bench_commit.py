"""Commit cost proportional to the change (issue 28): add 1% to a large collection and commit, against a full
save of the same collection, in the same run.

1. Build a BM25 collection of ``--docs`` synthetic documents (a 50,000-word vocabulary with Zipf(1)
   frequencies, 20 to 80 words each; ids ``doc-<n>`` with a small metadata dict).
2. *First save* into DIR (everything written: the cost every save had before segments).
3. Add ``--fraction`` (default 1%) new documents (logged to the write-ahead log, durability ``fsync``), then
   *commit* into DIR: only the new segment and the new commit point are written.
4. *Full save* of the same grown collection into a fresh directory (an export writes everything), the
   baseline for the ratio.

For each: wall time, and bytes written (``wchar`` of /proc/self/io: every byte this process handed to
``write``, the index files written by the core included). Prints one JSON line with the ratios commit / full.

    python bench/bench_commit.py [--docs 1000000] [--fraction 0.01] [--seed 28] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def written_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def synthetic(n: int, start: int, rng: np.random.Generator, vocab: list[str], p: np.ndarray
              ) -> tuple[list[str], list[str], list[dict[str, int]]]:
    lengths = rng.integers(20, 81, size=n)
    words = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
    texts, at = [], 0
    for length in lengths.tolist():
        texts.append(" ".join(vocab[w] for w in words[at : at + length]))
        at += length
    ids = [f"doc-{start + i}" for i in range(n)]
    return ids, texts, [{"shard": (start + i) % 16} for i in range(n)]


def measure(step: object) -> tuple[float, int]:
    before, start = written_bytes(), time.perf_counter()
    step()  # type: ignore[operator]
    return time.perf_counter() - start, written_bytes() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()

    from funnelrank.store.collection import Collection

    rng = np.random.default_rng(args.seed)
    vocab = [f"w{i}x" for i in range(50_000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    base = Path(tempfile.mkdtemp(prefix="bench-commit-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        col = Collection(dense=False)
        for start in range(0, args.docs, 100_000):
            col.add(*synthetic(min(100_000, args.docs - start), start, rng, vocab, p), show_progress=False)
        build = time.perf_counter() - t0
        first_s, first_b = measure(lambda: col.save(base / "col"))
        extra = max(1, int(args.docs * args.fraction))
        ids, texts, metas = synthetic(extra, args.docs, rng, vocab, p)
        add_s, add_b = measure(lambda: col.add(ids, texts, metas, show_progress=False))
        commit_s, commit_b = measure(col.commit)
        full_s, full_b = measure(lambda: col.save(base / "full"))
        result = {
            "documents": args.docs, "added": extra, "segments": col.segment_sizes(), "build_s": round(build, 1),
            "first_save_s": round(first_s, 2), "first_save_bytes": first_b,
            "add_logged_s": round(add_s, 3), "add_log_bytes": add_b,
            "commit_s": round(commit_s, 3), "commit_bytes": commit_b,
            "full_save_s": round(full_s, 2), "full_save_bytes": full_b,
            "time_ratio": round(commit_s / full_s, 4), "bytes_ratio": round(commit_b / full_b, 4),
            "machine": f"{platform.machine()}, {platform.python_version()}",
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
