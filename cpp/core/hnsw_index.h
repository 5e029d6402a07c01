#pragma once
// Approximate nearest-neighbour index over hnswlib's HierarchicalNSW graph (the Debian libhnswlib-dev
// headers), keyed by string ids. Adds what hnswlib 0.6.2 lacks: string ids, reuse of deleted slots,
// allow-list filtered search (with an exact fallback for selective filters), per-query ef, a
// reader/writer lock so searches run concurrently with each other but never with a write, and a
// checksummed file format. Construction, updates and storage are hnswlib's; the base-layer search loop
// is ours (hnswlib's with a filter hook, and distances computed four at a time).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vector_storage.h"

namespace funnelrank {

enum class Metric {
    Cosine,        // vectors are L2-normalised on add and on query; score = cosine similarity
    InnerProduct,  // vectors are used as given; score = inner product
};

// "cosine" / "ip"; anything else throws InvalidArgument.
Metric parse_metric(const std::string& name);
const char* metric_name(Metric metric);

// Bounds (HNSWIndex::kMax*; beyond them the constructor throws InvalidArgument): dim in [1, 65536], M in
// [2, 1024], ef_construction in [1, 65536], ef_search in [1, 2^20], initial_capacity <= 2^32 - 1.
struct HNSWParams {
    std::size_t dim = 0;
    Metric metric = Metric::Cosine;
    std::size_t M = 16;
    std::size_t ef_construction = 200;
    std::size_t ef_search = 64;
    std::size_t initial_capacity = 1024;
    std::uint64_t seed = 100;
    // How the graph holds its vectors (vector_storage.h): f32 as given; f16 at half the bytes; int8 at a quarter
    // plus 4 bytes, its searches' candidates re-scored against float32 copies (hnsw_rescore.h: in memory, or
    // mapped from the file the index was loaded from).
    VectorStorage storage = VectorStorage::F32;
};

// What an index holds, in bytes (HNSWIndex::memory()).
struct HNSWMemory {
    std::size_t graph_bytes = 0;   // in this process's memory: hnswlib's level-0 block (every allocated slot:
                                   // links, vector, label), the upper layers' links, and in-memory re-scoring vectors
    std::size_t vector_bytes = 0;  // of which vectors: the stored vectors of the slots in use (deleted ones included)
                                   // plus in-memory re-scoring vectors
    std::size_t mapped_bytes = 0;  // re-scoring vectors read from a mapped file (page cache; not in graph_bytes)
};

// Results of one query, best first.
struct SearchHits {
    std::vector<std::string> ids;
    std::vector<float> scores;  // similarity: cosine or inner product
    // The slot each id was found at (as of the search; a slot's id changes only when it is deleted and
    // reused by a later add). Lets callers cache per-slot data, checked by id.
    std::vector<std::uint32_t> slots;
};

class HNSWIndex {
public:
    explicit HNSWIndex(const HNSWParams& params);
    ~HNSWIndex();
    HNSWIndex(HNSWIndex&&) noexcept;
    HNSWIndex& operator=(HNSWIndex&&) noexcept;
    HNSWIndex(const HNSWIndex&) = delete;
    HNSWIndex& operator=(const HNSWIndex&) = delete;

    // Adds n vectors (row-major, n x dim) under the given ids. Validates everything first and changes
    // nothing on error: wrong count, non-finite values, zero vectors under cosine, a value beyond f16's range
    // (65504) under f16 storage and inner product, empty, non-UTF-8 or duplicate ids (within the batch or
    // already live) -> InvalidArgument. threads = 0 uses every core. `vectors` is read in place, row by row,
    // as each is inserted (no copy of the whole input is made): it must stay valid, and unchanged, until add
    // returns; a row found changed since it was checked (non-finite) fails the add with InvalidArgument, its
    // row and the rows not yet inserted then left out (their slots kept, deleted, for reuse).
    void add(const std::vector<std::string>& ids, const float* vectors, std::size_t n, std::size_t threads = 0);

