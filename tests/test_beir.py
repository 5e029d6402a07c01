"""The BEIR loader on small fixtures written here, including every error case it promises to report."""

from __future__ import annotations

from pathlib import Path

import pytest
from beir_fixtures import write_beir
from funnelrank.eval.beir import (
    DatasetFormatError,
    available_splits,
    load_beir,
    load_qrels,
    load_run,
)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_beir(
        tmp_path / "tiny",
        docs=[
            {"_id": "d1", "title": "Cats", "text": "Cats purr."},
            {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "title": "Fish", "text": "Fish swim.", "metadata": {"url": "x"}},
        ],
        queries=[{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "barking"}, {"_id": "q3", "text": "x"}],
        qrels={"test": [("q2", "d2", 2), ("q1", "d1", 1), ("q1", "d9", 0)], "train": [("q3", "d3", 1)]},
        run=[("q1", "d3", 2, 1.5), ("q1", "d1", 1, 2.5), ("q2", "d2", 1, 0.7)],
    )


def test_loads_split_queries_corpus_and_run(tiny: Path) -> None:
    ds = load_beir(tiny, "test")
    assert ds.name == "tiny" and ds.split == "test"
    assert list(ds.queries) == ["q2", "q1"]  # exactly the judged queries, in qrels order
    assert ds.qrels == {"q2": {"d2": 2}, "q1": {"d1": 1, "d9": 0}}
    assert ds.doc_ids() == ["d1", "d2", "d3"]
    assert ds.doc_texts() == ["Cats Cats purr.", "Dogs bark.", "Fish Fish swim."]  # title + " " + text
    assert ds.corpus["d3"].metadata == {"url": "x"}
    assert ds.qrels_docs_missing == 1  # d9 judged but not in the corpus: kept, counted
    assert ds.run == {"q1": [("d1", 2.5), ("d3", 1.5)], "q2": [("d2", 0.7)]}  # rank order
    assert list(load_beir(tiny, "train").queries) == ["q3"]
    assert load_beir(tiny, "test", with_run=False).run is None
    assert available_splits(tiny) == ["test", "train"]


def test_missing_split_lists_available(tiny: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r'split "dev" not found; available splits: test, train'):
        load_beir(tiny, "dev")


def test_missing_files(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset directory not found"):
        load_beir(tmp_path / "nope")
    (tiny / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl: file not found"):
        load_beir(tiny)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": "d2", "text": "broken', "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"title": "t", "text": "no id"}', 'missing field "_id"'),
        ('{"_id": "d2", "title": "t"}', 'missing field "text"'),
        ('{"_id": "d2", "text": 5}', 'field "text" must be a string'),
        ('{"_id": "d1", "text": "again"}', 'duplicate document id "d1" \\(first seen on line 1\\)'),
    ],
)
def test_corpus_errors_name_file_and_line(tiny: Path, line: str, message: str) -> None:
    (tiny / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"corpus\.jsonl:2: " + message) as info:
        load_beir(tiny)
    assert info.value.line == 2


def test_invalid_utf8_is_reported_with_line(tiny: Path) -> None:
    (tiny / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "bad \xff"}\n')
    with pytest.raises(DatasetFormatError, match=r"queries\.jsonl:2: invalid UTF-8"):
        load_beir(tiny)


def test_duplicate_query_and_unknown_judged_query(tiny: Path) -> None:
    (tiny / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n')
    with pytest.raises(DatasetFormatError, match=r'queries\.jsonl:2: duplicate query id "q1"'):
        load_beir(tiny)
    (tiny / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    with pytest.raises(DatasetFormatError, match=r'1 judged queries are not in queries\.jsonl: "q2"'):
        load_beir(tiny)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("q1\td1\n", "expected 3 columns"),
        ("q1\td1\tvery\n", 'relevance grade "very" is not a number'),
        ("q1\td1\t1.5\n", 'relevance grade "1.5" is not an integer'),
        ("q1\td1\t1\nq1\td1\t2\n", 'duplicate judgment for query "q1", document "d1"'),
    ],
)
def test_qrels_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n" + body)
    with pytest.raises(DatasetFormatError, match=r"test\.tsv:\d+: " + message):
        load_qrels(path)


def test_qrels_without_header_and_space_separated(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("q1 d1 1\nq1 d2 0\n")
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 0}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("q1\td1\t1\n", "expected 4 columns"),
        ("q1\td1\tone\t2.0\n", "bad rank"),
        ("q1\td1\t1\tnan\n", "is not finite"),
        ("q1\td1\t1\t2.0\nq1\td1\t2\t1.0\n", 'document "d1" repeated for query "q1"'),
        ("q1\td1\t1\t2.0\nq1\td2\t1\t1.0\n", 'rank 1 repeated for query "q1"'),
    ],
)
def test_run_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "run.tsv"
    path.write_text("query-id\tcorpus-id\trank\tscore\n" + body)
    with pytest.raises(DatasetFormatError, match=message):
        load_run(path)


def test_run_document_missing_from_corpus(tiny: Path) -> None:
    with (tiny / "run.bm25.tsv").open("a") as fh:
        fh.write("q2\tzzz\t2\t0.1\n")
    with pytest.raises(DatasetFormatError, match=r'run\.bm25\.tsv: 1 ranked documents are not in corpus\.jsonl: "zzz"'):
        load_beir(tiny)


@pytest.mark.data
def test_real_trec_dl19_layout(shared_data: Path) -> None:
    ds = load_beir(shared_data / "trec-dl19", "test")
    assert len(ds.queries) == 43 and ds.run is not None
    assert all(len(ds.run[q]) == 100 for q in ds.queries)
