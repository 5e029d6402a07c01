"""HNSWIndex (funnelrank._core) against numpy brute force: recall, deletion, slot reuse, filtering,
concurrency, persistence and input validation."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from funnelrank.core import HNSWIndex, IndexFileError

pytestmark = pytest.mark.core

DIM = 32


def mixture(n: int, dim: int = DIM, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Samples of a fixed gaussian mixture (centres do not depend on `seed`), float32."""
    centres = np.random.default_rng(1234).normal(size=(clusters, dim))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def run_while_searching(search_once: Callable[[], None], write: Callable[[], None], searchers: int = 3) -> None:
    """Run `write()` while `searchers` Python threads call `search_once()` in a loop; fail with the searchers'
    errors (an assertion inside `search_once` counts)."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                search_once()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(searchers)]
    for t in threads:
        t.start()
    try:
        write()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]


def ids_for(n: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture(scope="module")
def built() -> tuple[HNSWIndex, np.ndarray, list[str]]:
    data = mixture(4000, seed=1)
    ids = ids_for(len(data))
    index = HNSWIndex(DIM)
    index.add(ids, data)
    return index, data, ids


def test_recall_at_10_against_numpy_brute_force(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    index, data, ids = built
    queries = mixture(200, seed=2)
    truth = np.argsort(-(normalise(queries) @ normalise(data).T), axis=1)[:, :10]
    found = 0
    for q, row in zip(queries, truth):
        got, scores = index.search(q, k=10)
        assert len(got) == 10 and scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 0)
        found += len(set(got) & {ids[j] for j in row})
    assert found / (10 * len(queries)) >= 0.95


def test_scores_are_cosine_similarities(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    index, data, ids = built
    q = mixture(1, seed=3)[0] * 7.0  # scale must not matter under cosine
    got, scores = index.search(q, k=5)
    position = {d: i for i, d in enumerate(ids)}
    expected = normalise(data[[position[g] for g in got]]) @ normalise(q)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_inner_product_metric_scores_raw_vectors() -> None:
    index = HNSWIndex(3, metric="ip")
    vecs = np.array([[1, 0, 0], [0, 3, 0], [0, 0, -2]], dtype=np.float32)
    index.add(["a", "b", "c"], vecs)
    got, scores = index.search(np.array([1.0, 1.0, 1.0]), k=3)
    assert got == ["b", "a", "c"]
    np.testing.assert_allclose(scores, [3, 1, -2])
    assert index.metric == "ip" and index.dim == 3


def test_properties_and_membership(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    index, _, ids = built
    assert len(index) == len(ids)
    assert "d17" in index and "nope" not in index and 17 not in index
    assert "\ud800" not in index and None not in index  # never an id: False, not an error (as in BM25)
    assert sorted(index.ids()) == sorted(ids)
    assert index.M == 16 and index.ef_construction == 200 and index.ef_search == 64
    assert "HNSWIndex(dim=32" in repr(index)


def test_other_dtypes_and_layouts_are_converted() -> None:
    data = mixture(50, seed=4)
    index = HNSWIndex(DIM)
    index.add(ids_for(50), np.asfortranarray(data.astype(np.float64)))
    got, _ = index.search(data[7].astype(np.float64), k=1)
    assert got == ["d7"]
    index.add(["list"], [list(map(float, data[8]))])
    assert "list" in index


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (["a", "b"], np.ones((2, DIM + 1), np.float32), "shape"),
        (["a"], np.ones((2, DIM), np.float32), "2 vectors"),
        (["a", "a"], np.ones((2, DIM), np.float32), "duplicate"),
        (["a", "x"], np.ones((2, DIM), np.float32), "already in the index"),
        (["", "b"], np.ones((2, DIM), np.float32), "non-empty"),
        (["b", "c"], np.array([[np.nan] * DIM, [1] * DIM], np.float32), "non-finite"),
        (["b", "c"], np.array([[1] * DIM, [np.inf] * DIM], np.float32), "non-finite"),
        (["b", "c"], np.array([[1] * DIM, [0] * DIM], np.float32), "zero vector"),
        (["b"], np.ones(DIM, np.float32), "shape"),
        (["b", "\ud800"], np.ones((2, DIM), np.float32), "Unicode"),
        (["b"], [["x"] * DIM], "float32"),
    ],
)
def test_bad_adds_raise_and_change_nothing(ids: object, vectors: object, message: str) -> None:
    index = HNSWIndex(DIM)
    index.add(["x"], np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError, match=message):
        index.add(ids, vectors)  # type: ignore[arg-type]
    assert len(index) == 1 and index.ids() == ["x"]


@pytest.mark.parametrize(("ids", "message"), [("bc", "not a single string"), (["b", 3], r"\[1\] must be a str")])
def test_wrongly_typed_ids_raise_type_error(ids: object, message: str) -> None:
    index = HNSWIndex(DIM)
    with pytest.raises(TypeError, match=message):
        index.add(ids, np.ones((2, DIM), np.float32))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        index.search(np.ones(DIM, np.float32), allow=ids)  # type: ignore[arg-type]
    assert len(index) == 0


def test_bad_construction_and_query_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        HNSWIndex(4, metric="l2")
    with pytest.raises(ValueError, match="dim"):
        HNSWIndex(0)
    with pytest.raises(ValueError, match="M must be"):
        HNSWIndex(4, M=1)
    index = HNSWIndex(4)
    index.add(["a"], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        index.search(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="zero vector"):
        index.search(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        index.search(np.array([1, np.nan, 0, 0], np.float32))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones(4, np.float32), k=0)
    with pytest.raises(ValueError, match="ef must be"):
        index.search(np.ones(4, np.float32), ef=0)
    with pytest.raises(ValueError, match="shape"):
        index.search_batch(np.ones(4, np.float32))


def test_deleted_ids_are_never_returned() -> None:
    data = mixture(1500, seed=5)
    ids = ids_for(len(data))
    index = HNSWIndex(DIM)
    index.add(ids, data)
    gone = set(ids[::3])
    index.delete(sorted(gone))
    assert len(index) == len(ids) - len(gone)
    for i in range(0, 300, 3):  # query with the deleted vectors themselves
        got, _ = index.search(data[i], k=10)
        assert len(got) == 10 and not gone & set(got)
    for got, _ in index.search_batch(data[:300:3], k=10):
        assert not gone & set(got)
    with pytest.raises(KeyError, match="nope"):
        index.delete(["d1", "nope"])
    assert "d1" in index  # nothing deleted on error
    with pytest.raises(KeyError):
        index.delete(["d0"])  # already deleted


def test_slot_reuse_keeps_capacity_bounded() -> None:
    data = mixture(1000, seed=6)
    index = HNSWIndex(DIM, initial_capacity=1000)
    index.add(ids_for(1000), data)
    capacity = index.capacity
    previous = ids_for(250)
    for cycle in range(6):
        index.delete(previous)
        fresh = mixture(250, seed=100 + cycle)
        previous = ids_for(250, prefix=f"c{cycle}_")
        index.add(previous, fresh)
        assert len(index) == 1000
        assert index.capacity == capacity
        assert index.search(fresh[11], k=1)[0] == [f"c{cycle}_11"]


def test_result_ids_follow_reused_slots() -> None:
    """Result ids are cached as Python strs per slot; a deleted id's slot taken by a new id must return
    the new id from search, search_batch and search_exact."""
    data = mixture(300, seed=21)
    index = HNSWIndex(DIM, initial_capacity=300)
    index.add(ids_for(300), data)
    first, _ = index.search(data[5], k=1)
    again, _ = index.search(data[5], k=1)
    assert first == again == ["d5"]
    assert first[0] is again[0]  # the cached str is reused
    for new_id in ("new5", "Ünï-5", "d5"):
        index.delete([index.search(data[5], k=1)[0][0]])
        index.add([new_id], data[5:6])  # reuses the freed slot
        assert index.capacity == 300
        assert index.search(data[5], k=1)[0] == [new_id]
        assert index.search_batch(data[4:6], k=1)[1][0] == [new_id]
        assert index.search_exact(data[5], k=1)[0] == [new_id]


def test_ids_match_scores_while_slots_are_reused_concurrently() -> None:
    """Every id ever added names one vector; while a thread deletes and re-adds (new ids reuse the freed
    slots), every (id, score) a search returns must be that id's vector's inner product with the query."""
    dim = 16
    rng = np.random.default_rng(22)
    vectors: dict[str, np.ndarray] = {}
    index = HNSWIndex(dim, metric="ip", initial_capacity=600)
    live = [f"v{i}" for i in range(600)]
    batch = rng.normal(size=(600, dim)).astype(np.float32)
    vectors.update(zip(live, batch))
    index.add(live, batch)
    queries = rng.normal(size=(20, dim)).astype(np.float32)

    def check(q: np.ndarray, ids: list[str], scores: np.ndarray) -> None:
        for i, s in zip(ids, scores):
            assert abs(float(vectors[i] @ q) - float(s)) < 1e-3, (i, s)

    def search_once() -> None:
        for q in queries:
            check(q, *index.search(q, k=10))
        for q, (ids, scores) in zip(queries, index.search_batch(queries, k=10, threads=2)):
            check(q, ids, scores)

    def write() -> None:
        nonlocal live
        for cycle in range(30):
            index.delete(live[:100])
            fresh = [f"c{cycle}_{i}" for i in range(100)]
            batch = rng.normal(size=(100, dim)).astype(np.float32)
            vectors.update(zip(fresh, batch))  # before add: a searcher may see the id right away
            index.add(fresh, batch)
            live = live[100:] + fresh

    run_while_searching(search_once, write)
    assert index.capacity == 600 and sorted(index.ids()) == sorted(live)


def test_capacity_grows_automatically() -> None:
    index = HNSWIndex(DIM, initial_capacity=4)
    index.add(ids_for(100), mixture(100, seed=7))
    assert len(index) == 100 and index.capacity >= 100


@pytest.mark.parametrize("every", [500, 40, 2])
@pytest.mark.parametrize("crossover", [None, 0.0, float("inf")], ids=["default", "graph", "exact"])
def test_filtered_search_returns_k_allowed(
    built: tuple[HNSWIndex, np.ndarray, list[str]], every: int, crossover: float | None
) -> None:
    index, data, ids = built
    default = index.exact_filter_crossover
    if crossover is not None:
        index.exact_filter_crossover = crossover
    try:
        check_filtered(index, data, ids, every)
    finally:
        index.exact_filter_crossover = default


def check_filtered(index: HNSWIndex, data: np.ndarray, ids: list[str], every: int) -> None:
    allow = ids[::every] + ["unknown-id"]
    allowed = set(allow)
    allowed_rows = np.arange(0, len(ids), every)
    queries = mixture(20, seed=8)
    found = 0
    for q in queries:
        got, scores = index.search(q, k=10, allow=allow)
        assert len(got) == min(10, len(allowed_rows))
        assert set(got) <= allowed
        assert np.all(np.diff(scores) <= 0)
        sims = normalise(data[allowed_rows]) @ normalise(q)
        truth = {ids[allowed_rows[j]] for j in np.argsort(-sims)[:10]}
        found += len(truth & set(got))
    assert found / (20 * min(10, len(allowed_rows))) >= 0.95


def test_exact_filter_crossover_sets_the_threshold() -> None:
    index = HNSWIndex(4)
    index.add(ids_for(1000), mixture(1000, dim=4, seed=17))
    index.exact_filter_crossover = 4.0
    assert index.exact_filter_threshold(64) == int((4 * 64 * 1000) ** 0.5)
    index.exact_filter_crossover = 0.0
    assert index.exact_filter_threshold(64) == 0
    index.exact_filter_crossover = float("inf")
    assert index.exact_filter_threshold(64) == 1000
    with pytest.raises(ValueError, match="crossover"):
        index.exact_filter_crossover = -1.0


def test_filtered_search_skips_deleted_and_unknown() -> None:
    data = mixture(200, seed=9)
    index = HNSWIndex(DIM)
    index.add(ids_for(200), data)
    index.delete(["d1", "d2"])
    got, _ = index.search(data[1], k=10, allow=["d1", "d2", "d3", "zzz"])
    assert got == ["d3"]
    got, scores = index.search(data[1], k=10, allow=["zzz"])
    assert got == [] and scores.shape == (0,)
    assert index.search(data[1], k=10, allow=[])[0] == []


def test_search_batch_matches_search(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    index, _, _ = built
    queries = mixture(64, seed=10)
    batch = index.search_batch(queries, k=7, ef=32, threads=2)
    assert len(batch) == len(queries)
    for q, (ids, scores) in zip(queries, batch):
        single_ids, single_scores = index.search(q, k=7, ef=32)
        assert ids == single_ids
        np.testing.assert_array_equal(scores, single_scores)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_search_batch_names_the_first_bad_row_at_any_thread_count(metric: str, threads: int) -> None:
    """Rows are checked before any search, so the error names the first bad row however the work is split."""
    index = HNSWIndex(DIM, metric=metric)
    index.add(ids_for(50), normalise(mixture(50, seed=3)))
    queries = mixture(40, seed=4)
    queries[31, 5] = np.inf
    queries[17, 2] = np.nan
    with pytest.raises(ValueError, match="query 17 has a non-finite value at 2"):
        index.search_batch(queries, threads=threads)
    queries[17, 2] = 0.5
    queries[31, 5] = 0.5
    queries[23] = 0.0
    if metric == "cosine":
        with pytest.raises(ValueError, match="query 23 is a zero vector"):
            index.search_batch(queries, threads=threads)
    else:  # a zero vector has inner product 0 with everything: a valid, if useless, query
        assert len(index.search_batch(queries, threads=threads)) == 40


def test_inner_product_queries_match_their_normalised_cosine_search() -> None:
    """Under "ip" the caller's rows are searched in place, under "cosine" a normalised copy: on normalised
    data and queries both must find the same neighbours with the same scores."""
    data = normalise(mixture(1500, seed=5))
    queries = normalise(mixture(30, seed=6))
    cosine, ip = HNSWIndex(DIM, metric="cosine", seed=3), HNSWIndex(DIM, metric="ip", seed=3)
    cosine.add(ids_for(len(data)), data, threads=1)
    ip.add(ids_for(len(data)), data, threads=1)
    scaled = cosine.search_batch(queries * 3.0, k=5)  # cosine normalises its copy of each row
    for (ids_c, scores_c), (ids_i, scores_i) in zip(scaled, ip.search_batch(queries, k=5)):
        assert ids_c == ids_i
        np.testing.assert_allclose(scores_c, scores_i, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_search_batch_with_allow_equals_search_per_row(
    built: tuple[HNSWIndex, np.ndarray, list[str]], threads: int
) -> None:
    """One allow-list for the whole batch, resolved once, gives each row what search() gives it: small lists
    scored exactly, large ones walked in the graph with the filter, unknown ids ignored."""
    index, _, ids = built
    rng = np.random.default_rng(12)
    queries = mixture(24, seed=13)
    for allow in ([ids[i] for i in rng.choice(len(ids), 3000, replace=False)],
                  [ids[i] for i in rng.choice(len(ids), 15, replace=False)] + ["not-there"], []):
        batch = index.search_batch(queries, k=5, ef=32, threads=threads, allow=allow)
        assert len(batch) == len(queries)
        for q, (got_ids, got_scores) in zip(queries, batch):
            want_ids, want_scores = index.search(q, k=5, ef=32, allow=allow)
            assert got_ids == want_ids and set(got_ids) <= set(allow)
            np.testing.assert_array_equal(got_scores, want_scores)
    with pytest.raises(TypeError, match="allow"):
        index.search_batch(queries, allow="d1")


def test_small_batches_on_many_threads_match_search(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    """Batches smaller than the thread count, many times over (the first worker thread usually answers
    everything before the others start): every answer must be complete and equal to search()'s (run under
    ASan in test-sanitize, which reports a worker touching freed memory)."""
    index, _, _ = built
    queries = mixture(30, seed=12)
    expected = [index.search(q, k=5, ef=24) for q in queries]
    for start in range(0, 200):
        n = 1 + start % 3
        rows = [(start + i) % len(queries) for i in range(n)]
        batch = index.search_batch(queries[rows], k=5, ef=24, threads=4)
        assert [ids for ids, _ in batch] == [expected[r][0] for r in rows]
        for (_, scores), r in zip(batch, rows):
            np.testing.assert_array_equal(scores, expected[r][1])


def test_concurrent_searches_while_adding() -> None:
    """Python threads search (GIL released) while another thread adds and deletes."""
    base = mixture(2000, seed=11)
    extra = mixture(3000, seed=12)
    index = HNSWIndex(DIM, initial_capacity=16)  # forces resizes during the run
    index.add(ids_for(2000), base)
    queries = mixture(50, seed=13)

    def search_once() -> None:
        for q in queries[:10]:
            got, scores = index.search(q, k=10)
            assert len(got) == 10 and np.all(np.diff(scores) <= 0)
        for got, _ in index.search_batch(queries, k=5, threads=2):
            assert len(got) == 5

    def write() -> None:
        for start in range(0, 3000, 300):
            index.add(ids_for(300, prefix=f"x{start}_"), extra[start : start + 300], threads=2)
            index.delete([f"d{start // 10 + i}" for i in range(10)])

    run_while_searching(search_once, write)
    assert len(index) == 2000 + 3000 - 100


def test_add_releases_the_gil() -> None:
    """Another Python thread makes progress while add() runs (it would be frozen if the GIL were held)."""
    data = mixture(6000, seed=14)
    index = HNSWIndex(DIM)
    ticks = [0]
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=ticker)
    t.start()
    try:
        before = ticks[0]
        index.add(ids_for(6000), data, threads=1)
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    assert during > 0


def test_save_load_answers_identically(tmp_path: Path, built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    index, _, ids = built
    path = tmp_path / "dense.hnsw"
    index.save(path)
    loaded = HNSWIndex.load(str(path))
    assert len(loaded) == len(index) and loaded.ids() == index.ids()
    assert (loaded.dim, loaded.metric, loaded.M, loaded.ef_search) == (index.dim, index.metric, 16, 64)
    queries = mixture(40, seed=15)
    for q in queries:
        a, b = index.search(q, k=10), loaded.search(q, k=10)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
        assert index.search(q, k=5, allow=ids[:300])[0] == loaded.search(q, k=5, allow=ids[:300])[0]
    assert not list(tmp_path.glob("*.tmp*")), "no temporary files left behind"


def test_truncated_and_corrupt_files_raise_index_file_error(tmp_path: Path) -> None:
    index = HNSWIndex(8)
    index.add(ids_for(200), mixture(200, dim=8, seed=16))
    index.delete(["d5"])
    path = tmp_path / "x.hnsw"
    index.save(path)
    good = path.read_bytes()
    for cut in (0, 4, 11, 100, len(good) // 2, len(good) - 20, len(good) - 1):
        path.write_bytes(good[:cut])
        with pytest.raises(IndexFileError):
            HNSWIndex.load(path)
    for pos in (2, 13, 60, len(good) // 3, len(good) - 25, len(good) - 2):
        bad = bytearray(good)
        bad[pos] ^= 0xFF
        path.write_bytes(bytes(bad))
        with pytest.raises(IndexFileError):
            HNSWIndex.load(path)
    path.write_bytes(good)
    assert len(HNSWIndex.load(path)) == 199


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.hnsw"
    with pytest.raises(IndexFileError, match="absent.hnsw"):
        HNSWIndex.load(missing)
    with pytest.raises(OSError):  # IndexFileError is an OSError
        HNSWIndex.load(missing)


def test_save_into_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    index = HNSWIndex(4)
    with pytest.raises(OSError):
        index.save(tmp_path / "no" / "such" / "dir" / "x.hnsw")


_FORKED: dict[str, object] = {}  # what forked children inherit (an HNSWIndex cannot be pickled to them)


def _search_in_child(queries: np.ndarray) -> list[list[str]]:
    fresh = HNSWIndex(DIM)
    fresh.add(ids_for(300), mixture(300, seed=7), threads=2)  # a parallel add in the child too
    index = _FORKED["index"]
    assert isinstance(index, HNSWIndex)
    return [ids for ids, _ in index.search_batch(queries, k=3, threads=2)]


def test_forked_children_search_and_add_in_parallel(built: tuple[HNSWIndex, np.ndarray, list[str]]) -> None:
    """The core's worker pool lives in the parent; a fork()ed child (multiprocessing's default start method on
    Linux) has none of its threads, so its parallel calls must start their own instead of waiting forever."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork() on this platform")
    index, data, _ = built
    index.search_batch(data[:20], k=3, threads=2)  # the pool exists before the fork
    queries = data[:8]
    expected = [ids for ids, _ in index.search_batch(queries, k=3, threads=2)]
    _FORKED["index"] = index
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = [pool.apply_async(_search_in_child, (queries,)) for _ in range(2)]
            assert all(r.get(timeout=120) == expected for r in results)
    finally:
        _FORKED.clear()


