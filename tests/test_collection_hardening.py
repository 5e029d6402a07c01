"""Collections and metadata, hardened: metadata and filters that used to break a collection (numbers beyond a
double, lone surrogates, deep nesting) are clear ValueErrors up front; add is all-or-nothing for every
failure; saves and loads from several processes at once (and SIGKILLs mid-save) never show a half-switched
collection; the manifest is checksummed and strictly checked; a save removes what killed saves left behind;
huge `k` / `ef_search` do not allocate for them."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import funnelrank.store.load as store_load
import numpy as np
import pytest
from funnelrank.cli.main import main
from funnelrank.core import IndexFileError
from funnelrank.retrieve.filters import MAX_DEPTH, MetadataIndex, parse_filter, validate_filter, validate_metadata
from funnelrank.store.collection import Collection
from funnelrank.store.layout import DATA_RE, LOCK_FILE
from funnelrank.store.lock import CollectionLockedError
from funnelrank.store.manifest import manifest_checksum

from crash_harness import HashEmbedder

HUGE = 10**400


def small(dense: bool = False) -> Collection:
    c = Collection(dense=dense, embedder=HashEmbedder() if dense else None)
    c.add(["a", "b"], ["hello world", "another greeting"], [{"n": 1}, {"n": 2, "tags": ["x"]}])
    return c


def snapshot(c: Collection) -> tuple[list[str], list[Any], int]:
    return c.ids(), [c.get(i).metadata for i in c.ids()], len(c._bm25)


def deep(levels: int, leaf: Any = 1) -> Any:
    """A value nested `levels` containers deep: {"k": {"k": ... leaf}} (levels=1 is {"k": leaf})."""
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


# ------------------------------------------------------------------ 1. numbers beyond a double, NaN, inf


def test_issue_reproducer_huge_int_is_refused_and_the_collection_stays_usable(tmp_path: Path) -> None:
    c = Collection(dense=False)
    c.add(["a"], ["hello"], [{"n": 1}])
    with pytest.raises(ValueError, match=r"metadata\[0\] \(id 'big'\).*\['n'\].*beyond the range of a double"):
        c.add(["big"], ["x"], [{"n": HUGE}])
    assert c.ids() == ["a"] and len(c._bm25) == 1 and "big" not in c
    c.save(tmp_path / "col")
    assert Collection.load(tmp_path / "col").ids() == ["a"]
    c.delete(["a"])
    assert len(c) == 0


@pytest.mark.parametrize(
    "value",
    [HUGE, -HUGE, float("nan"), float("inf"), -float("inf"), [1, HUGE], {"deeper": [float("nan")]}, 10**5000],
    ids=["huge", "-huge", "nan", "inf", "-inf", "in-list", "nested", "5000-digits"],
)
def test_unstorable_numbers_are_refused_before_anything_changes(value: Any) -> None:
    c = small()
    before = snapshot(c)
    with pytest.raises(ValueError, match="not JSON-serializable"):
        c.add(["new"], ["new text hello"], [{"n": value}])
    assert snapshot(c) == before
    assert c.search_bm25("new text hello", k=10)[0] == ["a"]


def test_numbers_at_the_edge_of_a_double_are_fine(tmp_path: Path) -> None:
    c = Collection(dense=False)
    big_ok = int(1.7e308)
    c.add(["a", "b"], ["x", "y"], [{"n": big_ok}, {"n": -1.5e308}])
    assert c.allowed_ids({"n": {"gt": 0}}) == ["a"]
    c.save(tmp_path / "col")
    assert Collection.load(tmp_path / "col").get("a").metadata == {"n": big_ok}


def test_metadata_index_tolerates_huge_ints() -> None:
    """Collections saved before the check may hold such numbers: indexing, resolving and removing them must not
    raise OverflowError (they are simply not filterable)."""
    index = MetadataIndex()
    index.add("x", {"n": HUGE, "l": [HUGE, 1]})
    assert index.resolve({"l": 1}, {"x"}) == {"x"}
    assert index.resolve({"n": {"exists": True}}, {"x"}) == {"x"}
    assert index.resolve({"n": {"gt": 0}}, {"x"}) == set()
    index.remove("x", {"n": HUGE, "l": [HUGE, 1]})
    assert index.resolve({"n": {"exists": True}}, {"x"}) == set()


@pytest.mark.parametrize(
    "flt",
    [
        {"n": HUGE},
        {"n": {"gt": HUGE}},
        {"n": {"lte": -HUGE}},
        {"n": {"in": [1, HUGE]}},
        {"n": {"nin": [HUGE]}},
        {"n": {"ne": HUGE}},
        {"n": float("inf")},
        {"n": {"gte": float("nan")}},
        {"n": [1, float("inf")]},
    ],
)
def test_filters_with_unusable_numbers_are_value_errors(flt: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="beyond the range of a double|NaN and infinity"):
        validate_filter(flt)
    with pytest.raises(ValueError, match="beyond the range of a double|NaN and infinity"):
        small().allowed_ids(flt)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_add_rolls_back_when_indexing_the_metadata_fails(
    monkeypatch: pytest.MonkeyPatch, dense: bool, error: type[BaseException]
) -> None:
    c = small(dense=dense)
    before = snapshot(c)
    hnsw_before = len(c._hnsw) if dense else None
    real_add = c._meta.add
    calls = []

    def failing_add(doc_id: str, metadata: Any) -> None:
        calls.append(doc_id)
        if len(calls) == 2:  # the first new document is already indexed
            raise error("metadata index failed")
        real_add(doc_id, metadata)

    monkeypatch.setattr(c._meta, "add", failing_add)
    with pytest.raises(error):
        c.add(["n1", "n2", "n3"], ["fresh words one", "fresh words two", "fresh words three"],
              [{"n": 7}, {"n": 8}, {"n": 9}])
    monkeypatch.undo()
    assert snapshot(c) == before
    assert c.search_bm25("fresh words", k=10)[0] == []
    assert c.allowed_ids({"n": 7}) == [] and c.allowed_ids({"n": {"exists": True}}) is None
    if dense:
        assert len(c._hnsw) == hnsw_before
        assert set(c.search_dense(c.embed_query("fresh"), k=10)[0]) == {"a", "b"}
    c.add(["n1"], ["fresh words one"], [{"n": 7}])  # the ids were fully released
    assert c.allowed_ids({"n": 7}) == ["n1"]


# ------------------------------------------------------------------ 2. lone surrogates, deep nesting


@pytest.mark.parametrize(
    "meta",
    [{"bad\ud800key": 1}, {"k": "bad \udc00 value"}, {"k": {"nested\ud800": 1}}, {"k": ["ok", "x\ud800"]}],
    ids=["key", "value", "nested-key", "in-list"],
)
def test_lone_surrogates_in_metadata_are_refused(tmp_path: Path, meta: dict[str, Any]) -> None:
    c = small()
    before = snapshot(c)
    with pytest.raises(ValueError, match="not valid Unicode"):
        c.add(["new"], ["text"], [meta])
    assert snapshot(c) == before
    c.save(tmp_path / "col")  # used to fail on every save from then on (UnicodeEncodeError)
    assert Collection.load(tmp_path / "col").ids() == ["a", "b"]


def test_nesting_limit_is_documented_and_enforced(tmp_path: Path) -> None:
    assert MAX_DEPTH == 32
    ok = deep(MAX_DEPTH)  # the metadata dict itself is level 1: 32 levels in all is fine, 33 is not
    validate_metadata(ok)
    c = small()
    c.add(["deep-ok"], ["deep"], [ok])
    c.save(tmp_path / "col")
    assert Collection.load(tmp_path / "col").get("deep-ok").metadata == ok
    before = snapshot(c)
    for too_deep in (deep(MAX_DEPTH + 1), {"k": [deep(MAX_DEPTH - 1)]}, deep(50_000)):
        with pytest.raises(ValueError, match="nested more than 32 levels"):
            c.add(["deep-bad"], ["deep"], [too_deep])
    as_list: Any = 1
    for _ in range(50_000):
        as_list = [as_list]
    with pytest.raises(ValueError, match="nested more than 32 levels"):
        c.add(["deep-bad"], ["deep"], [{"k": as_list}])
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="refers to itself"):
        c.add(["deep-bad"], ["deep"], [loop])
    assert snapshot(c) == before


def test_non_string_nested_keys_are_refused() -> None:
    """json.dumps would turn {1: "x"} into {"1": "x"}: what loads back would differ from what was added."""
    with pytest.raises(ValueError, match="key 1 at \\['k'\\] is not a string"):
        validate_metadata({"k": {1: "x"}})


def test_deep_and_surrogate_filters_are_value_errors() -> None:
    c = small()
    nested: Any = 1
    for _ in range(50_000):
        nested = [nested]
    for flt in ({"n": {"eq": deep(50_000)}}, {"n": nested}, {"n": {"in": [nested]}}, {"x\ud800": 1},
                {"n": "\udc00"}, {"n": {"gte": "\ud800"}}):
        with pytest.raises(ValueError):
            c.allowed_ids(flt)
    deep_text = '{"n": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ValueError, match="--filter is nested too deeply"):
        parse_filter(deep_text, what="--filter")
    with pytest.raises(ValueError, match="not valid Unicode"):
        parse_filter('{"n": "\\ud800"}')
    with pytest.raises(ValueError, match="NaN and infinity"):
        parse_filter('{"n": 1e999}')
    with pytest.raises(ValueError, match="beyond the range of a double"):
        parse_filter('{"n": {"gt": 1' + "0" * 400 + "}}")
    assert parse_filter('{"n": {"gte": 1}}') == {"n": {"gte": 1}}


# ------------------------------------------------------------------ CLI


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"id": "a", "text": "x", "metadata": {"n": 1' + "0" * 400 + "}}", "beyond the range of a double"),
        ('{"id": "a", "text": "x", "metadata": {"n": 1e999}}', "NaN and infinity"),
        ('{"id": "a", "text": "x", "metadata": {"\\ud800": 1}}', "not valid Unicode"),
        ('{"id": "a", "text": "x", "metadata": {"n": "\\udfff"}}', "not valid Unicode"),
        ('{"id": "a", "text": "x", "metadata": {"n": ' + "[" * 40 + "]" * 40 + "}}", "nested more than 32"),
        ('{"id": "a", "text": "x", "metadata": {"n": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested too deeply"),
    ],
    ids=["huge-int", "1e999", "surrogate-key", "surrogate-value", "40-levels", "100000-levels"],
)
def test_index_cli_refuses_unstorable_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, fragment: str
) -> None:
    src = _jsonl(tmp_path / "docs.jsonl", ['{"id": "ok", "text": "fine"}', line])
    assert main(["index", str(src), "--out", str(tmp_path / "col"), "--no-dense"]) == 2
    err = capsys.readouterr().err
    assert "funnelrank index: error:" in err and fragment in err and "Traceback" not in err
    assert not (tmp_path / "col" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("flt", "fragment"),
    [
        ('{"n": 1e999}', "NaN and infinity"),
        ('{"n": {"gte": 1' + "0" * 400 + "}}", "beyond the range of a double"),
        ('{"n": "\\ud800"}', "not valid Unicode"),
        ('{"n": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"n": {"eq": ' + "[" * 500 + "]" * 500 + "}}", "scalar"),
    ],
    ids=["1e999", "huge-int", "surrogate", "100000-levels", "500-levels"],
)
def test_search_cli_refuses_bad_filters_at_parse_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flt: str, fragment: str
) -> None:
    # The collection does not even exist: the filter is refused before anything is loaded.
    assert main(["search", str(tmp_path / "none"), "q", "--no-rerank", "--filter", flt]) == 2
    err = capsys.readouterr().err
    assert "funnelrank search: error: --filter" in err and fragment in err
    assert "no such collection" not in err


# ------------------------------------------------------------------ 3. concurrent saves and loads, SIGKILL


N_DOCS = 600


def two_states(dense: bool = False) -> tuple[Collection, Collection]:
    """State A (N_DOCS documents) and state B (A plus one document holding the word "zebra"); with `dense`,
    each also has an HNSW index (over HashEmbedder vectors), so a save writes both kinds of index file."""
    ids = [f"d{i}" for i in range(N_DOCS)]
    texts = [f"document {i} about topic{i % 37} and words w{i % 101} w{i % 13}" for i in range(N_DOCS)]
    metas = [{"i": i, "g": i % 5} for i in range(N_DOCS)]
    a = Collection(dense=dense, embedder=HashEmbedder() if dense else None)
    a.add(ids, texts, metas)
    b = Collection(dense=dense, embedder=HashEmbedder() if dense else None)
    b.add([*ids, "extra"], [*texts, "a zebra appears"], [*metas, {"i": -1}])
    return a, b


def state_of(c: Collection) -> str:
    """'A' or 'B'; AssertionError for anything else (a mix of generations included)."""
    ids = c.ids()
    zebra = c.search_bm25("zebra", k=5)[0]
    if len(ids) == N_DOCS and ids[-1] == f"d{N_DOCS - 1}" and zebra == [] and c.allowed_ids({"i": -1}) == []:
        return "A"
    if len(ids) == N_DOCS + 1 and ids[-1] == "extra" and zebra == ["extra"] and c.allowed_ids({"i": -1}) == ["extra"]:
        return "B"
    raise AssertionError(f"neither state: {len(ids)} ids, zebra={zebra}")


def fork(work: Callable[[], None]) -> int:
    """Run `work` in a forked child process (exit status 0 when it returns, 1 when it raises)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        except BaseException:  # noqa: BLE001 - reported by the exit status
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def exit_status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def save_loop(
    collections: tuple[Collection, ...], root: Path, seconds: float, *, take_turns: bool = False
) -> Callable[[], None]:
    """Save each collection in turn, releasing the writer lock after each save (one writer at a time); with
    `take_turns`, a save refused because another process holds the lock is retried."""
    def work() -> None:
        deadline = time.monotonic() + seconds
        for c in itertools.cycle(collections):
            if time.monotonic() > deadline:
                return
            try:
                c.save(root)
            except CollectionLockedError:
                if not take_turns:
                    raise
                time.sleep(0.001)
            finally:
                c.close()

    return work


