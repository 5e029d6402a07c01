"""Reliability bench (issue 28): SIGKILL a collection writer at random moments, many times, and check that
every acknowledged write survives, nothing is half-applied, and ``check --fix`` leaves no unreferenced file.

Each kill interrupts a child that loops over random adds, deletes, commits (and merges) with
``durability="fsync"``; see tests/crash_harness.py for the protocol and the checks. ``--dense`` runs it on a dense
collection (HNSW over a deterministic hash "embedder"), also checking that the HNSW indexes hold exactly the live
documents' vectors after each reopen. The default suite runs the same harness with 20 kills (8 dense)
(tests/test_collection_crash.py).

    python bench/bench_crash.py [--kills 200] [--seed 28] [--max-wait 0.5] [--no-merges] [--dense]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from crash_harness import crash_trials  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=28)
    parser.add_argument("--max-wait", type=float, default=0.5, help="longest a child runs before its SIGKILL (s)")
    parser.add_argument("--no-merges", action="store_true", help="only adds, deletes and commits")
    parser.add_argument("--dense", action="store_true", help="a dense collection (BM25 + HNSW over hash vectors)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        stats = crash_trials(Path(tmp) / "col", args.kills, args.seed, max_wait=args.max_wait,
                             merges=not args.no_merges, dense=args.dense)
    print(f"bench_crash{' (dense)' if args.dense else ''}: {stats.summary()}")
    for failure in stats.failures:
        print(f"FAILURE: {failure}")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
