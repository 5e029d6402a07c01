#pragma once
// A Lucene-BM25 inverted index over user string ids, with exact pruned top-k, incremental add/delete and
// atomic, checksummed persistence.
//
// Scoring (Lucene's BM25Similarity without norm quantization; dl and avgdl are exact token counts):
//   score(q, d) = sum over query terms t (with multiplicity) of
//                 idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)),
//   idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)),
// where N, df and avgdl count the live (not deleted) documents only, so they are always what an index
// rebuilt from the surviving documents would hold. A document's length dl is its number of terms after
// analysis (stopwords removed). Empty documents are indexed (dl = 0) and match no query.
//
// Each posting caches its length-normalised tf part ("impact", as float32):
//   impact = tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)),
// and a term's contribution is idf(t) * (occurrences in the query) * impact, with idf applied at query
// time. The impacts (and each 128-posting block's largest impact) depend on avgdl, so they are
// recomputed lazily by the first search after the index changed; an index that was updated
// incrementally therefore scores exactly like one rebuilt from its surviving documents.
//
// Top-k is exact. A query planner (bm25_plan.cpp) picks the strategy per query: small corpora (<=
// dense_max_docs() document slots) are scored term-at-a-time into a dense per-thread accumulator; in
// larger ones a query with a large posting volume against the corpus takes the quantized-impact path
// (8-bit impacts summed into L1-sized 16-bit accumulator partitions, giving each document a bounded
// interval, then the candidates whose interval reaches the k-th lower bound re-scored exactly:
// bm25_impact.cpp), and the others MaxScore over doc-id windows with block-max bounds. Term contributions
// are summed in 64-bit fixed point (2^-32 units), which is order-independent, so every strategy and
// exhaustive search give bit-identical scores. Ties are broken by insertion order (earlier document first).
//
// Sharded (distributed) scoring, as Elasticsearch's DFS query-then-fetch: an index holding one shard of a
// corpus scores like an index over the whole corpus when it is given the corpus-wide statistics
// (BM25CorpusStats: N, the total length and so avgdl, and df of the query's terms), which the shards
// report (corpus_stats(), query_terms(), doc_freqs()) and a coordinator sums. The impacts are then
// computed with the global avgdl (cached like the local ones, keyed by (N, total length); an index
// alternating between local and global searches recomputes them at each switch), idf with the global N
// and df, and everything else is unchanged: the same double arithmetic on the same integers, the same
// fixed-point sums, so every score is bit-identical to the union index's (exact_scores too, the double
// the top-k was ranked by, which a coordinator merges on).
//
// Thread safety: any number of concurrent readers (search, save, ...) with writers (add, remove,
// compact) serialized by a writer-preferring shared mutex. add() analyzes its batch before taking the
// write lock.
//
// The sources, by concept: bm25_index.cpp (construction, the search entry points, introspection),
// bm25_postings.cpp (add, remove, compact: the posting lists and the forward index), bm25_query.cpp (query
// terms and their weights), bm25_scoring.h (fixed-point contributions, the block-max cursor) and
// bm25_topk.cpp (SIMD accumulation, MaxScore and the other top-k strategies), bm25_impact.cpp (the
// quantized-impact strategy), bm25_plan.cpp (the query planner), bm25_stats.cpp (sharded statistics and the
// impact cache, quantized impacts included), bm25_format.cpp (the file format: save, load; impacts are
// computed at load, so the format is unchanged).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "analyzer.h"
#include "shared_mutex.h"

namespace funnelrank {

struct BM25Results {
    std::vector<std::string> ids;  // best first
    std::vector<float> scores;
    // The scores before rounding to float32: what the top-k was ranked by (a document's fixed-point sum
    // as a double). Merging several shards' results on these (ties by corpus-wide insertion order)
    // gives exactly the order of one index over their union.
    std::vector<double> exact_scores;
    // The document slot each id was found at (as of the search; a slot's id changes only when its
    // document is deleted and the slots are compacted). Lets callers cache per-slot data, checked by id.
    std::vector<std::uint32_t> slots;
};

// The corpus-wide statistics a shard scores with (see the header comment). docs and total_length count
// the live documents of the whole corpus; df maps analyzed terms (as query_terms() gives them) to the
// number of live documents in the whole corpus that hold them.
struct BM25CorpusStats {
    std::uint64_t docs = 0;
    std::uint64_t total_length = 0;
    std::unordered_map<std::string, std::uint64_t> df;
};

class BM25Index {
public:
    static constexpr std::size_t kBlockSize = 128;

