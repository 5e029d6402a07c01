"""`funnelrank shard COLLECTION --shards K --out DIR`: split a saved collection into K shards (see
:mod:`funnelrank.retrieve.sharded`), for ``funnelrank serve DIR --ray`` or :func:`funnelrank.retrieve.sharded.load_shards`."""

from __future__ import annotations

import argparse
import sys

from funnelrank.retrieve.sharded import MAX_SHARDS


def _shards(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shards must be an integer, got {value!r}") from None
    if not 1 <= n <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"--shards must be in 1..{MAX_SHARDS}, got {n}")
    return n


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-command to the CLI."""
    p = sub.add_parser(
        "shard",
        help="split a saved collection into K shards for sharded serving",
        description="Split COLLECTION (a directory from `funnelrank index`) into K shards by a stable hash of "
        "each document id, copying the stored vectors (nothing is embedded again). Searching the shards with "
        "global BM25 statistics gives the collection's own results. The output directory appears atomically.",
    )
    p.add_argument("collection", help="saved collection directory")
    p.add_argument("--shards", type=_shards, required=True, metavar="K", help="number of shards")
    p.add_argument("--out", required=True, help="new directory for the shards (must not exist)")
    p.add_argument("--storage", choices=("f32", "f16", "int8"), default=None,
                   help="the shards' HNSW vector storage (default: the collection's); int8 re-scores its candidates "
                   "against float32 vectors that a loaded shard maps from its file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute `shard`."""
    from funnelrank.retrieve.sharded import read_manifest, write_shards
    from funnelrank.store.collection import Collection

    collection = Collection.load(args.collection)
    out = write_shards(collection, args.out, args.shards, storage=args.storage)
    sizes = [p["documents"] for p in read_manifest(out)["parts"]]
    print(f"funnelrank shard: {len(collection)} documents -> {args.shards} shards in {out} "
          f"({', '.join(map(str, sizes))} documents)", file=sys.stderr)
    return 0
