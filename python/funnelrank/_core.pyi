"""Type stubs for funnelrank._core, the native core (C++ / pybind11)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

class IndexFileError(OSError):
    """A missing, truncated or corrupt index file, or a path that is not a regular file (a directory, a FIFO,
    a device: refused by type before it is opened, so loading one never blocks)."""

def stale_temp_files(path: str | os.PathLike[str]) -> list[str]:
    """The temporary files an index save of `path` left beside it in processes that no longer exist
    (``<name>.tmp-<pid>-<hex>``, regular files only), sorted; a live process's is never listed. Saving
    `path` (``BM25Index.save`` / ``HNSWIndex.save``) removes them first."""

class Analyzer:
    """Text analysis shared by documents and queries.

    Lowercasing (Unicode simple case mapping, plus Python's ``str.lower`` rules for U+0130 and final
    sigma), tokenization into maximal runs of Unicode letters, numbers and ``_`` (what bm25s's default
    pattern ``(?u)\\b\\w\\w+\\b`` matches), stopword removal (on the lowercased, unstemmed token) and
    Snowball stemming through libstemmer.

    stopwords: ``"english"`` (NLTK's 179-word English list, bm25s's ``"en_plus"``; the default),
    ``"lucene"`` (Lucene's 33-word EnglishAnalyzer list, bm25s's ``"en"``), a list of words, or None.
    stemmer: a Snowball algorithm name (``Analyzer.available_stemmers()``) or None.
    min_token_length: tokens shorter than this many code points are dropped (1 to 255; ValueError otherwise).
    Invalid text (lone surrogates, invalid UTF-8 bytes) raises ValueError.
    """

    def __init__(
        self,
        *,
        lowercase: bool = True,
        stopwords: str | Sequence[str] | None = "english",
        stemmer: str | None = "english",
        min_token_length: int = 2,
    ) -> None: ...
    def tokenize(self, text: str | bytes) -> list[str]:
        """The terms of ``text`` after the full analysis, in order (duplicates kept)."""
    @property
    def lowercase(self) -> bool: ...
    @property
    def stopwords(self) -> list[str]:
        """The effective stopword list (sorted)."""
    @property
    def stemmer(self) -> str | None: ...
    @property
    def min_token_length(self) -> int: ...
    @staticmethod
    def available_stemmers() -> list[str]:
        """Names of the Snowball algorithms libstemmer provides."""

class BM25Index:
    """Lucene BM25 over an inverted index keyed by user string ids.

    score = sum over query terms (with multiplicity) of
    idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    with N, df and avgdl over live documents only (exactly right after any add/delete). Top-k is exact
    (MaxScore with block-max bounds); ties go to the document added first. Empty documents are indexed
    with length 0 and never match. The GIL is released while indexing, searching, saving and loading;
    searches may run from many threads while another thread adds or deletes.

    k1 must be in [0, 1000] and b in [0, 1] (else ValueError). Integer arguments (k, threads) take any Python
    int: one outside the accepted range, however large, is a ValueError naming the argument and the range.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, analyzer: Analyzer | None = None) -> None: ...
    def add(self, ids: Sequence[str], texts: Sequence[str | bytes]) -> None:
        """Index documents. All-or-nothing: length mismatch, empty or duplicate ids (in the batch or
        already indexed) and invalid text raise ValueError and insert nothing."""
    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents. An unknown id raises KeyError (a repeated one ValueError); nothing is deleted."""
    def search(
        self, query: str | bytes, k: int = 10, allow: Sequence[str] | None = None
    ) -> tuple[list[str], npt.NDArray[np.float32]]:
        """Top-k (ids, float32 scores), best first; only documents matching a query term. ``allow``
        restricts results to those ids that are in the index (unknown or deleted ids in it are ignored,
        as in HNSWIndex.search). k <= 0: ValueError; a k beyond len(index) is the same as len(index) (it never
        sizes an allocation), up to 2**63 - 1 (beyond: ValueError). An empty or all-stopword query, or an empty
        index, gives empty results. A query repeating indexed terms about a million times or more, whose
        scores could overflow the fixed-point sums, is a ValueError."""
    def _search_exhaustive(
        self, query: str | bytes, k: int = 10, allow: Sequence[str] | None = None
    ) -> tuple[list[str], npt.NDArray[np.float32]]:
        """search() computed by scoring every matching document (reference for tests)."""
    def search_batch(
        self, queries: Sequence[str | bytes], k: int = 10, threads: int = 0, allow: Sequence[str] | None = None
    ) -> list[tuple[list[str], npt.NDArray[np.float32]]]:
        """search() for each query, in parallel on ``threads`` threads (0 = every CPU this process may use; never
        more threads than queries); ``allow`` (as in search()) applies to every query and is resolved once for
        the batch. k as in search()."""
    def search_global(
        self,
        queries: Sequence[str | bytes],
        k: int = 10,
        *,
        documents: int,
        total_length: int,
        df: dict[str, int],
        threads: int = 0,
        allow: Sequence[str] | None = None,
    ) -> list[tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.float64]]]:
        """search_batch() for a shard of a larger corpus, scored with the corpus-wide statistics (Elasticsearch's
        DFS query-then-fetch): N = `documents`, avgdl = `total_length` / `documents`, and `df` (analyzed term ->
        documents holding it, for every query term this index holds; see query_terms()). The scores are then
        bit-identical to one index over the whole corpus. Each result is (ids, float32 scores, float64 exact
        scores: what the top-k was ranked by, to merge shards on). ValueError when the statistics cannot include
        this index's (fewer documents or a smaller df than here, a missing df).

            >>> shard.search_global(["cat"], 2, documents=10, total_length=40, df={"cat": 3})
            [(['a'], array([0.98], dtype=float32), array([0.98...]))]
        """
    def corpus_stats(self) -> tuple[int, int]:
        """(live documents, their total length in analyzed terms), e.g. ``(2, 7)``."""
    def query_terms(self, query: str | bytes) -> list[str]:
        """The distinct analyzed terms of `query` in order of first occurrence, e.g. ``['cat', 'sleep']`` for
        "the cats sleep, cats!" (stopwords dropped, stemmed), whether or not this index holds them."""
    def doc_freqs(self, terms: Sequence[str]) -> list[int]:
        """The live documents holding each analyzed term (0 for a term this index lacks), e.g. ``[2, 0]``."""
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index atomically (temporary file, fsync, rename); deleted documents are dropped. First removes
        the temporary files that saves of `path` killed mid-write left behind (:func:`stale_temp_files`)."""
    @staticmethod
    def load(path: str | os.PathLike[str]) -> BM25Index:
        """Read a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or
        corrupt. Every count in the file is checked against the bytes that remain before anything is allocated
        for it, so memory use is proportional to the file's size."""
    def compact(self) -> None:
        """Reclaim deleted documents' postings now (delete() does it when over a quarter are deleted)."""
    def ids(self) -> list[str]:
        """Live ids in insertion order."""
    def _stats(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...
    @property
    def k1(self) -> float: ...
    @property
    def b(self) -> float: ...
    @property
    def analyzer(self) -> Analyzer: ...

# ---- HNSW (cpp/core/hnsw_index.h) ----

_StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
_Vectors = npt.ArrayLike
_Hits = tuple[list[str], npt.NDArray[np.float32]]

class HNSWIndex:
    """Approximate nearest-neighbour index (hnswlib's HNSW graph) keyed by string ids.

    Parameter bounds (ValueError beyond them): dim in [1, 65536], M in [2, 1024], ef_construction in
    [1, 65536], ef_search in [1, 2**20], initial_capacity in [0, 2**32 - 1], seed in [0, 2**64 - 1]. Integer
    arguments take any Python int: one outside its range, however large, is a ValueError naming it.
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        initial_capacity: int = 1024,
        seed: int = 100,
    ) -> None: ...
    def add(self, ids: Sequence[str], vectors: _Vectors, threads: int = 0) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def search(
        self, vector: _Vectors, k: int = 10, ef: int | None = None, allow: Sequence[str] | None = None
    ) -> _Hits:
        """The k most similar live ids and their similarities, best first. ``allow`` restricts results to
        those ids that are in the index (unknown or deleted ids in it are ignored, as in BM25Index.search).
        ef (>= 1; None: ``ef_search``) is the search breadth, at least k. k and ef beyond len(index) are the
        same as len(index) (neither sizes an allocation), up to 2**63 - 1 (beyond: ValueError)."""
    def search_batch(
        self, vectors: _Vectors, k: int = 10, ef: int | None = None, threads: int = 0, allow: Sequence[str] | None = None
    ) -> list[_Hits]:
        """search() for every row, in parallel (``threads`` 0 = every CPU this process may use); ``allow`` (as in
        search()) applies to every row and is resolved once for the batch."""
    def vectors(self, ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """The stored vectors of `ids`, ``[len(ids), dim]`` float32 (L2-normalised under cosine, as given under
        "ip"); KeyError for an id not in the index. Adding them to another index of the same metric indexes
        the same vectors, e.g. ``HNSWIndex.vectors(["a"]).shape == (1, dim)``."""
    def search_exact(self, vector: _Vectors, k: int = 10) -> _Hits:
        """Brute-force k nearest live ids (the recall reference); k as in search()."""
    def save(self, path: _StrPath) -> None:
        """Write the index atomically (temporary file, fsync, rename), first removing the temporary files that
        saves of `path` killed mid-write left behind (:func:`stale_temp_files`)."""
    @staticmethod
    def load(path: _StrPath) -> HNSWIndex:
        """Load a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or
        corrupt (every count, link, level and vector is checked). What it allocates is bounded by the file's
        size: the saved capacity is restored up to max(2 x stored slots, 32 MiB of slots); beyond that the
        graph grows again on demand."""
    def ids(self) -> list[str]: ...
    def exact_filter_threshold(self, ef: int) -> int: ...
    @property
    def exact_filter_crossover(self) -> float: ...
    @exact_filter_crossover.setter
    def exact_filter_crossover(self, value: float) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def M(self) -> int: ...
    @property
    def ef_construction(self) -> int: ...
    @property
    def ef_search(self) -> int:
        """Default ef for searches that pass none, in [1, 2**20] (ValueError beyond)."""
    @ef_search.setter
    def ef_search(self, value: int) -> None: ...
    @property
    def capacity(self) -> int:
        """Slots allocated in the graph (grows by doubling; deleted slots are reused)."""

# ---- rank fusion (cpp/core/fusion.h) ----

_Ranking = tuple[Sequence[str], Sequence[float] | npt.NDArray[np.floating]]

class FusedResult:
    """Fused ranking, best first, with each input's rank (0 = absent) and score (NaN = absent)."""

    @property
    def ids(self) -> list[str]: ...
    @property
    def scores(self) -> npt.NDArray[np.float32]: ...
    @property
    def ranks(self) -> npt.NDArray[np.int32]: ...
    @property
    def input_scores(self) -> npt.NDArray[np.float32]: ...
    @property
    def n_retrievers(self) -> int: ...
    def __len__(self) -> int: ...

def rrf(
    rankings: Sequence[_Ranking],
    *,
    k: float = 60,
    weights: Sequence[float] | None = None,
    top_k: int | None = None,
) -> FusedResult: ...
def convex_fusion(
    rankings: Sequence[_Ranking],
    *,
    weights: Sequence[float] | None = None,
    normalization: str = "minmax",
    top_k: int | None = None,
) -> FusedResult: ...
