"""SIGKILL a writer at random moments and check what survives (issue 28): shared by
tests/test_collection_crash.py (a few kills) and bench/bench_crash.py (the full count).

Each trial forks a child that opens the collection for writing (``durability="fsync"``) and loops over random
adds (1 to 4 new documents), deletes (1 to 3 present ones), commits and merges, reporting over a pipe each
operation it *begins* and each one that was *acknowledged* (returned). The parent kills it with SIGKILL after a
random delay, reopens the collection for writing (replaying the log) and checks:

* every acknowledged write is there: the documents equal, in order and content, the model built from the
  acknowledged operations, or that model plus the one operation in flight (all of it, never a part);
* ``check_collection(fix=True)`` then leaves a sound collection with no unreferenced entry;
* a reader opened before the child started still finds every file of its commit, whole (its lease pins it through
  the child's commits and merges, and through ``check --fix``);
* with ``dense=True`` (a deterministic :class:`HashEmbedder`, no model), also that the HNSW indexes hold exactly
  the live documents, each with its text's vector (none missing, none stale, none half-written), and that a
  search for a document's own vector finds it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hashlib

import numpy as np
from funnelrank.store.check import check_collection
from funnelrank.store.collection import Collection
from funnelrank.store.load import read_commit
from funnelrank.store.manifest import read_manifest

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega cat dog bird fish tree river stone cloud").split()


@dataclass
class CrashStats:
    """What a run of :func:`crash_trials` saw."""

    kills: int = 0
    acknowledged: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)  # kind of the operation the kill interrupted
    applied_in_flight: int = 0  # in-flight operations found whole after the reopen (logged, not yet acknowledged)
    documents: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.kills} SIGKILLs in {self.seconds:.1f} s, {self.acknowledged} acknowledged operations, "
                f"interrupted: {dict(self.in_flight)}, in-flight found applied whole: {self.applied_in_flight}, "
                f"final documents: {self.documents}, failures: {len(self.failures)}")


class HashEmbedder:
    """A deterministic 8-dimensional "embedder" (a hash of the text), so dense crash runs and tests need no model."""

    name = "crash-hash-embedder"
    fingerprint = "c" * 64

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim

    def embed_query(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def embed(self, texts: list[str], show_progress: bool = False, desc: str | None = None) -> np.ndarray:
        return np.stack([self.embed_query(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def _open(root: Path, dense: bool) -> Collection:
    return Collection.load(root, writer=True, durability="fsync", embedder=HashEmbedder() if dense else None)


def _dense_problem(col: Collection) -> str | None:
    """What is wrong with a dense collection's HNSW side after a reopen (None: nothing)."""
    hnsw = col._hnsw
    if hnsw is None:
        return "the dense index is gone"
    ids = col.ids()
    if len(hnsw) != len(ids):
        return f"the HNSW indexes hold {len(hnsw)} vectors for {len(ids)} documents"
    if not ids:
        return None
    unit = HashEmbedder().embed([col.text(i) for i in ids])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    got = hnsw.vectors(ids)
    got = got / np.linalg.norm(got, axis=1, keepdims=True)  # a cosine index may keep them normalized
    bad = [ids[r] for r in np.flatnonzero(~np.isclose(got, unit, atol=1e-5).all(axis=1))]
    if bad:
        return f"{len(bad)} stored vector(s) are not their text's, e.g. {bad[:3]}"
    probe = ids[len(ids) // 2]
    found, _ = col.search_dense(HashEmbedder().embed_query(col.text(probe)), k=5)
    if col.text(probe) not in {col.text(i) for i in found}:  # equal texts have equal vectors
        return f"a search for {probe!r}'s own vector does not find it (got {found})"
    return None


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))


def _child(root: Path, seed: int, fd: int, merges: bool, dense: bool) -> None:  # pragma: no cover - the child
    rng = random.Random(seed)

    def say(kind: str, payload: Any = None) -> None:
        os.write(fd, (json.dumps([kind, payload]) + "\n").encode())

    col = _open(root, dense)
    counter = 0
    while True:
        r = rng.random()
        ids = col.ids()
        if r < 0.55 or not ids:
            new = [f"s{seed}-{counter + i}" for i in range(rng.randint(1, 4))]
            counter += len(new)
            docs = [[i, _text(rng), {"n": rng.randint(0, 9)}] for i in new]
            say("B", ["add", docs])
            col.add([d[0] for d in docs], [d[1] for d in docs], [d[2] for d in docs])
        elif r < 0.85:
            gone = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
            say("B", ["delete", gone])
            col.delete(gone)
        elif r < 0.97 or not merges:
            say("B", ["commit", None])
            col.commit()
        else:
            say("B", ["merge", None])
            col.merge()  # type: ignore[attr-defined]
        say("A")