    // 0 <= k1 <= kMaxK1, 0 <= b <= 1; else InvalidArgument. A null analyzer means the default one.
    // (k1 beyond a few is already linear tf; the bound keeps every score inside the fixed-point range.)
    static constexpr double kMaxK1 = 1000.0;
    BM25Index(double k1, double b, std::shared_ptr<const Analyzer> analyzer);
    BM25Index(const BM25Index&) = delete;
    BM25Index& operator=(const BM25Index&) = delete;

    // All-or-nothing: a size mismatch, an empty, duplicate (in the batch or already indexed) or non-UTF-8
    // id or invalid UTF-8 text raises InvalidArgument and inserts nothing.
    void add(const std::vector<std::string>& ids, const std::vector<std::string_view>& texts);
    // All-or-nothing: an unknown id raises NotFound, a repeated id InvalidArgument; nothing is deleted.
    void remove(const std::vector<std::string>& ids);

    // Top-k (k >= 1, else InvalidArgument; a k beyond size() is size()) documents matching at least one
    // query term. A query so long (millions of tokens) that a score could overflow the fixed-point sums
    // is refused with InvalidArgument. `allow`, when
    // given, restricts results to those of its ids that are in the index (unknown or deleted ids in it
    // are ignored, as in HNSWIndex::search: an allow-list is a filter, not a lookup).
    //
    // `global`, when given, replaces this index's own N, avgdl and df by the corpus-wide ones (sharded
    // scoring, see the header comment). They must be consistent with this index (InvalidArgument
    // otherwise): global->docs >= size(), global->total_length >= this index's total length, and for every
    // query term this index holds a df entry with this index's df <= df <= global->docs.
    BM25Results search(std::string_view query, std::size_t k, const std::vector<std::string>* allow = nullptr,
                       const BM25CorpusStats* global = nullptr) const;
    // The same result computed by scoring every matching document (reference for tests).
    BM25Results search_exhaustive(std::string_view query, std::size_t k,
                                  const std::vector<std::string>* allow = nullptr,
                                  const BM25CorpusStats* global = nullptr) const;
    // Queries answered in parallel on `threads` threads (0 = every CPU this process may use; see
    // parallel_for.h), each as search() would with the same `allow` (resolved once for the batch) and
    // `global` (whose df then covers the terms of every query).
    std::vector<BM25Results> search_batch(const std::vector<std::string>& queries, std::size_t k,
                                          unsigned threads, const std::vector<std::string>* allow = nullptr,
                                          const BM25CorpusStats* global = nullptr) const;

    // This index's statistics, for a coordinator to sum into BM25CorpusStats.
    struct CorpusStats {
        std::uint64_t docs = 0;          // live documents (N)
        std::uint64_t total_length = 0;  // sum of their lengths (avgdl = total_length / docs)
        bool operator==(const CorpusStats& o) const { return docs == o.docs && total_length == o.total_length; }
    };
    CorpusStats corpus_stats() const;
    // The distinct terms of `query` after analysis (stopwords dropped, stemmed), in order of first
    // occurrence, whether or not this index holds them: the keys a coordinator collects df for.
    std::vector<std::string> query_terms(std::string_view query) const;
    // The number of live documents holding each (analyzed) term; 0 for a term this index does not hold.
    std::vector<std::uint64_t> doc_freqs(const std::vector<std::string>& terms) const;

    // Atomic (temporary file + fsync + rename); deleted documents are left out of the file.
    void save(const std::string& path) const;
    // IndexFileError (mentioning the path) on a missing, truncated or corrupt file, or a path that is not
    // a regular file. Every count in the file is checked against the bytes that remain before anything is
    // allocated for it, so memory use is proportional to the file's size.
    static std::unique_ptr<BM25Index> load(const std::string& path);

