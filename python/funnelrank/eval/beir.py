"""Loading BEIR-format datasets: corpus, queries, qrels per split, and an optional first-stage run.

Layout of a dataset directory (https://github.com/beir-cellar/beir)::

    corpus.jsonl        one {"_id", "title", "text"} object per line (extra keys such as "metadata" kept)
    queries.jsonl       one {"_id", "text"} object per line
    qrels/<split>.tsv   header `query-id  corpus-id  score`, then one judgment per line (integer grade)
    run.bm25.tsv        optional first-stage run: header `query-id  corpus-id  rank  score`

TREC formats are read too, wherever a qrels or run file is: a TREC qrels file (`qid  iteration  docid  grade`,
four whitespace-separated columns, as trec_eval reads it; the iteration column is ignored) and a TREC run file
(`qid  Q0  docid  rank  score  tag`); :func:`load_beir`'s `qrels_path` and `run_path` take either instead of the
directory's own files, and :func:`funnelrank.serve.ray_data.write_trec_run` writes runs in TREC format.

Conventions:

* A document's searchable text is ``title + " " + text`` (the BEIR convention; just ``text`` when the title
  is empty), see :attr:`Document.full_text`.
* The queries evaluated for a split are exactly those that appear in ``qrels/<split>.tsv`` (with any grade,
  zero included); every one of them must exist in queries.jsonl.
* Qrels may judge documents that are absent from the corpus (trec-dl19 does: its corpus is the union of the
  BM25 run's passages, the judgments cover more). They stay in the qrels, so recall is measured against
  all judged relevant documents, as trec_eval does; :attr:`BeirDataset.qrels_docs_missing` counts them.
* A run is kept in its rank order (the ``rank`` column), not re-sorted by score.

Every format problem raises :class:`DatasetFormatError` (a ``ValueError``) naming the file and line;
missing files raise ``FileNotFoundError`` saying what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BeirDataset",
    "DatasetFormatError",
    "Document",
    "Qrels",
    "Query",
    "Run",
    "available_splits",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "load_run",
    "read_query_ids",
]

Qrels = dict[str, dict[str, int]]
"""query id -> {document id -> relevance grade}."""

Run = dict[str, list[tuple[str, float]]]
"""query id -> [(document id, score), ...] in rank order (best first)."""

RUN_FILE = "run.bm25.tsv"


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file and (1-based) line number."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Document:
    """One corpus document."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def full_text(self) -> str:
        """The text indexed and reranked: ``title + " " + text`` (BEIR convention), or ``text`` if no title."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    """One query."""

    id: str
    text: str


@dataclass
class BeirDataset:
    """A BEIR dataset loaded for one split.

    ``queries`` holds only the split's judged queries (those in its qrels), in qrels order; ``corpus`` keeps
    file order. ``run`` is the first-stage run when the directory has one (``run.bm25.tsv``), else None.
    """

    name: str
    root: Path
    split: str
    corpus: dict[str, Document]
    queries: dict[str, Query]
    qrels: Qrels
    run: Run | None = None
    qrels_docs_missing: int = 0
    run_file: Path | None = None
    """The file `run` was read from (``root/run.bm25.tsv`` unless :func:`load_beir` was given another)."""
    qrels_file: Path | None = None
    """The file `qrels` was read from (``root/qrels/<split>.tsv`` unless :func:`load_beir` was given another)."""

    def doc_ids(self) -> list[str]:
        """Document ids in corpus order."""
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """Document full texts (title + text) in corpus order, aligned with :meth:`doc_ids`."""
        return [d.full_text for d in self.corpus.values()]

    def with_queries(self, query_ids: Iterable[str]) -> BeirDataset:
        """This dataset restricted to the judged queries `query_ids` (queries, qrels and run; corpus shared),
        in qrels order. ValueError naming them when some id is not a judged query of this split, or when
        none is given."""
        wanted = set(query_ids)
        if not wanted:
            raise ValueError("no query ids given")
        unknown = sorted(wanted - self.qrels.keys())
        if unknown:
            shown = ", ".join(f'"{q}"' for q in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(
                f'{len(unknown)} query ids are not judged queries of split "{self.split}": {shown}{more}'
            )
        keep = [q for q in self.qrels if q in wanted]
        return BeirDataset(
            name=self.name,
            root=self.root,
            split=self.split,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
            run=None if self.run is None else {q: r for q, r in self.run.items() if q in wanted},
            qrels_docs_missing=len({d for q in keep for d in self.qrels[q] if d not in self.corpus}),
            run_file=self.run_file,
            qrels_file=self.qrels_file,
        )


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline) decoding UTF-8 strictly, per line so that an
    invalid byte is reported with its line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(
                    path, lineno, f"invalid UTF-8 at byte {exc.start} of the line ({exc.reason})"
                ) from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield lineno, line.rstrip("\r\n")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(path, lineno, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _str_field(path: Path, lineno: int, obj: dict[str, Any], key: str, *, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise DatasetFormatError(path, lineno, f'missing field "{key}"')
        return ""
    if key == "_id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # some BEIR exports write numeric ids
    if not isinstance(value, str):
        raise DatasetFormatError(path, lineno, f'field "{key}" must be a string, got {type(value).__name__}')
    if key == "_id" and not value:
        raise DatasetFormatError(path, lineno, 'empty "_id"')
    return value


def load_corpus(path: Path | str) -> dict[str, Document]:
    """Load corpus.jsonl into {id: Document} (file order). Duplicate ids are an error."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        doc_id = _str_field(path, lineno, obj, "_id", required=True)
        if doc_id in corpus:
            raise DatasetFormatError(
                path, lineno, f'duplicate document id "{doc_id}" (first seen on line {first_line[doc_id]})'
            )
        title = _str_field(path, lineno, obj, "title", required=False)
        text = _str_field(path, lineno, obj, "text", required=True)
        meta = obj.get("metadata")
        corpus[doc_id] = Document(doc_id, title, text, meta if isinstance(meta, dict) else {})
        first_line[doc_id] = lineno
    return corpus


