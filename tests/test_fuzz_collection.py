"""Seeded fuzzing of the collection-directory loader, Collection.load (funnelrank.store.load).

A small valid collection is built once (BM25 only, 20 documents with unicode text and nested metadata) and
saved; each case copies that directory and applies one seeded mutation from one of four families:

  manifest-raw     manifest.json's bytes: truncation, bit flips, byte overwrites and insertions, random
                   bytes, BOM / UTF-16, oversize, the file deleted or replaced by a directory, a FIFO or a
                   bad symlink (the checksum left as it was)
  manifest-forged  a changed manifest with its ``checksum`` recomputed, so the schema checks must catch it:
                   a value's type, a key dropped / renamed / added / repeated, absurd numbers (1e999, -1,
                   2**70, NaN, 'NaN', ...), deep nesting, the data directory or a file name pointing at '..',
                   a missing or wrong entry, a wrong docs sha256, a dense section no embedder matches, ...
  docs             docs.jsonl changed with its sha256 in the manifest (and the document count, mostly)
                   recomputed, and the manifest checksum too, so the documents file's own checks must
                   catch it: truncated lines, invalid JSON or UTF-8, repeated ids, wrong key sets or types,
                   unstorable metadata (too deep, lone surrogates, NaN / huge numbers, empty keys), ids that
                   do not match the BM25 index (renamed, swapped, reordered); or replaced by a FIFO, a
                   directory or a symlink
  bm25             bm25.idx deleted, truncated, bit-flipped, overwritten, extended, replaced by a directory,
                   a FIFO or a symlink, or by a valid index over other ids / the same ids in another order /
                   one document fewer

A few mutators in each family are *controls* that leave a consistent collection with the same data
(whitespace, key order, a symlinked data directory, re-encoded JSON lines, an extra file): they must load.

A case ends as one of:
  clean     Collection.load raised IndexFileError or ValueError
  accepted  it loaded, and the collection equals the original: same ids in the same order, same texts and
            metadata, and the same BM25 results and filter results for a few queries
  wrong     it loaded, but something differs, or using it raised (a changed or broken collection
            accepted: a loader bug)
  error     it raised anything else
  hang      it took more than CASE_SECONDS (a SIGALRM interrupts a load blocked in a system call)
The test asserts no wrong, error or hang case, and that every control case was accepted; it prints the
table (pytest -s, or the assertion message).

What no loader can catch is left out on purpose: with docs.jsonl's sha256 recomputed, a text or a metadata
value edited into another valid one is data the manifest vouches for (the BM25 index keeps no texts), so
the docs mutators edit outside JSON strings, or put in values that are never storable.

Cases run in-process (the loader is Python around the C++ BM25 loader, which has its own fuzz test in
test_fuzz_loaders.py). Case i's mutation is drawn from random.Random(f"{SEED}:{i}"), so any case can be
replayed alone. FUNNELRANK_FUZZ_CASES=N sets the number of cases (default 1200, about 24 per mutator; 20 s on
the 2-core dev VM while it is busy), FUNNELRANK_FUZZ_SEED the seed. Standalone:
``python tests/test_fuzz_collection.py`` prints the table (exit status 1 on any bad case).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from funnelrank import IndexFileError
from funnelrank._core import BM25Index
from funnelrank.store.collection import Collection

CASES = int(os.environ.get("FUNNELRANK_FUZZ_CASES", "1200"))
SEED = int(os.environ.get("FUNNELRANK_FUZZ_SEED", "20240607"))
CASE_SECONDS = 5.0
QUERIES = ["café paris", "rocket launch", "北京", "straße", "ελληνικά", "document number", "zzz-no-match"]
FILTERS: list[dict[str, Any]] = [{"lang": {"eq": "fr"}}, {"n": {"gte": 10}}, {"tags": {"in": ["b"]}}]

# ------------------------------------------------------------------------------------------- the collection

_TEXTS = [
    "Le café crème à Paris — naïve façade, déjà vu",
    "北京的天气很好，我们去公园散步",
    "Emoji 🚀 rocket launch 🎉 with a ZWJ family 👨‍👩‍👧",
    "Die Straße ist groß und weiß",
    "Ελληνικά κείμενα για αναζήτηση",
    "עברית וערבית: مرحبا بالعالم",
    "combining e\u0301 and precomposed é, NFC vs NFD",
    "line\u2028separator and paragraph\u2029separator inside",
    "tab\tand\nnewline and \r carriage return",
    "",
    "quotes \" and backslashes \\ and braces {} []",
    "日本語のテキストとカタカナ",
    "Русский текст про ракеты",
    "document number thirteen with plain ascii",
    "mixed 123 numbers 4.5e6 and symbols @#$%",
    "a very long document " + "word " * 200,
    "한국어 문장입니다",
    "हिन्दी पाठ",
    "nul-free but control \x01\x1f characters",
    "the last document, number twenty",
]
_IDS = [f"doc-{i:02d}" for i in range(16)] + ["док-16", "id with space", "é", "🚀"]


def _metadata(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "n": i,
        "lang": ["fr", "zh", "en", "de"][i % 4],
        "tags": [["a", "b"], ["b"], [], ["c", "é", "日本"]][i % 4],
        "info": {"score": i / 7, "flag": i % 2 == 0, "none": None, "nested": {"deep": [1, {"x": [i, "y"]}]}},
    }
    if i % 3 == 0:
        meta["ключ"] = "значение 🚀"
        meta["big"] = 2**60 + i
    if i % 5 == 0:
        meta["empty"] = {}
    return meta


@dataclasses.dataclass
class Base:
    root: Path  # the pristine saved collection
    manifest: dict[str, Any]
    manifest_raw: bytes
    data: str  # the data directory's name
    docs_raw: bytes
    lines: list[bytes]  # docs.jsonl's lines, without the newline
    bm25_raw: bytes
    foreign: dict[str, bytes]  # valid bm25.idx files over other ids / another order / one document fewer
    ids: list[str]
    texts: dict[str, str]
    metas: dict[str, dict[str, Any]]
    searches: list[tuple[list[str], np.ndarray]]
    filtered: list[list[str] | None]


def build_base(work: Path) -> Base:
    col = Collection(dense=False)
    col.add(_IDS + ["gone-1", "gone-2"], _TEXTS + ["to be deleted", "also deleted"],
            [_metadata(i) for i in range(len(_IDS))] + [None, {"x": 1}])
    col.delete(["gone-1", "gone-2"])  # the saved BM25 index drops them
    root = work / "base"
    col.save(root)
    manifest_raw = (root / "manifest.json").read_bytes()
    manifest = json.loads(manifest_raw)
    data = manifest["data"]
    docs_raw = (root / data / "docs.jsonl").read_bytes()
    foreign = {}
    for name, ids, texts in [
        ("other-ids", [i + "-x" for i in _IDS], _TEXTS),
        ("reordered", _IDS[::-1], _TEXTS[::-1]),
        ("rotated", _IDS[1:] + _IDS[:1], _TEXTS[1:] + _TEXTS[:1]),
        ("one-fewer", _IDS[:-1], _TEXTS[:-1]),
        ("one-renamed", _IDS[:-1] + ["🚀🚀"], _TEXTS),
        ("nfd-id", _IDS[:18] + [unicodedata.normalize("NFD", "é"), "🚀"], _TEXTS),
    ]:
        index = BM25Index()
        index.add(ids, texts)
        index.save(str(work / f"{name}.idx"))
        foreign[name] = (work / f"{name}.idx").read_bytes()
    loaded = Collection.load(root)  # the reference: what a clean load gives
    assert loaded.ids() == _IDS
    return Base(
        root=root, manifest=manifest, manifest_raw=manifest_raw, data=data, docs_raw=docs_raw,
        lines=docs_raw.split(b"\n")[:-1], bm25_raw=(root / data / "bm25.idx").read_bytes(), foreign=foreign,
        ids=col.ids(), texts={i: col.text(i) for i in col.ids()}, metas={d.id: d.metadata for d in col},
        searches=[col.search_bm25(q, 5) for q in QUERIES], filtered=[col.allowed_ids(f) for f in FILTERS],
    )


def check_loaded(col: Collection, base: Base) -> str | None:
    """None when `col` is the original collection, else what differs."""
    if col.ids() != base.ids:
        return f"ids differ: {col.ids()[:4]}..."
    for doc_id in base.ids:
        doc = col.get(doc_id)
        if doc.text != base.texts[doc_id]:
            return f"text of {doc_id!r} differs: {doc.text[:40]!r}"
        if doc.metadata != base.metas[doc_id] or json.dumps(doc.metadata) != json.dumps(base.metas[doc_id]):
            return f"metadata of {doc_id!r} differs"
    for q, (ids, scores) in zip(QUERIES, base.searches):
        got_ids, got_scores = col.search_bm25(q, 5)
        if got_ids != ids or not np.allclose(got_scores, scores):
            return f"search {q!r} differs: {got_ids} vs {ids}"
        if any(i not in col for i in got_ids):
            return f"search {q!r} returned ids not in the collection"
    for flt, want in zip(FILTERS, base.filtered):
        if col.allowed_ids(flt) != want:
            return f"filter {flt} differs"
    return None


# ------------------------------------------------------------------------------------------- helpers


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def forge(manifest: dict[str, Any], subs: dict[str, str] | None = None, *, checksum: bool = True,
          indent: int | None = 2) -> bytes:
    """The manifest's JSON text, with placeholders (string values equal to a key of `subs`) replaced by raw
    JSON text (``1e999``, ``NaN``, deeply nested arrays, ...) and, when `checksum` and the manifest has one,
    its ``checksum`` recomputed the way the format defines it: sha256 of the canonical JSON (sorted keys,
    no whitespace, ASCII) of everything but the checksum, with the raw text in place."""
    subs = subs or {}
    m = dict(manifest)

    def render(obj: Any, **kw: Any) -> str:
        text = json.dumps(obj, **kw)
        for placeholder, raw in subs.items():
            text = text.replace(json.dumps(placeholder), raw)
        return text

    if checksum and "checksum" in m:
        body = {k: v for k, v in m.items() if k != "checksum"}
        m["checksum"] = _sha(render(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())
    return render(m, indent=indent).encode()


def _paths(m: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(m, dict):
        for k, v in m.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    return out


def _parent(m: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for k in path[:-1]:
        m = m[k]
    return m


def _deep(rng: random.Random, depth: int) -> str:
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _write_manifest(case: Path, m: dict[str, Any], subs: dict[str, str] | None = None, **kw: Any) -> None:
    (case / "manifest.json").write_bytes(forge(m, subs, **kw))


ODD_VALUES: list[Any] = [None, True, False, 0, 1, -1, 1.5, 20.0, "", "x", "20", "2", [], [1, 2], {}, {"a": 1},
                         ["docs.jsonl"], {"file": "docs.jsonl"}, "data-", "\u0000", "é" * 300]
ABSURD: list[str] = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "-1", str(2**70), str(2**63),
                     str(2**63 - 1), str(-(2**63)), '"NaN"', '"20"', "20.0", "2e1", "1E1", "-0", "0", "21", "19",
                     "1" + "0" * 5000, "0x14", "020", "1_0", "true", "null", "+20", ".5", "20 20"]
BAD_NAMES: list[Any] = ["..", ".", "", "a/b", "../manifest.json", "/etc/passwd", "x\\y", "docs.jsonl\u0000",
                        "x" * 256, "missing.file", "DOCS.JSONL", " docs.jsonl", "sub", 7, None, ["docs.jsonl"]]
BAD_DATA: list[Any] = ["..", ".", "", "data-", "data-../../x", "/tmp", "data-000000000000", "DATA-0123456789ab",
                       "data-0123456789AB", "data-xyz", "data-0123456789abc", "data-0123456789a", "empty-dir",
                       "a-file", "data-\u0000", 12, None, ["data-0123456789ab"], "data-0123456789ab/"]

Mutator = Callable[[random.Random, Path, Base], str]
MUTATORS: list[tuple[str, str, bool, Mutator]] = []  # (family, name, control, mutate)


def mutator(family: str, name: str, *, control: bool = False) -> Callable[[Mutator], Mutator]:
    def register(fn: Mutator) -> Mutator:
        MUTATORS.append((family, name, control, fn))
        return fn
    return register


# ------------------------------------------------------------------------------------------- (a) manifest bytes

RAW = "manifest-raw"


def _raw(case: Path, data: bytes) -> None:
    (case / "manifest.json").write_bytes(data)


@mutator(RAW, "truncate")
def _(rng: random.Random, case: Path, base: Base) -> str:
    n = rng.choice([0, 1, len(base.manifest_raw) - 1, rng.randrange(len(base.manifest_raw))])
    _raw(case, base.manifest_raw[:n])
    return f"truncated to {n}"


@mutator(RAW, "bit-flip")
def _(rng: random.Random, case: Path, base: Base) -> str:
    raw = bytearray(base.manifest_raw)
    spots = [(rng.randrange(len(raw)), rng.randrange(8)) for _ in range(rng.randint(1, 3))]
    for pos, bit in spots:
        raw[pos] ^= 1 << bit
    _raw(case, bytes(raw))
    return f"bits {spots}"


@mutator(RAW, "overwrite")
def _(rng: random.Random, case: Path, base: Base) -> str:
    raw = bytearray(base.manifest_raw)
    pos, n = rng.randrange(len(raw)), rng.randint(1, 8)
    raw[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))
    _raw(case, bytes(raw[:len(base.manifest_raw)]))
    return f"{n} bytes at {pos}"


@mutator(RAW, "insert")
def _(rng: random.Random, case: Path, base: Base) -> str:
    raw = base.manifest_raw
    pos = rng.randrange(len(raw) + 1)
    junk = rng.choice([bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))), b",", b"{", b"}", b'"', b"\x00"])
    _raw(case, raw[:pos] + junk + raw[pos:])
    return f"{junk!r} at {pos}"


@mutator(RAW, "random-bytes")
def _(rng: random.Random, case: Path, base: Base) -> str:
    kind = rng.choice(["binary", "json-ish", "json-value"])
    if kind == "binary":
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(4096)))
    elif kind == "json-ish":
        data = bytes(rng.choice(b'{}[]":,0123456789.eE-+ \n\tabcfnrtu\\') for _ in range(rng.randrange(512)))
    else:
        data = rng.choice([b"null", b"[]", b"{}", b"1", b'"funnelrank-collection"', b"[" * 100000,
                           b'{"format": "funnelrank-collection"}',
                           b'{"format": "funnelrank-collection", "version": 2}'])
    _raw(case, data)
    return f"{kind} ({len(data)} bytes)"


@mutator(RAW, "encoding")
def _(rng: random.Random, case: Path, base: Base) -> str:
    text = base.manifest_raw.decode()
    kind = rng.choice(["utf-8-bom", "utf-16", "utf-16-le", "utf-32", "latin-1-junk"])
    if kind == "utf-8-bom":
        data = b"\xef\xbb\xbf" + base.manifest_raw
    elif kind == "latin-1-junk":
        data = base.manifest_raw.replace(b'"data"', b'"d\xe9ta"')
    else:
        data = text.encode(kind)
    _raw(case, data)
    return kind


@mutator(RAW, "oversize")
def _(rng: random.Random, case: Path, base: Base) -> str:
    _raw(case, base.manifest_raw + b" " * ((1 << 20) + rng.randrange(1000)))  # valid JSON, but over the limit
    return "trailing whitespace past 1 MiB"


@mutator(RAW, "delete")
def _(rng: random.Random, case: Path, base: Base) -> str:
    (case / "manifest.json").unlink()
    return "deleted"


@mutator(RAW, "not-a-file")
def _(rng: random.Random, case: Path, base: Base) -> str:
    path = case / "manifest.json"
    kind = rng.choice(["empty-dir", "dir-with-manifest", "fifo", "dangling-symlink", "symlink-loop", "symlink-dir",
                       "empty-file"])
    path.unlink()
    if kind == "empty-dir":
        path.mkdir()
    elif kind == "dir-with-manifest":
        path.mkdir()
        (path / "manifest.json").write_bytes(base.manifest_raw)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-symlink":
        path.symlink_to(case / "nowhere.json")
    elif kind == "symlink-loop":
        path.symlink_to(path)
    elif kind == "symlink-dir":
        path.symlink_to(case / base.data, target_is_directory=True)
    else:
        path.write_bytes(b"")
    return kind


@mutator(RAW, "whitespace", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: the manifest's strings hold no whitespace, so every whitespace byte is between tokens."""
    raw = bytearray(base.manifest_raw)
    spots = [i for i, c in enumerate(raw) if c in b" \n"]
    for pos in rng.sample(spots, rng.randint(1, 5)):
        raw[pos] = rng.choice(b" \t\r\n")
    data = bytes(raw)
    if rng.random() < 0.5:
        data = rng.choice([b"\n", b" ", b"\t"]) * rng.randint(1, 50) + data + b"\r\n" * rng.randint(0, 50)
    _raw(case, data)
    return "whitespace changed"


