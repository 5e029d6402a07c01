"""The BM25 query planner from Python: every strategy (dense accumulator, MaxScore, quantized impacts with
exact re-scoring), forced or picked per query, returns exhaustive scoring's ids and scores."""

from __future__ import annotations

import numpy as np
import pytest
from funnelrank.core import Analyzer, BM25Index

PLAIN: dict[str, object] = dict(stopwords=None, stemmer=None, min_token_length=1)


def random_corpus(rng: np.random.Generator, n: int, vocab: int, max_len: int) -> tuple[list[str], list[str]]:
    weights = 1.0 / np.arange(1, vocab + 1)
    weights /= weights.sum()
    texts = [" ".join(f"w{t}" for t in rng.choice(vocab, size=int(rng.integers(0, max_len + 1)), p=weights))
             for _ in range(n)]
    return [f"d{i}" for i in range(n)], texts


def random_queries(rng: np.random.Generator, n: int, vocab: int) -> list[str]:
    return [" ".join(f"w{t}" for t in rng.integers(0, vocab + 3, size=int(rng.integers(1, 7)))) for _ in range(n)]


def assert_same(a: tuple[list[str], np.ndarray], b: tuple[list[str], np.ndarray]) -> None:
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.core
def test_every_planner_strategy_equals_exhaustive() -> None:
    """The query planner's strategies (dense accumulator, MaxScore, the quantized-impact path with exact
    re-scoring), forced for every query or picked per query, all give exhaustive scoring's ids and scores,
    with allow-lists, huge query weights and more than 65,536 slots."""
    rng = np.random.default_rng(27)
    index = BM25Index(analyzer=Analyzer(**PLAIN))
    index.add(*random_corpus(rng, 3000, 150, 50))
    index._dense_max_docs = 0
    queries = random_queries(rng, 40, 150)
    heavy = " ".join(["w1"] * 60_000 + ["w2"] * 3 + ["w7"])
    allow = [f"d{i}" for i in range(0, 3000, 3)]
    assert index._strategy == "auto"
    for strategy in ("auto", "dense", "maxscore", "impact"):
        index._strategy = strategy
        assert index._strategy == strategy
        for q in [*queries, heavy]:
            for k in (1, 10, 100):
                assert_same(index.search(q, k), index._search_exhaustive(q, k))
            assert_same(index.search(q, 10, allow=allow), index._search_exhaustive(q, 10, allow=allow))
        batch = index.search_batch(queries, 10, threads=2)
        for q, got in zip(queries, batch):
            assert_same(got, index._search_exhaustive(q, 10))
    with pytest.raises(ValueError, match="unknown BM25 strategy"):
        index._strategy = "fastest"
    index._strategy = "auto"
    assert index._plan("w0 w1 w2", 10) == "impact"  # frequent terms: a large posting volume
    assert index._plan("zzzz", 10) == "empty"
    many = BM25Index(analyzer=Analyzer(**PLAIN))
    many.add([f"m{i}" for i in range(70_000)], [f"w{i % 97} w{i % 13} x{i}" for i in range(70_000)])
    many._strategy = "impact"
    for q in ("w3 w5", "w96 w12 x69999", "x0 x1 w0"):
        for k in (1, 10, 100):
            assert_same(many.search(q, k), many._search_exhaustive(q, k))
