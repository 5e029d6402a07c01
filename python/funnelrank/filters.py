"""Metadata filters for stage 1, and the inverted metadata index that resolves them to an allow-list.

A filter is a dict of ``field -> condition``; every condition must hold (AND):

* ``{"lang": "en"}`` -- equality. When the document's value is a list (e.g. tags), any element may match.
* ``{"lang": ["en", "de"]}`` -- in-list (same as ``{"lang": {"in": ["en", "de"]}}``).
* ``{"score": {"gte": 1, "lt": 5}}`` -- operators: ``eq``, ``ne``, ``in``, ``nin``, ``gt``, ``gte``, ``lt``,
  ``lte``, ``exists`` (bool). Range operators compare numbers with numbers and strings with strings
  (ISO dates compare correctly as strings); a value of another type never matches.

Types are JSON's: ``true`` is not ``1``, ``1`` equals ``1.0``. A document without the field matches
nothing but ``ne``/``nin``/``exists: false``. Only scalar values (str, number, bool, null) and lists of
scalars are indexed; nested objects are stored with the document but cannot be filtered on.

:class:`MetadataIndex` keeps ``field -> value -> ids``: equality and in-list are dictionary look-ups; range
operators scan the *distinct* values of one field (not the documents).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FILTER_OPERATORS", "MetadataIndex", "validate_filter", "validate_metadata"]

FILTER_OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
"""Operators allowed in a ``{"field": {op: value}}`` condition."""

_RANGE_OPS = ("gt", "gte", "lt", "lte")

# A metadata value as an index key: JSON type tag + value, so that True != 1 and 1 == 1.0.
_Key = tuple[str, Any]


def _key(value: Any) -> _Key | None:
    """Index key of a scalar JSON value, or None when the value is not a filterable scalar."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        return ("str", value)
    return None


def _keys_of(value: Any) -> list[_Key]:
    """Index keys of a document's metadata value (a scalar, or each scalar of a list)."""
    if isinstance(value, list):
        keys = (_key(v) for v in value)
        return list(dict.fromkeys(k for k in keys if k is not None))
    k = _key(value)
    return [k] if k is not None else []


