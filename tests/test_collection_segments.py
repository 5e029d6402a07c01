"""Issue 28: segments. A commit writes only the new documents' segment and the changed deletion bitmaps;
searches over N segments give exactly the single index's rankings (BM25: same ids, order and float32 scores;
dense: the exact top-k); merge() folds segments; a version-2 collection loads and its first commit reuses it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from funnelrank._core import IndexFileError
from funnelrank.store.check import check_collection
from funnelrank.store.collection import Collection
from funnelrank.store.manifest import manifest_checksum
from funnelrank.store.segments import MERGE_AT
from crash_harness import HashEmbedder

WORDS = "cat dog bird fish tree river stone cloud rain sun moon star sea wind fire ice".split()
QUERIES = ["cat", "dog river", "stone stone cloud", "moon star sea wind", "fire", "tree cat dog bird", "nothing"]


def corpus(n: int, seed: int = 7) -> list[tuple[str, str, dict[str, int]]]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(n // 3)]
    # Repeated texts make exact score ties: the earlier document must win them, as in one index.
    return [(f"d{i}", rng.choice(texts), {"g": i % 3}) for i in range(n)]


def segmented(root: Path, docs: list[tuple[str, str, dict[str, int]]], dense: bool) -> tuple[Collection, list[str]]:
    """A collection committed in 5 batches with deletes between them (several segments, deletion bitmaps),
    and the ids deleted."""
    col = Collection(dense=dense, embedder=HashEmbedder() if dense else None, hnsw={"ef_search": 400})
    rng = random.Random(3)
    deleted: list[str] = []
    for batch in range(5):
        part = docs[batch * len(docs) // 5 : (batch + 1) * len(docs) // 5]
        col.add([d[0] for d in part], [d[1] for d in part], [d[2] for d in part])
        gone = rng.sample(col.ids(), 4)
        col.delete(gone)
        deleted += gone
        col.save(root)
    return col, deleted


def single(docs: list[tuple[str, str, dict[str, int]]], deleted: list[str], dense: bool) -> Collection:
    col = Collection(dense=dense, embedder=HashEmbedder() if dense else None, hnsw={"ef_search": 400})
    keep = [d for d in docs if d[0] not in set(deleted)]
    col.add([d[0] for d in keep], [d[1] for d in keep], [d[2] for d in keep])
    return col


@pytest.mark.parametrize("reload", [False, True], ids=["in-memory", "reloaded"])
def test_bm25_over_segments_is_the_single_index_ranking(tmp_path: Path, reload: bool) -> None:
    docs = corpus(300)
    col, deleted = segmented(tmp_path / "col", docs, dense=False)
    col.add(["late"], ["cat dog"])  # and an unwritten segment
    docs.append(("late", "cat dog", {"g": 0}))
    if reload:
        col.close()
        col = Collection.load(tmp_path / "col", writer=True)
    assert len(col.segment_sizes()) >= 5
    one = single(docs, deleted, dense=False)
    assert col.ids() == one.ids()
    assert col.bm25_corpus_stats() == one.bm25_corpus_stats()
    assert col.bm25_doc_freqs(QUERIES) == one.bm25_doc_freqs(QUERIES)
    allow = col.allowed_ids({"g": 1})
    for k in (1, 5, 50, 10_000):
        for query in QUERIES:
            for a in (None, allow):
                got, expected = col.search_bm25(query, k, a), one.search_bm25(query, k, a)
                assert got[0] == expected[0] and np.array_equal(got[1], expected[1]), (query, k)
        assert [(i, s.tolist()) for i, s in col.search_bm25_batch(QUERIES, k)] == [
            (i, s.tolist()) for i, s in one.search_bm25_batch(QUERIES, k)]
    stats = {"documents": 1000, "total_length": 4000, "df": {t: 200 for t in WORDS}}
    got = col.search_bm25_global(["cat dog", "sea"], 20, **stats)  # type: ignore[arg-type]
    expected = one.search_bm25_global(["cat dog", "sea"], 20, **stats)  # type: ignore[arg-type]
    assert [(i, s.tolist(), e.tolist()) for i, s, e in got] == [(i, s.tolist(), e.tolist()) for i, s, e in expected]


def test_dense_over_segments_is_the_exact_ranking(tmp_path: Path) -> None:
    docs = [(i, f"{text} {i}", meta) for i, text, meta in corpus(200)]  # distinct vectors: no similarity ties
    col, deleted = segmented(tmp_path / "col", docs, dense=True)
    col.close()
    col = Collection.load(tmp_path / "col", embedder=HashEmbedder())
    one = single(docs, deleted, dense=True)
    ids = one.ids()
    np.testing.assert_array_equal(col.vectors(ids), one.vectors(ids))
    matrix = one.vectors(ids)
    for query in QUERIES:
        vector = HashEmbedder().embed_query(query)
        vector = vector / np.linalg.norm(vector)
        exact = [ids[i] for i in np.argsort(-(matrix @ vector), kind="stable")[:10]]
        got = col.search_dense(vector, 10)
        assert got[0] == exact == one.search_dense(vector, 10)[0]
    batch = col.search_dense_batch(np.stack([HashEmbedder().embed_query(q) for q in QUERIES]), 7)
    assert [b[0] for b in batch] == [one.search_dense(HashEmbedder().embed_query(q), 7)[0] for q in QUERIES]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and p.parent != root}


def test_a_commit_writes_only_the_new_segment_and_the_changed_bitmap(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = Collection(dense=True, embedder=HashEmbedder())
    col.add([f"a{i}" for i in range(50)], ["cat"] * 50)
    col.save(root)
    col.add([f"b{i}" for i in range(50)], ["dog"] * 50)
    col.commit()
    before = _files(root)
    col.add(["c"], ["bird"])
    col.delete(["a3", "a7"])
    col.commit()
    after = _files(root)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing written was touched
    new = sorted(set(after) - set(before))
    manifest = json.loads((root / "manifest.json").read_text())
    first, second, third = [manifest["data"]] + [s["data"] for s in manifest["segments"]]
    assert new == sorted([f"{third}/docs.jsonl", f"{third}/bm25.idx", f"{third}/hnsw.idx",
                          f"{first}/{manifest['deleted'][first]['file']}"])
    assert manifest["deleted"][first]["count"] == 2 and second not in manifest["deleted"]
    reader = Collection.load(root, embedder=HashEmbedder())
    assert reader.ids() == col.ids() and "a3" not in reader and len(reader) == 99
    # Every document of a segment deleted: the segment leaves the next commit.
    col.delete([f"b{i}" for i in range(50)])
    col.commit()
    manifest = json.loads((root / "manifest.json").read_text())
    assert [s["data"] for s in manifest["segments"]] == [third] and col.segment_sizes() == [48, 1]
    assert check_collection(root).ok


def test_merge_folds_segments_keeping_every_answer(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = Collection(dense=False)
    for batch in range(MERGE_AT + 3):
        col.add([f"{batch}-{i}" for i in range(batch + 1)], ["cat dog"] * (batch + 1))
        col.commit() if batch else col.save(root)
    assert len(col.segment_sizes()) <= MERGE_AT + 1  # commits fold on their own past MERGE_AT
    expected = col.search_bm25("cat", 1000)
    reader = Collection.load(root)
    col.merge(max_segments=2)
    assert len(col.segment_sizes()) == 2 and col.ids() == reader.ids()
    got = col.search_bm25("cat", 1000)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
    assert reader.search_bm25("cat", 1000)[0] == expected[0]  # a reader keeps answering from its commit
    col.merge()
    col.close()
    again = Collection.load(root)
    assert again.segment_sizes() == [sum(range(1, MERGE_AT + 4))] and again.search_bm25("cat", 1000)[0] == got[0]
    with pytest.raises(ValueError, match="max_segments"):
        again.merge(0)


def test_a_damaged_deletion_bitmap_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = Collection(dense=False)
    col.add(["a", "b", "c"], ["x y", "y z", "z x"])
    col.save(root)
    col.delete(["b"])
    col.commit()
    col.close()
    manifest = json.loads((root / "manifest.json").read_text())
    bitmap = root / manifest["data"] / manifest["deleted"][manifest["data"]]["file"]
    bitmap.write_bytes(bytes([bitmap.read_bytes()[0] ^ 0x80]))
    with pytest.raises(IndexFileError, match=f"{bitmap}: deletion bitmap is corrupt"):
        Collection.load(root)
    report = check_collection(root)
    assert not report.ok and any(str(bitmap) in p for p in report.problems)


def test_a_version_2_collection_loads_and_its_first_commit_migrates_it(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = Collection(dense=False)
    col.add(["a", "b"], ["old cat", "old dog"])
    col.save(root)
    col.close()
    manifest = json.loads((root / "manifest.json").read_text())
    for key in ("generation", "segments", "deleted", "checksum"):
        del manifest[key]  # exactly what funnelrank wrote before segments (format version 2)
    manifest["version"] = 2
    manifest["checksum"] = manifest_checksum(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    old_data = root / manifest["data"]
    old_files = {p.name: p.read_bytes() for p in old_data.iterdir()}
    assert Collection.load(root).ids() == ["a", "b"]
    assert check_collection(root).ok
    with Collection.load(root, writer=True) as writer:
        writer.add(["c"], ["new bird"])
        writer.delete(["a"])
        writer.commit()
    migrated = json.loads((root / "manifest.json").read_text())
    assert migrated["version"] == 3 and migrated["data"] == manifest["data"]  # the old data kept, not rewritten
    assert {p.name: p.read_bytes() for p in old_data.iterdir() if p.name in old_files} == old_files
    assert Collection.load(root).ids() == ["b", "c"]
