"""rrf / convex_fusion (funnelrank._core) against straightforward Python reference implementations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from funnelrank.core import FusedResult, HNSWIndex, convex_fusion, rrf

pytestmark = pytest.mark.core

Ranking = tuple[list[str], list[float]]


def _order(fused: dict[str, float], rankings: Sequence[Ranking]) -> list[str]:
    """The documented tie-breaking: score desc, then best rank in any input, then id."""
    best = {d: min(r[0].index(d) + 1 for r in rankings if d in r[0]) for d in fused}
    return sorted(fused, key=lambda d: (-fused[d], best[d], d))


def reference_rrf(rankings: Sequence[Ranking], k: float = 60, weights: Sequence[float] | None = None) -> dict:
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    for w, (ids, _) in zip(weights, rankings):
        for rank, d in enumerate(ids, start=1):
            fused[d] = fused.get(d, 0.0) + w / (k + rank)
    return fused


def reference_convex(rankings: Sequence[Ranking], weights: Sequence[float] | None, normalization: str) -> dict:
    weights = list(weights or [1.0] * len(rankings))
    weights = [w / sum(weights) for w in weights]
    fused: dict[str, float] = {}
    for w, (ids, scores) in zip(weights, rankings):
        if normalization == "minmax":
            lo, hi = min(scores, default=0), max(scores, default=0)
            norm = [(s - lo) / (hi - lo) if hi > lo else 1.0 for s in scores]
        else:
            mean = sum(scores) / len(scores) if scores else 0.0
            sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) if scores else 0.0
            norm = [(s - mean) / sd if sd > 0 else 0.0 for s in scores]
        for d in ids:
            fused.setdefault(d, 0.0)
        for d, x in zip(ids, norm):
            fused[d] += w * x
    return fused


def random_rankings(seed: int, n_retrievers: int = 3) -> list[Ranking]:
    rng = np.random.default_rng(seed)
    pool = [f"doc{i}" for i in range(60)]
    out = []
    for _ in range(n_retrievers):
        size = int(rng.integers(0, 40))
        ids = list(rng.choice(pool, size=size, replace=False))
        scores = sorted(rng.normal(size=size).tolist(), reverse=True)
        out.append((ids, scores))
    return out


def check_tracing(result: FusedResult, rankings: Sequence[Ranking]) -> None:
    n = len(result.ids)
    assert result.ranks.shape == (n, len(rankings)) and result.ranks.dtype == np.int32
    assert result.input_scores.shape == (n, len(rankings)) and result.input_scores.dtype == np.float32
    for i, d in enumerate(result.ids):
        for r, (ids, scores) in enumerate(rankings):
            if d in ids:
                assert result.ranks[i, r] == ids.index(d) + 1
                assert result.input_scores[i, r] == np.float32(scores[ids.index(d)])
            else:
                assert result.ranks[i, r] == 0 and np.isnan(result.input_scores[i, r])


@pytest.mark.parametrize("seed", range(8))
def test_rrf_matches_reference(seed: int) -> None:
    rankings = random_rankings(seed)
    weights = [1.0, 0.5, 2.0]
    for k, w in [(60, None), (1, weights), (0, weights)]:
        result = rrf(rankings, k=k, weights=w)
        expected = reference_rrf(rankings, k, w)
        assert result.ids == _order(expected, rankings)
        np.testing.assert_allclose(result.scores, [expected[d] for d in result.ids], rtol=1e-6)
        assert result.scores.dtype == np.float32
        check_tracing(result, rankings)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("normalization", ["minmax", "zscore"])
def test_convex_fusion_matches_reference(seed: int, normalization: str) -> None:
    rankings = random_rankings(100 + seed)
    for w in (None, [0.2, 0.3, 0.5], [1.0, 0.0, 3.0]):
        result = convex_fusion(rankings, weights=w, normalization=normalization)
        expected = reference_convex(rankings, w, normalization)
        np.testing.assert_allclose(result.scores, [expected[d] for d in result.ids], rtol=1e-5, atol=1e-6)
        assert sorted(result.ids) == sorted(expected)
        # Same order as the reference wherever the reference's scores are not (near-)tied.
        ref = _order(expected, rankings)
        for a, b in zip(result.ids, ref):
            assert a == b or math.isclose(expected[a], expected[b], rel_tol=1e-9, abs_tol=1e-12)
        check_tracing(result, rankings)


def test_top_k_truncates_after_fusion() -> None:
    rankings = random_rankings(42)
    full = rrf(rankings)
    top = rrf(rankings, top_k=5)
    assert top.ids == full.ids[:5] and len(top) == 5
    assert len(rrf(rankings, top_k=0)) == 0
    assert convex_fusion(rankings, top_k=3).ids == convex_fusion(rankings).ids[:3]


def test_ties_are_deterministic_and_input_order_free() -> None:
    a = (["x", "y", "z"], [3.0, 2.0, 1.0])
    b = (["z", "y", "x"], [3.0, 2.0, 1.0])
    # x and z tie exactly (1/61 + 1/63) and on best rank (1), so id order decides; y has 2/62 < that.
    assert rrf([a, b]).ids == ["x", "z", "y"]
    assert rrf([b, a]).ids == ["x", "z", "y"]
    assert convex_fusion([a, b]).ids == convex_fusion([b, a]).ids


def test_accepts_hnsw_search_output_and_numpy_scores() -> None:
    index = HNSWIndex(4)
    index.add(["a", "b", "c"], np.eye(3, 4, dtype=np.float32) + 0.1)
    dense = index.search(np.array([1, 0.5, 0, 0], np.float32), k=3)
    sparse = (["c", "q"], np.array([7.5, 1.0]))
    result = rrf([sparse, dense], weights=[1, 1])
    assert set(result.ids) == {"a", "b", "c", "q"}
    assert result.ranks[result.ids.index("c")].tolist() == [1, 3]


@pytest.mark.parametrize(
    ("rankings", "kwargs", "message"),
    [
        ([], {}, "at least one"),
        ([(["a", "b"], [1.0])], {}, "2 ids but 1 scores"),
        ([(["a", "a"], [2.0, 1.0])], {}, "twice"),
        ([(["a"], [float("nan")])], {}, "non-finite"),
        ([(["a"], [float("inf")])], {}, "non-finite"),
        ([(["a"], [1.0])], {"weights": [1.0, 2.0]}, "2 weights for 1"),
        ([(["a"], [1.0])], {"weights": [-1.0]}, ">= 0"),
        ([(["a"], [1.0])], {"weights": [0.0]}, "> 0"),
        ([(["a"], [1.0])], {"top_k": -1}, "top_k"),
        ([(["a"],)], {}, "pair"),
        ([(["a"], ["x"])], {}, "numbers"),
    ],
)
def test_invalid_input_raises_value_error(rankings: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rrf(rankings, **kwargs)
    with pytest.raises(ValueError, match=message):
        convex_fusion(rankings, **kwargs)


def test_wrongly_typed_ids_raise_type_error() -> None:
    with pytest.raises(TypeError, match="single string"):
        rrf([("ab", [1.0, 2.0])])
    with pytest.raises(TypeError, match="must be a str"):
        convex_fusion([(["a", 2], [1.0, 2.0])])


def test_bad_k_and_normalization() -> None:
    with pytest.raises(ValueError, match="k must be"):
        rrf([(["a"], [1.0])], k=-1)
    with pytest.raises(ValueError, match="normalization"):
        convex_fusion([(["a"], [1.0])], normalization="softmax")
