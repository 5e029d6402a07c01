"""Seeded fuzzing of the two index loaders, BM25Index.load and HNSWIndex.load.

For each format a few small valid index files are built, then mutated: truncations and extensions,
bit flips, byte overwrites and wholly random bytes (the checksum left as it was: every one of these must be
rejected), and "forged" mutations with the trailer (payload size, CRC-32) recomputed so that they reach
the parser: header and count fields (located by a parser of the format below) set to interesting values,
bit flips and byte overwrites anywhere in the payload, bytes inserted or cut. Each case is loaded in a
worker subprocess (many cases per worker; address space limited to ~1 GB with RLIMIT_AS, so an unbounded
allocation surfaces as a MemoryError rather than swapping); a worker that dies is a crash, one that stops
reporting progress is a hang, and the case it was on is charged with it.

A case ends as one of:
  clean       load raised IndexFileError or ValueError
  accepted    load succeeded and the index then worked: searches (k, ef and allow-lists), ids, add, delete,
              save and reload, with well-formed results. For a checksummed mutation this would be a hole
              in the checksum (asserted never to happen); for a forged one it is expected where the forged
              bytes are data the format cannot check (a vector's coordinates, an id's characters, a term
              frequency consistent with the lengths, ...)
  broken      load succeeded but using the index raised or returned malformed results
  error       load raised anything else (MemoryError: an allocation the file's size does not bound)
  crash / hang
The test asserts no crash, hang, broken or error case in either family, and no acceptance of a
checksummed mutation; it prints the figures (pytest -s, or see the assertion message).

FUNNELRANK_FUZZ_CASES=N sets the cases per format (default 2000, 1000 under ASan; the default run takes
about 15 s on the 2-core dev VM), FUNNELRANK_FUZZ_SEED the seed (default 20240601). For a long run:
FUNNELRANK_FUZZ_CASES=30000 python tests/test_fuzz_loaders.py (about 3 minutes per format).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import selectors
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from funnelrank import _core
from funnelrank.core import Analyzer, BM25Index, HNSWIndex

pytestmark = pytest.mark.core

HEADER = 12  # 8-byte magic + u32 version
TRAILER = 20  # u64 payload size + u32 CRC-32 + 8-byte end marker
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "") or "ASAN_OPTIONS" in os.environ
# (under ASan + UBSan, `make test-sanitize`, each case costs ~10x as much)
CASES = int(os.environ.get("FUNNELRANK_FUZZ_CASES", "1000" if UNDER_ASAN else "2000"))
SEED = int(os.environ.get("FUNNELRANK_FUZZ_SEED", "20240601"))
MEMORY_LIMIT = 1 << 30
CASES_PER_WORKER = 400
STALL_SECONDS = 20.0  # a worker silent this long on one case is hung


# ---- file layout: the offsets of every field a loader reads a count, size or parameter from ----


@dataclasses.dataclass(frozen=True)
class Field:
    offset: int
    fmt: str  # struct format: "<Q" u64, "<I" u32, "<i" i32, "<d" f64, "<B" u8, "<f" f32
    name: str


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = HEADER
        self.fields: list[Field] = []

    def take(self, fmt: str, name: str) -> int | float:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.fields.append(Field(self.pos, fmt, name))
        self.pos += struct.calcsize(fmt)
        return value

    def string(self, name: str) -> bytes:
        n = int(self.take("<Q", name + ".length"))
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s

    def vector_u32(self, name: str, mark_items: int = 0) -> list[int]:
        n = int(self.take("<Q", name + ".count"))
        items = list(struct.unpack_from(f"<{n}I", self.data, self.pos))
        for j in range(min(n, mark_items)):
            self.fields.append(Field(self.pos + 4 * j, "<I", f"{name}[{j}]"))
        self.pos += 4 * n
        return items

    def done(self) -> list[Field]:
        assert self.pos == len(self.data) - TRAILER, (self.pos, len(self.data))
        return self.fields


def bm25_fields(data: bytes) -> list[Field]:
    """The payload's fields per BM25Index::save (cpp/core/bm25_format.cpp)."""
    c = _Cursor(data)
    c.take("<d", "k1")
    c.take("<d", "b")
    c.take("<B", "lowercase")
    c.take("<Q", "min_token_length")
    c.string("stemmer")
    for i in range(int(c.take("<Q", "stopwords.count"))):
        c.string(f"stopword{i}")
    n_docs = int(c.take("<Q", "docs.count"))
    for i in range(n_docs):
        c.string(f"id{i}")
    c.vector_u32("doc_len", mark_items=4)
    for t in range(int(c.take("<Q", "terms.count"))):
        c.string(f"term{t}")
        c.vector_u32(f"docs{t}", mark_items=2)
        c.vector_u32(f"tfs{t}", mark_items=2)
    return c.done()