    std::size_t size() const;
    bool contains(std::string_view id) const;
    std::vector<std::string> ids() const;  // live ids in insertion order
    double k1() const { return k1_; }
    double b() const { return b_; }
    const std::shared_ptr<const Analyzer>& analyzer() const { return analyzer_; }

    // Drops deleted documents' postings and renumbers documents (order kept). remove() calls it when
    // more than a quarter of the document slots are deleted.
    void compact();

    struct Stats {
        std::size_t live_docs = 0;
        std::size_t doc_slots = 0;  // live + deleted-but-not-compacted
        std::size_t terms = 0;
        std::size_t postings = 0;   // stored postings, deleted documents' included
    };
    Stats stats() const;

    // Corpora with at most this many document slots are searched term-at-a-time into a dense
    // accumulator instead of with MaxScore (both exact; a speed knob, also used by tests to exercise
    // both strategies). Default kDefaultDenseMaxDocs, measured on BEIR scifact and nfcorpus.
    static constexpr std::size_t kDefaultDenseMaxDocs = std::size_t{1} << 16;
    void set_dense_max_docs(std::size_t n);
    std::size_t dense_max_docs() const;

    // The query planner (bm25_plan.cpp). kAuto picks per query: an allow-list of few documents is scored
    // directly; corpora within dense_max_docs() use the dense accumulator; larger ones use the quantized
    // impact path when the query's posting volume is large against the corpus (kImpactVolumeRatio), else
    // MaxScore. The other values force one strategy for every query (tests, benchmarks); all are exact.
    enum class Strategy : std::uint8_t { kAuto = 0, kDense = 1, kMaxScore = 2, kImpact = 3 };
    // kAuto picks the impact path when postings * kImpactVolumeRatio >= document slots (and k is small
    // against the corpus). Measured on 1M MS MARCO-like documents (docs/guides/bm25.md).
    static constexpr std::size_t kImpactVolumeRatio = 256;
    void set_strategy(Strategy s);
    Strategy strategy() const;
    // The strategy kAuto (or the forced one) uses for this query and k, without searching: "dense",
    // "maxscore", "impact", "docs" (allow-list) or "empty" (no indexed term). For introspection and benchmarks.
    std::string plan(std::string_view query, std::size_t k) const;

private:
    struct Postings {
        std::vector<std::uint32_t> docs;       // ascending internal doc ids
        std::vector<std::uint32_t> tfs;
        std::vector<std::uint32_t> last_doc;   // of each block: block i = postings [i*kBlockSize, (i+1)*kBlockSize)
        std::uint32_t df = 0;                  // live documents in this list
        // Cache (see the header comment), valid while impacts_valid_ is set; written only under the
        // exclusive lock.
        mutable std::vector<float> impacts;    // by posting
        mutable std::vector<float> block_max;  // largest impact of each block
        // The impacts quantized to 8 bits over this list's range (bm25_impact.cpp): impact j lies in
        // [qlo + qimpacts[j] * qstep, qlo + (qimpacts[j] + 1) * qstep]. Same cache and locking.
        mutable std::vector<std::uint8_t> qimpacts;
        mutable double qlo = 0.0;
        mutable double qstep = 0.0;
        void append(std::uint32_t doc, std::uint32_t tf);
    };
    struct Data {
        std::deque<std::string> ext_ids;                           // by internal doc id
        std::unordered_map<std::string_view, std::uint32_t> doc_of;  // live ids only; views into ext_ids
        std::vector<std::uint32_t> doc_len;
        std::vector<std::uint8_t> alive;
        std::vector<std::uint64_t> fwd_offsets{0};  // forward index: doc -> its term ids (for delete)
        std::vector<std::uint32_t> fwd_terms;
        std::deque<std::string> terms;                               // by term id
        std::unordered_map<std::string_view, std::uint32_t> term_of;  // views into terms
        std::vector<Postings> postings;                              // by term id
        std::uint64_t live_docs = 0;
        std::uint64_t live_len = 0;  // sum of live documents' lengths
    };
    struct QueryTerm {
        const Postings* list;
        double weight;  // idf * (occurrences in the query)
    };
    struct Scorer;
    struct Cursor;
    struct Hit {
        double score;
        std::uint32_t doc;
    };

