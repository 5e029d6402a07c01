"""Reused passage states (funnelrank.rerank.split) on the default segment cross-encoder: the split graphs give
the whole graph's logits, states are reused across queries, precomputed ones serve exact and (with
``prefix``) truncated passages, and a model whose layers are all joint is refused."""

from __future__ import annotations

import numpy as np
import pytest
from funnelrank.models import default_reranker_path
from funnelrank.rerank import CrossEncoder
from funnelrank.rerank.split import StateStore, is_segment_model

QUERIES = ["ibuprofen dose for a child", "how long does a flea live"]
PASSAGES = [
    "Children's ibuprofen: give 5-10 mg per kg of body weight every 6 to 8 hours.",
    "Adults may take 200-400 mg of ibuprofen every 4 to 6 hours as needed for pain.",
    "Adult fleas live two to three months; without a host, a flea lives a week or two.",
    "The weather in Paris is mild in spring, with showers and cool evenings. " * 30,  # truncated in a pair
]


@pytest.fixture(scope="module")
def whole() -> CrossEncoder:
    return CrossEncoder.from_pretrained(default_reranker_path(), max_length=128, intra_op_threads=1)


def _logits(model: CrossEncoder) -> list[np.ndarray]:
    return [model.predict(q, PASSAGES)[1] for q in QUERIES]


def test_split_graphs_give_the_whole_graphs_logits_and_reuse_states(whole: CrossEncoder) -> None:
    split = CrossEncoder.from_pretrained(default_reranker_path(), max_length=128, intra_op_threads=1,
                                         reuse_passage_states=True, state_store=StateStore(), warmup=False)
    expected = _logits(whole)
    first = _logits(split)
    stats = split.state_store.stats()
    assert stats["hits"] == 3 and stats["misses"] == 5  # the 3 short passages met again; the long one is cut per query
    again = _logits(split)
    assert split.state_store.stats()["hits"] == stats["hits"] + 8
    for e, a, b in zip(expected, first, again):
        np.testing.assert_allclose(a, e, atol=5e-3)  # float16 states
        np.testing.assert_allclose(b, e, atol=5e-3)
    assert np.argmax(expected[0]) == 0 and np.argmax(expected[1]) == 2  # a real ranking, not noise


def test_precomputed_states_serve_exact_and_prefix_lookups(whole: CrossEncoder) -> None:
    exact = CrossEncoder.from_pretrained(default_reranker_path(), max_length=128, intra_op_threads=1,
                                         reuse_passage_states=True, state_store=StateStore(), warmup=False)
    assert exact.precompute_passages(PASSAGES) == 4 and exact.precompute_passages(PASSAGES[:2]) == 0
    np.testing.assert_allclose(_logits(exact)[0], _logits(whole)[0], atol=5e-3)
    assert exact.state_store.stats()["prefix_hits"] == 0  # the long passage was computed at the pair's length

    prefix = CrossEncoder.from_pretrained(default_reranker_path(), max_length=128, intra_op_threads=1,
                                          reuse_passage_states="prefix", state_store=StateStore(), warmup=False)
    prefix.precompute_passages(PASSAGES)
    got, expected = _logits(prefix), _logits(whole)
    stats = prefix.state_store.stats()
    assert stats["prefix_hits"] == 2 and stats["misses"] == 0
    for e, a in zip(expected, got):
        np.testing.assert_allclose(a[:3], e[:3], atol=5e-3)  # untruncated passages: exact
        assert abs(a[3] - e[3]) < 2.0 and a[3] != pytest.approx(e[3], abs=1e-4)  # approximate, measured elsewhere


def test_only_segment_models_can_reuse_passage_states(tiny_cross_encoder_dir) -> None:
    assert is_segment_model({"funnelrank": {"n_separate_layers": 4}, "num_hidden_layers": 6})
    assert not is_segment_model({"num_hidden_layers": 6})
    with pytest.raises(ValueError, match="segment cross-encoder"):
        CrossEncoder.from_pretrained(tiny_cross_encoder_dir, reuse_passage_states=True)
    with pytest.raises(ValueError, match="reuse_passage_states must be"):
        CrossEncoder.from_pretrained(default_reranker_path(), reuse_passage_states="sometimes")
    plain = CrossEncoder.from_pretrained(tiny_cross_encoder_dir)
    with pytest.raises(ValueError, match="reuse_passage_states=True"):
        plain.precompute_passages(["text"])


def test_state_store_is_bounded() -> None:
    store = StateStore(max_bytes=1000)
    for i in range(10):
        store.put(bytes([i]), np.zeros(100, dtype=np.float16))  # 200 bytes each
    stats = store.stats()
    assert stats["entries"] == 5 and stats["bytes"] == 1000
    assert store.get(bytes([0])) is None and store.get(bytes([9])) is not None
    with pytest.raises(ValueError):
        StateStore(max_bytes=-1)


def test_a_reranker_can_reuse_passage_states_across_its_workers() -> None:
    from funnelrank.rerank.reranker import Reranker

    with Reranker(reuse_passage_states=True, workers=2, intra_op_threads=1, cache_entries=0) as reranker:
        stores = {id(m.state_store) for m in reranker.scheduler.models}
        assert len(stores) == 1 and None not in {m.state_store for m in reranker.scheduler.models}
        first = reranker.rank(QUERIES[0], PASSAGES[:3])
        second = reranker.rank(QUERIES[0] + "?", PASSAGES[:3])  # another query, the same passages
        assert reranker.scheduler.models[0].state_store.stats()["hits"] >= 3
        assert [i.index for i in first.items][:1] == [i.index for i in second.items][:1] == [0]