def hnsw_fields(data: bytes) -> list[Field]:
    """The payload's fields per HNSWIndex::save (cpp/core/hnsw_index.cpp: hnswlib's layout; format version 2)."""
    c = _Cursor(data)
    dim = int(c.take("<Q", "dim"))
    c.take("<I", "metric")
    m = int(c.take("<Q", "M"))
    for name in ("ef_construction", "ef_search", "seed"):
        c.take("<Q", name)
    storage = int(c.take("<I", "storage"))
    c.take("<Q", "capacity")
    count = int(c.take("<Q", "count"))
    row = int(c.take("<Q", "row_bytes"))
    c.take("<i", "max_level")
    c.take("<I", "entry")
    for i in range(count):  # level-0 row: u32 (u16 link count, deleted flag), 2M links, vector, label
        start = c.pos
        c.fields.append(Field(start, "<I", f"row{i}.links"))
        c.fields.append(Field(start + 4, "<I", f"row{i}.link0"))
        c.fields.append(Field(start + 4 + 8 * m, "<f" if storage != 1 else "<I", f"row{i}.x0"))
        c.pos = start + row
    upper = 4 * m + 4 + 4  # link count, M links, hnswlib's prefetch overrun slot (see hnsw_impl.h)
    for i in range(count):
        level = int(c.take("<i", f"level{i}"))
        for lv in range(max(level, 0)):
            c.fields.append(Field(c.pos + lv * upper, "<I", f"upper{i}.{lv}.links"))
        c.pos += upper * max(level, 0)
    for i in range(count):
        c.string(f"id{i}")
    c.string("rng")
    if storage == 2:  # int8: the float32 re-scoring rows
        c.take("<Q", "rescore.rows")
        pad = int(c.take("<Q", "rescore.pad"))
        c.pos += pad
        for i in range(count):
            c.fields.append(Field(c.pos + 4 * dim * i, "<f", f"rescore{i}.x0"))
        c.pos += 4 * dim * count
    return c.done()


def with_trailer(payload: bytes, header: bytes) -> bytes:
    return header + payload + struct.pack("<QI", len(payload), zlib.crc32(payload)) + b"FRK-END!"


def reseal(data: bytes) -> bytes:
    """`data` (header + payload, any trailer dropped) with a correct trailer."""
    return with_trailer(data[HEADER : len(data) - TRAILER], data[:HEADER])


# ---- base files ----


def bm25_bases(directory: Path) -> list[bytes]:
    words = "quick brown fox lazy dog retrieval dense sparse index graph vector rank cat mat".split()
    rng = random.Random(SEED)
    out = []
    for analyzer, n in ((None, 24), (Analyzer(stopwords=["fox"], stemmer=None, min_token_length=1), 30), (None, 0)):
        index = BM25Index(k1=1.1, b=0.7, analyzer=analyzer)
        ids = [f"doc{i}" for i in range(n)]
        index.add(ids, [" ".join(rng.choice(words) for _ in range(rng.randint(0, 6))) for _ in ids])
        if n:
            index.delete(ids[:2])
        path = directory / f"base{len(out)}.bm25"
        index.save(path)
        out.append(path.read_bytes())
    return out


