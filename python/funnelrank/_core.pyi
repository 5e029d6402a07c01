# Generated from the built module by `make stubs` (tools/core_stubs.py, pybind11-stubgen): do not edit.
# Signatures and docstrings come from the bindings, cpp/bindings/.
"""
funnelrank native core: BM25 inverted index, HNSW index, rank fusion.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import os
import typing
__all__: list[str] = ['Analyzer', 'BM25Index', 'FusedResult', 'HNSWIndex', 'IndexFileError', 'convex_fusion', 'rrf', 'stale_temp_files']
class IndexFileError(OSError):
    """
    A missing, truncated or corrupt index file, or a path that is not a regular file (a directory, a FIFO,
    a device: refused by type before it is opened, so loading one never blocks).
    """
class Analyzer:
    """
    Text analysis shared by documents and queries.
    
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
    @staticmethod
    def available_stemmers() -> list[str]:
        """
        Names of the Snowball algorithms libstemmer provides.
        """
    def __init__(self, *, lowercase: bool = True, stopwords: str | collections.abc.Sequence[str] | None = 'english', stemmer: str | None = 'english', min_token_length: int = 2) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def tokenize(self, text: str | bytes) -> list[str]:
        """
        The terms of ``text`` after the full analysis, in order (duplicates kept).
        """
    @property
    def lowercase(self) -> bool:
        ...
    @property
    def min_token_length(self) -> int:
        ...
    @property
    def stemmer(self) -> str | None:
        ...
    @property
    def stopwords(self) -> list[str]:
        """
        The effective stopword list (sorted).
        """
