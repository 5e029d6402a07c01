"""`funnelrank index SOURCE... --out DIR`: build a collection directory from JSONL, BEIR or text files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from funnelrank.retrieve.filters import MAX_DEPTH
from funnelrank.store.sources import TXT_MODES, JsonlFields, read_sources


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `index` sub-command."""
    p = sub.add_parser(
        "index",
        help="index documents (JSONL, a BEIR directory, or .txt files) into a collection directory",
        description="Index documents into a collection directory (BM25, plus dense vectors when the default "
        "embedder is available). SOURCE is a .jsonl file, a BEIR dataset directory (corpus.jsonl), a .txt "
        "file, or a directory of .txt/.jsonl files. An existing collection at --out is replaced atomically.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("--out", required=True, metavar="DIR", help="collection directory to write")
    p.add_argument("--id-field", default="id", help="JSONL field holding the id (default: id, or _id)")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--title-field", default="title", help="JSONL field prepended to the text (default: title)")
    p.add_argument("--metadata-field", default="metadata", help="JSONL object field kept as metadata")
    p.add_argument(
        "--metadata-fields", default="", metavar="A,B", help="top-level JSONL fields also copied into metadata"
    )
    p.add_argument("--txt-mode", choices=TXT_MODES, default="file", help=".txt files: one document per file or line")
    dense = p.add_mutually_exclusive_group()
    dense.add_argument("--dense", dest="dense", action="store_true", default=None, help="require dense vectors")
    dense.add_argument("--no-dense", dest="dense", action="store_false", help="BM25 only")
    p.add_argument(
        "--embedding-cache", metavar="LABEL", default=None,
        help="reuse/cache document vectors under this label (default: the first source's name, e.g. the "
        "dataset directory, so `funnelrank eval`'s cached vectors are reused)",
    )
    p.add_argument("--no-embedding-cache", action="store_true", help="always embed, cache nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read every source, index, save."""
    from funnelrank.store.collection import Collection

    fields = JsonlFields(
        id=args.id_field,
        text=args.text_field,
        title=args.title_field or None,
        metadata=args.metadata_field or None,
        metadata_fields=tuple(f for f in args.metadata_fields.split(",") if f),
    )
    start = time.perf_counter()
    try:
        docs = list(read_sources(args.sources, fields=fields, txt_mode=args.txt_mode))
    except RecursionError:  # a JSON line nested thousands of levels deep: a clear error, not a traceback
        raise ValueError(
            f"a JSON value in {', '.join(args.sources)} is nested too deeply to read "
            f"(metadata may nest at most {MAX_DEPTH} levels)"
        ) from None
    if not docs:
        raise ValueError("the sources hold no documents")
    collection = Collection(dense=args.dense)
    label = None if args.no_embedding_cache else (args.embedding_cache or Path(args.sources[0]).resolve().name)
    collection.add_documents(docs, show_progress=len(docs) >= 1000, embedding_cache=label)
    out = Path(args.out)
    collection.save(out)
    print(
        f"indexed {len(collection)} documents into {out} "
        f"({'BM25 + dense ' + collection.embedder.name if collection.dense else 'BM25 only'}) "  # type: ignore[union-attr]
        f"in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return 0
