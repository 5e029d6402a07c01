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

What metadata may hold (:func:`validate_metadata`): a dict with non-empty string keys whose values are JSON
(str, int, float, bool, None, lists/tuples, dicts with string keys), nested at most :data:`MAX_DEPTH`
levels, with every string (keys too) valid Unicode (no lone surrogates) and every number finite and within
a double's range (an int beyond about 1.8e308, NaN or infinity is refused). Filter fields and operands follow
the same rules (:func:`validate_filter`), and :func:`parse_filter` reads a filter from JSON text. A filter holds
at most :data:`MAX_FILTER_TERMS` operands in all (an ``in``/``nin`` list at most that many items: Elasticsearch's
``terms`` cap); it nests at most 3 levels (field, operator, list of scalars) by construction. Every violation is a
ValueError saying where it is.

:class:`MetadataIndex` keeps ``field -> value -> ids``: equality and in-list are dictionary look-ups; range
operators scan the *distinct* values of one field (not the documents).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from funnelrank.checks import brief

__all__ = [
    "FILTER_OPERATORS",
    "MAX_DEPTH",
    "MAX_FILTER_TERMS",
    "MetadataIndex",
    "parse_filter",
    "validate_filter",
    "validate_metadata",
]

FILTER_OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists")
"""Operators allowed in a ``{"field": {op: value}}`` condition."""

MAX_FILTER_TERMS = 65_536
"""The most operands a filter may hold in all: each item of an ``in``/``nin`` list counts, and every other
condition one (Elasticsearch's default ``index.max_terms_count``). A larger filter is refused (ValueError)
instead of being resolved term by term."""

MAX_DEPTH = 32
"""Deepest nesting allowed in metadata (the metadata dict itself is level 1, ``{"a": {"b": 1}}`` is 2). Deeper
(or self-referencing) values are refused with a ValueError instead of failing later with a RecursionError."""

def _number_problem(value: int | float) -> str | None:
    """Why a JSON number (not a bool) cannot be stored or compared, or None when it is fine."""
    try:
        as_float = float(value)
    except OverflowError:
        return "an integer beyond the range of a double (about 1.8e308)"
    if not math.isfinite(as_float):
        return f"{value!r} (NaN and infinity are not JSON)"
    return None


def _string_problem(text: str) -> str | None:
    """Why a string cannot be saved as UTF-8 (a lone surrogate), or None when it is fine."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode ({exc.reason} at character {exc.start})"
    return None


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
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond a double: not filterable (validate_metadata refuses it)
            return None
        return ("num", as_float) if math.isfinite(as_float) else None
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


def _path(parts: tuple[Any, ...]) -> str:
    """`` at ['a'][0]`` for the place of a value inside metadata ('' for the top; a deep one is shortened)."""
    if not parts:
        return ""
    shown = [f"[{brief(p)}]" for p in (parts if len(parts) <= 8 else (*parts[:3], *parts[-3:]))]
    if len(parts) > 8:
        shown.insert(3, f"...({len(parts) - 6} more)...")
    return " at " + "".join(shown)


def _value_problem(value: Any) -> str | None:
    """Why a value inside metadata is not storable JSON, for anything but a dict, list or tuple (None: fine)."""
    kind = type(value)
    if kind is str:  # the common cases first, without a call each
        return None if value.isascii() else _string_problem(value)
    if kind is int:
        return None if value.bit_length() <= 1023 else _number_problem(value)
    if kind is float:
        return None if math.isfinite(value) else _number_problem(value)
    if value is None or kind is bool:
        return None
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_problem(value)
    return f"of type {kind.__name__} ({brief(value)})"


def _check_json(container: Any, where: str, parts: tuple[Any, ...] = (), depth: int = 1) -> None:
    """Raise ValueError when `container` (a dict, list or tuple reached by keys/indexes `parts` inside `where`,
    at nesting level `depth`) holds anything that is not storable JSON."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep{_path(parts)} (or refers to itself)")
    is_dict = isinstance(container, dict)
    for key, item in container.items() if is_dict else enumerate(container):
        if is_dict and (type(key) is not str or not key.isascii()):
            problem = "not a string" if not isinstance(key, str) else _string_problem(key)
            if problem is not None:
                raise ValueError(f"{where} is not JSON-serializable: key {brief(key)}{_path(parts)} is {problem}")
        if isinstance(item, (dict, list, tuple)):
            _check_json(item, where, (*parts, key), depth + 1)
            continue
        problem = _value_problem(item)
        if problem is not None:
            raise ValueError(f"{where} is not JSON-serializable: the value{_path((*parts, key))} is {problem}")


