"""Run every benchmark script in bench/ (bench_*.py) in turn with this interpreter. Exit status: the number
of scripts that failed.

bench_bm25_large.py builds four engines over 1M generated documents (about 10 minutes on a 2-core box), so by
default it runs at 200,000 documents with 3 rounds; ``--large`` runs it at its own default (1M documents, 5
rounds), ``--large-sizes 1000000 5000000`` at the sizes given (5M needs about 20 GiB for the four engines)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SMALL_LARGE_CORPUS = ["--sizes", "200000", "--rounds", "3"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--large", action="store_true", help="bench_bm25_large.py at 1M documents (its default)")
    p.add_argument("--large-sizes", type=int, nargs="+", help="bench_bm25_large.py at these corpus sizes")
    args = p.parse_args(argv)
    failed = 0
    for script in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        extra: list[str] = []
        if script.name == "bench_bm25_large.py":
            if args.large_sizes:
                extra = ["--sizes", *map(str, args.large_sizes)]
            elif not args.large:
                extra = SMALL_LARGE_CORPUS
        print(f"=== {script.name} {' '.join(extra)}".rstrip(), flush=True)
        failed += subprocess.run([sys.executable, str(script), *extra]).returncode != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