def test_huge_k_and_ef_are_clamped_to_the_index_size() -> None:
    """k and ef beyond len(index) act as len(index); they used to size allocations (MemoryError)."""
    index = HNSWIndex(4, initial_capacity=8)
    data = mixture(30, dim=4, seed=30)
    index.add(ids_for(30), data)
    index.delete(["d2"])
    everything = index.search_exact(data[0], k=30)[0]
    assert len(everything) == 29
    assert index.search(data[0], k=10**12)[0] == everything
    assert index.search(data[0], k=3, ef=2**40)[0] == index.search(data[0], k=3, ef=29)[0]
    assert index.search(data[0], k=2**63 - 1, ef=2**63 - 1)[0] == everything
    assert [r[0] for r in index.search_batch(data[:2], k=10**12, ef=2**40)] == [
        everything,
        index.search_exact(data[1], k=30)[0],
    ]
    assert len(index.search(data[0], k=10**12, allow=["d0", "d1", "d2", "d9"])[0]) == 3
    assert index.search_exact(data[0], k=10**12)[0] == everything
    index.add(["more"], data[:1], threads=10**12)  # (threads beyond the work are never started)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ef_search": 2**40}, r"ef_search must be <= 1048576, got 1099511627776"),
        ({"ef_search": 2**20 + 1}, "ef_search must be <= 1048576"),
        ({"ef_construction": 2**16 + 1}, "ef_construction must be <= 65536"),
        ({"M": 2**70}, r"M must be <= 1024, got 1180591620717411303424"),
        ({"initial_capacity": 2**40}, "initial_capacity must be <= 4294967295"),  # was a 40 TB MemoryError
        ({"seed": 2**64}, "seed must be <= 18446744073709551615"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_construction_parameters_beyond_their_bounds_are_value_errors(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HNSWIndex(4, **kwargs)


def test_ints_too_large_for_64_bits_are_value_errors() -> None:
    index = HNSWIndex(4, ef_search=2**20, ef_construction=2**16, seed=2**64 - 1)  # the bounds themselves are fine
    index.add(["a"], np.ones((1, 4), np.float32))
    q = np.ones(4, np.float32)
    for call, message in [
        (lambda: HNSWIndex(2**64), r"dim must be <= 65536, got 18446744073709551616"),
        (lambda: index.search(q, k=2**64), r"k must be <= 9223372036854775807, got 18446744073709551616"),
        (lambda: index.search(q, k=-(2**70)), r"k must be >= 1, got -1180591620717411303424"),
        (lambda: index.search(q, ef=2**64), "ef must be <="),
        (lambda: index.search_batch(q[None, :], k=2**64), "k must be <="),
        (lambda: index.search_batch(q[None, :], threads=2**64), "threads must be <="),
        (lambda: index.search_exact(q, k=2**100), "k must be <="),
        (lambda: index.add(["b"], q[None, :], threads=-(2**64)), "threads must be >= 0"),
        (lambda: index.exact_filter_threshold(2**64), "ef must be <="),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match=r"ef_search must be <= 1048576, got 1099511627776"):
        index.ef_search = 2**40
    assert index.ef_search == 2**20
    with pytest.raises(TypeError):  # a float is still not an int
        index.search(q, k=1.5)  # type: ignore[arg-type]
    assert index.search(q, k=np.int64(1))[0] == ["a"]  # NumPy integers are ints


def _forge_u64(data: bytes, offset: int, value: int) -> bytes:
    """`data` with the u64 at `offset` replaced and the trailer's CRC-32 recomputed (cpp/core/file_io.h)."""
    out = bytearray(data)
    struct.pack_into("<Q", out, offset, value)
    payload = bytes(out[12:-20])
    struct.pack_into("<I", out, len(out) - 12, zlib.crc32(payload))
    return bytes(out)


CAPACITY_OFFSET = 12 + 8 + 4 + 4 * 8 + 4  # after the header, dim, metric, M, ef_construction, ef_search, seed, storage


@pytest.mark.parametrize("claim", [10**7, 5 * 10**7])
def test_forged_capacity_is_not_allocated(tmp_path: Path, claim: int) -> None:
    """A 32 KB file claiming 10^7 slots allocated 460 MB at load (5 x 10^7: 2.1 GB); now what load allocates is
    bounded by the file's size and the claim is not restored."""
    index = HNSWIndex(8, initial_capacity=200)
    index.add(ids_for(180), mixture(180, dim=8, seed=31))
    path = tmp_path / "forged.hnsw"
    index.save(path)
    good = path.read_bytes()
    assert len(good) < 40_000 and struct.unpack_from("<Q", good, CAPACITY_OFFSET)[0] == 200
    path.write_bytes(_forge_u64(good, CAPACITY_OFFSET, claim))
    loaded = HNSWIndex.load(path)  # a consistent (checksummed) file: it loads, without the claim
    assert 180 <= loaded.capacity < 200_000
    assert loaded.ids() == index.ids()
    q = mixture(1, dim=8, seed=32)[0]
    assert loaded.search(q, k=5)[0] == index.search(q, k=5)[0]
    path.write_bytes(_forge_u64(good, CAPACITY_OFFSET, 2**40))
    with pytest.raises(IndexFileError, match="capacity"):
        HNSWIndex.load(path)


def test_forged_parameters_are_rejected(tmp_path: Path) -> None:
    index = HNSWIndex(8)
    index.add(ids_for(20), mixture(20, dim=8, seed=33))
    path = tmp_path / "forged.hnsw"
    index.save(path)
    good = path.read_bytes()
    for offset, value, message in [
        (12 + 8 + 4 + 16, 2**40, "ef_search"),  # loaded fine, then every search was a MemoryError
        (12 + 8 + 4 + 8, 2**40, "ef_construction"),
        (CAPACITY_OFFSET + 8, 10**6, "exceeds"),  # element count
    ]:
        path.write_bytes(_forge_u64(good, offset, value))
        with pytest.raises(IndexFileError, match=message):
            HNSWIndex.load(path)


def _load_in_thread(load: Callable[[], object], fifo: Path | None = None) -> BaseException | None:
    """Runs `load()` in a thread; fails if it blocks (releasing a thread blocked on `fifo` so the test ends)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            load()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive() and fifo is not None:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer appears: the blocked open returns
        os.close(fd)
        thread.join(10)
    assert outcome, "load() blocked"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_loading_a_directory_or_fifo_is_an_index_file_error(tmp_path: Path) -> None:
    """A directory used to give ValueError('basic_string::_M_replace_aux'), a FIFO to hang forever."""
    error = _load_in_thread(lambda: HNSWIndex.load(tmp_path))
    assert isinstance(error, IndexFileError) and "is a directory, not a regular file" in str(error)
    fifo = tmp_path / "pipe.hnsw"
    os.mkfifo(fifo)
    error = _load_in_thread(lambda: HNSWIndex.load(fifo), fifo)
    assert isinstance(error, IndexFileError), error
    assert "is a FIFO (named pipe), not a regular file" in str(error) and str(fifo) in str(error)
