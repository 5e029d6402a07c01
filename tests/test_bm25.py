"""BM25Index and Analyzer: scores against a plain-Python Lucene BM25, pruning against exhaustive scoring,
incremental updates against a rebuild, persistence, bad input, threads, and tokens against bm25s."""

from __future__ import annotations

import json
import math
import os
import pathlib
import threading
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from funnelrank.core import Analyzer, BM25Index, IndexFileError

FIXTURE = [
    ("d1", "The quick brown fox jumps over the lazy dog."),
    ("d2", "Foxes are quick; dogs are lazy. A fox, a dog, and another fox!"),
    ("d3", "Relational databases store rows; inverted indexes store postings for retrieval."),
    ("d4", "BM25 ranks documents by term frequency, inverse document frequency and length."),
    ("d5", "Dense retrieval with neural encoders complements lexical BM25 retrieval."),
    ("d6", ""),
    ("d7", "the of and to in"),
    ("d8", "Café naïve résumé — Ünïcödé letters, ΣΟΦΟΣ and Москва, 東京 too."),
    ("d9", "Cross-encoders rerank the candidates retrieved by BM25 and dense retrieval."),
    ("d10", "Lazy evaluation: documents ranked quickly, lazily, by running retrieval pipelines."),
]
QUERIES = [
    "quick fox",
    "lazy dogs",
    "BM25 retrieval",
    "document length frequency",
    "dense neural retrieval rerank",
    "fox fox dog",
    "café москва",
    "postings databases",
    "nothing matches zzzz",
]


def plain_bm25(
    docs: Sequence[tuple[str, str]], query: str, analyzer: Analyzer, k1: float = 1.2, b: float = 0.75
) -> dict[str, float]:
    """Straightforward Lucene BM25 in Python (the reference our C++ must match)."""
    tfs = {doc_id: Counter(analyzer.tokenize(text)) for doc_id, text in docs}
    lengths = {doc_id: sum(tf.values()) for doc_id, tf in tfs.items()}
    n = len(docs)
    avgdl = sum(lengths.values()) / n
    df: Counter[str] = Counter()
    for tf in tfs.values():
        df.update(tf.keys())
    scores: dict[str, float] = {}
    for doc_id, tf in tfs.items():
        terms = [t for t in analyzer.tokenize(query) if t in tf]
        if not terms:
            continue
        s = 0.0
        for t in terms:
            idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * lengths[doc_id] / avgdl))
        scores[doc_id] = s
    return scores


def build(docs: Sequence[tuple[str, str]], **kwargs: object) -> BM25Index:
    index = BM25Index(**kwargs)  # type: ignore[arg-type]
    index.add([d for d, _ in docs], [t for _, t in docs])
    return index


def random_corpus(rng: np.random.Generator, n: int, vocab: int, max_len: int, prefix: str = "d") -> list[tuple[str, str]]:
    weights = 1.0 / np.arange(1, vocab + 1)
    weights /= weights.sum()
    docs = []
    for i in range(n):
        terms = rng.choice(vocab, size=int(rng.integers(0, max_len + 1)), p=weights)
        docs.append((f"{prefix}{i}", " ".join(f"w{t}" for t in terms)))
    return docs


def random_queries(rng: np.random.Generator, n: int, vocab: int) -> list[str]:
    return [" ".join(f"w{t}" for t in rng.integers(0, vocab + 3, size=int(rng.integers(1, 7)))) for _ in range(n)]


PLAIN: dict[str, object] = dict(stopwords=None, stemmer=None, min_token_length=1)


def assert_same(a: tuple[list[str], np.ndarray], b: tuple[list[str], np.ndarray]) -> None:
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------------
# Analyzer


@pytest.mark.core
def test_analyzer_defaults_and_properties() -> None:
    a = Analyzer()
    assert a.lowercase and a.stemmer == "english" and a.min_token_length == 2
    assert "the" in a.stopwords and "what" in a.stopwords and len(a.stopwords) == 179
    assert len(Analyzer(stopwords="lucene").stopwords) == 33
    assert a.tokenize("The cats are RUNNING in gardens") == ["cat", "run", "garden"]
    assert Analyzer(stopwords=None, stemmer=None).tokenize("The cats") == ["the", "cats"]
    assert Analyzer(stopwords=["Cats"], stemmer=None).tokenize("the cats sat") == ["the", "sat"]
    assert "english" in Analyzer.available_stemmers()