def load_loop(root: Path, seconds: float) -> tuple[Counter[str], list[str]]:
    seen: Counter[str] = Counter()
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            seen[state_of(Collection.load(root))] += 1
        except Exception as exc:  # noqa: BLE001 - counted
            failures.append(f"{type(exc).__name__}: {exc}")
    return seen, failures


def test_load_while_another_process_saves(tmp_path: Path) -> None:
    a, b = two_states()
    root = tmp_path / "col"
    a.save(root)
    a.close()
    saver = fork(save_loop((b, a), root, 3.0))
    seen, failures = load_loop(root, 3.0)
    assert exit_status(saver) == 0
    print(f"\nload during save: {sum(seen.values()) + len(failures)} loads {dict(seen)}, {len(failures)} failures")
    assert not failures, failures[:3]
    assert seen["A"] > 0 and seen["B"] > 0  # the saves really happened while loading


def test_two_processes_taking_turns_to_write_never_show_a_half_save(tmp_path: Path) -> None:
    """Two processes each save, release the writer lock, and retry when the other holds it: every load sees
    one whole collection."""
    a, b = two_states()
    root = tmp_path / "col"
    a.save(root)
    a.close()
    savers = [fork(save_loop((a, b), root, 2.0, take_turns=True)),
              fork(save_loop((b, a), root, 2.0, take_turns=True))]
    seen, failures = load_loop(root, 2.0)
    assert [exit_status(pid) for pid in savers] == [0, 0]
    print(f"\ntwo savers: {sum(seen.values()) + len(failures)} loads {dict(seen)}, {len(failures)} failures")
    assert not failures, failures[:3]
    with Collection.load(root) as last:
        assert state_of(last) in ("A", "B")
    assert (root / LOCK_FILE).is_file()
    # A save keeps the data directory a live reader leased: the loads above may pin a third one through the
    # savers' last commits. With no reader left, the next save leaves the current and the previous one only.
    b.save(root)
    assert len([p for p in root.iterdir() if p.name.startswith("data-")]) <= 2


