"""Collection: add/delete validation, metadata filters in stage 1, save/load round trip, crash safety and
clear errors for missing or corrupt parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import funnelrank.store.save as store_save
import numpy as np
import pytest
from funnelrank.core import IndexFileError
from funnelrank.store.collection import Collection, Document
from funnelrank.store.manifest import manifest_checksum

TEXTS = {
    "py-json": "The json module encodes and decodes JSON documents.",
    "py-re": "The re module provides regular expression matching operations.",
    "py-os": "The os module offers a portable way of using operating system functionality.",
    "fruit": "Bananas are yellow fruit rich in potassium.",
}
META = {
    "py-json": {"lang": "en", "year": 2020, "tags": ["stdlib"]},
    "py-re": {"lang": "en", "year": 2021, "tags": ["stdlib", "text"]},
    "py-os": {"lang": "de", "year": 2019},
    "fruit": {"lang": "en", "year": 2020, "score": 4.5},
}


def make(dense: bool = False, embedder: object = None) -> Collection:
    c = Collection(dense=dense, embedder=embedder)
    c.add(list(TEXTS), list(TEXTS.values()), [META[k] for k in TEXTS])
    return c


@pytest.fixture(scope="module")
def embedder() -> object:
    from funnelrank.embed import Embedder

    return Embedder.default()


def test_add_get_and_search() -> None:
    c = make()
    assert len(c) == 4 and "py-re" in c and "nope" not in c
    assert c.get("fruit") == Document("fruit", TEXTS["fruit"], META["fruit"])
    ids, scores = c.search_bm25("regular expression", k=3)
    assert ids[0] == "py-re" and scores[0] > 0
    with pytest.raises(KeyError, match="nope"):
        c.get("nope")


@pytest.mark.parametrize(
    ("ids", "texts", "meta", "message"),
    [
        (["new", "new"], ["a", "b"], None, "repeats 'new'"),
        (["new", "fruit"], ["a", "b"], None, "already in the collection"),
        (["new", ""], ["a", "b"], None, "empty"),
        (["new", 3], ["a", "b"], None, "must be str"),
        (["new", "x"], ["a", b"bytes"], None, "must be str"),
        (["new", "x"], ["a", "bad \ud800 surrogate"], None, "not valid Unicode"),
        (["new", "x"], ["a"], None, "2 ids but 1 texts"),
        (["new", "x"], ["a", "b"], [{"k": 1}, {"k": float("nan")}], "not JSON-serializable"),
        (["new", "x"], ["a", "b"], [{"k": 1}, ["not", "a", "dict"]], "must be a dict"),
        ("new", "a", None, "not a single string"),
    ],
)
def test_bad_add_changes_nothing(ids: object, texts: object, meta: object, message: str) -> None:
    c = make()
    before = c.search_bm25("module", k=10)
    with pytest.raises(ValueError, match=message):
        c.add(ids, texts, meta)  # type: ignore[arg-type]
    assert len(c) == 4 and "new" not in c
    after = c.search_bm25("module", k=10)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


def test_delete_is_all_or_nothing() -> None:
    c = make()
    with pytest.raises(KeyError, match="nope"):
        c.delete(["py-json", "nope"])
    assert "py-json" in c and c.search_bm25("json", k=1)[0] == ["py-json"]
    c.delete(["py-json"])
    assert "py-json" not in c and c.search_bm25("json", k=5)[0] == []
    assert c.allowed_ids({"year": 2020}) == ["fruit"]
    c.add(["py-json"], ["json again"], [{"year": 1999}])  # the id can be reused
    assert c.get("py-json").metadata == {"year": 1999}


def test_changing_handed_out_metadata_changes_nothing_stored() -> None:
    """Metadata is copied in and copied out: neither the caller's dict (nested values included) nor a
    Document from get(), iteration or a search result can change what filters see or what delete removes."""
    mine = {"year": 2020, "tags": ["stdlib"]}
    c = Collection(dense=False)
    c.add(["a", "b"], ["alpha text", "beta text"], [mine, {"year": 2021}])
    mine["year"] = 1999
    mine["tags"].append("changed")
    got = c.get("a")
    got.metadata["year"] = 1998
    got.metadata["tags"].append("again")
    next(iter(c)).metadata["year"] = 1997
    assert c.get("a").metadata == {"year": 2020, "tags": ["stdlib"]}
    assert c.text("a") == "alpha text"
    with pytest.raises(KeyError, match="nope"):
        c.text("nope")
    assert c.allowed_ids({"year": 2020}) == ["a"]
    assert c.allowed_ids({"year": {"lt": 2020}}) == []
    c.delete(["a"])  # removes what was indexed, not what was handed out
    assert c.allowed_ids({"year": 2020}) == []
    assert c.allowed_ids({"year": 2021}) is None  # "b" is all that is left: no restriction


def test_filter_keeps_stage1_full() -> None:
    # 60 documents share a word; only the even ones pass the filter. Filtering happens inside the search,
    # so asking for 20 still gives 20 (all allowed), and asking for 50 gives the 30 that exist.
    c = Collection(dense=False)
    ids = [f"d{i}" for i in range(60)]
    c.add(ids, [f"common word number {i}" for i in range(60)], [{"parity": i % 2, "i": i} for i in range(60)])
    allow = c.allowed_ids({"parity": 0})
    assert allow is not None and len(allow) == 30
    got, _ = c.search_bm25("common", k=20, allow=allow)
    assert len(got) == 20 and all(int(x[1:]) % 2 == 0 for x in got)
    assert len(c.search_bm25("common", k=50, allow=allow)[0]) == 30
    assert c.allowed_ids({"i": {"gte": 10, "lt": 13}}) == ["d10", "d11", "d12"]
    assert c.allowed_ids(None) is None and c.allowed_ids({"i": {"gte": 0}}) is None  # everything: no list
    assert c.search_bm25("common", k=5, allow=c.allowed_ids({"i": -1}))[0] == []
    with pytest.raises(ValueError, match="unknown operator"):
        c.allowed_ids({"i": {"between": [1, 2]}})
    # Unsorted (what the pipeline passes to searches): the same ids, and the same search results.
    unsorted = c.allowed_ids({"parity": 0}, sort=False)
    assert unsorted is not None and sorted(unsorted) == allow
    got_sorted, scores_sorted = c.search_bm25("common", k=20, allow=allow)
    got_reversed, scores_reversed = c.search_bm25("common", k=20, allow=allow[::-1])
    assert got_sorted == got_reversed and list(scores_sorted) == list(scores_reversed)
    assert c.allowed_ids({"i": {"gte": 0}}, sort=False) is None


def _same(a: Collection, b: Collection, queries: list[str]) -> None:
    assert a.ids() == b.ids()
    assert [a.get(i) for i in a.ids()] == [b.get(i) for i in b.ids()]
    for q in queries:
        ra, rb = a.search_bm25(q, k=10), b.search_bm25(q, k=10)
        assert ra[0] == rb[0] and np.array_equal(ra[1], rb[1])


def test_save_load_round_trip(tmp_path: Path) -> None:
    c = make()
    c.delete(["py-os"])
    c.add(["unicode"], ["Grüße aus Köln ☕"], [{"nested": {"a": [1, 2]}, "lang": "de"}])
    c.save(tmp_path / "col")
    c.close()  # the directory's writer lock: `loaded` below writes it next
    loaded = Collection.load(tmp_path / "col", writer=True)
    assert not loaded.dense
    _same(c, loaded, ["json module", "köln", "bananas"])
    assert loaded.allowed_ids({"lang": "de"}) == ["unicode"]
    manifest = json.loads((tmp_path / "col" / "manifest.json").read_text())
    assert manifest["format"] == "funnelrank-collection" and manifest["version"] == 3
    assert manifest["documents"] == 4 and manifest["dense"] is None and manifest["segments"] == []
    assert manifest["checksum"] == manifest_checksum(manifest)
    # A commit writes only what changed: the new document as a second segment; the first is kept as it is.
    first = manifest["data"]
    loaded.add(["more"], ["another document"])
    loaded.save(tmp_path / "col")
    assert len(Collection.load(tmp_path / "col")) == 5
    data_dirs = {p.name for p in (tmp_path / "col").iterdir() if p.name.startswith("data-")}
    assert len(data_dirs) == 2 and first in data_dirs
    assert loaded.segment_sizes() == [4, 1]
    # A merge folds them into one segment and commits it; the replaced segments are kept for readers still on
    # the previous commit, and removed by the commit after.
    loaded.merge()
    assert loaded.segment_sizes() == [5]
    data_dirs = {p.name for p in (tmp_path / "col").iterdir() if p.name.startswith("data-")}
    assert len(data_dirs) == 3 and first in data_dirs
    loaded.save(tmp_path / "col")
    data_dirs = {p.name for p in (tmp_path / "col").iterdir() if p.name.startswith("data-")}
    assert len(data_dirs) == 1 and first not in data_dirs
    _same(loaded, Collection.load(tmp_path / "col"), ["json module", "köln", "bananas", "another"])


def test_dense_round_trip(tmp_path: Path, embedder: object) -> None:
    c = make(dense=True, embedder=embedder)
    assert c.dense
    vec = c.embed_query("pattern matching with regexes")
    ids, scores = c.search_dense(vec, k=4)
    assert ids[0] == "py-re" and len(ids) == 4
    assert c.search_dense(vec, k=4, allow=c.allowed_ids({"year": 2020}))[0] == sorted(
        ["py-json", "fruit"], key=ids.index
    )
    c.save(tmp_path / "dense")
    manifest = json.loads((tmp_path / "dense" / "manifest.json").read_text())
    assert manifest["dense"]["embedder"]["fingerprint"] == embedder.fingerprint  # type: ignore[attr-defined]
    loaded = Collection.load(tmp_path / "dense")  # finds the default embedder from the manifest
    assert loaded.dense and loaded.embedder.fingerprint == embedder.fingerprint  # type: ignore[attr-defined]
    ids2, scores2 = loaded.search_dense(loaded.embed_query("pattern matching with regexes"), k=4)
    assert ids2 == ids and np.allclose(scores2, scores)


def test_allow_list_is_a_filter_for_bm25_and_dense(embedder: object) -> None:
    # BM25 and HNSW treat an allow-list alike: ids not in the collection (never added, or deleted after the
    # filter was resolved, as when another thread deletes between allowed_ids() and the search) are ignored.
    c = make(dense=True, embedder=embedder)
    allow = c.allowed_ids({"lang": "en"})
    assert allow == ["fruit", "py-json", "py-re"]
    c.delete(["py-json"])
    query = "module for JSON and regular expressions"
    vec = c.embed_query(query)
    stale = [*allow, "never-added"]
    searches = {
        "bm25": lambda a: c.search_bm25(query, k=10, allow=a)[0],
        "bm25 batch": lambda a: c.search_bm25_batch([query], k=10, allow=a)[0][0],
        "dense": lambda a: c.search_dense(vec, k=10, allow=a)[0],
        "dense batch": lambda a: c.search_dense_batch(vec[None, :], k=10, allow=a)[0][0],
    }
    for name, search in searches.items():
        assert search(["never-added", "py-json"]) == [], name
        assert search(["never-added"]) == [], name
        got = search(stale)
        assert "py-json" not in got and "never-added" not in got, name
        assert set(got) <= {"fruit", "py-re"} and "py-re" in got, name
    assert set(searches["dense"](stale)) == {"fruit", "py-re"}  # dense returns every allowed live id


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("fail_at", ["bm25", "manifest"])
def test_crash_mid_save_leaves_old_collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    target = tmp_path / "col"
    old = make()
    old.save(target)
    old.close()
    new = make()
    new.delete(["fruit"])
    new.add(["x"], ["brand new"])
    if fail_at == "bm25":
        # The docs file is already written when the index save dies.
        segment = new._segments.list[0]
        monkeypatch.setattr(segment, "bm25", _FailingSave(segment.bm25))
    else:
        def failing_writer(path: object) -> object:
            raise Boom("disk full while writing the manifest")

        monkeypatch.setattr(store_save, "atomic_writer", failing_writer)
    with pytest.raises(Boom):
        new.save(target)
    monkeypatch.undo()
    _same(old, Collection.load(target), ["json", "bananas"])
    assert len([p for p in target.iterdir() if p.name.startswith("data-")]) == 1  # the failed one is gone


class _FailingSave:
    def __init__(self, inner: object) -> None:
        self._inner = inner

    def save(self, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise Boom("killed mid-save")

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]


def test_leftovers_of_a_killed_save_are_harmless(tmp_path: Path) -> None:
    target = tmp_path / "col"
    make().save(target)
    junk = target / "data-deadbeef0000"  # what a process killed mid-save leaves behind
    junk.mkdir()
    (junk / "docs.jsonl").write_text("{partial")
    assert len(Collection.load(target)) == 4
    make().save(target)
    assert not junk.exists()


def test_refuses_to_save_into_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not empty"):
        make().save(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "user data"
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"name": "someone else\'s manifest"}')
    with pytest.raises(ValueError, match="not a funnelrank collection manifest"):
        make().save(other)
    assert "someone else" in (other / "manifest.json").read_text()


def _data_dir(root: Path) -> Path:
    return root / json.loads((root / "manifest.json").read_text())["data"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda r: (r / "manifest.json").write_text("{not json"), "corrupt manifest"),
        (lambda r: (r / "manifest.json").write_text('{"format": "funnelrank-collection", "version": 99}'),
         "version 99 is not supported"),
        (lambda r: shutil.rmtree(_data_dir(r)), "data directory is missing"),
        (lambda r: (r / "manifest.json").write_text(
            (r / "manifest.json").read_text().replace('"sha256"', '"sha"')), "corrupt manifest"),
        (lambda r: (r / "manifest.json").write_text(
            (r / "manifest.json").read_text().replace('"docs.jsonl"', '"../../etc/passwd"')), "bad file name"),
        (lambda r: (_data_dir(r) / "docs.jsonl").write_text('{"id": "evil", "text": "x"}\n'), "checksum mismatch"),
        (lambda r: (_data_dir(r) / "docs.jsonl").unlink(), "missing documents file"),
        (lambda r: (_data_dir(r) / "bm25.idx").write_bytes((_data_dir(r) / "bm25.idx").read_bytes()[:40]), "bm25"),
        (lambda r: (_data_dir(r) / "bm25.idx").unlink(), "missing BM25 index"),
    ],
)
def test_damaged_collections_raise_index_file_error(tmp_path: Path, damage: object, message: str) -> None:
    root = tmp_path / "col"
    make().save(root)
    damage(root)  # type: ignore[operator]
    with pytest.raises(IndexFileError, match=message):
        Collection.load(root)


def test_missing_hnsw_file(tmp_path: Path, embedder: object) -> None:
    root = tmp_path / "col"
    make(dense=True, embedder=embedder).save(root)
    (_data_dir(root) / "hnsw.idx").unlink()
    with pytest.raises(IndexFileError, match="missing HNSW index file"):
        Collection.load(root, embedder=embedder)


def test_load_nonexistent(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="no such collection directory"):
        Collection.load(tmp_path / "nothing")


def test_concurrent_searches_during_writes() -> None:
    import threading

    c = Collection(dense=False)
    c.add([f"base{i}" for i in range(50)], [f"shared word {i}" for i in range(50)], [{"g": i % 3} for i in range(50)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                allow = c.allowed_ids({"g": {"ne": 1}})
                ids, _ = c.search_bm25("shared word", k=20, allow=allow)
                assert len(ids) == 20
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for round_ in range(30):
        ids = [f"r{round_}-{i}" for i in range(10)]
        c.add(ids, ["shared word extra"] * 10, [{"g": 1}] * 10)
        c.delete(ids)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(c) == 50