# ------------------------------------------------------------------------------------------- (b) forged manifests

FORGED = "manifest-forged"


def _m(base: Base) -> dict[str, Any]:
    return json.loads(base.manifest_raw)


@mutator(FORGED, "value-type")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    path = rng.choice(_paths(m))
    current = _parent(m, path)[path[-1]]
    value = rng.choice([v for v in ODD_VALUES if type(v) is not type(current)])
    _parent(m, path)[path[-1]] = value
    _write_manifest(case, m, checksum=path != ("checksum",))
    return f"{'.'.join(path)} = {value!r:.40}"


@mutator(FORGED, "drop-key")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    path = rng.choice(_paths(m))
    del _parent(m, path)[path[-1]]
    _write_manifest(case, m)
    return f"dropped {'.'.join(path)}"


@mutator(FORGED, "rename-key")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    path = rng.choice(_paths(m))
    parent = _parent(m, path)
    old = path[-1]
    new = rng.choice([old.upper(), old + " ", " " + old, "_" + old, old.replace("o", "\u043e"), old[:-1],
                      old + "s", unicodedata.normalize("NFKD", old) + "\u0301"])
    if new == old:
        new = old + "_"
    parent[new] = parent.pop(old)
    _write_manifest(case, m, checksum=old != "checksum")
    return f"{'.'.join(path)} -> {new!r}"


