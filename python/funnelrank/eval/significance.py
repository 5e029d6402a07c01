"""How sure a metric is: bootstrap confidence intervals over queries, and paired tests between two rankings.

A mean nDCG@10 over a few hundred (or, on TREC DL, 43) queries moves by a few hundredths when the query sample
changes, so a difference between two stages, or between a stage and a target, means little without its
uncertainty. Two standard tools from IR evaluation (Smucker, Allan and Carterette, "A comparison of
statistical significance tests for information retrieval evaluation", CIKM 2007; Sakai, "Statistical
reform in information retrieval?", SIGIR Forum 2014):

* :func:`bootstrap_ci`: the percentile bootstrap interval of a mean over queries (resample queries with
  replacement, take the mean, read the quantiles).
* :func:`paired_randomization_test`: Fisher's randomization (permutation) test of two systems on the same
  queries. Under the null hypothesis the two systems are exchangeable on each query, so each per-query
  difference is equally likely to carry either sign; the two-sided p-value is the share of random sign
  assignments whose mean difference is at least as far from 0 as the observed one. Smucker et al. recommend
  it over the t-test, the sign test and the Wilcoxon test for IR metrics.

Both are Monte Carlo with a fixed seed, so a report is reproducible; the p-value counts the observed
assignment (``(hits + 1) / (trials + 1)``), so it is never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_TRIALS",
    "PairedComparison",
    "bootstrap_ci",
    "compare_per_query",
    "describe_comparison",
    "paired_randomization_test",
]

DEFAULT_TRIALS = 10_000
"""Bootstrap resamples / random sign assignments per estimate."""

DEFAULT_CONFIDENCE = 0.95
"""Confidence level of the intervals."""

_CHUNK_CELLS = 4_000_000
"""Resampling works on (trials x queries) matrices of at most this many cells at a time (bounded memory)."""


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per query (a 1-D sequence), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: there are no queries to resample")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a non-finite value (NaN or inf) at position {int(np.argmin(np.isfinite(arr)))}")
    return arr


def _check_trials(trials: int) -> None:
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")


def _chunks(trials: int, n: int) -> list[int]:
    rows = max(1, _CHUNK_CELLS // max(1, n))
    return [min(rows, trials - start) for start in range(0, trials, rows)]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile bootstrap interval ``(low, high)`` of the mean of `values` (one value per query).

    For the interval of a *difference* between two systems, pass the per-query differences (the paired
    bootstrap). Deterministic for a given `seed`.
    """
    _check_trials(trials)
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    arr = _values(values, "values")
    rng = np.random.default_rng(seed)
    means = np.empty(trials, dtype=np.float64)
    done = 0
    for rows in _chunks(trials, arr.size):
        idx = rng.integers(0, arr.size, size=(rows, arr.size))
        means[done : done + rows] = arr[idx].mean(axis=1)
        done += rows
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_randomization_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
) -> float:
    """Two-sided p-value of Fisher's paired randomization test that systems `a` and `b` (one value per query,
    same queries in the same order) have the same mean. ``(hits + 1) / (trials + 1)``, hits being the random
    sign assignments whose |mean difference| is at least the observed one; 1.0 when every difference is 0."""
    _check_trials(trials)
    x = _values(a, "a")
    y = _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must score the same queries: {x.size} values against {y.size}")
    diff = x - y
    observed = abs(float(diff.mean()))
    if not np.any(diff):
        return 1.0
    # A tolerance keeps assignments equal to the observed one (up to float rounding) counted as hits.
    threshold = observed - 1e-12 * max(1.0, observed)
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _chunks(trials, diff.size):
        signs = np.where(rng.random((rows, diff.size)) < 0.5, -1.0, 1.0)
        hits += int(np.count_nonzero(np.abs(signs @ diff) / diff.size >= threshold))
    return (hits + 1) / (trials + 1)


@dataclass(frozen=True)
class PairedComparison:
    """Stage `a` against stage `b` on one metric over the same judged queries.

    ``difference`` = mean(a) - mean(b); ``ci_low``/``ci_high``: its paired bootstrap interval at
    ``confidence``; ``p_value``: the paired randomization test (two-sided); ``wins``/``losses``/``ties``:
    queries where a scores above / below / equal to b.
    """

    a: str
    b: str
    metric: str
    queries: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    wins: int
    losses: int
    ties: int

    def as_dict(self, digits: int = 6) -> dict[str, Any]:
        """JSON-ready dict with floats rounded to `digits`."""
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare_per_query(
    a: str,
    per_query_a: Mapping[str, float],
    b: str,
    per_query_b: Mapping[str, float],
    metric: str,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    trials: int = DEFAULT_TRIALS,
    seed: int = 0,
) -> PairedComparison:
    """Compare two stages' per-query values of `metric` ({query id: value}); both must cover the same
    queries (ValueError naming one that only one of them has)."""
    only = set(per_query_a).symmetric_difference(per_query_b)
    if only:
        qid = sorted(only)[0]
        side = a if qid in per_query_a else b
        raise ValueError(f'query "{qid}" is scored only by {side}: a paired comparison needs the same queries')
    qids = sorted(per_query_a)
    x = np.array([per_query_a[q] for q in qids], dtype=np.float64)
    y = np.array([per_query_b[q] for q in qids], dtype=np.float64)
    diff = x - y
    low, high = bootstrap_ci(diff, confidence=confidence, trials=trials, seed=seed)
    return PairedComparison(
        a=a,
        b=b,
        metric=metric,
        queries=len(qids),
        mean_a=math.fsum(x) / len(qids),
        mean_b=math.fsum(y) / len(qids),
        difference=math.fsum(diff) / len(qids),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        p_value=paired_randomization_test(x, y, trials=trials, seed=seed),
        wins=int(np.count_nonzero(diff > 0)),
        losses=int(np.count_nonzero(diff < 0)),
        ties=int(np.count_nonzero(diff == 0)),
    )


def describe_comparison(c: Mapping[str, Any]) -> str:
    """One line for a comparison (:meth:`PairedComparison.as_dict`): the difference, its interval, the p-value and
    the per-query counts, e.g. ``+0.0065  [-0.0261, +0.0386]  p = 0.689  (70 better, 57 worse, 173 equal of 300)``."""
    return (
        f"{c['difference']:+.4f}  [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]  p = {c['p_value']:.3f}  "
        f"({c['wins']} better, {c['losses']} worse, {c['ties']} equal of {c['queries']})"
    )