def _leftovers(root: Path) -> int:
    """Entries a finished save would not leave: data directories beyond the current and previous one, and
    the manifest writer's temporary files."""
    data_dirs = [p for p in root.iterdir() if p.name.startswith("data-")]
    temps = [p for p in root.iterdir() if p.name.startswith(".manifest.json.")]
    return max(0, len(data_dirs) - 2) + len(temps)


@pytest.mark.parametrize("dense", [False, True], ids=["bm25", "bm25+hnsw"])
def test_sigkill_during_save_leaves_the_old_or_the_new_collection(tmp_path: Path, dense: bool) -> None:
    a, b = two_states(dense)
    embedder = HashEmbedder() if dense else None
    root = tmp_path / "col"
    start = time.perf_counter()
    a.save(root)
    a.close()
    b.save(root)
    b.close()
    per_save = (time.perf_counter() - start) / 2
    rng = random.Random(20240611)
    kills = failures = mid_save = 0
    seen: Counter[str] = Counter()
    while kills < 40:
        child = fork(save_loop((a, b), root, 3600.0))
        time.sleep(rng.uniform(0.0, 3 * per_save))
        os.kill(child, signal.SIGKILL)
        assert exit_status(child) == -signal.SIGKILL  # it was still saving, not stopped by an error
        kills += 1
        mid_save += _leftovers(root) > 0
        try:
            loaded = Collection.load(root, embedder=embedder)
            assert loaded.dense == dense
            seen[state_of(loaded)] += 1
        except Exception:  # noqa: BLE001 - counted
            failures += 1
    print(f"\nSIGKILL during save (dense={dense}): {kills} kills ({mid_save} left partial files), {dict(seen)}, "
          f"{failures} failures")
    assert failures == 0 and sum(seen.values()) == kills
    assert mid_save > 0  # some kills did land mid-save
    # The next save removes whatever the killed ones left behind (a killed save's lock is released too).
    a.save(root)
    assert state_of(Collection.load(root, embedder=embedder)) == "A"
    assert _leftovers(root) == 0
    assert len([p for p in root.iterdir() if p.name.startswith("data-")]) == 2
    assert not list(root.rglob("*.tmp-*"))  # partial index files of killed saves