@pytest.mark.core
def test_analyzer_rejects_bad_settings_and_text() -> None:
    with pytest.raises(ValueError, match="unknown stemmer"):
        Analyzer(stemmer="klingon")
    with pytest.raises(ValueError, match="stopwords"):
        Analyzer(stopwords="french-ish")
    with pytest.raises(ValueError, match="min_token_length"):
        Analyzer(min_token_length=0)
    with pytest.raises(ValueError, match="UTF-8"):
        Analyzer().tokenize(b"caf\xe9")
    with pytest.raises(ValueError):
        Analyzer().tokenize("lone \ud800 surrogate")
    with pytest.raises(TypeError):
        Analyzer().tokenize(42)  # type: ignore[arg-type]
    assert Analyzer().tokenize("café".encode()) == ["café"]


def test_tokens_equal_bm25s_without_stemming() -> None:
    """Lowercasing, the token pattern and stopword removal match bm25s exactly (Unicode included)."""
    bm25s = pytest.importorskip("bm25s")
    texts = [t for _, t in FIXTURE] + [
        "İstanbul'da ΟΔΟΣ x² under_score 3.14 ½ Ⅻ e\u0301t\u00e9 ﬁne",
        "MiXeD CaSe, don't; can't — it's O'Neil's 1st-2nd",
    ]
    for stop in ("english", "lucene"):
        ours = Analyzer(stopwords=stop, stemmer=None)
        theirs = bm25s.tokenize(texts, stopwords=ours.stopwords, stemmer=None, return_ids=False, show_progress=False)
        assert [ours.tokenize(t) for t in texts] == [list(t) for t in theirs]


def test_tokens_equal_bm25s_with_pystemmer() -> None:
    """With PyStemmer english, bm25s gives our tokens. PyStemmer bundles Snowball 3.x, Debian's
    libstemmer is 2.2: they stem ~0.2% of word types differently (e.g. 'organism'), none in this text."""
    bm25s = pytest.importorskip("bm25s")
    stemmer_mod = pytest.importorskip("Stemmer")
    texts = [t for _, t in FIXTURE] + [
        "Generalizations of running experiments were repeatedly connected to the argued hypotheses.",
    ]
    ours = Analyzer()
    theirs = bm25s.tokenize(
        texts, stopwords=ours.stopwords, stemmer=stemmer_mod.Stemmer("english"), return_ids=False, show_progress=False
    )
    assert [ours.tokenize(t) for t in texts] == [list(t) for t in theirs]


@pytest.mark.data
def test_tokens_match_bm25s_on_scifact(shared_data: pathlib.Path) -> None:
    """On the whole scifact corpus: identical without stemming; with stemming, only Snowball-version
    differences (<0.5% of tokens)."""
    bm25s = pytest.importorskip("bm25s")
    stemmer_mod = pytest.importorskip("Stemmer")
    with open(shared_data / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        texts = [(d["title"] + " " + d["text"]) for d in map(json.loads, f)]
    plain = Analyzer(stemmer=None)
    theirs = bm25s.tokenize(texts, stopwords=plain.stopwords, stemmer=None, return_ids=False, show_progress=False)
    assert [plain.tokenize(t) for t in texts] == [list(t) for t in theirs]
    ours = Analyzer()
    theirs = bm25s.tokenize(
        texts, stopwords=ours.stopwords, stemmer=stemmer_mod.Stemmer("english"), return_ids=False, show_progress=False
    )
    total = diff = 0
    for t, th in zip(texts, theirs):
        mine = ours.tokenize(t)
        assert len(mine) == len(th)
        total += len(mine)
        diff += sum(a != b for a, b in zip(mine, th))
    assert diff / total < 0.005


# ---------------------------------------------------------------------------------------------------
# Scoring and search


@pytest.mark.core
@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0)])
def test_scores_equal_plain_python_bm25(k1: float, b: float) -> None:
    index = build(FIXTURE, k1=k1, b=b)
    for q in QUERIES:
        expected = plain_bm25(FIXTURE, q, index.analyzer, k1, b)
        ids, scores = index.search(q, k=100)
        assert scores.dtype == np.float32
        assert set(ids) == set(expected)
        np.testing.assert_allclose(scores, [expected[i] for i in ids], rtol=1e-6)
        assert list(scores) == sorted(scores, reverse=True)