@mutator(FORGED, "add-key")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    where = rng.choice([(), ("docs",), ("bm25",)])
    target = _parent(m, (*where, "x"))
    key = rng.choice(["extra", "hnsw", "embedder", "", "checksum2", "Docs", "format ", "\u00e9", "__proto__"])
    target[key] = rng.choice(ODD_VALUES)
    _write_manifest(case, m)
    return f"added {'.'.join((*where, key))!r}"


@mutator(FORGED, "absurd-number")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    field = rng.choice(["documents", "documents", "version"])
    raw = rng.choice(ABSURD)
    m[field] = "@@RAW@@"
    _write_manifest(case, m, {"@@RAW@@": raw})
    return f"{field} = {raw[:30]}"


@mutator(FORGED, "deep-nesting")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    depth = rng.choice([2, 33, 500, 1500, 20000, 100000])
    path = rng.choice(_paths(m) + [("extra",), ("docs", "extra")])
    _parent(m, path)[path[-1]] = "@@DEEP@@"
    _write_manifest(case, m, {"@@DEEP@@": _deep(rng, depth)}, checksum=path != ("checksum",))
    return f"{'.'.join(path)} nested {depth} deep"


@mutator(FORGED, "data-dir")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    value = rng.choice(BAD_DATA)
    if value == "empty-dir":
        value = "data-" + "0123456789ab"
        (case / value).mkdir()
    elif value == "a-file":
        value = "data-" + "ba9876543210"
        (case / value).write_bytes(base.docs_raw)
    elif value == "data-000000000000" and rng.random() < 0.5:  # a valid name with only the docs file in it
        (case / value).mkdir()
        shutil.copy(case / base.data / "docs.jsonl", case / value / "docs.jsonl")
    m["data"] = value
    _write_manifest(case, m)
    return f"data = {value!r:.40}"