def hnsw_bases(directory: Path) -> list[bytes]:
    rng = np.random.default_rng(SEED)
    out = []
    for metric, n, m, storage in (("cosine", 60, 4, "f32"), ("ip", 40, 6, "f32"), ("cosine", 0, 4, "f32"),
                                  ("cosine", 30, 4, "f16"), ("ip", 30, 4, "int8")):
        index = HNSWIndex(8, metric=metric, M=m, ef_construction=40, initial_capacity=64, seed=7, storage=storage)
        if n:
            ids = [f"v{i}" for i in range(n)]
            index.add(ids, rng.normal(size=(n, 8)).astype(np.float32), threads=1)
            index.delete(ids[3:6])
        path = directory / f"base{len(out)}.hnsw"
        index.save(path)
        out.append(path.read_bytes())
    return out


# ---- mutations ----

INTERESTING_U64 = [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 1 << 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
                   1 << 40, 1 << 53, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 10**7, 5 * 10**7]
INTERESTING_F64 = [0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan"), 0.5, 2.0]


def forged_value(rng: random.Random, fmt: str, old: float | int) -> float | int:
    if fmt in ("<d", "<f"):
        value = rng.choice(INTERESTING_F64) if rng.random() < 0.7 else float(old) * rng.choice([-1, 2, 1e10, 1e-10])
        if fmt == "<f" and math.isfinite(value) and abs(value) > 3.4e38:
            value = math.copysign(math.inf, value)  # (beyond float32)
        return value
    bits = {"<Q": 64, "<I": 32, "<i": 32, "<B": 8}[fmt]
    mask = (1 << bits) - 1
    choice = rng.random()
    if choice < 0.55:
        value = rng.choice(INTERESTING_U64)
    elif choice < 0.8:
        value = int(old) + rng.choice([-2, -1, 1, 2, 8, 1000])
    elif choice < 0.9:
        value = int(old) * rng.choice([2, 10, 1000, 1 << 20])
    else:
        value = rng.getrandbits(bits)
    value &= mask
    if fmt == "<i" and value >= 1 << 31:
        value -= 1 << 32
    return value


def flip_bits(rng: random.Random, data: bytearray, lo: int, hi: int) -> None:
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        pos = rng.randrange(lo, hi)
        data[pos] ^= 1 << rng.randrange(8)


def overwrite(rng: random.Random, data: bytearray, lo: int, hi: int) -> None:
    pos = rng.randrange(lo, hi)
    n = min(rng.choice([1, 1, 2, 4, 8, 16, 64]), hi - pos)
    filler = rng.choice(["random", "zero", "ff"])
    for j in range(n):
        data[pos + j] = rng.randrange(256) if filler == "random" else (0 if filler == "zero" else 0xFF)


def mutate(rng: random.Random, base: bytes, fields: list[Field]) -> tuple[str, bytes, str]:
    """One seeded mutation of `base`: (kind, bytes, what was changed). Kinds starting with "raw-" keep the old
    trailer, "forged-" ones have it recomputed."""
    kind = rng.choices(
        ["raw-truncate", "raw-extend", "raw-bitflip", "raw-overwrite", "raw-random",
         "forged-field", "forged-bitflip", "forged-overwrite", "forged-insert", "forged-cut"],
        weights=[1, 0.5, 1.5, 1.5, 0.5, 4, 2, 2, 1, 1],
    )[0]
    data = bytearray(base)
    payload_end = len(base) - TRAILER
    if kind == "raw-truncate":
        return kind, bytes(data[: rng.randrange(len(data))]), ""
    if kind == "raw-extend":
        return kind, bytes(data) + rng.randbytes(rng.choice([1, 4, 20, 1000])), ""
    if kind == "raw-bitflip":
        flip_bits(rng, data, 0, len(data))
        return kind, bytes(data), ""
    if kind == "raw-overwrite":
        overwrite(rng, data, 0, len(data))
        return kind, bytes(data), ""
    if kind == "raw-random":
        size = rng.choice([0, 1, HEADER + TRAILER, len(base), 2 * len(base)])
        blob = rng.randbytes(size)
        if rng.random() < 0.5 and size >= HEADER:  # the right magic and version, the rest noise
            blob = base[:HEADER] + blob[HEADER:]
            if rng.random() < 0.5 and size >= HEADER + TRAILER:
                blob = reseal(blob)  # ... with a trailer that matches: the parser sees pure noise
                kind = "forged-random"
        return kind, blob, ""
    if kind == "forged-field":
        names = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            f = rng.choice(fields)
            before = bytes(data[f.offset : f.offset + struct.calcsize(f.fmt)])
            (old,) = struct.unpack_from(f.fmt, before)
            struct.pack_into(f.fmt, data, f.offset, forged_value(rng, f.fmt, old))
            if data[f.offset : f.offset + len(before)] != before:  # (an "interesting" value can be the old one)
                names.append(f.name)
        return kind, reseal(bytes(data)), "+".join(names)
    if kind == "forged-bitflip":
        flip_bits(rng, data, HEADER, payload_end)
        return kind, reseal(bytes(data)), ""
    if kind == "forged-overwrite":
        overwrite(rng, data, HEADER, payload_end)
        return kind, reseal(bytes(data)), ""
    if kind == "forged-insert":
        pos = rng.randrange(HEADER, payload_end + 1)
        data[pos:pos] = rng.randbytes(rng.choice([1, 3, 4, 8, 100]))
        return kind, reseal(bytes(data)), ""
    pos = rng.randrange(HEADER, payload_end)  # forged-cut
    del data[pos : pos + rng.choice([1, 3, 4, 8, 100])]
    return kind, reseal(bytes(data)), ""


def make_cases(
    bases: list[bytes], parse: Callable[[bytes], list[Field]], n: int, seed: int
) -> list[tuple[str, bytes, str]]:
    rng = random.Random(seed)
    fields = [parse(b) for b in bases]
    cases: list[tuple[str, bytes, str]] = []
    while len(cases) < n:
        which = rng.randrange(len(bases))
        case = mutate(rng, bases[which], fields[which])
        if case[1] not in bases:  # (an overwrite can write the bytes that were there)
            cases.append(case)
    return cases


# ---- the worker: loads cases, exercises what loads, reports one JSON line per case ----

WORKER = textwrap.dedent(
    r'''
    import importlib.util, json, os, resource, sys
    core_path, fmt, memory_limit, listing, scratch = sys.argv[1:6]
    memory_limit = int(memory_limit)
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    spec = importlib.util.spec_from_file_location("_core", core_path)
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    import numpy as np

    def check_ranked(result, live, k):
        ids, scores = result
        assert isinstance(ids, list) and len(ids) == len(scores) <= k, (len(ids), len(scores), k)
        assert len(set(ids)) == len(ids) and set(ids) <= live, "result ids are not distinct live ids"
        assert scores.dtype == np.float32

    def exercise_bm25(index, scratch):
        ids = index.ids()
        live = set(ids)
        assert len(ids) == len(index) == len(live)
        for q in ("quick fox", "retrieval graph vector", "dog dog cat mat", ""):
            for k in (1, 5, len(ids) + 3, 10**12):
                check_ranked(index.search(q, k=k), live, k)
            check_ranked(index.search(q, k=4, allow=ids[:3] + ["missing"]), live, 4)
            check_ranked(index._search_exhaustive(q, k=7), live, 7)
        for r in index.search_batch(["quick", "lazy dog"], k=3, threads=2):
            check_ranked(r, live, 3)
        index.add(["fuzz-new"], ["quick brown fox fox"])
        if ids:
            index.delete([ids[0]])
        index.compact()
        check_ranked(index.search("fox", k=10), (live | {"fuzz-new"}) - set(ids[:1]), 10)
        index.save(scratch)
        again = core.BM25Index.load(scratch)
        assert again.ids() == index.ids()

    def exercise_hnsw(index, scratch):
        ids = index.ids()
        live = set(ids)
        assert len(ids) == len(index) == len(live)
        rng = np.random.default_rng(0)
        queries = rng.normal(size=(3, index.dim)).astype(np.float32)
        for q in queries:
            for k, ef in ((1, None), (5, 2), (len(ids) + 3, None), (10**12, 2**40)):
                check_ranked(index.search(q, k=k, ef=ef), live, k)
            check_ranked(index.search(q, k=3, allow=ids[:5] + ["missing"]), live, 3)
            check_ranked(index.search_exact(q, k=4), live, 4)
        for r in index.search_batch(queries, k=3, threads=2):
            check_ranked(r, live, 3)
        index.add(["fuzz-new", "fuzz-new2"], queries[:2], threads=1)
        if ids:
            index.delete([ids[0]])
        check_ranked(index.search(queries[2], k=5), (live | {"fuzz-new", "fuzz-new2"}) - set(ids[:1]), 5)
        index.save(scratch)
        again = core.HNSWIndex.load(scratch)
        assert again.ids() == index.ids()

    cls, exercise = (core.BM25Index, exercise_bm25) if fmt == "bm25" else (core.HNSWIndex, exercise_hnsw)
    for line in open(listing):
        case, path = line.rstrip("\n").split(" ", 1)
        try:
            index = cls.load(path)
        except (core.IndexFileError, ValueError) as e:
            out = {"outcome": "clean"}
        except BaseException as e:
            out = {"outcome": "error", "detail": f"{type(e).__name__}: {str(e)[:200]}"}
        else:
            try:
                exercise(index, scratch)
                out = {"outcome": "accepted"}
            except BaseException as e:
                out = {"outcome": "broken", "detail": f"{type(e).__name__}: {str(e)[:200]}"}
            del index
        out["case"] = int(case)
        print(json.dumps(out), flush=True)
    '''
)


def run_cases(fmt: str, cases: list[tuple[str, bytes, str]], directory: Path) -> list[dict]:
    """Each case's outcome, in order; workers are restarted past a crash or hang."""
    paths = []
    for i, (_, data, _) in enumerate(cases):
        p = directory / f"case{i:05d}.{fmt}"
        p.write_bytes(data)
        paths.append(p)
    results: dict[int, dict] = {}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    memory_limit = 0 if UNDER_ASAN else MEMORY_LIMIT  # (ASan reserves terabytes of address space)
    if UNDER_ASAN:  # an allocation beyond ASan's limit becomes bad_alloc (MemoryError), not an abort
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1"
    start = 0
    while start < len(cases):
        stop = min(start + CASES_PER_WORKER, len(cases))
        listing = directory / f"{fmt}-{start}.txt"
        listing.write_text("".join(f"{i} {paths[i]}\n" for i in range(start, stop)))
        errors = directory / f"{fmt}-{start}.stderr"  # a file: a chatty worker must not block on a full pipe
        with errors.open("w") as stderr_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", WORKER, _core.__file__, fmt, str(memory_limit), str(listing),
                 str(directory / f"resaved.{fmt}")],
                stdout=subprocess.PIPE, stderr=stderr_file, env=env, text=True,
            )
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        next_case, hung = start, False
        while next_case < stop:
            if not selector.select(timeout=STALL_SECONDS):
                hung = True
                break
            line = proc.stdout.readline()
            if not line:
                break  # the worker exited
            out = json.loads(line)
            assert out["case"] == next_case
            results[next_case] = out
            next_case += 1
        if hung:
            proc.kill()
        proc.wait()
        selector.close()
        proc.stdout.close()
        stderr = errors.read_text(errors="replace")
        if next_case < stop:  # the worker died or stalled on this case
            results[next_case] = {
                "case": next_case,
                "outcome": "hang" if hung else "crash",
                "detail": f"exit status {proc.returncode}; {stderr[-600:]}",
            }
            next_case += 1
        elif proc.returncode != 0:
            raise AssertionError(f"fuzz worker exited with {proc.returncode} after its cases: {stderr[-2000:]}")
        start = next_case
    return [results[i] for i in range(len(cases))]