def test_load_starts_over_when_saves_remove_the_generation_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: between reading the manifest and reading the data, two saves replace the collection (the
    second removes the generation the reader is on); the load then reads the new manifest. That is the path of a
    reader that cannot take a lease (read-only media); a leased reader keeps its commit instead
    (tests/test_collection_readers.py)."""
    from funnelrank.store.readers import ReaderLease

    monkeypatch.setattr(ReaderLease, "take", staticmethod(lambda *args: None))
    a, b = two_states()
    root = tmp_path / "col"
    a.save(root)
    a.close()
    real = store_load._load_generation
    calls = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            b.save(root)
            b.save(root)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_load, "_load_generation", racing)
    assert state_of(Collection.load(root)) == "B" and len(calls) == 2


def test_a_genuinely_missing_part_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "col"
    small().save(root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / manifest["data"] / "bm25.idx").unlink()
    calls = []
    real = store_load._load_generation
    monkeypatch.setattr(store_load, "_load_generation", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(IndexFileError, match="missing BM25 index file"):
        Collection.load(root)
    assert len(calls) == 1


# ------------------------------------------------------------------ 4. the manifest: checksum and strict schema


def _rewrite(root: Path, change: Callable[[dict[str, Any]], Any], *, fix_checksum: bool = True) -> None:
    """Edit the manifest (and, unless told otherwise, give it a valid checksum, so the schema is what fails)."""
    manifest = json.loads((root / "manifest.json").read_text())
    saved = manifest.get("checksum")
    change(manifest)
    if fix_checksum and "checksum" in manifest and manifest["checksum"] == saved:  # not what the change is about
        manifest["checksum"] = manifest_checksum(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture()
def dense_root(tmp_path: Path) -> Path:
    root = tmp_path / "dense"
    small(dense=True).save(root)
    return root


def _load_dense(root: Path) -> Collection:
    return Collection.load(root, embedder=HashEmbedder())


def test_renamed_dense_key_is_an_error_not_a_bm25_only_collection(dense_root: Path) -> None:
    assert _load_dense(dense_root).dense
    text = (dense_root / "manifest.json").read_text()
    (dense_root / "manifest.json").write_text(text.replace('"dense"', '"dense_off"'))
    with pytest.raises(IndexFileError, match=r"manifest\.json: corrupt manifest \(bad or missing top-level"):
        _load_dense(dense_root)


def test_any_edit_of_the_manifest_is_caught_by_its_checksum(dense_root: Path) -> None:
    _rewrite(dense_root, lambda m: m.update(dense=None), fix_checksum=False)  # schema-valid, but not what was saved
    with pytest.raises(IndexFileError, match=r"manifest\.json: corrupt manifest \(checksum mismatch"):
        _load_dense(dense_root)


def _set(path: str, value: Any) -> Any:
    def change(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = manifest
        for p in parents:
            target = target[p]
        target[last] = value

    return pytest.param(change, id=f"{path}={str(value)[:12]}")


@pytest.mark.parametrize(
    "change",
    [
        _set("documents", -1),
        _set("documents", 2.0),
        _set("documents", "2"),
        _set("documents", True),
        _set("documents", HUGE),
        _set("data", "../elsewhere"),
        _set("data", "data-XYZ"),
        _set("docs.sha256", "abc"),
        _set("docs.extra", 1),
        _set("docs", ["docs.jsonl"]),
        _set("bm25.file", ""),
        _set("bm25.file", "a/b"),
        _set("dense.file", ".."),
        _set("dense.embedder.dim", 0),
        _set("dense.embedder.dim", "8"),
        _set("dense.embedder.name", None),
        _set("dense.embedder.model_dir", 3),
        _set("dense.embedder.extra", "x"),
        _set("dense", "hnsw.idx"),
        _set("unexpected", 1),
        _set("checksum", "0" * 63),
        pytest.param(lambda m: m.pop("checksum"), id="no-checksum"),
        pytest.param(lambda m: m.pop("documents"), id="no-documents"),
    ],
)
def test_manifest_schema_is_strict(dense_root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    _rewrite(dense_root, change)
    with pytest.raises(IndexFileError, match=r"manifest\.json: corrupt manifest"):
        _load_dense(dense_root)


DOCS_2 = b'"documents": 2'


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace(DOCS_2, b'"documents": 1e999'),
        lambda t: t.replace(DOCS_2, b'"documents": NaN'),
        lambda t: t.replace(DOCS_2, b'"documents": ' + b"1" * 5000),
        lambda t: t.replace(DOCS_2, b'"documents": ' + b"[" * 100_000 + b"]" * 100_000),
        lambda t: t.replace(DOCS_2, b'"documents": 2, "documents": 2'),
        lambda t: t + b" " * (2 << 20),
        lambda t: t.replace(b'"data"', b'"\xff"'),
        lambda t: b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["1e999", "NaN", "5000-digits", "deep", "duplicate-key", "huge", "not-utf8", "deep-top"],
)
def test_hostile_manifest_text_is_an_index_file_error(dense_root: Path, damage: Callable[[bytes], bytes]) -> None:
    path = dense_root / "manifest.json"
    original = path.read_bytes()
    assert DOCS_2 in original
    path.write_bytes(damage(original))
    with pytest.raises(IndexFileError, match=r"manifest\.json: (corrupt manifest|not a funnelrank)"):
        _load_dense(dense_root)


def test_a_damaged_manifest_can_be_saved_over(tmp_path: Path) -> None:
    """A collection whose manifest still names our format can be re-indexed in place."""
    root = tmp_path / "col"
    small().save(root)
    path = root / "manifest.json"
    path.write_bytes(path.read_bytes().replace(DOCS_2, b'"documents": 1e999'))
    with pytest.raises(IndexFileError, match="corrupt manifest"):
        Collection.load(root)
    small().save(root)
    assert Collection.load(root).ids() == ["a", "b"]


@pytest.mark.parametrize("dense", [False, True])
def test_version_1_manifests_are_refused_with_the_command_that_rebuilds_them(tmp_path: Path, dense: bool) -> None:
    """Version 1 (no checksum) was never released: a manifest edited to it used to load unchecked."""
    root = tmp_path / "v1"
    small(dense=dense).save(root)
    manifest = json.loads((root / "manifest.json").read_text())
    _rewrite(root, lambda m: (m.pop("checksum"), m.update(version=1)), fix_checksum=False)
    with pytest.raises(IndexFileError, match=r"manifest\.json: collection format version 1 .* cannot be verified") as err:
        Collection.load(root, embedder=HashEmbedder() if dense else None)
    command = f"funnelrank index {root / manifest['data'] / 'docs.jsonl'} --out NEW_DIR"
    assert command in str(err.value)
    # The command it names rebuilds the collection from the documents it kept.
    assert main(["index", str(root / manifest["data"] / "docs.jsonl"), "--out", str(tmp_path / "new"),
                 "--no-dense"]) == 0
    rebuilt = Collection.load(tmp_path / "new")
    assert rebuilt.ids() == ["a", "b"] and rebuilt.get("b").metadata == {"n": 2, "tags": ["x"]}


@pytest.mark.parametrize("fix_checksum", [True, False], ids=["checksum-recomputed", "checksum-stale"])
def test_dense_null_in_a_dense_collection_is_refused(dense_root: Path, fix_checksum: bool) -> None:
    """Editing "dense" to null used to drop the dense index silently; even with a recomputed checksum the
    data directory's hnsw.idx gives it away."""
    _rewrite(dense_root, lambda m: m.update(dense=None), fix_checksum=fix_checksum)
    if fix_checksum:
        match = r"manifest\.json: says the collection has no dense index, but .*hnsw\.idx"
    else:
        match = r"manifest\.json: corrupt manifest \(checksum mismatch"
    with pytest.raises(IndexFileError, match=match):
        _load_dense(dense_root)