@pytest.mark.core
def test_basic_api() -> None:
    index = build(FIXTURE)
    assert len(index) == len(FIXTURE)
    assert "d1" in index and "nope" not in index and 3 not in index
    assert "\ud800" not in index and None not in index
    assert index.ids() == [d for d, _ in FIXTURE]
    assert index.k1 == 1.2 and index.b == 0.75
    ids, scores = index.search("quick fox", k=2)
    assert ids == ["d2", "d1"] and len(scores) == 2
    assert index.search("quick fox", k=1)[0] == ["d2"]
    assert repr(index).startswith("BM25Index(")


@pytest.mark.core
def test_empty_query_corpus_and_documents() -> None:
    empty = BM25Index()
    ids, scores = empty.search("anything")
    assert ids == [] and scores.shape == (0,) and scores.dtype == np.float32
    index = build(FIXTURE)
    assert index.search("")[0] == []
    assert index.search("the and of to")[0] == []  # stopwords only
    assert index.search("?!")[0] == []
    assert "d6" not in index.search("the", k=100)[0]  # the empty document is indexed, never matches
    for bad_k in (0, -3):
        with pytest.raises(ValueError, match="k must be"):
            index.search("fox", k=bad_k)
        with pytest.raises(ValueError, match="k must be"):
            index.search_batch(["fox"], k=bad_k)


@pytest.mark.core
def test_pruned_top_k_equals_exhaustive() -> None:
    rng = np.random.default_rng(0)
    for n in (500, 4000):
        docs = random_corpus(rng, n, 200, 60)
        index = build(docs, analyzer=Analyzer(**PLAIN))
        queries = random_queries(rng, 80, 200)
        for dense_max_docs in (index._dense_max_docs, 0):  # dense accumulation, then MaxScore
            index._dense_max_docs = dense_max_docs
            for q in queries:
                for k in (1, 10, 50):
                    assert_same(index.search(q, k), index._search_exhaustive(q, k))


@pytest.mark.core
def test_dense_selection_with_huge_query_weights_and_many_slots() -> None:
    """The dense path's two selection key layouts (packed 64-bit keys; (sum, slot) pairs when a sum could
    exceed the packing or there are more than 65,536 slots) both equal exhaustive scoring."""
    rng = np.random.default_rng(11)
    index = build(random_corpus(rng, 300, 50, 40), analyzer=Analyzer(**PLAIN))
    heavy = " ".join(["w1"] * 60_000 + ["w2"] * 3 + ["w7"])  # sum bound above 2^47 units: wide keys
    for q in (heavy, "w1 w2 w7"):
        for k in (1, 10, 300):
            assert_same(index.search(q, k), index._search_exhaustive(q, k))
    many = BM25Index(analyzer=Analyzer(**PLAIN))
    many.add([f"m{i}" for i in range(70_000)], [f"w{i % 97} w{i % 13} x{i}" for i in range(70_000)])
    many._dense_max_docs = 1 << 20  # dense over 70,000 slots: wide keys
    for q in ("w3 w5", "w96 w12 x69999", "x0 x1 w0"):
        for k in (1, 10, 100):
            assert_same(many.search(q, k), many._search_exhaustive(q, k))


@pytest.mark.core
def test_result_ids_follow_slots_through_delete_compaction_and_re_add() -> None:
    """Result ids are cached as Python strs per document slot; a slot's id changes when compaction
    renumbers the slots or a deleted id comes back, and results must follow."""
    n = 40
    index = build([(f"d{i}", f"tok{i} common") for i in range(n)], analyzer=Analyzer(**PLAIN))
    first, _ = index.search("tok7", 3)
    again, _ = index.search("tok7", 3)
    assert first == again == ["d7"]
    assert first[0] is again[0]  # the cached str is reused
    gone = [f"d{i}" for i in range(0, n, 2)]
    index.delete(gone)  # half deleted: compaction renumbers the surviving documents
    assert index._stats()["doc_slots"] == n // 2
    for i in range(n):
        assert index.search(f"tok{i}", 3)[0] == ([] if i % 2 == 0 else [f"d{i}"])
    assert sorted(index.search("common", n)[0]) == sorted(f"d{i}" for i in range(1, n, 2))
    index.add(["d0", "d2"], ["tok2x common", "tok0x"])  # deleted ids back, in other slots, other texts
    assert index.search("tok0", 3)[0] == [] and index.search("tok0x", 3)[0] == ["d2"]
    assert index.search("tok2x", 3)[0] == ["d0"]
    index.delete(["d0"])
    index.add(["Ünï-0"], ["tok2x"])
    assert index.search("tok2x", 3)[0] == ["Ünï-0"]