def _apply(model: dict[str, tuple[str, dict[str, Any]]], op: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    out = dict(model)
    kind, arg = op
    if kind == "add":
        for doc_id, text, meta in arg:
            out[doc_id] = (text, meta)
    elif kind == "delete":
        for doc_id in arg:
            del out[doc_id]
    return out


def _state(col: Collection) -> dict[str, tuple[str, dict[str, Any]]]:
    return {d.id: (d.text, d.metadata) for d in col}


def crash_trials(root: Path, trials: int, seed: int, *, max_wait: float = 0.5, merges: bool = False,
                 dense: bool = False) -> CrashStats:
    """Run `trials` kill-and-reopen rounds on collection directory `root` (created when missing; `dense`: with
    an HNSW index over :class:`HashEmbedder` vectors)."""
    stats = CrashStats()
    start = time.perf_counter()
    rng = random.Random(seed)
    if not root.exists():
        with Collection(dense=dense, embedder=HashEmbedder() if dense else None) as first:
            first.save(root)
        _open(root, dense).close()
    with _open(root, dense) as col:
        model = _state(col)
    for trial in range(trials):
        _, pinned_manifest = read_manifest(root)
        reader = Collection.load(root, embedder=HashEmbedder() if dense else None)
        if reader.pinned != pinned_manifest["generation"]:
            stats.failures.append(f"trial {trial}: the reader pinned {reader.pinned}, not the current commit")
            break
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_end)
            try:
                _child(root, seed * 100_003 + trial, write_end, merges, dense)
            finally:
                os._exit(1)
        os.close(write_end)
        time.sleep(rng.uniform(0.02, max_wait))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        stats.kills += 1
        with os.fdopen(read_end, "rb") as fh:
            lines = fh.read().decode().splitlines()
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            stats.failures.append(f"trial {trial}: the child ended on its own (status {status})")
            continue
        pending = None
        for line in lines:
            try:
                kind, payload = json.loads(line)
            except ValueError:
                break  # a line cut by the kill (never one that was acknowledged)
            if kind == "B":
                pending = payload
            else:
                assert pending is not None
                model = _apply(model, pending)
                stats.acknowledged += 1
                pending = None
        stats.in_flight[pending[0] if pending else "none"] += 1
        try:
            with _open(root, dense) as col:
                got = _state(col)
                broken = _dense_problem(col) if dense else None
        except Exception as exc:  # noqa: BLE001 - reported
            stats.failures.append(f"trial {trial}: reopen failed: {type(exc).__name__}: {exc}")
            break
        with_pending = _apply(model, pending) if pending else model
        if list(got.items()) == list(model.items()):
            pass
        elif list(got.items()) == list(with_pending.items()):
            stats.applied_in_flight += pending[0] in ("add", "delete")  # type: ignore[index]
        else:
            lost = sorted(set(model) - set(got))[:5]
            extra = sorted(set(got) - set(with_pending))[:5]
            stats.failures.append(f"trial {trial}: state differs from the acknowledged writes (in flight "
                                  f"{pending}); missing {lost}, unexpected {extra}")
            break
        if broken:
            stats.failures.append(f"trial {trial}: dense index after the reopen: {broken}")
            break
        model = got
        fixed = check_collection(root, fix=True)
        after = check_collection(root)
        if not fixed.ok or not after.ok or after.unreferenced:
            stats.failures.append(f"trial {trial}: check --fix left problems {fixed.problems + after.problems} or "
                                  f"unreferenced entries {[str(p) for p, _ in after.unreferenced]}")
            break
        damage: list[str] = []
        read_commit(root, pinned_manifest, damage)
        reader.close()
        if damage:
            stats.failures.append(f"trial {trial}: the reader's pinned commit lost files: {damage[:3]}")
            break
    stats.documents = len(model)
    stats.seconds = time.perf_counter() - start
    return stats
