"""HNSWIndex's vector storages ("f32", "f16", "int8") from Python: recall, the saved option, int8's mapped
re-scoring vectors, version-1 files, and the option through Collection, the shard split and the shard server."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from funnelrank.core import HNSWIndex

from crash_harness import HashEmbedder

pytestmark = pytest.mark.core

FIXTURES = Path(__file__).parent / "fixtures"
DIM = 32


def mixture(n: int, seed: int, dim: int = DIM, clusters: int = 40) -> np.ndarray:
    centres = np.random.default_rng(1234).normal(size=(clusters, dim))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def recall(index: HNSWIndex, data: np.ndarray, queries: np.ndarray, k: int = 10, ef: int = 64) -> float:
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ unit.T), axis=1)[:, :k]
    found = [index.search(q, k, ef)[0] for q in queries]
    return float(np.mean([len({f"d{i}" for i in t} & set(f)) / k for t, f in zip(truth, found)]))


@pytest.mark.parametrize("storage", ["f32", "f16", "int8"])
def test_each_storage_keeps_recall_and_round_trips(storage: str, tmp_path: Path) -> None:
    data, queries = mixture(2000, 1), mixture(50, 2)
    index = HNSWIndex(DIM, storage=storage)
    index.add([f"d{i}" for i in range(len(data))], data)
    assert index.storage == storage and f"storage='{storage}'" in repr(index)
    assert recall(index, data, queries) >= 0.95
    index.save(tmp_path / "i.idx")
    loaded = HNSWIndex.load(tmp_path / "i.idx")
    assert loaded.storage == storage
    for q in queries[:10]:
        a, b = index.search(q, 10), loaded.search(q, 10)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
    per_vector = {"f32": 4 * DIM, "f16": 2 * DIM, "int8": DIM + 4}[storage]
    assert loaded.vector_bytes == len(data) * per_vector  # int8: the float32 copies are mapped, not held
    assert loaded.mapped_bytes == (len(data) * 4 * DIM if storage == "int8" else 0)
    assert loaded.index_bytes > loaded.vector_bytes


def test_int8_adds_after_a_load_keep_the_float32_rows_mapped(tmp_path: Path) -> None:
    data, more = mixture(1500, 5), mixture(40, 6)
    ids = [f"d{i}" for i in range(len(data))]
    built = HNSWIndex(DIM, storage="int8")
    built.add(ids, data)
    built.delete(["d3", "d4"])
    built.save(tmp_path / "i.idx")
    loaded = HNSWIndex.load(tmp_path / "i.idx")
    mapped = loaded.mapped_bytes
    new_ids = [f"n{i}" for i in range(len(more))]
    for index in (built, loaded):  # two reused slots, then new ones; the same on both, one thread each
        index.add(new_ids, more, threads=1)
    assert loaded.mapped_bytes == mapped == len(data) * 4 * DIM
    # resident: the int8 codes of every slot, and float32 rows only for the 40 rows added since the load
    assert loaded.vector_bytes == (len(data) + len(more) - 2) * (DIM + 4) + len(more) * 4 * DIM
    np.testing.assert_array_equal(loaded.vectors(new_ids + ["d0"]), built.vectors(new_ids + ["d0"]))
    for q in mixture(20, 7):
        a, b = built.search(q, 10), loaded.search(q, 10)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


def test_unknown_storage_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="storage must be"):
        HNSWIndex(4, storage="bf16")


def test_f16_range_is_checked_under_inner_product() -> None:
    index = HNSWIndex(4, metric="ip", storage="f16")
    with pytest.raises(ValueError, match="f16"):
        index.add(["a"], np.array([[1e5, 0, 0, 0]], dtype=np.float32))
    assert len(index) == 0


def test_int8_scores_are_exact_and_vectors_are_the_float32_ones() -> None:
    data = mixture(500, 3)
    f32, int8 = HNSWIndex(DIM), HNSWIndex(DIM, storage="int8")
    ids = [f"d{i}" for i in range(len(data))]
    f32.add(ids, data)
    int8.add(ids, data)
    q = mixture(1, 4)[0]
    a, b = f32.search(q, 5, ef=300), int8.search(q, 5, ef=300)
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    np.testing.assert_array_equal(int8.vectors(["d9"]), f32.vectors(["d9"]))


def test_version_1_file_from_an_earlier_release_loads_as_f32() -> None:
    # Written by the release before storages existed (format version 1): 40 vectors, "d3" deleted.
    index = HNSWIndex.load(FIXTURES / "hnsw_v1.idx")
    vectors = np.load(FIXTURES / "hnsw_v1_vectors.npy")
    assert index.storage == "f32" and len(index) == 39 and "d3" not in index
    ids, scores = index.search(vectors[5] + 0.1, 5)
    assert ids == ["d5", "d34", "d16", "d17", "d14"]  # what that release answered
    assert scores[0] == pytest.approx(0.99388671, abs=1e-6)


def test_add_reads_the_callers_array_in_place_with_the_gil_released() -> None:
    # A big add runs while another Python thread keeps going (the GIL is released), from the caller's own
    # C-contiguous float32 buffer.
    data = mixture(4000, 5)
    index = HNSWIndex(DIM, storage="f16")
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        index.add([f"d{i}" for i in range(len(data))], data, threads=1)
    finally:
        done.set()
        t.join()
    assert len(index) == len(data) and ticks > 0


def test_collection_keeps_its_storage_through_save_load_and_shards(tmp_path: Path) -> None:
    from funnelrank.retrieve.sharded import load_shard, split_collection, write_shards
    from funnelrank.store.collection import Collection

    col = Collection(dense=True, embedder=HashEmbedder(DIM), hnsw={"storage": "int8"})
    ids = [f"doc{i}" for i in range(60)]
    col.add(ids, [f"text number {i}" for i in range(60)], vectors=mixture(60, 6))
    assert col.hnsw_storage == "int8"
    col.save(tmp_path / "col")
    col.close()
    loaded = Collection.load(tmp_path / "col", embedder=HashEmbedder(DIM))
    assert loaded.hnsw_storage == "int8"
    assert loaded.empty_like().hnsw_storage == "int8"
    assert loaded.empty_like(storage="f16").hnsw_storage == "f16"
    parts = split_collection(loaded, 2)
    assert {p.collection.hnsw_storage for p in parts} == {"int8"}
    assert parts[0].info().storage == "int8"
    out = write_shards(loaded, tmp_path / "shards", 2, storage="f16")
    shard = load_shard(out, 1, embedder=HashEmbedder(DIM))
    assert shard.collection.hnsw_storage == "f16"
    assert shard.info().storage == "f16"
    ray_serve = pytest.importorskip("funnelrank.serve.ray_serve")
    # What ShardServer(path, i, storage=...) does to the shard it loaded (its loader needs a findable embedder).
    assert ray_serve._with_storage(shard, None) is shard
    assert ray_serve._with_storage(shard, "f16") is shard
    converted = ray_serve._with_storage(shard, "int8")
    assert converted.info().storage == "int8" and converted.collection.ids() == shard.collection.ids()
