"""Near-miss negatives for training: WordNet swaps of a query's words inside its positive passage."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("nltk", reason="the training tool's near-miss negatives need the dev extra (nltk)")

from funnelrank.train.near_misses import make_near_misses  # noqa: E402
from funnelrank.train.wordnet import load_wordnet  # noqa: E402


@pytest.fixture(scope="module")
def wn():  # type: ignore[no-untyped-def]
    try:
        return load_wordnet()
    except FileNotFoundError as exc:  # pragma: no cover - CI installs wordnet-base (tools/install-sysdeps.sh)
        pytest.skip(str(exc))


def test_wordnet_antonyms_offline(wn) -> None:  # type: ignore[no-untyped-def]
    assert {a.name() for lem in wn.synset("increase.v.01").lemmas() for a in lem.antonyms()} == {"decrease"}
    assert wn.morphy("children") == "child"


def test_variants_swap_one_query_word_inside_the_positive(wn) -> None:  # type: ignore[no-untyped-def]
    passage = "Aspirin can increase the risk of bleeding in the stomach."
    variants = make_near_misses("does aspirin increase bleeding risk", passage, wn, random.Random(0))
    assert variants and len(set(variants)) == len(variants) and passage not in variants
    assert "Aspirin can decrease the risk of bleeding in the stomach." in variants  # the antonym swap
    for v in variants:  # one word changed, the rest kept
        a, b = passage.split(), v.split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def test_numbers_named_by_the_query_change(wn) -> None:  # type: ignore[no-untyped-def]
    variants = make_near_misses("is 212 the boiling point", "Water boils at 212 degrees.", wn, random.Random(1))
    assert any("212" not in v and v.startswith("Water boils at ") for v in variants)


def test_no_shared_word_no_variant(wn) -> None:  # type: ignore[no-untyped-def]
    assert make_near_misses("volcano eruption", "Bananas are rich in potassium.", wn, random.Random(0)) == []