@pytest.mark.parametrize("fmt", ["bm25", "hnsw"])
def test_loaders_survive_mutated_files(fmt: str, tmp_path: Path) -> None:
    began = time.monotonic()
    bases = bm25_bases(tmp_path) if fmt == "bm25" else hnsw_bases(tmp_path)
    parse = bm25_fields if fmt == "bm25" else hnsw_fields
    for base in bases:  # the base files load, and the layout parser agrees with the writer
        parse(base)
        (tmp_path / f"check.{fmt}").write_bytes(base)
        (BM25Index if fmt == "bm25" else HNSWIndex).load(tmp_path / f"check.{fmt}")
    seed = SEED + (0 if fmt == "bm25" else 1)
    cases = make_cases(bases, parse, CASES, seed)
    outcomes = run_cases(fmt, cases, tmp_path)

    by_family: dict[str, Counter[str]] = {"raw": Counter(), "forged": Counter()}
    accepted_kinds: Counter[str] = Counter()
    accepted_fields: Counter[str] = Counter()
    failures = []
    for (kind, _, what), out in zip(cases, outcomes):
        family = kind.split("-")[0]
        by_family[family][out["outcome"]] += 1
        if out["outcome"] == "accepted":
            accepted_kinds[kind] += 1
            for name in filter(None, what.split("+")):
                accepted_fields[re.sub(r"\d+", "#", name)] += 1
        bad = out["outcome"] in ("crash", "hang", "broken", "error") or (
            family == "raw" and out["outcome"] == "accepted"
        )
        if bad:
            failures.append((out["case"], kind, what, out["outcome"], out.get("detail", "")))
    elapsed = time.monotonic() - began
    total = Counter[str]()
    for c in by_family.values():
        total.update(c)
    report = (
        f"{fmt}: {len(cases)} cases in {elapsed:.1f} s (seed {seed}): clean errors {total['clean']}, "
        f"crashes {total['crash']}, hangs {total['hang']}, other load errors {total['error']}, "
        f"broken after load {total['broken']}, silent acceptances {total['accepted']} "
        f"(checksummed mutations: {by_family['raw']['accepted']} of {sum(by_family['raw'].values())}; "
        f"forged, checksum recomputed: {by_family['forged']['accepted']} of {sum(by_family['forged'].values())}, "
        f"by kind {dict(sorted(accepted_kinds.items()))}; each searched, updated, saved and reloaded cleanly; "
        f"forged fields in accepted files: {dict(accepted_fields.most_common())})"
    )
    print("\n" + report)
    listing = "\n".join(map(str, failures[:20]))
    assert not failures, f"{report}\nfailures (case, kind, field, outcome, detail):\n{listing}"


