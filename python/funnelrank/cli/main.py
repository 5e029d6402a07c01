"""The `funnelrank` command line. Each sub-command lives in its own module under
`funnelrank.cli` and exposes `register(subparsers)`; this file only wires them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Sub-command modules, in the order `funnelrank --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "funnelrank.cli.demo",
    "funnelrank.cli.index",
    "funnelrank.cli.search",
    "funnelrank.cli.eval",
    "funnelrank.cli.rerank_run",
    "funnelrank.cli.shard",
    "funnelrank.cli.compare",
    "funnelrank.cli.nearmiss",
    "funnelrank.cli.optimize",
    "funnelrank.cli.calibrate_floor",
    "funnelrank.cli.advise_depth",
    "funnelrank.cli.tune_fusion",
    "funnelrank.cli.serve",
    "funnelrank.cli.check",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="funnelrank",
        description="Retrieve-and-rerank: BM25 + HNSW + RRF, cross-encoder reranking, relevance floor.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error. Point stdout at devnull so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, OSError, KeyError, ImportError) as exc:
        print(f"funnelrank {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