def validate_metadata(metadata: Any, *, where: str = "metadata") -> dict[str, Any]:
    """Check that `metadata` is storable: a dict with non-empty string keys holding JSON values (see the
    module docstring: valid Unicode, finite numbers within a double's range, at most :data:`MAX_DEPTH`
    levels deep); returns it.

    Raises ValueError saying what is wrong and where (e.g. ``the value at ['a'][0] is ...``).
    """
    if not isinstance(metadata, dict):
        raise ValueError(f"{where} must be a dict, got {type(metadata).__name__}")
    for field in metadata:
        if not isinstance(field, str) or not field:
            raise ValueError(f"{where} keys must be non-empty strings, got {brief(field)}")
    _check_json(metadata, where)  # accepts exactly what json.dumps(allow_nan=False) writes and reads back alike
    return metadata


def _scalar_problem(value: Any) -> str | None:
    """Why `value` is not a usable scalar operand (str, finite number, bool, null), or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, (int, float)):
        return _number_problem(value)
    return f"of type {type(value).__name__}: {brief(value)}"


def _check_operand(field: str, op: str, value: Any) -> None:
    where = f"filter on {brief(field)}"
    if op in ("in", "nin"):
        if not isinstance(value, list):
            raise ValueError(f"{where}: {op!r} takes a list of scalars (str, number, bool, null)")
        if len(value) > MAX_FILTER_TERMS:
            raise ValueError(f"{where}: {op!r} takes at most {MAX_FILTER_TERMS:,} values, got {len(value):,}")
        for i, item in enumerate(value):
            problem = _scalar_problem(item)
            if problem is not None:
                raise ValueError(
                    f"{where}: {op!r} takes a list of scalars (str, number, bool, null); item {i} is {problem}"
                )
    elif op == "exists":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: 'exists' takes true or false")
    elif op in _RANGE_OPS:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{where}: {op!r} takes a finite number or a string, got {brief(value)}")
        problem = _scalar_problem(value)
        if problem is not None:
            raise ValueError(f"{where}: {op!r} takes a finite number or a string; the operand is {problem}")
    else:
        problem = _scalar_problem(value)
        if problem is not None:
            raise ValueError(f"{where}: {op!r} takes a scalar (str, number, bool, null); the operand is {problem}")


def validate_filter(filter: Any) -> dict[str, dict[str, Any]]:
    """Check a filter and return it normalized to ``{field: {op: value, ...}}``.

    Raises ValueError for a filter that is not a dict, an unknown operator, or an operand of the wrong type
    (also: a string that is not valid Unicode, a number that is NaN, infinite or beyond a double's range), and
    for more than :data:`MAX_FILTER_TERMS` operands (in one ``in``/``nin`` list or in all).

        >>> validate_filter({"lang": ["en", "de"], "year": {"gte": 2020}})
        {'lang': {'in': ['en', 'de']}, 'year': {'gte': 2020}}
    """
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a JSON object (dict), got {type(filter).__name__}")
    out: dict[str, dict[str, Any]] = {}
    terms = 0
    for field, cond in filter.items():
        if not isinstance(field, str) or not field:
            raise ValueError(f"filter fields must be non-empty strings, got {brief(field)}")
        problem = _string_problem(field)
        if problem is not None:
            raise ValueError(f"filter field {brief(field)} is {problem}")
        if isinstance(cond, Mapping):
            if not cond:
                raise ValueError(f"filter on {brief(field)}: empty condition")
            ops = dict(cond)
            for op, value in ops.items():
                if op not in FILTER_OPERATORS:
                    raise ValueError(
                        f"filter on {brief(field)}: unknown operator {brief(op)} "
                        f"(use one of {', '.join(FILTER_OPERATORS)})"
                    )
                _check_operand(field, op, value)
        elif isinstance(cond, list):
            ops = {"in": cond}
            _check_operand(field, "in", cond)
        else:
            ops = {"eq": cond}
            _check_operand(field, "eq", cond)
        terms += sum(max(1, len(v)) if isinstance(v, list) else 1 for v in ops.values())
        if terms > MAX_FILTER_TERMS:
            raise ValueError(
                f"filter holds more than {MAX_FILTER_TERMS:,} operands in all (every in/nin item counts, every "
                "other condition one); split the query or filter on a coarser field"
            )
        out[field] = ops
    return out


def parse_filter(raw: str | bytes, *, what: str = "filter") -> dict[str, Any]:
    """Read a filter from JSON text and validate it (:func:`validate_filter`); returns the parsed dict.

    Raises ValueError naming `what` (e.g. ``"--filter"``) for text that is not JSON (no RecursionError
    however deeply it nests), not an object, or not a valid filter (a filter nests at most 3 levels: field,
    operator, list of operands; anything deeper is refused by :func:`validate_filter`).
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply (a filter is at most 3 levels: field, operator, list)") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    try:
        validate_filter(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


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
