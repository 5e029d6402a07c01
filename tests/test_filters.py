"""Metadata filters: validation and resolution by the inverted metadata index (pure Python)."""

from __future__ import annotations

import json

import pytest
from funnelrank.retrieve.filters import (
    MAX_FILTER_TERMS,
    MetadataIndex,
    parse_filter,
    validate_filter,
    validate_metadata,
)

DOCS = {
    "a": {"year": 2019, "lang": "en", "score": 1, "tags": ["x", "y"]},
    "b": {"year": 2020, "lang": "en", "score": 4.5, "draft": True},
    "c": {"year": 2020, "lang": "de", "score": 5, "date": "2020-05-01"},
    "d": {"year": 2021, "lang": "fr", "date": "2021-01-31", "tags": ["y"]},
    "e": {},
}


@pytest.fixture()
def index() -> MetadataIndex:
    idx = MetadataIndex()
    for doc_id, meta in DOCS.items():
        idx.add(doc_id, meta)
    return idx


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"year": 2020}, {"b", "c"}),
        ({"year": 2020, "lang": "en"}, {"b"}),
        ({"lang": ["de", "fr"]}, {"c", "d"}),
        ({"score": {"gte": 1, "lt": 5}}, {"a", "b"}),
        ({"score": {"gt": 1, "lte": 5}}, {"b", "c"}),
        ({"year": {"in": [2019, 2021]}}, {"a", "d"}),
        ({"lang": {"ne": "en"}}, {"c", "d", "e"}),
        ({"lang": {"nin": ["en", "de"]}}, {"d", "e"}),
        ({"tags": "y"}, {"a", "d"}),
        ({"date": {"gte": "2020-06-01"}}, {"d"}),
        ({"draft": {"exists": True}}, {"b"}),
        ({"draft": {"exists": False}}, {"a", "c", "d", "e"}),
        ({"year": 2020.0}, {"b", "c"}),  # 2020 == 2020.0
        ({"draft": 1}, set()),  # true is not 1
        ({"missing": "x"}, set()),
        ({"score": {"gte": "a"}}, set()),  # strings never compare with numbers
        ({}, {"a", "b", "c", "d", "e"}),
    ],
)
def test_resolve(index: MetadataIndex, flt: dict, expected: set[str]) -> None:
    assert index.resolve(flt, DOCS) == expected


def test_remove_forgets_values(index: MetadataIndex) -> None:
    index.remove("b", DOCS["b"])
    assert index.resolve({"year": 2020}, set(DOCS) - {"b"}) == {"c"}
    assert index.resolve({"draft": {"exists": True}}, set(DOCS) - {"b"}) == set()


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ([("year", 1)], "must be a JSON object"),
        ({"year": {"between": [1, 2]}}, "unknown operator"),
        ({"year": {"gte": [1]}}, "finite number or a string"),
        ({"year": {"gte": True}}, "finite number or a string"),
        ({"year": {"in": 3}}, "takes a list"),
        ({"year": {}}, "empty condition"),
        ({"year": {"exists": "yes"}}, "true or false"),
        ({"year": {"a": 1}}, "unknown operator"),
        ({"": 1}, "non-empty"),
        ({"x": {"eq": {"nested": 1}}}, "scalar"),
    ],
)
def test_bad_filters_are_clear(flt: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_filter(flt)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ([1, 2], "must be a dict"),
        ({1: "x"}, "keys must be non-empty strings"),
        ({"x": float("nan")}, "not JSON-serializable"),
        ({"x": object()}, "not JSON-serializable"),
    ],
)
def test_bad_metadata(meta: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_metadata(meta)


def test_in_and_nin_lists_are_capped_like_elasticsearch_terms() -> None:
    """A 1M-term `in` filter used to be served term by term; now the cap is Elasticsearch's 65,536."""
    index = MetadataIndex()
    index.add("a", {"tag": "t1"})
    index.add("b", {"tag": "t70000"})
    at_cap = [f"t{i}" for i in range(MAX_FILTER_TERMS)]
    assert MAX_FILTER_TERMS == 65_536
    assert index.resolve({"tag": at_cap}, {"a", "b"}) == {"a"}  # exactly the cap is served
    million = [f"t{i}" for i in range(1_000_000)]
    for flt in ({"tag": million}, {"tag": {"in": million}}, {"tag": {"nin": million}},
                {"tag": {"in": [*at_cap, "one more"]}}):
        with pytest.raises(ValueError, match=r"filter on 'tag': '(in|nin)' takes at most 65,536 values, got"):
            index.resolve(flt, {"a", "b"})


def test_a_whole_filter_is_capped_at_the_same_number_of_operands() -> None:
    half = [f"v{i}" for i in range(MAX_FILTER_TERMS // 2)]
    assert validate_filter({"x": half, "y": {"nin": half}})  # exactly the cap in all
    with pytest.raises(ValueError, match="filter holds more than 65,536 operands in all"):
        validate_filter({"x": half, "y": {"nin": half}, "z": 1})
    many_fields = {f"f{i}": i for i in range(MAX_FILTER_TERMS + 1)}
    with pytest.raises(ValueError, match="filter holds more than 65,536 operands"):
        validate_filter(many_fields)
    with pytest.raises(ValueError, match="--filter: filter holds more than 65,536 operands"):
        parse_filter(json.dumps(many_fields), what="--filter")