def validate_metadata(metadata: Any, *, where: str = "metadata") -> dict[str, Any]:
    """Check that `metadata` is a JSON-serializable dict with string keys (no NaN/inf); returns it.

    Raises ValueError saying what is wrong.
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"{where} must be a dict, got {type(metadata).__name__}")
    for field in metadata:
        if not isinstance(field, str) or not field:
            raise ValueError(f"{where} keys must be non-empty strings, got {field!r}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} is not JSON-serializable: {exc}") from None
    return metadata


def _check_operand(field: str, op: str, value: Any) -> None:
    if op in ("in", "nin"):
        if not isinstance(value, list) or any(_key(v) is None for v in value):
            raise ValueError(f"filter on {field!r}: {op!r} takes a list of scalars (str, number, bool, null)")
    elif op == "exists":
        if not isinstance(value, bool):
            raise ValueError(f"filter on {field!r}: 'exists' takes true or false")
    elif op in _RANGE_OPS:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or _key(value) is None:
            raise ValueError(f"filter on {field!r}: {op!r} takes a finite number or a string, got {value!r}")
    elif _key(value) is None:
        raise ValueError(f"filter on {field!r}: {op!r} takes a scalar (str, number, bool, null), got {value!r}")


def validate_filter(filter: Any) -> dict[str, dict[str, Any]]:
    """Check a filter and return it normalized to ``{field: {op: value, ...}}``.

    Raises ValueError for a filter that is not a dict, an unknown operator, or an operand of the wrong type.
    """
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a JSON object (dict), got {type(filter).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for field, cond in filter.items():
        if not isinstance(field, str) or not field:
            raise ValueError(f"filter fields must be non-empty strings, got {field!r}")
        if isinstance(cond, Mapping):
            if not cond:
                raise ValueError(f"filter on {field!r}: empty condition")
            ops = dict(cond)
            for op, value in ops.items():
                if op not in FILTER_OPERATORS:
                    raise ValueError(
                        f"filter on {field!r}: unknown operator {op!r} (use one of {', '.join(FILTER_OPERATORS)})"
                    )
                _check_operand(field, op, value)
        elif isinstance(cond, list):
            ops = {"in": cond}
            _check_operand(field, "in", cond)
        else:
            ops = {"eq": cond}
            _check_operand(field, "eq", cond)
        out[field] = ops
    return out


def _in_range(key: _Key, ops: Mapping[str, Any]) -> bool:
    """Whether an index key satisfies every range operator in `ops` (types must agree)."""
    kind, value = key
    for op in _RANGE_OPS:
        if op not in ops:
            continue
        bound = _key(ops[op])
        assert bound is not None
        if bound[0] != kind:
            return False
        b = bound[1]
        if (
            (op == "gt" and not value > b)
            or (op == "gte" and not value >= b)
            or (op == "lt" and not value < b)
            or (op == "lte" and not value <= b)
        ):
            return False
    return True


class MetadataIndex:
    """Inverted index ``field -> value -> ids`` over documents' metadata, resolving filters to id sets."""

    def __init__(self) -> None:
        self._fields: dict[str, dict[_Key, set[str]]] = {}
        self._has_field: dict[str, set[str]] = {}

    def add(self, doc_id: str, metadata: Mapping[str, Any] | None) -> None:
        """Index one document's metadata (call once per document id)."""
        for field, value in (metadata or {}).items():
            self._has_field.setdefault(field, set()).add(doc_id)
            values = self._fields.setdefault(field, {})
            for k in _keys_of(value):
                values.setdefault(k, set()).add(doc_id)

    def remove(self, doc_id: str, metadata: Mapping[str, Any] | None) -> None:
        """Forget one document (pass the metadata it was added with)."""
        for field, value in (metadata or {}).items():
            ids = self._has_field.get(field)
            if ids is not None:
                ids.discard(doc_id)
                if not ids:
                    del self._has_field[field]
            values = self._fields.get(field)
            if values is None:
                continue
            for k in _keys_of(value):
                bucket = values.get(k)
                if bucket is not None:
                    bucket.discard(doc_id)
                    if not bucket:
                        del values[k]
            if not values:
                del self._fields[field]

    def _match_field(self, field: str, ops: Mapping[str, Any], all_ids: Iterable[str]) -> set[str]:
        values = self._fields.get(field, {})
        with_field = self._has_field.get(field, set())
        result: set[str] | None = None

        def narrow(ids: set[str]) -> None:
            nonlocal result
            result = set(ids) if result is None else result & ids

        if "eq" in ops:
            k = _key(ops["eq"])
            narrow(values.get(k, set()) if k is not None else set())
        if "in" in ops:
            hit: set[str] = set()
            for v in ops["in"]:
                k = _key(v)
                if k is not None:
                    hit |= values.get(k, set())
            narrow(hit)
        if any(op in ops for op in _RANGE_OPS):
            hit = set()
            for k, ids in values.items():
                if _in_range(k, ops):
                    hit |= ids
            narrow(hit)
        if "exists" in ops:
            narrow(with_field if ops["exists"] else set(all_ids) - with_field)
        if "ne" in ops or "nin" in ops:
            excluded: set[str] = set()
            for v in ([ops["ne"]] if "ne" in ops else []) + list(ops.get("nin", [])):
                k = _key(v)
                if k is not None:
                    excluded |= values.get(k, set())
            narrow(set(all_ids) - excluded)
        return result if result is not None else set(all_ids)

    def resolve(self, filter: Mapping[str, Any], all_ids: Iterable[str]) -> set[str]:
        """Ids (among `all_ids`) of documents matching every condition of `filter` (validated here)."""
        conditions = validate_filter(filter)
        universe = all_ids if isinstance(all_ids, (set, frozenset, dict)) else set(all_ids)
        result: set[str] | None = None
        for field, ops in conditions.items():
            ids = self._match_field(field, ops, universe)
            result = ids if result is None else result & ids
            if not result:
                return set()
        return result if result is not None else set(universe)
