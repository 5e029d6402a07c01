"""Helpers writing small BEIR dataset directories for tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_beir(
    root: Path,
    docs: list[dict[str, object]],
    queries: list[dict[str, object]],
    qrels: dict[str, list[tuple[str, str, int]]],
    run: list[tuple[str, str, int, float]] | None = None,
) -> Path:
    """Write a BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv, optional run.bm25.tsv)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if run is not None:
        lines = ["query-id\tcorpus-id\trank\tscore"] + [f"{q}\t{d}\t{r}\t{s}" for q, d, r, s in run]
        (root / "run.bm25.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