def test_a_collection_that_never_had_dense_still_loads(tmp_path: Path) -> None:
    small().save(tmp_path / "col")
    assert json.loads((tmp_path / "col" / "manifest.json").read_text())["dense"] is None
    loaded = Collection.load(tmp_path / "col")
    assert not loaded.dense and loaded.ids() == ["a", "b"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "text": "x", "metadata": {}}', '{"id": "a", "text": "y", "metadata": {}}'], "repeated id"),
        (['{"id": "a", "text": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"], "nested too deeply"),
        (['{"id": "a", "text": "x", "metadata": {}, "extra": 1}'], "not an {id, text, metadata} object"),
        (['{"id": "a", "text": 3, "metadata": {}}'], "text must be a string"),
    ],
    ids=["repeated-id", "deep", "extra-field", "bad-text"],
)
def test_a_consistent_but_wrong_docs_file_is_an_index_file_error(tmp_path: Path, lines: list[str], message: str) -> None:
    """Even with a matching sha256 (written by a buggy or foreign tool), the documents file is checked."""
    root = tmp_path / "col"
    small().save(root)
    raw = "".join(line + "\n" for line in lines).encode("utf-8")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / manifest["data"] / "docs.jsonl").write_bytes(raw)
    _rewrite(root, lambda m: m.update(documents=len(lines), docs={"file": "docs.jsonl",
                                                                   "sha256": hashlib.sha256(raw).hexdigest()}))
    with pytest.raises(IndexFileError, match=f"docs.jsonl: documents file is corrupt .*{message}"):
        Collection.load(root)