class BM25Index:
    """
    Lucene BM25 over an inverted index keyed by user string ids.
    
    score = sum over query terms (with multiplicity) of
    idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
    with N, df and avgdl over live documents only (exactly right after any add/delete). Top-k is exact
    (MaxScore with block-max bounds); ties go to the document added first. Empty documents are indexed
    with length 0 and never match. Scores are float32, best first. The GIL is released while indexing,
    searching, saving and loading; searches may run from many threads while another thread adds or deletes.
    
    k1 must be in [0, 1000] and b in [0, 1] (else ValueError). Integer arguments (k, threads) take any Python
    int: one outside the accepted range, however large, is a ValueError naming the argument and the range.
    """
    @staticmethod
    def load(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> BM25Index:
        """
        Read a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or corrupt. Every count in the file is checked against the bytes that remain before anything is allocated for it, so memory use is proportional to the file's size.
        """
    def __contains__(self, id: typing.Any) -> bool:
        ...
    def __init__(self, *, k1: typing.SupportsFloat | typing.SupportsIndex = 1.2, b: typing.SupportsFloat | typing.SupportsIndex = 0.75, analyzer: Analyzer | None = None) -> None:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    def _plan(self, query: str, k: typing.SupportsInt | typing.SupportsIndex = 10) -> str:
        """
        The strategy search() would use for this query and k: 'dense', 'maxscore', 'impact', 'docs' or 'empty'.
        """
    def _search_exhaustive(self, query: str | bytes, k: int = 10, allow: collections.abc.Sequence[str] | None = None) -> tuple[list[str], numpy.typing.NDArray[numpy.float32]]:
        """
        search() computed by scoring every matching document (reference for tests).
        """
    def _stats(self) -> dict[str, int]:
        ...
    def add(self, ids: collections.abc.Sequence[str], texts: collections.abc.Sequence[str | bytes]) -> None:
        """
        Index documents. All-or-nothing: length mismatch, empty or duplicate ids (in the batch or already indexed) and invalid text raise ValueError and insert nothing.
        """
    def compact(self) -> None:
        """
        Reclaim deleted documents' postings now (delete() does it when over a quarter are deleted).
        """
    def corpus_stats(self) -> tuple[int, int]:
        """
        (live documents, their total length in analyzed terms), e.g. ``(2, 7)``: a shard's share of the corpus statistics.
        """
    def delete(self, ids: collections.abc.Sequence[str]) -> None:
        """
        Delete documents. An unknown id raises KeyError (a repeated one ValueError); nothing is deleted.
        """
    def doc_freqs(self, terms: collections.abc.Sequence[str]) -> list[int]:
        """
        The live documents holding each analyzed term (0 for a term this index lacks), e.g. ``[2, 0]``.
        """
    def ids(self) -> list[str]:
        """
        Live ids in insertion order.
        """
    def query_terms(self, query: str | bytes) -> list[str]:
        """
        The distinct analyzed terms of `query` in order of first occurrence, e.g. ``['cat', 'sleep']`` for "the cats sleep, cats!" (stopwords dropped, stemmed), whether or not this index holds them.
        """
    def save(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
        """
        Write the index atomically (temporary file, fsync, rename); deleted documents are dropped. First removes the temporary files that saves of `path` killed mid-write left behind (:func:`stale_temp_files`).
        """
    def search(self, query: str | bytes, k: int = 10, allow: collections.abc.Sequence[str] | None = None) -> tuple[list[str], numpy.typing.NDArray[numpy.float32]]:
        """
        Top-k (ids, float32 scores), best first; only documents matching a query term. ``allow``
        restricts results to those ids that are in the index (unknown or deleted ids in it are ignored,
        as in HNSWIndex.search). k <= 0: ValueError; a k beyond len(index) is the same as len(index) (it never
        sizes an allocation), up to 2**63 - 1 (beyond: ValueError). An empty or all-stopword query, or an empty
        index, gives empty results. A query repeating indexed terms about a million times or more, whose
        scores could overflow the fixed-point sums, is a ValueError.
        """
    def search_batch(self, queries: collections.abc.Sequence[str | bytes], k: int = 10, threads: int = 0, allow: collections.abc.Sequence[str] | None = None) -> list[tuple[list[str], numpy.typing.NDArray[numpy.float32]]]:
        """
        search() for each query, in parallel on ``threads`` threads (0 = every CPU this process may use; never
        more threads than queries); ``allow`` (as in search()) applies to every query and is resolved once for
        the batch. k as in search().
        """
    def search_global(self, queries: collections.abc.Sequence[str | bytes], k: int = 10, *, documents: int, total_length: int, df: dict[str, int], threads: int = 0, allow: collections.abc.Sequence[str] | None = None) -> list[tuple[list[str], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float64]]]:
        """
        search_batch() for a shard of a larger corpus, scored with the corpus-wide statistics (Elasticsearch's
        DFS query-then-fetch): N = `documents`, avgdl = `total_length` / `documents`, and `df` (analyzed term ->
        documents holding it, for every query term this index holds; see query_terms()). The scores are then
        bit-identical to one index over the whole corpus. Each result is (ids, float32 scores, float64 exact
        scores: what the top-k was ranked by, to merge shards on). ValueError when the statistics cannot include
        this index's (fewer documents or a smaller df than here, a missing df).
        
            >>> shard.search_global(["cat"], 2, documents=10, total_length=40, df={"cat": 3})
            [(['a'], array([0.98], dtype=float32), array([0.98...]))]
        """
    @property
    def _dense_max_docs(self) -> int:
        """
        Corpora with at most this many document slots are searched with dense term-at-a-time accumulation, larger ones with MaxScore (both exact; a speed knob, used by tests).
        """
    @_dense_max_docs.setter
    def _dense_max_docs(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def _strategy(self) -> str:
        """
        The query planner's choice: 'auto' (per query, by posting volume), or one of 'dense', 'maxscore', 'impact' forced for every query (all exact; for tests and benchmarks).
        """
    @_strategy.setter
    def _strategy(self, value: str) -> None:
        ...
    @property
    def analyzer(self) -> Analyzer:
        ...
    @property
    def b(self) -> float:
        ...
    @property
    def k1(self) -> float:
        ...
class HNSWIndex:
    """
    Approximate nearest-neighbour index (hnswlib's HNSW graph) over float32 vectors keyed by string ids.
    
    metric "cosine" L2-normalises vectors on add and query and scores by cosine similarity; "ip" scores by
    inner product. storage "f32" keeps the vectors as float32; "f16" as half precision (half the vector bytes;
    searches score the float32 query against them); "int8" as 8-bit codes with a per-vector scale (a quarter,
    plus 4 bytes), walking the graph on int8 dot products and re-scoring the ef best candidates against float32
    copies, which a loaded index reads from its file through a memory mapping instead of holding them.
    Searches run concurrently from many threads; add/delete wait for running searches.
    Deleted slots are reused by later adds, so delete+add cycles do not grow the index.
    
    Parameter bounds (ValueError beyond them): dim in [1, 65536], M in [2, 1024], ef_construction in
    [1, 65536], ef_search in [1, 2**20], initial_capacity in [0, 2**32 - 1], seed in [0, 2**64 - 1]. Integer
    arguments take any Python int: one outside its range, however large, is a ValueError naming it.
    """
    @staticmethod
    def load(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> HNSWIndex:
        """
        Load a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or
        corrupt (every count, link, level and vector is checked). What it allocates is bounded by the file's
        size: the saved capacity is restored up to max(2 x stored slots, 32 MiB of slots); beyond that the
        graph grows again on demand.
        """
    def __contains__(self, id: typing.Any) -> bool:
        ...
    def __init__(self, dim: int, *, metric: str = 'cosine', M: int = 16, ef_construction: int = 200, ef_search: int = 64, initial_capacity: int = 1024, seed: int = 100, storage: str = 'f32') -> None:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    def add(self, ids: collections.abc.Sequence[str], vectors: numpy.typing.ArrayLike, threads: int = 0) -> None:
        """
        Add vectors (n x dim) under string ids; all-or-nothing validation. threads=0 uses every CPU this process may use. A C-contiguous float32 array is read in place (no copy), without the GIL: do not change it from another thread until add returns.
        """
    def delete(self, ids: collections.abc.Sequence[str]) -> None:
        """
        Delete ids (KeyError for an unknown id; nothing is deleted then).
        """
    def exact_filter_threshold(self, ef: int) -> int:
        """
        Allow-lists with at most this many live ids are scored exactly rather than searched in the graph.
        """
    def ids(self) -> list[str]:
        """
        Live ids in slot order.
        """
    def save(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
        """
        Write the index atomically (temporary file, fsync, rename) to a checksummed file, first removing the temporary files that saves of `path` killed mid-write left behind (:func:`stale_temp_files`).
        """
    def search(self, vector: numpy.typing.ArrayLike, k: int = 10, ef: int | None = None, allow: collections.abc.Sequence[str] | None = None) -> tuple[list[str], numpy.typing.NDArray[numpy.float32]]:
        """
        The k most similar live ids and their similarities, best first. ``allow`` restricts results to
        those ids that are in the index (unknown or deleted ids in it are ignored, as in BM25Index.search).
        ef (>= 1; None: ``ef_search``) is the search breadth, at least k. k and ef beyond len(index) are the
        same as len(index) (neither sizes an allocation), up to 2**63 - 1 (beyond: ValueError).
        """
    def search_batch(self, vectors: numpy.typing.ArrayLike, k: int = 10, ef: int | None = None, threads: int = 0, allow: collections.abc.Sequence[str] | None = None) -> list[tuple[list[str], numpy.typing.NDArray[numpy.float32]]]:
        """
        search() for every row, in parallel (``threads`` 0 = every CPU this process may use); ``allow`` (as in search()) applies to every row and is resolved once for the batch.
        """
    def search_exact(self, vector: numpy.typing.ArrayLike, k: int = 10) -> tuple[list[str], numpy.typing.NDArray[numpy.float32]]:
        """
        Brute-force k nearest live ids (the recall reference); k as in search().
        """
    def vectors(self, ids: collections.abc.Sequence[str]) -> numpy.typing.NDArray[numpy.float32]:
        """
        The stored vectors of `ids`, ``[len(ids), dim]`` float32 (L2-normalised under cosine, as given under
        "ip"); KeyError for an id not in the index. Adding them to another index of the same metric indexes
        the same vectors, e.g. ``HNSWIndex.vectors(["a"]).shape == (1, dim)``.
        """
    @property
    def M(self) -> int:
        ...
    @property
    def capacity(self) -> int:
        """
        Slots allocated in the graph (grows by doubling; deleted slots are reused).
        """
    @property
    def dim(self) -> int:
        ...
    @property
    def ef_construction(self) -> int:
        ...
    @property
    def ef_search(self) -> int:
        """
        Default ef for searches that pass none, in [1, 2**20] (ValueError beyond).
        """
    @ef_search.setter
    def ef_search(self, value: int) -> None:
        ...
    @property
    def exact_filter_crossover(self) -> float:
        """
        c in the exact-scoring threshold sqrt(c * ef * len(index)) for allow-lists (0: always the graph, inf: always exact). Not saved with the index.
        """
    @exact_filter_crossover.setter
    def exact_filter_crossover(self, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def index_bytes(self) -> int:
        """
        Bytes the index holds in memory: the graph's level-0 block (links, vectors, labels of every allocated slot), its upper layers' links, and int8's in-memory float32 re-scoring vectors (ids not counted).
        """
    @property
    def mapped_bytes(self) -> int:
        """
        int8's float32 re-scoring vectors read from the file the index was loaded from, through a read-only memory mapping (page cache, touched per search only for its candidates); 0 otherwise. Adds after a load keep them mapped: only new rows, and rows of reused deleted slots, are held in memory.
        """
    @property
    def metric(self) -> str:
        ...
    @property
    def storage(self) -> str:
        """
        How the graph stores its vectors: "f32", "f16" or "int8" (saved with the index).
        """
    @property
    def vector_bytes(self) -> int:
        """
        Of index_bytes, the vectors: the stored vectors of the slots in use, plus int8's in-memory float32 re-scoring vectors.
        """
class FusedResult:
    """
    Fused ranking, best first. ids[i] has fused score scores[i]; ranks[i, r] is its 1-based rank in input
    ranking r (0 = absent) and input_scores[i, r] its score there (NaN = absent). Array properties return copies.
    """
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def ids(self) -> list[str]:
        ...
    @property
    def input_scores(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def n_retrievers(self) -> int:
        ...
    @property
    def ranks(self) -> numpy.typing.NDArray[numpy.int32]:
        ...
    @property
    def scores(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
def convex_fusion(rankings: collections.abc.Sequence[tuple[collections.abc.Sequence[str], collections.abc.Sequence[float] | numpy.typing.NDArray[numpy.floating]]], *, weights: collections.abc.Sequence[float] | None = None, normalization: str = 'minmax', top_k: int | None = None) -> FusedResult:
    """
    Convex combination of normalised scores: score(d) = sum_r w_r * norm_r(d), w normalised to sum 1.
    
    normalization "minmax" maps each ranking's scores to [0, 1] (all 1 if equal), "zscore" to
    (s - mean) / std (all 0 if std = 0). A document missing from a ranking contributes 0 there.
    """
def rrf(rankings: collections.abc.Sequence[tuple[collections.abc.Sequence[str], collections.abc.Sequence[float] | numpy.typing.NDArray[numpy.floating]]], *, k: typing.SupportsFloat | typing.SupportsIndex = 60.0, weights: collections.abc.Sequence[float] | None = None, top_k: int | None = None) -> FusedResult:
    """
    Reciprocal-rank fusion: score(d) = sum_r weights[r] / (k + rank_r(d)).
    
    rankings: (ids, scores) per retriever, best first (rank = position + 1; scores are kept for tracing).
    Ties: best rank in any input, then id. ValueError on mismatched lengths, bad weights, non-finite
    scores or an id listed twice in one ranking.
    """
def stale_temp_files(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> list[str]:
    """
    The temporary files an index save of `path` left beside it in processes that no longer exist
    (``<name>.tmp-<pid>-<hex>``, regular files only), sorted; a live process's (this one's included) is never
    listed. Saving `path` (``BM25Index.save`` / ``HNSWIndex.save``) removes them first.
    """
