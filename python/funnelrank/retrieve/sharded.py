"""A collection split into K shards that answer exactly as the whole collection does.

    >>> from funnelrank import Collection
    >>> from funnelrank.retrieve.sharded import ShardedCollection, split_collection
    >>> c = Collection(dense=False)
    >>> c.add(["a", "b", "c"], ["cats sleep on mats", "dogs chase cats", "birds sing"])
    >>> sharded = ShardedCollection(split_collection(c, 2))
    >>> from funnelrank.retrieve.retrievers import make_retriever
    >>> [x.id for x in make_retriever(sharded, "bm25").retrieve("cats", k=10).candidates]
    ['a', 'b']

Each document goes to shard ``blake2b(id) mod K`` (:func:`shard_of`), in the collection's order, and keeps its
position in that order (its *ordinal*): ties are broken by it, as one collection breaks them by insertion order.

* **BM25** is scored with the *global* statistics (Elasticsearch's DFS query-then-fetch): the ingress asks
  every shard for the document frequencies of the query terms, sums them with the shards' document counts and
  lengths, and each shard scores its documents with those (``BM25Index.search_global``). The merged top-k is
  the whole collection's: same ids, same order, bit-identical float32 scores (merged on float64).
* **Dense**: each shard searches its own HNSW graph; the merge of the shards' top-k by similarity is the top-k
  over the union (exact where each shard's search is; each shard's graph is smaller, so at a given ``ef`` a
  shard's search is at least as thorough).
* **Hybrid** fuses the merged BM25 and dense lists (:class:`funnelrank.retrieve.retrievers.HybridRetriever`), as one
  collection fuses its own.
* **Filters** are resolved by each shard on its own documents' metadata; BM25's statistics stay corpus-wide,
  as in one collection.

A shard is anything with the :class:`Shard` calls: :class:`LocalShard` (a :class:`Collection` in this process)
or :mod:`funnelrank.serve.ray_serve`'s client of a Ray Serve shard deployment. A shard that cannot answer raises
:class:`ShardUnavailableError` (the service answers 503). On disk (``funnelrank shard COLLECTION --shards K
--out DIR``, :func:`write_shards`): ``DIR/shards.json`` (checksummed manifest), ``DIR/shard-000/`` ... (saved
collections) and ``DIR/shard-000.ordinals.npy`` ...; the directory appears atomically, complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from funnelrank.candidates import Candidate, Stage1Hit
from funnelrank.checks import check_k
from funnelrank.core import IndexFileError
from funnelrank.files import file_sha256
from funnelrank.retrieve.retrievers import Retrieved, _ms, check_queries, check_query
from funnelrank.store.collection import Collection
from funnelrank.store.embedders import embedder_identity, find_embedder
from funnelrank.store.manifest import manifest_checksum

__all__ = [
    "LocalShard",
    "Shard",
    "ShardHits",
    "ShardInfo",
    "ShardUnavailableError",
    "ShardedCollection",
    "ShardedRetriever",
    "load_shards",
    "shard_of",
    "split_collection",
    "write_shards",
]

MANIFEST = "shards.json"
FORMAT = "funnelrank-shards"
VERSION = 1
MAX_SHARDS = 4096

T = TypeVar("T")


class ShardUnavailableError(RuntimeError):
    """A shard could not answer (its process died, or it timed out): the request fails, never with a partial
    answer. The service answers 503 with Retry-After."""


def shard_of(doc_id: str, shards: int) -> int:
    """The shard (0..`shards`-1) a document id belongs to: the first 8 bytes of its UTF-8 blake2b digest,
    mod `shards` (stable across processes and machines).

        >>> shard_of("doc-1", 3)
        2
    """
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


@dataclass(frozen=True)
class ShardInfo:
    """What a shard holds: its documents, their total BM25 length, whether it has a dense index, the
    identity of the embedder it was built with (:func:`funnelrank.store.embedders.embedder_identity`), and how
    its HNSW index stores vectors (``"f32"``, ``"f16"``, ``"int8"``; None without one)."""

    documents: int
    total_length: int
    dense: bool
    embedder: dict[str, Any] | None = None
    storage: str | None = None


@dataclass
class ShardHits:
    """One query's top-k from one shard, best first: ids, float32 scores (what one collection reports), the
    exact float64 scores the shard ranked by (to merge on), global ordinals (ties), texts and metadata. Plain
    lists, so it pickles cheaply between processes."""

    ids: list[str]
    scores: list[float]
    exact: list[float]
    ordinals: list[int]
    texts: list[str]
    metadata: list[dict[str, Any]]


@runtime_checkable
class Shard(Protocol):
    """The calls a shard answers (see the module doc)."""

    def info(self) -> ShardInfo:
        """Its documents, their total length and whether it is dense."""
        ...

    def doc_freqs(self, queries: Sequence[str]) -> dict[str, int]:
        """The analyzed terms of `queries` -> the shard's documents holding each (terms it lacks: 0)."""
        ...

    def bm25(
        self, queries: Sequence[str], k: int, *, documents: int, total_length: int, df: Mapping[str, int],
        filter: Mapping[str, Any] | None = None,
    ) -> list[ShardHits]:
        """Each query's BM25 top-`k` among its documents matching `filter`, scored with the global statistics."""
        ...

    def dense(self, vectors: Any, k: int, *, filter: Mapping[str, Any] | None = None) -> list[ShardHits]:
        """Each query vector's HNSW top-`k` among its documents matching `filter`."""
        ...