# ------------------------------------------------------------------ 5. leftovers of interrupted saves


def test_next_save_removes_leftovers_of_killed_saves_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "col"
    small().save(root)
    stale = root / "data-0123456789ab"  # a killed save's data directory, with a partial index file
    stale.mkdir()
    (stale / "bm25.idx.tmp-4242-deadbeef").write_bytes(b"partial")
    tmp_manifest = root / ".manifest.json.k2j_x9a0.tmp"  # atomic_writer's temporary file, killed mid-write
    tmp_manifest.write_text("{partial")
    kept = [root / "notes.txt", root / "data-photos", root / ".manifest.json.bak"]  # not names we create
    kept[0].write_text("mine")
    kept[1].mkdir()
    kept[2].write_text("backup")
    assert Collection.load(root).ids() == ["a", "b"]  # leftovers are harmless to readers
    small().save(root)
    assert not stale.exists() and not tmp_manifest.exists()
    assert all(p.exists() for p in kept)
    assert len([p for p in root.iterdir() if DATA_RE.fullmatch(p.name)]) == 2


def test_a_directory_holding_only_our_leftovers_can_be_saved_into(tmp_path: Path) -> None:
    """A first save killed before its manifest leaves the lock file, a data directory, a temporary manifest."""
    root = tmp_path / "col"
    root.mkdir()
    (root / LOCK_FILE).touch()
    (root / "data-aaaaaaaaaaaa").mkdir()
    (root / ".manifest.json.abcdefgh.tmp").write_text("{")
    (root / ".readers").mkdir()  # and the reader lease directory of a reader of the killed save
    small().save(root)
    assert Collection.load(root).ids() == ["a", "b"]
    others = sorted(p.name for p in root.iterdir() if not p.name.startswith("data-"))
    # wal.log: the empty log of the commit just made; .readers: where readers' leases go (the load's is gone)
    assert others == [".readers", LOCK_FILE, "manifest.json", "wal.log"]
    assert not list((root / ".readers").iterdir())