def load_queries(path: Path | str) -> dict[str, Query]:
    """Load queries.jsonl into {id: Query} (file order). Duplicate ids are an error."""
    path = Path(path)
    queries: dict[str, Query] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        qid = _str_field(path, lineno, obj, "_id", required=True)
        if qid in queries:
            raise DatasetFormatError(
                path, lineno, f'duplicate query id "{qid}" (first seen on line {first_line[qid]})'
            )
        queries[qid] = Query(qid, _str_field(path, lineno, obj, "text", required=True))
        first_line[qid] = lineno
    return queries


def _tsv_rows(path: Path, header: tuple[str, ...], *, also: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a tab-separated file, checking the width (that of `header`, or `also`
    when given); a first line equal to `header` is skipped (BEIR files have it; plain TREC-style files may not)."""
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) == 1:  # tolerate space-separated files
            fields = line.split()
        fields = [f.strip() for f in fields]
        if lineno == 1 and tuple(f.lower() for f in fields) == header:
            continue
        if len(fields) != len(header) and len(fields) != also:
            alt = f" or {also} (TREC)" if also else ""
            raise DatasetFormatError(
                path, lineno, f"expected {len(header)} columns ({', '.join(header)}){alt}, got {len(fields)}"
            )
        yield lineno, fields


def load_qrels(path: Path | str) -> Qrels:
    """Load a qrels file into {qid: {doc_id: grade}}: BEIR's TSV (`query-id corpus-id score`) or TREC's
    (`qid iteration docid grade`, whitespace-separated; the iteration column, usually 0, is ignored). Grades
    are integers; a repeated (query, document) pair is an error. A file holding the TREC lines ``q1 0 d2 2``
    and ``q1 0 d7 0`` loads as ``{"q1": {"d2": 2, "d7": 0}}``, and so does its BEIR form.
    """
    path = Path(path)
    qrels: Qrels = {}
    for lineno, fields in _tsv_rows(path, ("query-id", "corpus-id", "score"), also=4):
        if len(fields) == 4:  # TREC: qid iteration docid grade
            qid, _, doc_id, grade_s = fields
        else:
            qid, doc_id, grade_s = fields
        try:
            grade_f = float(grade_s)
        except ValueError:
            raise DatasetFormatError(path, lineno, f'relevance grade "{grade_s}" is not a number') from None
        if not math.isfinite(grade_f) or grade_f != int(grade_f):
            raise DatasetFormatError(path, lineno, f'relevance grade "{grade_s}" is not an integer')
        judged = qrels.setdefault(qid, {})
        if doc_id in judged:
            raise DatasetFormatError(path, lineno, f'duplicate judgment for query "{qid}", document "{doc_id}"')
        judged[doc_id] = int(grade_f)
    return qrels


def load_run(path: Path | str) -> Run:
    """Load a run TSV (`query-id corpus-id rank score`) or a TREC run file (`query-id Q0 corpus-id rank score
    tag`, whitespace-separated) into {qid: [(doc_id, score), ...]} ordered by the rank column. Non-finite
    scores, repeated documents for a query and repeated ranks are errors."""
    path = Path(path)
    rows: dict[str, list[tuple[int, str, float, int]]] = {}
    seen: dict[str, dict[str, int]] = {}
    for lineno, fields in _tsv_rows(path, ("query-id", "corpus-id", "rank", "score"), also=6):
        if len(fields) == 6:  # TREC: qid Q0 docid rank score tag
            qid, _, doc_id, rank_s, score_s, _ = fields
        else:
            qid, doc_id, rank_s, score_s = fields
        try:
            rank = int(rank_s)
            score = float(score_s)
        except ValueError:
            raise DatasetFormatError(path, lineno, f'bad rank "{rank_s}" or score "{score_s}"') from None
        if not math.isfinite(score):
            raise DatasetFormatError(path, lineno, f'score "{score_s}" is not finite')
        docs = seen.setdefault(qid, {})
        if doc_id in docs:
            raise DatasetFormatError(
                path, lineno, f'document "{doc_id}" repeated for query "{qid}" (first on line {docs[doc_id]})'
            )
        docs[doc_id] = lineno
        rows.setdefault(qid, []).append((rank, doc_id, score, lineno))
    run: Run = {}
    for qid, entries in rows.items():
        entries.sort(key=lambda e: e[0])
        for a, b in zip(entries, entries[1:]):
            if a[0] == b[0]:
                raise DatasetFormatError(path, b[3], f'rank {b[0]} repeated for query "{qid}"')
        run[qid] = [(doc_id, score) for _, doc_id, score, _ in entries]
    return run


def available_splits(root: Path | str) -> list[str]:
    """The split names with a qrels file under ``root/qrels`` (sorted)."""
    qdir = Path(root) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def load_beir(
    root: Path | str, split: str = "test", *, with_run: bool = True, run_path: Path | str | None = None,
    qrels_path: Path | str | None = None,
) -> BeirDataset:
    """Load a BEIR dataset directory for one split (and its ``run.bm25.tsv`` when present and `with_run`;
    `run_path` reads that run file instead, BEIR or TREC format, and must exist). `qrels_path` reads the
    judgments from that file (BEIR or TREC qrels) instead of ``root/qrels/<split>.tsv``; `split` is then only
    the name the dataset reports.

    Raises FileNotFoundError for a missing directory, file or split (listing the available splits) and
    DatasetFormatError for malformed content or judged queries missing from queries.jsonl.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset directory not found")
    if qrels_path is not None:
        qrels_path = Path(qrels_path)
        if not qrels_path.is_file():
            raise FileNotFoundError(f"{qrels_path}: qrels file not found")
    else:
        qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = available_splits(root)
        have = ", ".join(splits) if splits else f"none (no {root / 'qrels'}/*.tsv)"
        raise FileNotFoundError(f'{qrels_path}: split "{split}" not found; available splits: {have}')
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (root / required).is_file():
            raise FileNotFoundError(f"{root / required}: file not found (a BEIR dataset needs it)")

    corpus = load_corpus(root / "corpus.jsonl")
    all_queries = load_queries(root / "queries.jsonl")
    qrels = load_qrels(qrels_path)
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        shown = ", ".join(f'"{q}"' for q in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetFormatError(
            qrels_path, None, f"{len(missing)} judged queries are not in queries.jsonl: {shown}{more}"
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    qrels_docs = {d for judged in qrels.values() for d in judged}
    run: Run | None = None
    if run_path is not None:
        run_path = Path(run_path)
        if not run_path.is_file():
            raise FileNotFoundError(f"{run_path}: run file not found")
    else:
        run_path = root / RUN_FILE
    if with_run and run_path.is_file():
        run = load_run(run_path)
        unknown = {d for ranking in run.values() for d, _ in ranking if d not in corpus}
        if unknown:
            shown = ", ".join(f'"{d}"' for d in sorted(unknown)[:5])
            raise DatasetFormatError(
                run_path, None, f"{len(unknown)} ranked documents are not in corpus.jsonl: {shown}"
            )
    return BeirDataset(
        name=root.resolve().name,
        root=root,
        split=split,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        run=run,
        qrels_docs_missing=sum(1 for d in qrels_docs if d not in corpus),
        run_file=run_path if run is not None else None,
        qrels_file=qrels_path,
    )


def read_query_ids(path: Path | str) -> list[str]:
    """Query ids from a text file, one per line (surrounding blanks stripped; empty lines and lines starting
    with ``#`` skipped), in file order without repeats. FileNotFoundError / DatasetFormatError (a file with
    no id, or a line holding more than one token) name the file."""
    path = Path(path)
    ids: dict[str, None] = {}
    for lineno, line in _read_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if len(text.split()) != 1:
            raise DatasetFormatError(path, lineno, f"expected one query id per line, got {text!r}")
        ids[text] = None
    if not ids:
        raise DatasetFormatError(path, None, "no query ids in the file")
    return list(ids)