    std::vector<QueryTerm> prepare(std::string_view query, const BM25CorpusStats* global) const;
    // The doc id past the end of every posting list (and "no document" in renumbering tables); document
    // slots are below it.
    static constexpr std::uint32_t kEnd = 0xFFFFFFFFu;
    static constexpr std::uint32_t kMaxDocs = kEnd - 1;
    // A value no index state ever had: from a process-wide counter (epoch_).
    static std::uint64_t next_epoch();

    // The term id of a raw (split) query token, kNoTerm for a stopword or a term no live document has.
    static constexpr std::uint32_t kNoTerm = 0xFFFFFFFFu;
    std::uint32_t query_term_id(std::string_view raw, std::string& scratch) const;
    // A read lock with the impact cache valid for the wanted statistics (global, or this index's own when
    // null): the shared lock, or, when the cache had to be recomputed, the exclusive lock it was
    // recomputed under (kept for the search, so a reader always makes progress even while others keep
    // asking for other statistics).
    struct ReadGuard {
        std::shared_lock<WriterPreferringSharedMutex> shared;
        std::unique_lock<WriterPreferringSharedMutex> exclusive;
    };
    ReadGuard read_lock(const BM25CorpusStats* global) const;
    CorpusStats local_stats() const { return CorpusStats{data_.live_docs, data_.live_len}; }
    // InvalidArgument when `global` cannot be a superset of this index (see search()).
    void check_global(const BM25CorpusStats& global) const;
    void compute_impacts(const CorpusStats& stats) const;
    // An allow-list resolved against the index (under the lock): what every search with it needs.
    struct Allowed {
        std::vector<std::uint8_t> mask;   // per document slot: 1 = allowed and live
        std::vector<std::uint32_t> docs;  // the allowed live slots, ascending
    };
    // nullopt for no allow-list (no filter).
    std::optional<Allowed> resolve_allow(const std::vector<std::string>* allow) const;
    BM25Results search_locked(std::string_view query, std::size_t k, const std::optional<Allowed>& allowed,
                              bool exhaustive, const BM25CorpusStats* global) const;
    std::vector<Hit> top_k_pruned(const std::vector<QueryTerm>& q, std::size_t k,
                                  const std::vector<std::uint8_t>* mask) const;
    std::vector<Hit> top_k_dense(const std::vector<QueryTerm>& q, std::size_t k,
                                 const std::vector<std::uint8_t>* mask) const;
    // The quantized-impact path (bm25_impact.cpp): the same exact top-k, or nullopt when its bounds cannot
    // decide (fewer than k documents with a positive quantized score), the caller then uses another path.
    std::optional<std::vector<Hit>> top_k_impact(const std::vector<QueryTerm>& q, std::size_t k,
                                                 const std::vector<std::uint8_t>* mask) const;
    // Which path search_locked takes (bm25_plan.cpp).
    enum class Path : std::uint8_t { kEmpty, kDocs, kDense, kMaxScore, kImpact };
    Path choose(const std::vector<QueryTerm>& q, std::size_t k, const std::optional<Allowed>& allowed) const;
    std::vector<Hit> top_k_docs(const std::vector<QueryTerm>& q, std::size_t k,
                                const std::vector<std::uint32_t>& docs) const;
    std::vector<Hit> top_k_exhaustive(const std::vector<QueryTerm>& q, std::size_t k,
                                      const std::vector<std::uint8_t>* mask) const;
    BM25Results to_results(const std::vector<Hit>& hits) const;
    void compact_locked();

    double k1_;
    double b_;
    std::shared_ptr<const Analyzer> analyzer_;
    mutable WriterPreferringSharedMutex mutex_;
    Data data_;
    mutable bool impacts_valid_ = false;  // read under the shared lock, written under the exclusive one
    mutable CorpusStats impacts_for_;     // the statistics the cache was computed with (same locking)
    // A value no other index state ever had (from a process-wide counter), renewed by every update;
    // keys the per-thread cache of query tokens' term ids. Written under the exclusive lock.
    std::uint64_t epoch_;
    std::size_t dense_max_docs_ = kDefaultDenseMaxDocs;  // guarded by mutex_
    Strategy strategy_ = Strategy::kAuto;                // guarded by mutex_
};

}  // namespace funnelrank
