"""Sharded stage 1 (funnelrank.retrieve.sharded): K shards answer exactly as one collection does."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from funnelrank import Collection, Pipeline
from funnelrank.cli.main import main
from funnelrank.core import IndexFileError
from funnelrank.retrieve.retrievers import make_retriever
from funnelrank.retrieve.sharded import (
    ShardedCollection,
    ShardUnavailableError,
    load_shards,
    shard_of,
    split_collection,
    write_shards,
)

WORDS = "cat dog bird fish mat sleep chase sing swim red blue green fast slow big small".split()
FILTERS = (None, {"lang": "en"}, {"year": {"gte": 2005}}, {"lang": "de", "year": {"lt": 2004}})


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out[" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))] = None
    texts = list(out)
    # BM25 ties: the same words in another order score the same (the earlier document must win everywhere).
    texts[40], texts[90] = "cat sleep mat", "mat sleep cat"
    return texts


@pytest.fixture(scope="module")
def corpus() -> Collection:
    texts = _texts(150)
    rng = random.Random(1)
    meta = [{"lang": rng.choice(["en", "de"]), "year": rng.randint(2000, 2010)} for _ in texts]
    # ef_search above the corpus size: every HNSW search is exhaustive, so one graph and K graphs agree exactly.
    c = Collection(hnsw={"ef_search": 1000})
    c.add([f"d{i}" for i in range(len(texts))], texts, meta)
    return c


def _queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(n)] + ["cat sleep mat"]


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
@pytest.mark.parametrize("name", ["bm25", "dense", "hybrid"])
def test_sharded_results_equal_one_collection(corpus: Collection, shards: int, name: str) -> None:
    sharded = ShardedCollection(split_collection(corpus, shards))
    one, many = make_retriever(corpus, name), make_retriever(sharded, name)
    for flt in FILTERS:
        queries = _queries(12, shards * 7 + len(name))
        expected = one.retrieve_batch(queries, 40, filter=flt)
        got = many.retrieve_batch(queries, 40, filter=flt)
        for q, a, b in zip(queries, expected, got):
            assert [(c.id, c.score, c.rank, c.metadata) for c in a.candidates] == \
                [(c.id, c.score, c.rank, c.metadata) for c in b.candidates], (q, flt)
            assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
            assert [c.stage1 for c in a.candidates] == [c.stage1 for c in b.candidates]
        single = many.retrieve(queries[0], 7, filter=flt).candidates
        assert [(c.id, c.score) for c in single] == [(c.id, c.score) for c in one.retrieve(queries[0], 7, filter=flt).candidates]


def test_ties_go_to_the_earlier_document_across_shards(corpus: Collection) -> None:
    assert shard_of("d40", 2) != shard_of("d90", 2) or shard_of("d40", 3) != shard_of("d90", 3)
    for shards in (2, 3):
        ids = [c.id for c in make_retriever(ShardedCollection(split_collection(corpus, shards)), "bm25")
               .retrieve("cat sleep mat", 100).candidates]
        assert ids.index("d40") < ids.index("d90")


def test_split_assigns_every_document_once_and_keeps_vectors(corpus: Collection) -> None:
    parts = split_collection(corpus, 3)
    ids = [i for p in parts for i in p.collection.ids()]
    assert sorted(ids) == sorted(corpus.ids())
    for p in parts:
        assert all(shard_of(i, 3) == parts.index(p) for i in p.collection.ids())
        some = p.collection.ids()[:5]
        np.testing.assert_array_equal(p.collection.vectors(some), corpus.vectors(some))
    assert ShardedCollection(parts).documents == len(corpus)
    with pytest.raises(ValueError, match="shards must be"):
        split_collection(corpus, 0)


def test_pipeline_over_shards_equals_one_collection(corpus: Collection) -> None:
    sharded = ShardedCollection(split_collection(corpus, 3))
    with Pipeline(corpus, "hybrid", reranker=None, candidates=30) as a, \
            Pipeline(sharded, "hybrid", reranker=None, candidates=30) as b:
        for q in _queries(5, 3):
            ra, rb = a.search(q, top_k=10), b.search(q, top_k=10)
            assert [(r.id, r.score) for r in ra.results] == [(r.id, r.score) for r in rb.results]


def test_write_and_load_shards_round_trip(corpus: Collection, tmp_path: Path) -> None:
    out = write_shards(corpus, tmp_path / "shards", 3)
    assert sorted(p.name for p in out.iterdir()) == [
        "shard-000", "shard-000.ordinals.npy", "shard-001", "shard-001.ordinals.npy", "shard-002",
        "shard-002.ordinals.npy", "shards.json"]
    loaded = load_shards(out)
    for name in ("bm25", "dense"):
        for q in _queries(5, 9):
            a = make_retriever(corpus, name).retrieve(q, 20).candidates
            b = make_retriever(loaded, name).retrieve(q, 20).candidates
            assert [(c.id, c.score) for c in a] == [(c.id, c.score) for c in b]
    with pytest.raises(FileExistsError):
        write_shards(corpus, out, 2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shards")]  # no temporary left behind


def test_corrupt_or_missing_shard_files_are_clear_errors(corpus: Collection, tmp_path: Path) -> None:
    out = write_shards(corpus, tmp_path / "s", 2)
    with pytest.raises(IndexFileError, match="not found"):
        load_shards(tmp_path)
    manifest = json.loads((out / "shards.json").read_text())
    manifest["documents"] += 1  # edited without the checksum
    (out / "shards.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFileError, match="corrupt shard manifest"):
        load_shards(out)
    out2 = write_shards(corpus, tmp_path / "t", 2)
    np.save(out2 / "shard-001.ordinals.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(IndexFileError, match="checksum"):
        load_shards(out2)


def test_shard_command_writes_shards_that_search_like_the_collection(
    corpus: Collection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus.save(tmp_path / "coll")
    assert main(["shard", str(tmp_path / "coll"), "--shards", "2", "--out", str(tmp_path / "sh")]) == 0
    assert "2 shards" in capsys.readouterr().err
    loaded = load_shards(tmp_path / "sh")
    assert [i.documents for i in loaded.infos] == [
        sum(shard_of(d, 2) == s for d in corpus.ids()) for s in range(2)]
    with pytest.raises(SystemExit):
        main(["shard", str(tmp_path / "coll"), "--shards", "0", "--out", str(tmp_path / "x")])


class _DeadShard:
    def info(self) -> object:
        raise ShardUnavailableError("shard 1 did not answer")

    def doc_freqs(self, queries: object) -> object:
        raise ShardUnavailableError("shard 1 did not answer")

    def bm25(self, *args: object, **kwargs: object) -> object:
        raise ShardUnavailableError("shard 1 did not answer")

    def dense(self, *args: object, **kwargs: object) -> object:
        raise ShardUnavailableError("shard 1 did not answer")


def test_a_dead_shard_fails_the_search_instead_of_a_partial_answer(corpus: Collection) -> None:
    parts = split_collection(corpus, 2)
    sharded = ShardedCollection(parts)
    sharded.shards[1] = _DeadShard()  # type: ignore[call-overload]
    with pytest.raises(ShardUnavailableError):
        make_retriever(sharded, "bm25").retrieve("cat", 10)
    assert [s["up"] for s in sharded.health()] == [True, False]
    with pytest.raises(ValueError, match="unknown operator"):
        make_retriever(sharded, "bm25").retrieve("cat", 10, filter={"year": {"$gte": 1}})


def test_shards_with_different_embedders_are_refused(corpus: Collection) -> None:
    bm25_only = Collection(dense=False)
    bm25_only.add(["x"], ["cat"])
    with pytest.raises(ValueError, match="dense, or none"):
        ShardedCollection(split_collection(corpus, 1) + split_collection(bm25_only, 1))
    with pytest.raises(ValueError, match="at least one shard"):
        ShardedCollection([])