def test_a_foreign_directory_gets_no_lock_file(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not empty"):
        small().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


# ------------------------------------------------------------------ 6. huge k and ef_search


def test_huge_k_is_capped_at_the_collection_size() -> None:
    c = small(dense=True)
    assert c.search_bm25("hello", k=10**12)[0] == ["a"]
    assert c.search_bm25_batch(["hello", "greeting"], k=10**12)[1][0] == ["b"]
    vec = c.embed_query("hello")
    ids, scores = c.search_dense(vec, k=10**12)
    assert sorted(ids) == ["a", "b"] and len(scores) == 2
    assert sorted(c.search_dense_batch(vec[None, :], k=10**12, allow=["b"])[0][0]) == ["b"]
    assert c.search_dense(vec, k=np.int64(10**12))[0] == ids
    with pytest.raises(ValueError, match="k must be >= 1"):
        c.search_bm25("hello", k=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        c.search_dense(vec, k=-5)
    empty = Collection(dense=True, embedder=HashEmbedder())
    assert empty.search_bm25("hello", k=10**12)[0] == []
    assert empty.search_dense(vec, k=10**12)[0] == []


@pytest.mark.parametrize("retriever", ["hybrid", "dense", "bm25"])
@pytest.mark.parametrize("setting", ["candidates", "top_k"])
def test_out_of_range_candidates_and_top_k_are_value_errors(retriever: str, setting: str) -> None:
    """candidates=2**63 on a dense or hybrid collection used to be a bare TypeError from the core's rrf."""
    from funnelrank.pipeline import Pipeline

    pipe = Pipeline(small(dense=True), retriever=retriever, reranker=None)
    for bad in (2**63, 2**64, 10**30):
        with pytest.raises(ValueError, match=rf"{setting} must be a positive int no larger than 9223372036854775807"):
            pipe.search("hello", **{setting: bad})
        with pytest.raises(ValueError, match=setting):
            pipe.search_batch(["hello"], **{setting: bad})
        with pytest.raises(ValueError, match=setting):
            Pipeline(small(dense=True), retriever=retriever, reranker=None, **{setting: bad})
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match=setting):
            pipe.search("hello", **{setting: bad})
    # The largest accepted value works, capped at the collection's size.
    assert {r.id for r in pipe.search("hello world greeting", **{setting: 2**63 - 1}).results} <= {"a", "b"}


def test_fusion_top_k_beyond_64_bits_is_a_value_error() -> None:
    from funnelrank._core import convex_fusion, rrf

    rankings = [(["a", "b"], [2.0, 1.0]), (["b"], [1.0])]
    for fuse in (rrf, convex_fusion):
        with pytest.raises(ValueError, match="top_k must be <= 9223372036854775807, got 9223372036854775808"):
            fuse(rankings, top_k=2**63)
        with pytest.raises(ValueError, match="top_k must be >= 0"):
            fuse(rankings, top_k=-(2**70))
        assert list(fuse(rankings, top_k=2**63 - 1).ids) == list(fuse(rankings).ids)


def test_analyzer_settings_are_capped() -> None:
    from funnelrank._core import Analyzer, BM25Index

    for bad in (0, 256, 2**31, 2**63, 2**64):
        with pytest.raises(ValueError, match=r"min_token_length must be (>=|<=)"):
            Analyzer(min_token_length=bad)
    assert Analyzer(min_token_length=255).min_token_length == 255
    index = BM25Index(analyzer=Analyzer(min_token_length=3))
    index.add(["a"], ["an ox and a zebra"])
    assert index.search("zebra ox", k=5)[0] == ["a"]


def test_an_index_file_with_an_out_of_range_analyzer_setting_is_refused(tmp_path: Path) -> None:
    """The cap holds for index files too (the analyzer is rebuilt from the file's settings)."""
    import struct
    import zlib

    from funnelrank._core import Analyzer, BM25Index

    index = BM25Index(analyzer=Analyzer(min_token_length=3))
    index.add(["a"], ["an ox and a zebra"])
    path = tmp_path / "x.idx"
    index.save(path)
    raw = bytearray(path.read_bytes())
    header, trailer = 12, 20  # magic + version; payload size + CRC-32 + end magic
    offset = header + 8 + 8 + 1  # k1, b, lowercase, then min_token_length (u64)
    assert struct.unpack_from("<Q", raw, offset)[0] == 3
    struct.pack_into("<Q", raw, offset, 2**31)
    payload = bytes(raw[header:len(raw) - trailer])
    struct.pack_into("<I", raw, len(raw) - 12, zlib.crc32(payload))  # a consistent file, only the value is wrong
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match=r"min_token_length must be in \[1, 255\], got 2147483648"):
        BM25Index.load(path)


