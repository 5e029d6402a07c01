"""Metadata filters: validation and resolution by the inverted metadata index (pure Python)."""

from __future__ import annotations

import pytest

from funnelrank.filters import MetadataIndex, validate_filter, validate_metadata

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
