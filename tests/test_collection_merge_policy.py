"""Issue 28: the tiered merge policy (after Lucene's TieredMergePolicy): each commit folds runs of neighbouring
segments of one size tier, never past the budget, rewrites mostly-deleted segments, and keeps every answer."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from funnelrank.store.collection import Collection
from funnelrank.store.merge_policy import TieredMergePolicy

from crash_harness import HashEmbedder

WORDS = "cat dog bird fish tree river stone cloud rain sun moon star".split()


def test_find_merges_groups_neighbours_of_one_tier() -> None:
    policy = TieredMergePolicy(segments_per_tier=3, floor_docs=10)
    assert [policy.tier(n) for n in (0, 1, 10, 11, 30, 31, 90, 91)] == [0, 0, 0, 1, 1, 2, 2, 3]
    assert policy.find_merges([(10, 0), (5, 0), (8, 0), (100, 0)]) == [(0, 3)]
    assert policy.find_merges([(5, 0), (5, 0), (50, 0), (5, 0)]) == []  # neighbours only: tiers interleave
    assert policy.find_merges([(20, 0), (20, 0), (20, 0), (1, 0), (1, 0), (1, 0)]) == [(0, 3), (3, 6)]
    assert policy.find_merges([(100, 0), (50, 60)]) == [(1, 2)]  # 55% deleted: rewritten on its own
    assert policy.find_merges([(100, 0), (50, 10)]) == []
    assert policy.find_merges([(100, 0), (5, 9)]) == []  # mostly deleted, but fewer than floor_docs: left to its tier
    budget = TieredMergePolicy(segments_per_tier=3, floor_docs=10, max_merged_docs=25)
    assert budget.find_merges([(10, 0), (10, 0), (10, 0)]) == []  # the merge would make 30 > 25


@pytest.mark.parametrize("bad", [{"segments_per_tier": 1}, {"floor_docs": 0}, {"max_merged_docs": -1},
                                 {"deletes_pct_allowed": 101}, {"segments_per_tier": 2.5},
                                 {"deletes_pct_allowed": True}])
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TieredMergePolicy(**bad)  # type: ignore[arg-type]


def batches(col: Collection, root: Path, count: int, size: int, rng: random.Random) -> None:
    for b in range(count):
        ids = [f"b{b}-{i}" for i in range(size)]
        col.add(ids, [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in ids])
        col.commit() if col.home else col.save(root)


@pytest.mark.parametrize("dense", [False, True], ids=["bm25", "dense"])
def test_commits_keep_few_segments_of_growing_tiers_and_every_answer(tmp_path: Path, dense: bool) -> None:
    root = tmp_path / "col"
    rng = random.Random(5)
    col = Collection(dense=dense, embedder=HashEmbedder() if dense else None, hnsw={"ef_search": 400})
    col.merge_policy = TieredMergePolicy(segments_per_tier=3, floor_docs=4)
    folds = []
    real = col._segments._fold
    col._segments._fold = lambda parts, text: folds.append(sum(map(len, parts))) or real(parts, text)  # type: ignore
    batches(col, root, 40, 4, rng)  # 160 documents in 40 commits
    sizes = col.segment_sizes()
    tiers = [col.merge_policy.tier(n) for n in sizes]
    assert len(sizes) <= 2 * (max(tiers) + 1)  # at most segments_per_tier - 1 per tier
    assert tiers == sorted(tiers, reverse=True)  # bigger (older) segments first, like Lucene's tiers
    assert sum(folds) <= 160 * 4  # each document re-indexed about once per tier, not once per commit
    single = Collection(dense=dense, embedder=HashEmbedder() if dense else None, hnsw={"ef_search": 400})
    single.add(col.ids(), [col.text(i) for i in col.ids()])
    for query in ["cat", "dog river", "moon star stone"]:
        got, want = col.search_bm25(query, 50), single.search_bm25(query, 50)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])
    col.close()
    again = Collection.load(root, embedder=HashEmbedder() if dense else None)
    assert again.segment_sizes() == sizes and again.ids() == single.ids()
    if dense:
        vector = HashEmbedder().embed_query("cat")
        got_d, want_d = again.search_dense(vector, 5), single.search_dense(vector, 5)
        assert np.allclose(got_d[1], want_d[1])  # the same top-5 similarities (equal texts tie, in any order)


def test_the_budget_and_mostly_deleted_segments(tmp_path: Path) -> None:
    root = tmp_path / "col"
    col = Collection(dense=False)
    col.merge_policy = TieredMergePolicy(segments_per_tier=2, floor_docs=2, max_merged_docs=8)
    batches(col, root, 8, 2, random.Random(1))
    assert max(col.segment_sizes()) <= 8 and sum(col.segment_sizes()) == 16  # never merged past the budget
    big = next(seg for seg in col._segments.list if len(seg) == 8)
    gone = big.bm25.ids()[:5]
    col.delete(gone)  # 5 of 8 deleted: over 33%
    col.commit()
    assert big not in col._segments.list and all(not seg.deleted for seg in col._segments.list)
    assert not set(gone) & set(col.ids()) and len(col) == 11
    col.close()
    assert Collection.load(root).ids() == col.ids()