class Spy:
    """Wraps a core index and records the keyword arguments of its searches."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.inner.search(*args, **kwargs)

    def search_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.inner.search_batch(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_core_is_never_asked_for_more_than_the_collection_holds() -> None:
    c = Collection(dense=True, embedder=HashEmbedder(), hnsw={"ef_search": 1 << 20})
    c.add([f"d{i}" for i in range(30)], [f"hello text {i}" for i in range(30)])
    c._bm25, c._hnsw = Spy(c._bm25), Spy(c._hnsw)
    vec = c.embed_query("hello")
    assert len(c.search_bm25("hello", k=10**12)[0]) == 30
    assert len(c.search_bm25_batch(["hello"], k=10**12)[0][0]) == 30
    assert len(c.search_dense(vec, k=10**12)[0]) == 30
    assert len(c.search_dense_batch(vec[None, :], k=10**12)[0][0]) == 30
    assert len(c.search_dense(vec, k=5)[0]) == 5
    assert [call["k"] for call in c._bm25.calls] == [30, 30]
    assert [(call["k"], call["ef"]) for call in c._hnsw.calls] == [(30, 30), (30, 30), (5, 30)]
    # An ef_search no wider than the index is left to the index.
    c._hnsw.inner.ef_search = 16
    c.search_dense(vec, k=5)
    assert c._hnsw.calls[-1]["ef"] is None


def test_ef_search_beyond_the_core_limit_is_refused_or_harmless() -> None:
    try:
        c = Collection(dense=True, embedder=HashEmbedder(), hnsw={"ef_search": 2**40})
    except ValueError as exc:  # the core refuses it up front (clear, and nothing allocated)
        assert "ef_search" in str(exc)
        return
    c.add(["a", "b"], ["x", "y"])
    assert sorted(c.search_dense(c.embed_query("x"), k=10)[0]) == ["a", "b"]


def test_huge_ef_search_gives_the_results_of_an_exhaustive_beam() -> None:
    wide = Collection(dense=True, embedder=HashEmbedder(), hnsw={"ef_search": 1 << 20})
    ids = [f"d{i}" for i in range(300)]
    wide.add(ids, [f"text {i}" for i in range(300)])
    wide.delete(ids[:20])
    live = ids[20:]
    vectors = {i: v / np.linalg.norm(v) for i, v in zip(ids, HashEmbedder().embed([f"text {i}" for i in range(300)]))}

    def exact(q: np.ndarray, k: int, among: list[str]) -> list[str]:
        qn = q / np.linalg.norm(q)
        return sorted(among, key=lambda i: -float(vectors[i] @ qn))[:k]

    queries = np.stack([HashEmbedder().embed_query(f"q{i}") for i in range(5)])
    for q in queries:
        assert wide.search_dense(q, k=10)[0] == exact(q, 10, live)
        assert wide.search_dense(q, k=10, allow=ids[10:60])[0] == exact(q, 10, ids[20:60])
    batch = wide.search_dense_batch(queries, k=10**12)
    assert [r[0] for r in batch] == [exact(q, len(live), live) for q in queries]