@mutator(FORGED, "data-dir-symlink", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: a data directory that is a symlink to the real one holds the same collection."""
    m = _m(base)
    m["data"] = "data-fedcba987654"
    (case / m["data"]).symlink_to(case / base.data, target_is_directory=True)
    _write_manifest(case, m)
    return "data dir symlinked"


@mutator(FORGED, "file-name")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    section = rng.choice(["docs", "bm25"])
    choice = rng.choice(BAD_NAMES + ["other", "other"])
    data = case / base.data
    if choice == "sub":
        (data / "sub").mkdir()
    if choice == "other":  # the other part's file, with a consistent sha256 where there is one
        choice = "bm25.idx" if section == "docs" else "docs.jsonl"
        if section == "docs":
            m["docs"]["sha256"] = _sha(base.bm25_raw)
    m[section]["file"] = choice
    _write_manifest(case, m)
    return f"{section}.file = {choice!r:.40}"


@mutator(FORGED, "file-copy", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: the parts under other names (the manifest names the files) are the same collection."""
    m = _m(base)
    data = case / base.data
    section = rng.choice(["docs", "bm25"])
    name = rng.choice(["renamed.bin", "é.jsonl", "x" * 255, "-", "..."])
    (data / m[section]["file"]).rename(data / name)
    m[section]["file"] = name
    _write_manifest(case, m)
    return f"{section} file renamed {name[:20]!r}"


@mutator(FORGED, "docs-sha")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    real = m["docs"]["sha256"]
    flipped = real[:-1] + ("0" if real[-1] != "0" else "1")
    value = rng.choice([real.upper(), flipped, _sha(b""), _sha(base.bm25_raw), real[:-1], real + "0", "0" * 64,
                        " " + real[1:], "g" * 64, hashlib.sha512(base.docs_raw).hexdigest(),
                        hashlib.md5(base.docs_raw).hexdigest()])
    m["docs"]["sha256"] = value
    _write_manifest(case, m)
    return f"docs.sha256 = {value[:16]}..."


@mutator(FORGED, "format-version")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    field, value = rng.choice([("format", "funnelrank-collection2"), ("format", ""),
                               ("format", "Funnelrank-Collection"),
                               ("format", None), ("version", 0), ("version", 1), ("version", 3), ("version", "2"),
                               ("version", 2.0), ("version", True), ("version", None), ("version", -2),
                               ("version", 2**64)])
    m[field] = value
    _write_manifest(case, m)
    return f"{field} = {value!r}"


@mutator(FORGED, "repeated-key")
def _(rng: random.Random, case: Path, base: Base) -> str:
    """A key twice (JSON keeps the last); the checksum is recomputed over what a parser would keep."""
    m = _m(base)
    key = rng.choice([k for k in m if k != "checksum"])
    dup = rng.choice([m[key], ODD_VALUES[rng.randrange(len(ODD_VALUES))]])
    raw = forge(m).decode()
    kept = json.loads(raw)
    first = f'"{key}": {json.dumps(dup)},\n  '
    raw = raw.replace(f'"{key}":', first + f'"{key}":', 1)
    assert json.loads(raw) == kept
    _raw(case, raw.encode())
    return f"{key!r} twice"


@mutator(FORGED, "dense")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    identity: dict[str, Any] = {"name": "fuzz-embedder", "fingerprint": "f" * 16, "dim": 8,
                                "model_dir": str(case / "no-model"), "onnx_path": None}
    dense: Any = {"file": "hnsw.idx", "embedder": identity}
    kind = rng.choice(["not-found", "no-model-dir", "bad-dim", "missing-key", "extra-key", "bad-file",
                       "falsy", "not-object", "name-type"])
    if kind == "no-model-dir":
        identity["model_dir"] = None
    elif kind == "bad-dim":
        identity["dim"] = "@@RAW@@"
    elif kind == "missing-key":
        del identity[rng.choice(list(identity))]
    elif kind == "extra-key":
        identity["device"] = "cpu"
    elif kind == "bad-file":
        dense["file"] = rng.choice(BAD_NAMES)
    elif kind == "falsy":
        dense = rng.choice([False, 0, "", [], {}])
    elif kind == "not-object":
        dense = rng.choice([["hnsw.idx"], "hnsw.idx", 1])
    elif kind == "name-type":
        identity[rng.choice(["name", "fingerprint", "model_dir", "onnx_path"])] = rng.choice([1, [], {}, "a\u0000b"])
    m["dense"] = dense
    dim = rng.choice(["0", "-1", "1e999", "NaN", str(2**21), str(2**70), "8.0", "true"])
    _write_manifest(case, m, {"@@RAW@@": dim})
    return f"dense {kind}"


@mutator(FORGED, "oversize")
def _(rng: random.Random, case: Path, base: Base) -> str:
    m = _m(base)
    m["extra"] = "x" * rng.choice([(1 << 20) + 10, 900_000])
    _write_manifest(case, m)
    return f"{len(m['extra'])}-char extra value"


@mutator(FORGED, "version-1")
def _(rng: random.Random, case: Path, base: Base) -> str:
    """A version-1 manifest (no checksum) of the same collection: refused, as nothing can vouch for it (a
    pre-release format; the error names the command that rebuilds the collection from its documents)."""
    m = _m(base)
    del m["checksum"]
    m["version"] = 1
    _write_manifest(case, m)
    return "version 1"


@mutator(FORGED, "version-1-changed")
def _(rng: random.Random, case: Path, base: Base) -> str:
    """A version-1 manifest (no checksum to catch anything) with one change the schema or the files catch."""
    m = _m(base)
    del m["checksum"]
    m["version"] = 1
    change = rng.choice(["documents+1", "documents-1", "data", "sha", "extra", "docs-file", "dense"])
    if change == "documents+1":
        m["documents"] += 1
    elif change == "documents-1":
        m["documents"] -= 1
    elif change == "data":
        m["data"] = "data-000000000000"
    elif change == "sha":
        m["docs"]["sha256"] = _sha(b"x")
    elif change == "extra":
        m["extra"] = 1
    elif change == "docs-file":
        m["docs"]["file"] = ".."
    else:
        m["dense"] = {"file": "hnsw.idx"}
    _write_manifest(case, m)
    return f"version 1, {change}"


@mutator(FORGED, "key-order", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: the checksum is over sorted keys, so key order and layout do not matter."""
    m = _m(base)
    items = list(m.items())
    rng.shuffle(items)
    _write_manifest(case, dict(items), checksum=False, indent=rng.choice([None, 0, 1, 4, "\t"]))
    return "keys reordered"


# ------------------------------------------------------------------------------------------- (c) docs.jsonl

DOCS = "docs"


def _write_docs(rng: random.Random, case: Path, base: Base, raw: bytes, *, count: int | None = None) -> None:
    """Write docs.jsonl and a manifest that vouches for it: its sha256, a document count matching its lines
    (unless `count`; 1 case in 8 keeps the original count), the manifest checksum."""
    (case / base.data / "docs.jsonl").write_bytes(raw)
    m = _m(base)
    m["docs"]["sha256"] = _sha(raw)
    if count is None:
        count = len(raw.splitlines()) if rng.random() < 7 / 8 else m["documents"]
    m["documents"] = count
    _write_manifest(case, m)


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _doc(base: Base, i: int) -> dict[str, Any]:
    return json.loads(base.lines[i])


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def _outside_strings(line: bytes, *, insert: bool = False) -> list[int]:
    """Offsets in a JSON line of the bytes outside strings (structural characters, the spaces between
    them) and of the quotes themselves, or with `insert`, the offsets where a byte inserted lands outside
    every string: an edit there breaks the syntax, where one inside a string would only change a text or a
    metadata value (data that a recomputed sha256 vouches for and nothing else can check)."""
    out, inside, escaped = [], False, False
    for pos, c in enumerate(line):
        if inside:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                inside = False
                out.append(pos + 1 if insert else pos)
        elif c == 0x22:
            inside = True
            out.append(pos)
        elif c in b"{}[]:, ":
            out.append(pos)
    return out


def _replace_line(rng: random.Random, case: Path, base: Base, line: bytes | str, i: int | None = None) -> int:
    lines = list(base.lines)
    i = rng.randrange(len(lines)) if i is None else i
    lines[i] = line.encode() if isinstance(line, str) else line
    _write_docs(rng, case, base, _join(lines))
    return i


@mutator(DOCS, "truncate")
def _(rng: random.Random, case: Path, base: Base) -> str:
    n = rng.randrange(len(base.docs_raw))
    raw = base.docs_raw[:n]
    if raw.endswith(b"\n"):  # a clean cut after a whole line: the file is one document short
        raw = raw[:-1]
    _write_docs(rng, case, base, raw + (b"\n" if rng.random() < 0.5 else b""))
    return f"cut at byte {n}"


@mutator(DOCS, "drop-line")
def _(rng: random.Random, case: Path, base: Base) -> str:
    lines = list(base.lines)
    i = rng.randrange(len(lines))
    del lines[i]
    _write_docs(rng, case, base, _join(lines))
    return f"line {i} dropped"


@mutator(DOCS, "invalid-json")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    line = base.lines[i]
    kind = rng.choice(["cut", "junk", "bit-flip", "garbage", "token"])
    if kind == "cut":
        new = line[:rng.randrange(len(line))]
    elif kind == "junk":  # a byte inserted between tokens
        pos = rng.choice(_outside_strings(line, insert=True))
        new = line[:pos] + bytes([rng.choice(b'{}[],:"\\\x00\x01xz')]) + line[pos:]
    elif kind == "bit-flip":  # a structural byte's bit flipped (stays ASCII: reaches the parser)
        raw = bytearray(line)
        raw[rng.choice([p for p in _outside_strings(line) if raw[p] != 0x20])] ^= 1 << rng.randrange(7)
        new = bytes(raw)
    elif kind == "garbage":
        new = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 80)))
    else:
        new = rng.choice([b"{", b"}", b"null", b"[]", b"1", b'"str"', b"true", b"{}", b"[{}]", b"NaN", b" "])
    _replace_line(rng, case, base, new, i)
    return f"line {i}: {kind}"


@mutator(DOCS, "repeated-id")
def _(rng: random.Random, case: Path, base: Base) -> str:
    lines = list(base.lines)
    i, j = rng.sample(range(len(lines)), 2)
    kind = rng.choice(["copy-line", "insert-copy", "copy-id"])
    if kind == "copy-line":
        lines[j] = lines[i]
    elif kind == "insert-copy":
        lines.insert(j, lines[i])
    else:
        obj = json.loads(lines[j])
        obj["id"] = json.loads(lines[i])["id"]
        lines[j] = _line(obj)
    _write_docs(rng, case, base, _join(lines))
    return f"{kind} {i}->{j}"


@mutator(DOCS, "key-set")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    obj = _doc(base, i)
    kind = rng.choice(["drop", "extra", "rename", "repeat", "only-id"])
    if kind == "drop":
        del obj[rng.choice(list(obj))]
    elif kind == "extra":
        obj[rng.choice(["extra", "vector", "", "ID", "score"])] = rng.choice(ODD_VALUES)
    elif kind == "rename":
        key = rng.choice(list(obj))
        obj[rng.choice([key.upper(), key + " ", "_" + key, key[:-1]])] = obj.pop(key)
    elif kind == "repeat":
        key = rng.choice(list(obj))
        line = _line(obj).decode()
        _replace_line(rng, case, base, line[:-1] + f", {json.dumps(key)}: {json.dumps(obj[key])}}}", i)
        return f"line {i}: {key!r} twice"
    else:
        obj = {"id": obj["id"]}
    _replace_line(rng, case, base, _line(obj), i)
    return f"line {i}: key set {kind}"


@mutator(DOCS, "value-type")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    obj = _doc(base, i)
    key = rng.choice(["id", "text", "metadata"])
    values = [v for v in [*ODD_VALUES, [{}], ["a"]] if type(v) is not type(obj[key])]
    value = rng.choice(values + ([""] if key == "id" else []))
    obj[key] = value
    _replace_line(rng, case, base, _line(obj), i)
    return f"line {i}: {key} = {value!r:.30}"


def _in_metadata(rng: random.Random, obj: dict[str, Any], raw: str) -> str:
    """The line for `obj` with raw JSON text `raw` placed somewhere in its metadata."""
    meta = obj["metadata"]
    where = rng.choice(["top", "nested", "list"])
    if where == "top" or not isinstance(meta.get("info"), dict):
        meta["fuzz"] = "@@RAW@@"
    elif where == "nested":
        meta["info"]["fuzz"] = "@@RAW@@"
    else:
        meta["tags"] = [*meta.get("tags", []), "@@RAW@@"]
    return json.dumps(obj, ensure_ascii=False).replace('"@@RAW@@"', raw)


@mutator(DOCS, "deep-metadata")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    depth = rng.choice([32, 33, 40, 500, 990, 5000, 200000])  # the metadata dict is level 1: all too deep
    _replace_line(rng, case, base, _in_metadata(rng, _doc(base, i), _deep(rng, depth)), i)
    return f"line {i}: metadata {depth} more levels deep"


@mutator(DOCS, "lone-surrogate")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    obj = _doc(base, i)
    esc = rng.choice(["\\ud800", "\\udfff", "\\udc80", "\\ud83d", "\\ud800\\ud800", "\\ude80\\ud83d", "x\\ud800y"])
    where = rng.choice(["value", "key", "id", "text", "raw-utf8-bytes"])
    if where == "value":
        line = _in_metadata(rng, obj, f'"{esc}"')
    elif where == "key":
        obj["metadata"]["@@KEY@@"] = 1
        line = json.dumps(obj, ensure_ascii=False).replace('"@@KEY@@"', f'"{esc}"')
    elif where in ("id", "text"):
        obj[where] = obj[where] + "@@S@@"
        line = json.dumps(obj, ensure_ascii=False).replace("@@S@@", esc)
    else:  # a surrogate encoded in UTF-8 bytes (invalid UTF-8) inside the text
        obj["text"] = obj["text"] + "@@S@@"
        line = json.dumps(obj, ensure_ascii=False).encode().replace(  # type: ignore[assignment]
            b"@@S@@", b"\xed\xa0\x80")
    _replace_line(rng, case, base, line, i)
    return f"line {i}: {esc} in {where}"


@mutator(DOCS, "unstorable-number")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    raw = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "-" + "9" * 330,
                      "1" + "0" * 5000])
    _replace_line(rng, case, base, _in_metadata(rng, _doc(base, i), raw), i)
    return f"line {i}: metadata holds {raw[:12]}"


@mutator(DOCS, "metadata-keys")
def _(rng: random.Random, case: Path, base: Base) -> str:
    i = rng.randrange(len(base.lines))
    obj = _doc(base, i)
    kind = rng.choice(["empty-key", "repeated-key", "repeated-nested-key"])
    if kind == "empty-key":
        obj["metadata"][""] = 1
        line = _line(obj).decode()
    elif kind == "repeated-key":
        obj["metadata"]["dup"] = 1
        line = _line(obj).decode().replace('"dup": 1', '"dup": 1, "dup": 2')
    else:
        obj["metadata"]["info"]["dup"] = 1
        line = _line(obj).decode().replace('"dup": 1', '"dup": 0, "dup": 1')
    _replace_line(rng, case, base, line, i)
    return f"line {i}: {kind}"


@mutator(DOCS, "ids-vs-bm25")
def _(rng: random.Random, case: Path, base: Base) -> str:
    lines = list(base.lines)
    kind = rng.choice(["rename", "swap-ids", "swap-lines", "reverse", "rotate", "drop+add"])
    i, j = rng.sample(range(len(lines)), 2)
    if kind == "rename":
        obj = json.loads(lines[i])
        doc_id = obj["id"]
        obj["id"] = rng.choice([doc_id + "x", doc_id.upper() if doc_id.upper() != doc_id else doc_id + "X",
                                unicodedata.normalize("NFD", doc_id + "é"), doc_id + "\u200b", " " + doc_id,
                                doc_id + "\u0000"])
        lines[i] = _line(obj)
    elif kind == "swap-ids":
        a, b = json.loads(lines[i]), json.loads(lines[j])
        a["id"], b["id"] = b["id"], a["id"]
        lines[i], lines[j] = _line(a), _line(b)
    elif kind == "swap-lines":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "reverse":
        lines.reverse()
    elif kind == "rotate":
        lines = lines[1:] + lines[:1]
    else:
        obj = json.loads(lines[i])
        obj["id"] = "new-" + obj["id"]
        del lines[i]
        lines.append(_line(obj))
    _write_docs(rng, case, base, _join(lines))
    return f"{kind} ({i}, {j})"


@mutator(DOCS, "encoding")
def _(rng: random.Random, case: Path, base: Base) -> str:
    kind = rng.choice(["invalid-byte", "overlong", "cut-multibyte", "utf-16", "utf-16-le", "bom", "latin-1"])
    if kind == "latin-1":  # a line with a character latin-1 encodes as one non-UTF-8 byte (é, ß, ...)
        i = rng.choice([k for k, line in enumerate(base.lines) if any(0x80 <= ord(c) <= 0xFF for c in line.decode())])
    else:
        i = rng.choice([k for k, line in enumerate(base.lines) if not line.isascii()])
    line = base.lines[i]
    if kind == "invalid-byte":
        pos = line.index(b'"text": "') + 9
        new = line[:pos] + rng.choice([b"\xff", b"\xfe", b"\x80", b"\xc3"]) + line[pos:]
    elif kind == "overlong":  # overlong forms, a 5-byte sequence, beyond U+10FFFF
        pos = line.index(b'"text": "') + 9
        bad = rng.choice([b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80"])
        new = line[:pos] + bad + line[pos:]
    elif kind == "cut-multibyte":
        pos = next(k for k in range(len(line)) if line[k] >= 0xC0)
        new = line[:pos + 1] + line[pos + 2:]
    elif kind in ("utf-16", "utf-16-le"):
        new = line.decode().encode(kind)
    elif kind == "bom":
        new = b"\xef\xbb\xbf" + line
    else:
        new = line.decode().encode("latin-1", errors="replace")
    _replace_line(rng, case, base, new, i)
    return f"line {i}: {kind}"


@mutator(DOCS, "blank-lines")
def _(rng: random.Random, case: Path, base: Base) -> str:
    lines = list(base.lines)
    kind = rng.choice(["empty", "spaces", "cr-inside", "empty-file", "only-newlines", "nul"])
    if kind == "empty":
        lines.insert(rng.randrange(len(lines) + 1), b"")
    elif kind == "spaces":
        lines.insert(rng.randrange(len(lines) + 1), b"   \t")
    elif kind == "cr-inside":
        i = rng.randrange(len(lines))
        pos = lines[i].index(b", ") + 1
        lines[i] = lines[i][:pos] + b"\r" + lines[i][pos:]
    elif kind == "empty-file":
        _write_docs(rng, case, base, b"")
        return kind
    elif kind == "only-newlines":
        _write_docs(rng, case, base, b"\n" * len(lines), count=len(lines))
        return kind
    else:
        lines.insert(rng.randrange(len(lines) + 1), b"\x00")
    _write_docs(rng, case, base, _join(lines))
    return kind


@mutator(DOCS, "not-a-file")
def _(rng: random.Random, case: Path, base: Base) -> str:
    path = case / base.data / "docs.jsonl"
    kind = rng.choice(["fifo", "dir", "dangling-symlink", "symlink-loop", "symlink-to-bm25"])
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
        (path / "docs.jsonl").write_bytes(base.docs_raw)
    elif kind == "dangling-symlink":
        path.symlink_to(case / "nowhere.jsonl")
    elif kind == "symlink-loop":
        path.symlink_to(path)
    else:  # the BM25 index's bytes, vouched for by the manifest
        path.symlink_to(case / base.data / "bm25.idx")
        m = _m(base)
        m["docs"]["sha256"] = _sha(base.bm25_raw)
        _write_manifest(case, m)
    return kind


@mutator(DOCS, "re-encoded", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: the same documents written another way (ASCII escapes, other spacing, key order, CRLF)."""
    ascii_, spacing, shuffle, crlf = (rng.random() < 0.5 for _ in range(4))
    out = []
    for line in base.lines:
        obj = json.loads(line)
        if shuffle:
            items = list(obj.items())
            rng.shuffle(items)
            obj = dict(items)
        out.append(json.dumps(obj, ensure_ascii=ascii_, separators=(",", ":") if spacing else None).encode())
    raw = b"".join(line + (b"\r\n" if crlf else b"\n") for line in out)
    if raw == base.docs_raw:
        raw = raw[:-1]  # no final newline
    _write_docs(rng, case, base, raw, count=len(out))
    return f"ascii={ascii_} compact={spacing} shuffled={shuffle} crlf={crlf}"


# ------------------------------------------------------------------------------------------- (d) bm25.idx

BM25 = "bm25"


def _bm25(case: Path, base: Base) -> Path:
    return case / base.data / "bm25.idx"


@mutator(BM25, "delete")
def _(rng: random.Random, case: Path, base: Base) -> str:
    _bm25(case, base).unlink()
    return "deleted"


@mutator(BM25, "truncate")
def _(rng: random.Random, case: Path, base: Base) -> str:
    n = rng.choice([0, 1, 12, len(base.bm25_raw) - 1, len(base.bm25_raw) - 20, rng.randrange(len(base.bm25_raw))])
    _bm25(case, base).write_bytes(base.bm25_raw[:n])
    return f"truncated to {n}"


@mutator(BM25, "bit-flip")
def _(rng: random.Random, case: Path, base: Base) -> str:
    raw = bytearray(base.bm25_raw)
    spots = [(rng.randrange(len(raw)), rng.randrange(8)) for _ in range(rng.randint(1, 3))]
    for pos, bit in spots:
        raw[pos] ^= 1 << bit
    _bm25(case, base).write_bytes(bytes(raw))
    return f"bits {spots}"


@mutator(BM25, "overwrite")
def _(rng: random.Random, case: Path, base: Base) -> str:
    raw = bytearray(base.bm25_raw)
    pos, n = rng.randrange(len(raw)), rng.randint(1, 16)
    raw[pos:pos + n] = bytes(rng.randrange(256) for _ in range(n))
    _bm25(case, base).write_bytes(bytes(raw[:len(base.bm25_raw)]))
    return f"{n} bytes at {pos}"


@mutator(BM25, "extend")
def _(rng: random.Random, case: Path, base: Base) -> str:
    extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    raw = base.bm25_raw + extra if rng.random() < 0.7 else extra + base.bm25_raw
    _bm25(case, base).write_bytes(raw)
    return f"{len(extra)} bytes added"


@mutator(BM25, "not-a-file")
def _(rng: random.Random, case: Path, base: Base) -> str:
    path = _bm25(case, base)
    kind = rng.choice(["dir", "fifo", "symlink-to-docs", "dangling-symlink", "symlink-loop", "empty"])
    path.unlink()
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-to-docs":
        path.symlink_to(case / base.data / "docs.jsonl")
    elif kind == "dangling-symlink":
        path.symlink_to(case / "nowhere.idx")
    elif kind == "symlink-loop":
        path.symlink_to(path)
    else:
        path.write_bytes(b"")
    return kind


@mutator(BM25, "foreign-index")
def _(rng: random.Random, case: Path, base: Base) -> str:
    """A valid index, but not over this collection's documents (same count or one fewer)."""
    name = rng.choice(sorted(base.foreign))
    _bm25(case, base).write_bytes(base.foreign[name])
    return name


@mutator(BM25, "symlinked", control=True)
def _(rng: random.Random, case: Path, base: Base) -> str:
    """Control: bm25.idx a symlink to a copy of itself."""
    path = _bm25(case, base)
    path.rename(case / "bm25-elsewhere.idx")
    path.symlink_to(case / "bm25-elsewhere.idx")
    return "symlinked"


@mutator(BM25, "stray-hnsw")
def _(rng: random.Random, case: Path, base: Base) -> str:
    """An hnsw.idx beside a BM25-only manifest: refused (a save writes one only for a dense collection, so the
    manifest lost its dense section; loading would drop the dense index silently)."""
    (case / base.data / "hnsw.idx").write_bytes(bytes(rng.randrange(256) for _ in range(100)))
    return "stray hnsw.idx"


# ------------------------------------------------------------------------------------------- running cases


class _Hang(BaseException):
    """Raised by the SIGALRM handler: not an Exception, so no `except` in the loader swallows it."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` with _Hang (main thread only; elsewhere only timed afterwards)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclasses.dataclass
class Outcome:
    index: int
    family: str
    name: str
    control: bool
    what: str
    result: str  # clean / accepted / wrong / error / hang
    detail: str
    seconds: float


def run_case(index: int, base: Base, work: Path) -> Outcome:
    family, name, control, mutate = MUTATORS[index % len(MUTATORS)]
    rng = random.Random(f"{SEED}:{index}")
    case = work / f"case-{index}"
    shutil.copytree(base.root, case, symlinks=True)
    try:
        what = mutate(rng, case, base)
        start = time.perf_counter()
        try:
            with _deadline(CASE_SECONDS):
                try:
                    col = Collection.load(case)
                except (IndexFileError, ValueError) as exc:
                    result, detail = "clean", f"{type(exc).__name__}: {exc}"
                except Exception as exc:  # noqa: BLE001 - what the fuzzer looks for
                    result, detail = "error", "".join(traceback.format_exception_only(type(exc), exc)).strip()
                else:
                    try:
                        problem = check_loaded(col, base)
                    except Exception as exc:  # noqa: BLE001 - loaded, but not usable
                        problem = f"loaded, but using it raised {type(exc).__name__}: {str(exc)[:200]}"
                    result, detail = ("accepted", "") if problem is None else ("wrong", problem)
        except _Hang:
            result, detail = "hang", f"interrupted after {CASE_SECONDS} s"
        seconds = time.perf_counter() - start
        if seconds > CASE_SECONDS and result != "hang":
            result, detail = "hang", f"took {seconds:.1f} s ({result}: {detail})"
        return Outcome(index, family, name, control, what, result, detail, seconds)
    finally:
        shutil.rmtree(case, ignore_errors=True)


RESULTS = ("clean", "accepted", "wrong", "error", "hang")


def run_fuzz(work: Path, cases: int = CASES) -> tuple[list[Outcome], float]:
    start = time.perf_counter()
    base = build_base(work)
    outcomes = [run_case(i, base, work) for i in range(cases)]
    return outcomes, time.perf_counter() - start


def table(outcomes: list[Outcome], seconds: float) -> str:
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    by_name: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        by_family[o.family][o.result] += 1
        by_name[(o.family, o.name + (" (control)" if o.control else ""))][o.result] += 1
    rows = [f"{'family / mutator':<42}{'cases':>7}" + "".join(f"{r:>10}" for r in RESULTS)]
    for family in (RAW, FORGED, DOCS, BM25):
        counts = by_family[family]
        rows.append(f"{family:<42}{sum(counts.values()):>7}" + "".join(f"{counts[r]:>10}" for r in RESULTS))
        for (fam, name), c in sorted(by_name.items()):
            if fam == family:
                rows.append(f"  {name:<40}{sum(c.values()):>7}" + "".join(f"{c[r]:>10}" for r in RESULTS))
    total: Counter[str] = Counter(o.result for o in outcomes)
    rows.append(f"{'total':<42}{len(outcomes):>7}" + "".join(f"{total[r]:>10}" for r in RESULTS))
    slowest = max(outcomes, key=lambda o: o.seconds, default=None)
    rows.append(f"seed {SEED}; {seconds:.1f} s in all"
                + (f"; slowest case {slowest.index} ({slowest.family}/{slowest.name}) {slowest.seconds:.2f} s"
                   if slowest else ""))
    bad = [o for o in outcomes if o.result in ("wrong", "error", "hang") or (o.control and o.result != "accepted")]
    for o in bad[:20]:
        rows.append(f"  case {o.index} {o.family}/{o.name} [{o.what}]: {o.result}: {o.detail[:300]}")
    return "\n".join(rows)


def test_collection_loader_survives_mutated_directories(tmp_path: Path) -> None:
    outcomes, seconds = run_fuzz(tmp_path)
    report = table(outcomes, seconds)
    print("\n" + report)
    counts = Counter(o.result for o in outcomes)
    assert len(outcomes) == CASES
    assert counts["wrong"] == 0, f"changed collections accepted:\n{report}"
    assert counts["error"] == 0, f"loads that failed with an unexpected exception:\n{report}"
    assert counts["hang"] == 0, f"loads that took over {CASE_SECONDS} s:\n{report}"
    refused = [o for o in outcomes if o.control and o.result != "accepted"]
    assert not refused, f"consistent collections (controls) refused:\n{report}"
    if CASES >= 2 * len(MUTATORS):  # every mutator ran; the non-controls are mostly refused
        assert counts["clean"] > 0.8 * sum(not o.control for o in outcomes), report


if __name__ == "__main__":  # FUNNELRANK_FUZZ_CASES=20000 python tests/test_fuzz_collection.py
    with tempfile.TemporaryDirectory() as d:
        found, took = run_fuzz(Path(d))
        print(table(found, took))
        sys.exit(1 if any(o.result in ("wrong", "error", "hang") or (o.control and o.result != "accepted")
                          for o in found) else 0)