class LocalShard:
    """A shard held in this process: a :class:`Collection` and its documents' global ordinals (aligned with
    ``collection.ids()``). Thread-safe for reads, as the collection is."""

    def __init__(self, collection: Collection, ordinals: Sequence[int] | np.ndarray) -> None:
        ords = np.asarray(ordinals, dtype=np.int64)
        ids = collection.ids()
        if ords.ndim != 1 or len(ords) != len(ids):
            raise ValueError(f"a shard of {len(ids)} documents needs {len(ids)} ordinals, got shape {ords.shape}")
        self.collection = collection
        self.ordinals = ords
        """Each document's position in the whole collection, aligned with ``collection.ids()``."""
        self._ordinal = dict(zip(ids, ords.tolist()))
        if len(set(self._ordinal.values())) != len(ids):
            raise ValueError("a shard's ordinals must be distinct")

    def __repr__(self) -> str:
        return f"LocalShard({len(self.collection)} documents)"

    def info(self) -> ShardInfo:
        documents, total_length = self.collection.bm25_corpus_stats()
        embedder = self.collection.embedder
        return ShardInfo(documents, total_length, self.collection.dense,
                         embedder_identity(embedder) if embedder is not None else None, self.collection.hnsw_storage)

    def doc_freqs(self, queries: Sequence[str]) -> dict[str, int]:
        return self.collection.bm25_doc_freqs(queries)

    def bm25(
        self, queries: Sequence[str], k: int, *, documents: int, total_length: int, df: Mapping[str, int],
        filter: Mapping[str, Any] | None = None,
    ) -> list[ShardHits]:
        allow = self.collection.allowed_ids(filter, sort=False)
        results = self.collection.search_bm25_global(
            list(queries), k, allow, documents=documents, total_length=total_length, df=dict(df)
        )
        return [self._hits(ids, scores, exact) for ids, scores, exact in results]

    def dense(self, vectors: Any, k: int, *, filter: Mapping[str, Any] | None = None) -> list[ShardHits]:
        allow = self.collection.allowed_ids(filter, sort=False)
        results = self.collection.search_dense_batch(np.asarray(vectors, dtype=np.float32), k, allow)
        return [self._hits(ids, scores, scores) for ids, scores in results]

    def _hits(self, ids: Sequence[str], scores: Any, exact: Any) -> ShardHits:
        docs = self.collection.stored_many(ids)
        keep = [i for i, d in enumerate(docs) if d is not None]  # None: deleted since the search ran
        s, e = np.asarray(scores).tolist(), np.asarray(exact, dtype=np.float64).tolist()
        return ShardHits(
            [ids[i] for i in keep], [s[i] for i in keep], [e[i] for i in keep],
            [self._ordinal[ids[i]] for i in keep], [docs[i].text for i in keep],  # type: ignore[union-attr]
            [docs[i].metadata for i in keep],  # type: ignore[union-attr]
        )