def test_the_harness_charges_crashes_and_hangs_to_their_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that aborts on one case and stalls on another: both are charged, and the rest still run."""
    fake = textwrap.dedent(
        """
        import json, os, sys, time
        for line in open(sys.argv[4]):
            case = int(line.split(" ", 1)[0])
            if case == 2:
                os.abort()
            if case == 4:
                time.sleep(60)
            print(json.dumps({"case": case, "outcome": "clean"}), flush=True)
        """
    )
    monkeypatch.setattr(sys.modules[__name__], "WORKER", fake)
    monkeypatch.setattr(sys.modules[__name__], "STALL_SECONDS", 2.0)
    outcomes = run_cases("bm25", [("raw-random", b"x", "")] * 7, tmp_path)
    assert [o["outcome"] for o in outcomes] == ["clean", "clean", "crash", "clean", "hang", "clean", "clean"]


def test_fuzz_layout_parsers_cover_the_count_fields(tmp_path: Path) -> None:
    """The field maps the forged-field mutations draw from include every header count and parameter."""
    bm25 = {f.name for f in bm25_fields(bm25_bases(tmp_path)[0])}
    assert {"k1", "b", "lowercase", "min_token_length", "stemmer.length", "stopwords.count", "docs.count",
            "doc_len.count", "terms.count", "docs0.count", "tfs0.count"} <= bm25
    hnsw = {f.name for f in hnsw_fields(hnsw_bases(tmp_path)[0])}
    assert {"dim", "metric", "M", "ef_construction", "ef_search", "capacity", "count", "row_bytes", "max_level",
            "entry", "row0.links", "level0", "id0.length", "rng.length"} <= hnsw


def test_mutations_are_seeded(tmp_path: Path) -> None:
    bases = bm25_bases(tmp_path)
    assert make_cases(bases, bm25_fields, 50, 7) == make_cases(bases, bm25_fields, 50, 7)
    assert make_cases(bases, bm25_fields, 50, 7) != make_cases(bases, bm25_fields, 50, 8)


if __name__ == "__main__":  # a long run: FUNNELRANK_FUZZ_CASES=20000 python tests/test_fuzz_loaders.py
    with tempfile.TemporaryDirectory() as d:
        for f in ("bm25", "hnsw"):
            sub = Path(d) / f
            sub.mkdir()
            test_loaders_survive_mutated_files(f, sub)