@pytest.mark.core
def test_query_terms_follow_index_updates() -> None:
    """Query tokens' term ids are cached per thread and index; updates and other indexes must not leak."""
    index = build([("a", "alpha beta")])
    other = build([("o", "gamma delta")])
    assert index.search("gamma", 5)[0] == []
    assert other.search("gamma", 5)[0] == ["o"]
    index.add(["g"], ["gamma rays"])
    assert index.search("gamma", 5)[0] == ["g"]
    assert other.search("gamma", 5)[0] == ["o"]
    index.delete(["g"])
    assert index.search("gamma", 5)[0] == []
    index.add(["g2"], ["more gamma"])
    assert index.search("gammas", 5)[0] == ["g2"]  # stemmed to the same term
    assert sorted(index.search("gamma alpha", 5)[0]) == ["a", "g2"]
    long = "x" * 100  # longer than the cached tokens
    index.add(["l"], [f"{long} alpha"])
    assert index.search(long, 5)[0] == ["l"]
    for i in range(40_000):  # more distinct tokens than the cache holds: it empties and refills
        assert index.search(f"unknown{i}", 1)[0] == []
    assert index.search("gamma", 5)[0] == ["g2"] and index.search(long, 5)[0] == ["l"]


@pytest.mark.core
def test_concurrent_searches_while_slots_are_renumbered() -> None:
    """Every document has a token of its own; while one thread deletes (compacting, so slots are
    renumbered) and adds, searches for a document's token must return exactly that document or nothing."""
    index = build([(f"d{i}", f"u{i} shared") for i in range(400)], analyzer=Analyzer(**PLAIN))
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(rng.integers(0, 2000))
                ids, _ = index.search(f"u{i}", 5)
                assert ids in ([], [f"d{i}"]), (i, ids)
                for j, (got, _) in zip(range(i, i + 20), index.search_batch([f"u{j}" for j in range(i, i + 20)], 5)):
                    assert got in ([], [f"d{j}"]), (j, got)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        live = list(range(400))
        for step in range(16):
            index.delete([f"d{i}" for i in live[: len(live) // 3]])  # over a quarter: compaction
            live = live[len(live) // 3 :]
            fresh = list(range(400 + step * 100, 500 + step * 100))
            index.add([f"d{i}" for i in fresh], [f"u{i} shared" for i in fresh])
            live += fresh
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert sorted(index.ids()) == sorted(f"d{i}" for i in live)


@pytest.mark.core
def test_allow_filter() -> None:
    rng = np.random.default_rng(1)
    docs = random_corpus(rng, 3000, 100, 40)
    index = build(docs, analyzer=Analyzer(**PLAIN))
    for n_allow in (1, 20, 2500):
        allow = [docs[i][0] for i in rng.choice(len(docs), n_allow, replace=False)]
        for q in random_queries(rng, 20, 100):
            got = index.search(q, 10, allow=allow)
            assert set(got[0]) <= set(allow)
            assert_same(got, index._search_exhaustive(q, 10, allow=allow))
    assert index.search("w1", allow=[])[0] == []


@pytest.mark.core
@pytest.mark.parametrize("threads", [1, 2])
def test_search_batch_with_allow_equals_search_per_query(threads: int) -> None:
    """One allow-list for the whole batch, resolved once, gives each query what search() gives it."""
    rng = np.random.default_rng(2)
    docs = random_corpus(rng, 3000, 100, 40)
    index = build(docs, analyzer=Analyzer(**PLAIN))
    index.delete([docs[5][0]])
    queries = random_queries(rng, 30, 100)
    for allow in ([docs[i][0] for i in rng.choice(len(docs), 2500, replace=False)],  # filtered traversal
                  [docs[i][0] for i in rng.choice(len(docs), 20, replace=False)],  # scoring the allowed only
                  [docs[5][0], "not-there"], []):
        batch = index.search_batch(queries, k=10, threads=threads, allow=allow)
        assert len(batch) == len(queries)
        for q, got in zip(queries, batch):
            assert_same(got, index.search(q, 10, allow=allow))
    with pytest.raises(TypeError, match="allow"):
        index.search_batch(queries, allow=["d1", 3])  # type: ignore[list-item]


@pytest.mark.core
def test_allow_ignores_unknown_and_deleted_ids() -> None:
    """An allow-list is a filter, not a lookup (as in HNSWIndex.search): ids not in the index are ignored."""
    index = BM25Index(analyzer=Analyzer(**PLAIN))
    index.add(["a", "b", "c", "d"], ["apple pie", "apple tart", "apple cake", "apple jam"])
    index.delete(["b"])
    for search in (index.search, index._search_exhaustive):
        ids, scores = search("apple", 10, allow=["not-there", "zzz"])
        assert ids == [] and scores.shape == (0,)
        ids, _ = search("apple", 10, allow=["not-there", "c", "b", "a", "c"])
        assert sorted(ids) == ["a", "c"]
        assert search("apple", 10, allow=["b"])[0] == []
    # Other bad input is still an error.
    with pytest.raises(TypeError, match="allow"):
        index.search("apple", allow="a")
    with pytest.raises(TypeError, match="allow"):
        index.search("apple", allow=["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="allow"):
        index.search("apple", allow=["a", "bad \udcff id"])


@pytest.mark.core
def test_incremental_add_delete_equals_rebuild() -> None:
    rng = np.random.default_rng(2)
    index = BM25Index(analyzer=Analyzer(**PLAIN))
    live: list[tuple[str, str]] = []
    queries = random_queries(rng, 30, 150)
    counter = 0
    for step in range(8):
        batch = random_corpus(rng, 200, 150, 40, prefix="x")
        batch = [(f"doc{counter + i}", t) for i, (_, t) in enumerate(batch)]
        counter += len(batch)
        index.add([d for d, _ in batch], [t for _, t in batch])
        live += batch
        drop = rng.random(len(live)) < (0.5 if step % 3 == 2 else 0.1)
        index.delete([d for (d, _), x in zip(live, drop) if x])
        live = [doc for doc, x in zip(live, drop) if not x]
        rebuilt = build(live, analyzer=Analyzer(**PLAIN))
        if step % 2:  # the rebuilt index answers with MaxScore, the updated one with dense accumulation
            rebuilt._dense_max_docs = 0
        assert len(index) == len(live) and index.ids() == [d for d, _ in live]
        for q in queries:
            assert_same(index.search(q, 10), rebuilt.search(q, 10))
    stats = index._stats()
    index.compact()
    assert index._stats()["doc_slots"] == len(live) <= stats["doc_slots"]


@pytest.mark.core
def test_add_and_delete_are_all_or_nothing() -> None:
    index = build(FIXTURE)
    before = index.ids()
    with pytest.raises(ValueError, match="already in the index"):
        index.add(["new", "d1"], ["x", "y"])
    with pytest.raises(ValueError, match="duplicate id"):
        index.add(["n1", "n1"], ["x", "y"])
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        index.add(["n1", "n2"], ["x"])
    with pytest.raises(ValueError, match="non-empty"):
        index.add([""], ["x"])
    with pytest.raises(ValueError, match="n2"):
        index.add(["n1", "n2"], ["fine", "bad \udcff text"])
    with pytest.raises(ValueError, match="UTF-8"):
        index.add(["n1", "n2"], ["fine", b"bad \xff bytes"])
    with pytest.raises(TypeError, match="not a single string"):
        index.add("n1", "a single string")
    with pytest.raises(TypeError):
        index.add(["n1"], [None])  # type: ignore[list-item]
    # Ids go through the bindings' shared string_list: the position of a bad id is named.
    with pytest.raises(TypeError, match=r"ids\[1\] must be a str, got int"):
        index.add(["n1", 2], ["x", "y"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"ids\[1\] is not valid Unicode"):
        index.add(["n1", "bad \udcff id"], ["x", "y"])
    with pytest.raises(TypeError, match="ids must be a sequence of str .*got set"):
        index.add({"n1"}, ["x"])  # type: ignore[arg-type]
    assert index.ids() == before
    with pytest.raises(KeyError):
        index.delete(["d1", "missing"])
    assert index.ids() == before
    index.delete(["d1"])
    assert "d1" not in index and len(index) == len(FIXTURE) - 1
    index.add(["d1"], [b"bytes are read as UTF-8"])
    assert index.ids()[-1] == "d1"


@pytest.mark.core
def test_huge_document() -> None:
    index = BM25Index()
    big = "neural retrieval systems rank documents quickly " * 210_000  # ~10 MB
    index.add(["big", "small"], [big, "retrieval of documents"])
    ids, scores = index.search("retrieval", k=5)
    assert set(ids) == {"big", "small"} and np.all(np.isfinite(scores))


@pytest.mark.core
def test_search_batch_matches_search() -> None:
    rng = np.random.default_rng(3)
    index = build(random_corpus(rng, 1000, 100, 30), analyzer=Analyzer(**PLAIN))
    queries = random_queries(rng, 60, 100)
    for threads in (0, 1, 3):
        batch = index.search_batch(queries, k=7, threads=threads)
        assert len(batch) == len(queries)
        for q, got in zip(queries, batch):
            assert_same(got, index.search(q, 7))
    with pytest.raises(ValueError):
        index.search_batch(queries, threads=-1)


@pytest.mark.core
def test_concurrent_searches_while_adding() -> None:
    rng = np.random.default_rng(4)
    index = build(random_corpus(rng, 500, 100, 30), analyzer=Analyzer(**PLAIN))
    queries = random_queries(rng, 40, 100)
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for q in queries:
                    _, scores = index.search(q, 10)
                    assert np.all(np.diff(scores) <= 0)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for step in range(10):
        batch = random_corpus(rng, 100, 100, 30, prefix=f"s{step}_")
        index.add([d for d, _ in batch], [t for _, t in batch])
        index.delete([d for d, _ in batch[:20]])
    stop.set()
    for t in threads:
        t.join()
    assert not failures
    assert len(index) == 500 + 10 * 80


# ---------------------------------------------------------------------------------------------------
# Persistence


@pytest.mark.core
def test_save_load_answers_identically(tmp_path: pathlib.Path) -> None:
    analyzer = Analyzer(stopwords=["fox"], stemmer="porter", min_token_length=3, lowercase=True)
    index = build(FIXTURE, k1=0.9, b=0.6, analyzer=analyzer)
    index.delete(["d2"])
    path = tmp_path / "index.bm25"
    index.save(path)  # os.PathLike
    loaded = BM25Index.load(str(path))
    assert loaded.k1 == 0.9 and loaded.b == 0.6
    assert loaded.analyzer.stopwords == ["fox"] and loaded.analyzer.stemmer == "porter"
    assert loaded.analyzer.min_token_length == 3
    assert loaded.ids() == index.ids()
    for q in QUERIES:
        assert_same(loaded.search(q, 10), index.search(q, 10))
    assert not [p for p in os.listdir(tmp_path) if p != "index.bm25"]  # no temporary files left


@pytest.mark.core
def test_save_load_non_utf8_path(tmp_path: pathlib.Path) -> None:
    # Paths go through the bindings' shared path_arg (os.fsencode): a bytes name that is not UTF-8 works.
    path = os.fsencode(tmp_path) + b"/caf\xe9.bm25"
    build(FIXTURE).save(path)
    assert os.path.exists(path)
    assert BM25Index.load(path).ids() == build(FIXTURE).ids()


@pytest.mark.core
def test_corrupt_truncated_and_missing_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "index.bm25"
    build(FIXTURE).save(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.bm25"
    for cut in sorted({0, 1, 8, 12, 20, len(data) // 3, len(data) // 2, len(data) - 20, len(data) - 1}):
        bad.write_bytes(data[:cut])
        with pytest.raises(IndexFileError):
            BM25Index.load(bad)
    for at in range(0, len(data), max(1, len(data) // 50)):
        flipped = bytearray(data)
        flipped[at] ^= 0xA5
        bad.write_bytes(bytes(flipped))
        with pytest.raises(IndexFileError):
            BM25Index.load(bad)
    with pytest.raises(IndexFileError, match="missing.bm25"):
        BM25Index.load(tmp_path / "missing.bm25")
    with pytest.raises(TypeError):
        BM25Index.load(3)  # type: ignore[arg-type]
    with pytest.raises(IndexFileError):
        build(FIXTURE).save(tmp_path / "no-such-dir" / "index.bm25")


@pytest.mark.core
def test_huge_k_is_clamped_to_the_live_documents() -> None:
    """k beyond len(index) acts as len(index) on every search path (dense, pruned, allow-list, exhaustive)."""
    index = build(FIXTURE)
    index.delete(["d3"])
    for dense in (1 << 16, 0):
        index._dense_max_docs = dense
        for q in QUERIES:
            everything = index.search(q, k=len(index))
            for k in (10**12, 2**62, 2**63 - 1):
                got = index.search(q, k=k)
                assert got[0] == everything[0]
                np.testing.assert_array_equal(got[1], everything[1])
                assert index._search_exhaustive(q, k=k)[0] == everything[0]
                allow = ["d1", "d2", "d3"]
                assert index.search(q, k=k, allow=allow)[0] == index.search(q, k=3, allow=allow)[0]
                assert [r[0] for r in index.search_batch([q, q], k=k, threads=2)] == [everything[0]] * 2
    assert index.search_batch(["fox"], k=3, threads=2**40)[0][0] == index.search("fox", k=3)[0]  # threads clamped


@pytest.mark.core
def test_ints_too_large_for_64_bits_are_value_errors() -> None:
    """They used to be pybind11's 'incompatible function arguments' TypeError."""
    index = build(FIXTURE)
    for call, message in [
        (lambda: index.search("fox", k=2**64), r"k must be <= 9223372036854775807, got 18446744073709551616"),
        (lambda: index.search("fox", k=-(2**70)), r"k must be >= 1, got -1180591620717411303424"),
        (lambda: index._search_exhaustive("fox", k=2**64), "k must be <="),
        (lambda: index.search_batch(["fox"], k=2**64), "k must be <="),
        (lambda: index.search_batch(["fox"], threads=2**64), "threads must be <="),
        (lambda: index.search_batch(["fox"], threads=-1), "threads must be >= 0"),
        (lambda: Analyzer(min_token_length=2**64), "min_token_length must be <="),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(TypeError):  # a float is still not an int
        index.search("fox", k=2.0)  # type: ignore[arg-type]
    assert index.search("fox", k=np.int32(1))[0] == index.search("fox", k=1)[0]  # NumPy integers are ints


@pytest.mark.core
def test_k1_is_bounded_and_overlong_queries_are_refused() -> None:
    with pytest.raises(ValueError, match=r"k1 must be in \[0, 1000\]"):
        BM25Index(k1=1e308)  # made every impact infinite, and scores undefined
    with pytest.raises(ValueError, match="k1 must be"):
        BM25Index(k1=float("nan"))
    index = BM25Index(k1=1000.0)
    index.add(["a", "b"], ["rare words", "common words"])
    assert index.search("rare rare", k=2)[0] == ["a"]
    with pytest.raises(ValueError, match="query too long"):
        index.search("rare " * 3_000_000, k=2)  # its scores would overflow the fixed-point sums


@pytest.mark.core
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_loading_a_directory_or_fifo_is_an_index_file_error(tmp_path: pathlib.Path) -> None:
    """A directory used to give ValueError('basic_string::_M_replace_aux'), a FIFO to block forever."""
    with pytest.raises(IndexFileError, match="is a directory, not a regular file"):
        BM25Index.load(tmp_path)
    fifo = tmp_path / "pipe.bm25"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            BM25Index.load(fifo)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked in open(2): a writer appearing releases it, so the test can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("BM25Index.load blocked on a FIFO")
    assert len(errors) == 1 and isinstance(errors[0], IndexFileError), errors
    assert "is a FIFO (named pipe), not a regular file" in str(errors[0]) and str(fifo) in str(errors[0])