def _merge(lists: Sequence[ShardHits], k: int) -> ShardHits:
    """The top-`k` of the shards' lists by (exact score descending, ordinal ascending)."""
    rows = [(h.exact[i], h.ordinals[i], h, i) for h in lists for i in range(len(h.ids))]
    rows.sort(key=lambda r: (-r[0], r[1]))
    out = ShardHits([], [], [], [], [], [])
    for _, _, h, i in rows[:k]:
        out.ids.append(h.ids[i])
        out.scores.append(h.scores[i])
        out.exact.append(h.exact[i])
        out.ordinals.append(h.ordinals[i])
        out.texts.append(h.texts[i])
        out.metadata.append(h.metadata[i])
    return out


class ShardedCollection:
    """K shards behind one collection-like front: ``len()``, ``dense``, query embedding, and the retrievers
    :func:`funnelrank.retrieve.retrievers.make_retriever` builds over it (``"bm25"``, ``"dense"``, ``"hybrid"``), so a
    :class:`funnelrank.Pipeline` and the service use it as they use a :class:`Collection`.

    Args:
        shards: the shards (:class:`LocalShard`, or remote ones), in shard order.
        embedder: the bi-encoder that embeds queries for dense search (checked by fingerprint against the one
            the shards were built with); None: a local shard's, else the one their manifests name.
        max_workers: threads that call the shards at once (default: one per shard).

    The shards are read-only: their statistics are read once, here.
    """

    def __init__(self, shards: Sequence[Shard], *, embedder: Any | None = None, max_workers: int | None = None) -> None:
        shards = list(shards)
        if not shards:
            raise ValueError("a sharded collection needs at least one shard")
        self.shards = shards
        self._pool = ThreadPoolExecutor(max_workers=max_workers or len(shards), thread_name_prefix="funnelrank-shard")
        infos = self._scatter(lambda s: s.info())
        if len({i.dense for i in infos}) != 1:
            raise ValueError("every shard must be dense, or none")
        self.infos = infos
        self.documents = sum(i.documents for i in infos)
        self.total_length = sum(i.total_length for i in infos)
        fingerprints = {str((i.embedder or {}).get("fingerprint")) for i in infos}
        if len(fingerprints) != 1:
            raise ValueError("the shards were embedded with different embedders")
        if infos[0].dense:
            if embedder is None:
                embedder = next((s.collection.embedder for s in shards if isinstance(s, LocalShard)), None)
            if embedder is None:
                embedder = find_embedder(dict(infos[0].embedder or {}), Path("shard 0"))
            if str(embedder.fingerprint) not in fingerprints:
                raise ValueError(f"embedder {embedder.name!r} is not the one the shards were built with")
        self.embedder = embedder if infos[0].dense else None

    def __len__(self) -> int:
        return self.documents

    def __repr__(self) -> str:
        return f"ShardedCollection({len(self.shards)} shards, {self.documents} documents, dense={self.dense})"

    @property
    def dense(self) -> bool:
        """Whether the shards have dense indexes (and this front an embedder for queries)."""
        return self.embedder is not None

    def close(self) -> None:
        """Stop the threads that call the shards."""
        self._pool.shutdown(wait=False)

    def _scatter(self, call: Callable[[Shard], T]) -> list[T]:
        """`call` on every shard at once; the results in shard order. The first error (a shard's
        ShardUnavailableError, or any other) is raised once every shard has answered or failed."""
        futures = [self._pool.submit(call, s) for s in self.shards]
        results: list[T] = []
        error: BaseException | None = None
        for f in futures:
            try:
                results.append(f.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after every shard answered
                error = error or exc
        if error is not None:
            raise error
        return results

    def health(self) -> list[dict[str, Any]]:
        """Per shard: ``{"shard": i, "up": bool, "documents": n}`` (``"error"`` when down), asking each now."""

        def probe(s: Shard) -> dict[str, Any]:
            try:
                return {"up": True, "documents": s.info().documents}
            except Exception as exc:  # noqa: BLE001 - a down shard is a state to report, not an error here
                return {"up": False, "error": str(exc) or type(exc).__name__}

        return [{"shard": i, **r} for i, r in enumerate(self._scatter(probe))]

    def stage1_retriever(self, name: str) -> ShardedRetriever:
        """The ``"bm25"`` or ``"dense"`` retriever over these shards (what
        :func:`funnelrank.retrieve.retrievers.make_retriever` asks a sharded collection for)."""
        return ShardedRetriever(self, name)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings, ``[n, dim]`` (a dense sharded collection only)."""
        if self.embedder is None:
            raise ValueError("these shards have no dense index, or no embedder was given for queries")
        return np.asarray(self.embedder.embed(list(queries)), dtype=np.float32)

    def search_bm25(self, queries: Sequence[str], k: int, filter: Mapping[str, Any] | None) -> list[ShardHits]:
        """Each query's BM25 top-`k` over all shards, scored with the global statistics."""
        df: dict[str, int] = {}
        for part in self._scatter(lambda s: s.doc_freqs(queries)):
            for term, n in part.items():
                df[term] = df.get(term, 0) + int(n)
        parts = self._scatter(lambda s: s.bm25(queries, k, documents=self.documents, total_length=self.total_length,
                                               df=df, filter=filter))
        return [_merge([p[q] for p in parts], k) for q in range(len(queries))]

    def search_dense(self, vectors: np.ndarray, k: int, filter: Mapping[str, Any] | None) -> list[ShardHits]:
        """Each query vector's dense top-`k`: the merge of the shards' top-`k`."""
        parts = self._scatter(lambda s: s.dense(vectors, k, filter=filter))
        return [_merge([p[q] for p in parts], k) for q in range(len(vectors))]


class ShardedRetriever:
    """BM25 (``name="bm25"``) or dense (``"dense"``) retrieval over a :class:`ShardedCollection`, with the
    hits under the same name in :attr:`Candidate.stage1` as the collection retrievers use; hybrid is
    :class:`funnelrank.retrieve.retrievers.HybridRetriever` over the two (what :func:`~funnelrank.retrieve.retrievers.make_retriever`
    builds)."""

    def __init__(self, collection: ShardedCollection, name: str) -> None:
        if name not in ("bm25", "dense"):
            raise ValueError(f"a sharded retriever is 'bm25' or 'dense', got {name!r}")
        if name == "dense" and not collection.dense:
            raise ValueError("dense retrieval needs dense shards and an embedder for queries (use retriever='bm25')")
        self.collection = collection
        self.name = name

    def __repr__(self) -> str:
        return f"ShardedRetriever({self.collection!r}, {self.name!r})"

    def retrieve(
        self, query: str, k: int, *, filter: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> Retrieved:
        """The top-`k` candidates over every shard for `query` (matching `filter`)."""
        return self.retrieve_batch([check_query(query)], k, filter=filter)[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        query_ids: Sequence[str | None] | None = None,
    ) -> list[Retrieved]:
        """:meth:`retrieve` for many queries: one round trip to the shards per phase for the whole batch."""
        from funnelrank.retrieve.filters import validate_filter

        texts, _ = check_queries(queries, query_ids)
        k = check_k(k)
        if filter is not None:
            validate_filter(filter)  # a malformed filter is a ValueError here, not K remote ones
        if not texts:
            return []
        timings: dict[str, float] = {}
        if self.name == "bm25":
            t = time.perf_counter()
            merged = self.collection.search_bm25(texts, k, filter)
            timings["bm25"] = _ms(t)
        else:
            t = time.perf_counter()
            vectors = self.collection.embed_queries(texts)
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            merged = self.collection.search_dense(vectors, k, filter)
            timings["dense"] = _ms(t)
        per_query = {key: ms / len(texts) for key, ms in timings.items()}
        return [Retrieved(self._candidates(h), dict(per_query)) for h in merged]

    def _candidates(self, h: ShardHits) -> list[Candidate]:
        return [
            Candidate(h.ids[i], h.texts[i], i + 1, h.scores[i], h.metadata[i], {self.name: Stage1Hit(i + 1, h.scores[i])})
            for i in range(len(h.ids))
        ]


# ---------------------------------------------------------------------------------------------- splitting


def split_collection(collection: Collection, shards: int, *, storage: str | None = None) -> list[LocalShard]:
    """Split `collection` into `shards` in-memory shards (:func:`shard_of` assignment; vectors are copied from
    its HNSW index, not embedded again). The collection is not changed. `storage` gives the shards' HNSW
    indexes another vector storage (``"f32"``, ``"f16"``, ``"int8"``; default the collection's)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an int in 1..{MAX_SHARDS}, got {shards!r}")
    docs = list(collection)
    groups: list[list[int]] = [[] for _ in range(shards)]
    for ordinal, doc in enumerate(docs):
        groups[shard_of(doc.id, shards)].append(ordinal)
    out = []
    for members in groups:
        part = collection.empty_like(storage=storage)
        ids = [docs[o].id for o in members]
        vectors = collection.vectors(ids) if collection.dense and ids else None
        part.add(ids, [docs[o].text for o in members], [docs[o].metadata for o in members], vectors=vectors,
                 show_progress=False)
        out.append(LocalShard(part, members))
    return out


def write_shards(collection: Collection, out: str | os.PathLike[str], shards: int, *,
                 storage: str | None = None) -> Path:
    """Split `collection` into `shards` and save them under directory `out` (see the module doc), atomically:
    written beside it, then renamed into place. FileExistsError when `out` exists (nothing is overwritten).
    `storage`: the shards' HNSW vector storage, saved with each (default the collection's)."""
    target = Path(out)
    if target.exists():
        raise FileExistsError(f"{target} already exists; give a new directory for the shards")
    parts = split_collection(collection, shards, storage=storage)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        entries = []
        for i, part in enumerate(parts):
            name = f"shard-{i:03d}"
            part.collection.save(tmp / name)
            part.collection.close()  # its writer lock: the directory is renamed into place below
            np.save(tmp / f"{name}.ordinals.npy", part.ordinals, allow_pickle=False)
            entries.append({"path": name, "documents": len(part.collection),
                            "ordinals": f"{name}.ordinals.npy", "sha256": file_sha256(tmp / f"{name}.ordinals.npy")})
        manifest = {"format": FORMAT, "version": VERSION, "shards": shards, "documents": len(collection),
                    "dense": collection.dense, "assignment": "blake2b-64(id) mod shards", "parts": entries}
        manifest["checksum"] = manifest_checksum(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked manifest of a shard directory; IndexFileError when missing, corrupt or inconsistent."""
    root = Path(path)
    file = root / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("checksum") != manifest_checksum(manifest):
            raise ValueError("checksum mismatch")
        if manifest["format"] != FORMAT or manifest["version"] != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} manifest")
        parts = manifest["parts"]
        if not isinstance(parts, list) or len(parts) != int(manifest["shards"]) or not 1 <= len(parts) <= MAX_SHARDS:
            raise ValueError("wrong number of parts")
        for p in parts:
            for key in ("path", "ordinals"):
                if not isinstance(p[key], str) or Path(p[key]).name != p[key] or p[key] in ("", ".", ".."):
                    raise ValueError(f"bad part {key} {p[key]!r}")
    except FileNotFoundError:
        raise IndexFileError(f"{file}: not found (is {root} a shard directory written by `funnelrank shard`?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexFileError(f"{file}: corrupt shard manifest ({exc})") from None
    return dict(manifest)


def is_shard_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a directory of shards (it holds ``shards.json``)."""
    return (Path(path) / MANIFEST).is_file()


def load_shard(path: str | os.PathLike[str], index: int, *, embedder: Any | None = None) -> LocalShard:
    """Shard `index` of the shard directory `path`, loaded into this process (checked against the manifest)."""
    root = Path(path)
    manifest = read_manifest(root)
    parts = manifest["parts"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(parts):
        raise ValueError(f"shard index must be in 0..{len(parts) - 1}, got {index!r}")
    part = parts[index]
    ordinals_file = root / part["ordinals"]
    try:
        if file_sha256(ordinals_file) != part["sha256"]:
            raise IndexFileError(f"{ordinals_file}: checksum mismatch")
        ordinals = np.load(ordinals_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        if isinstance(exc, IndexFileError):
            raise
        raise IndexFileError(f"{ordinals_file}: unreadable ({exc})") from None
    collection = Collection.load(root / part["path"], embedder=embedder)
    if len(collection) != int(part["documents"]) or ordinals.dtype != np.int64 or ordinals.ndim != 1:
        raise IndexFileError(f"{root / part['path']}: does not match the shard manifest")
    return LocalShard(collection, ordinals)


def load_shards(path: str | os.PathLike[str], *, embedder: Any | None = None) -> ShardedCollection:
    """Every shard of directory `path`, in this process, as one :class:`ShardedCollection`."""
    manifest = read_manifest(path)
    first = load_shard(path, 0, embedder=embedder)
    shards = [first] + [load_shard(path, i, embedder=embedder or first.collection.embedder)
                        for i in range(1, len(manifest["parts"]))]
    return ShardedCollection(shards)

