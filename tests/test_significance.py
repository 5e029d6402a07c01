"""Bootstrap intervals and the paired randomization test (funnelrank.eval.significance)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from funnelrank.eval import significance
from funnelrank.eval.significance import bootstrap_ci, compare_per_query, paired_randomization_test


def _exact_randomization_p(diff: np.ndarray) -> float:
    """Every one of the 2^n sign assignments, enumerated."""
    observed = abs(diff.mean())
    hits = sum(
        abs(np.dot(signs, diff)) / diff.size >= observed - 1e-12
        for signs in itertools.product((-1.0, 1.0), repeat=diff.size)
    )
    return hits / 2 ** diff.size


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    for n in (40, 400):
        values = rng.normal(0.6, 0.2, size=n)
        low, high = bootstrap_ci(values)
        assert low < values.mean() < high
        expected = 2 * 1.96 * values.std(ddof=1) / np.sqrt(n)  # the CLT interval the bootstrap estimates
        assert (high - low) == pytest.approx(expected, rel=0.1)
    assert bootstrap_ci([0.5] * 30) == (0.5, 0.5)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)  # reproducible
    narrow = bootstrap_ci(values, confidence=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_resampling_in_chunks_draws_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(50), rng.random(50)
    whole = (bootstrap_ci(a - b, trials=500), paired_randomization_test(a, b, trials=500))
    monkeypatch.setattr(significance, "_CHUNK_CELLS", 7 * 50)  # 7 trials per chunk
    assert (bootstrap_ci(a - b, trials=500), paired_randomization_test(a, b, trials=500)) == whole


def test_randomization_p_value_agrees_with_exhaustive_enumeration() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.05, 0.15):
        a = rng.random(12)
        b = a - shift - rng.normal(0, 0.1, size=12)
        exact = _exact_randomization_p(a - b)
        assert paired_randomization_test(a, b, trials=40_000) == pytest.approx(exact, abs=0.01)


def test_randomization_test_extremes() -> None:
    a = np.linspace(0.2, 0.9, 20)
    assert paired_randomization_test(a, a) == 1.0  # no difference at all
    assert paired_randomization_test(a, a[::-1]) == 1.0  # differences cancel exactly: observed mean 0
    # Better on all 20 queries: only 2 of 2^20 assignments are as extreme, so p is the floor 1 / (trials + 1).
    assert paired_randomization_test(a + 0.1, a) == pytest.approx(1 / 10_001)
    assert paired_randomization_test(a, a + 0.1) == pytest.approx(1 / 10_001)  # two-sided


def test_compare_per_query_counts_and_means() -> None:
    a = {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 0.25}
    b = {"q1": 0.5, "q2": 0.5, "q3": 0.5, "q4": 0.0}
    c = compare_per_query("rerank", a, "hybrid", b, "ndcg@10")
    assert (c.a, c.b, c.metric, c.queries) == ("rerank", "hybrid", "ndcg@10", 4)
    assert (c.wins, c.losses, c.ties) == (2, 1, 1)
    assert c.mean_a == pytest.approx(0.4375) and c.mean_b == pytest.approx(0.375)
    assert c.difference == pytest.approx(0.0625) and c.ci_low <= c.difference <= c.ci_high
    assert 0.0 < c.p_value <= 1.0 and c.confidence == 0.95
    assert set(c.as_dict()) >= {"a", "b", "difference", "ci_low", "ci_high", "p_value"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_ci([]), "empty"),
        (lambda: bootstrap_ci([0.1, float("nan")]), "non-finite value .* position 1"),
        (lambda: bootstrap_ci([[0.1, 0.2]]), "1-D"),
        (lambda: bootstrap_ci([0.1], trials=0), "trials must be a positive integer"),
        (lambda: bootstrap_ci([0.1], confidence=1.0), "confidence must be in"),
        (lambda: paired_randomization_test([0.1, 0.2], [0.1]), "same queries: 2 values against 1"),
        (lambda: compare_per_query("a", {"q1": 1.0}, "b", {"q2": 1.0}, "ndcg@10"), 'query "q1" is scored only by a'),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