    // Marks the ids deleted; they are never returned again and their slots are reused by later adds.
    // An unknown id -> NotFound, a repeated id -> InvalidArgument; nothing is deleted on error.
    void remove(const std::vector<std::string>& ids);

    // The k nearest live vectors. ef = 0 uses ef_search; the effective ef is max(ef, k). With an
    // allow-list only those ids can be returned (unknown or deleted ids in it are ignored), and
    // min(k, number of allowed live ids) hits come back. Any k and ef are accepted: k beyond size() is
    // size(), and an ef beyond size() searches as ef = size() does (the whole reachable graph), so neither
    // sizes any allocation.
    SearchHits search(const float* query, std::size_t k, std::size_t ef = 0,
                      const std::vector<std::string>* allow = nullptr) const;
    // search() for each of n queries in parallel (threads = 0: every CPU this process may use), with the
    // same `allow` for all (resolved once for the batch).
    std::vector<SearchHits> search_batch(const float* queries, std::size_t n, std::size_t k, std::size_t ef = 0,
                                         std::size_t threads = 0,
                                         const std::vector<std::string>* allow = nullptr) const;

    // The stored vectors of `ids`, row-major (ids.size() x dim), as the index holds them: L2-normalised under
    // cosine, as given under inner product; under f16 as rounded to f16, under int8 the float32 re-scoring copies. An id not live in the index -> NotFound. Adding them under the
    // same ids to another index of the same metric indexes the same vectors (e.g. to split an index).
    std::vector<float> vectors(const std::vector<std::string>& ids) const;

    // Exact (brute-force) k nearest live vectors; the reference the approximate search is measured against.
    SearchHits search_exact(const float* query, std::size_t k) const;

    // Atomic, checksummed save; load throws IndexFileError on a missing, truncated or corrupt file, a path
    // that is not a regular file, or a file of a newer format version (the message names both versions).
    // Format version 2 records the storage (and, under int8, holds the re-scoring vectors, which load maps
    // rather than reads: see hnsw_rescore.h); version-1 files (float32, from earlier releases) load as f32. What load allocates is bounded by the file's size: the saved
    // capacity is restored up to max(2 * stored slots, 32 MiB worth of slots), beyond that the graph
    // grows again on demand.
    void save(const std::string& path) const;
    static HNSWIndex load(const std::string& path);

    std::size_t size() const;      // live vectors
    std::size_t capacity() const;  // slots allocated in the graph (grows by doubling, never on reuse)
    bool contains(const std::string& id) const;
    std::vector<std::string> ids() const;  // live ids in graph slot order (stable across save/load)
    std::size_t dim() const;
    Metric metric() const;
    VectorStorage storage() const;
    HNSWMemory memory() const;
    const HNSWParams& params() const;
    std::size_t ef_search() const;
    void set_ef_search(std::size_t ef);

    // Allow-lists with at most sqrt(crossover * ef * live) live ids are scored exactly instead of searched
    // in the graph. 0 = always the graph (still exact when it finds fewer than k), infinity = always exact.
    static constexpr double kDefaultFilterCrossover = 16.0;

    static constexpr std::size_t kMaxDim = std::size_t{1} << 16;
    static constexpr std::size_t kMaxM = 1024;  // keeps 2*M within hnswlib's 16-bit link counts
    static constexpr std::size_t kMaxEfConstruction = std::size_t{1} << 16;
    static constexpr std::size_t kMaxEfSearch = std::size_t{1} << 20;
    static constexpr std::size_t kMaxCapacity = 0xFFFFFFFFu;  // hnswlib's internal ids are 32-bit
    std::size_t exact_filter_threshold(std::size_t ef) const;
    double exact_filter_crossover() const;
    void set_exact_filter_crossover(double crossover);

private:
    struct Impl;
    explicit HNSWIndex(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace funnelrank
