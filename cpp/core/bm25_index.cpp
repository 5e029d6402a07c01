#include "bm25_index.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "file_io.h"
#include "parallel_for.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FUNNELRANK_BM25_AVX512 1
#include <immintrin.h>
#endif

namespace funnelrank {

namespace {
constexpr std::uint32_t kEnd = std::numeric_limits<std::uint32_t>::max();
constexpr std::string_view kMagic("FRK-BM25", 8);
constexpr std::uint32_t kFormatVersion = 1;
// Bounds are compared after scaling by this, so floating-point rounding can never make pruning unsafe.
constexpr double kSlack = 1.0 + 1e-9;
constexpr std::uint32_t kMaxDocs = kEnd - 1;

std::uint64_t next_epoch() {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}
}  // namespace

// ---------------------------------------------------------------------------------------------------
// Scoring

// impact() computes a posting's cached length-normalised tf part; contribution() is the one place a
// BM25 term contribution is computed from it. Contributions are rounded to fixed point (units of 2^-32)
// plus one unit (so a matching document's sum is never 0, without a branch) and summed as integers: integer addition is
// associative, so every traversal order (dense, windowed, pruned, exhaustive) gives bit-identical scores.
// The rounding (<= 1.5 * 2^-32 per term) is far below float32 resolution of the returned scores. contribution()
// is monotone in the impact, so contribution(weight, a block's largest impact) bounds the block.
struct BM25Index::Scorer {
    static constexpr double kScale = 4294967296.0;  // 2^32
    double k1p1, c0, c1;
    Scorer(double k1, double b, double avgdl)
        : k1p1(k1 + 1.0), c0(k1 * (1.0 - b)), c1(avgdl > 0.0 ? k1 * b / avgdl : 0.0) {}
    float impact(std::uint32_t tf, std::uint32_t dl) const {
        const double t = static_cast<double>(tf);
        return static_cast<float>(t * k1p1 / (t + c0 + c1 * static_cast<double>(dl)));
    }
    // scaled_weight = weight * kScale (exact: a power of two), hoisted out of posting loops.
    static std::int64_t contribution_scaled(double scaled_weight, float impact) {
        return static_cast<std::int64_t>(scaled_weight * static_cast<double>(impact) + 1.5);  // round(x) + 1
    }
    static std::int64_t contribution(double weight, float impact) { return contribution_scaled(weight * kScale, impact); }
    static double to_double(std::int64_t v) { return static_cast<double>(v) / kScale; }
    // acc[docs[j]] += contribution_scaled(scaled_weight, impacts[j]) for j < n (docs distinct): with
    // AVX-512 (F + DQ) when the CPU has it, picked at run time, else scalar; the results are identical.
    static void accumulate(std::int64_t* acc, const std::uint32_t* docs, const float* impacts, std::size_t n,
                           double scaled_weight);
    static void accumulate_scalar(std::int64_t* acc, const std::uint32_t* docs, const float* impacts, std::size_t n,
                                  double scaled_weight) {
        for (std::size_t j = 0; j < n; ++j) acc[docs[j]] += contribution_scaled(scaled_weight, impacts[j]);
    }
};

namespace {

#ifdef FUNNELRANK_BM25_AVX512
// contribution_scaled for 8 postings at a time: the same IEEE double multiply and add (explicitly rounded
// to nearest, so the compiler cannot fuse them into an FMA, which rounds once) and truncation to int64,
// into a small buffer that the scalar loop then adds to the accumulators.
__attribute__((target("avx512f,avx512dq"))) void accumulate_avx512(std::int64_t* acc, const std::uint32_t* docs,
                                                                  const float* impacts, std::size_t n,
                                                                  double scaled_weight) {
    // (The maskz forms of the intrinsics: GCC 12's unmasked ones trip -Werror=maybe-uninitialized.)
    constexpr std::size_t kChunk = 256;
    constexpr __mmask8 kAll = 0xFF;
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    alignas(64) std::int64_t part[kChunk];
    const __m512d w = _mm512_set1_pd(scaled_weight);
    const __m512d plus = _mm512_set1_pd(1.5);
    for (std::size_t start = 0; start < n; start += kChunk) {
        const std::size_t m = std::min(kChunk, n - start);
        const float* const imp = impacts + start;
        for (std::size_t i = 0; i < m; i += 8) {
            alignas(32) float tail[8] = {};
            const float* src = imp + i;
            if (m - i < 8) {
                std::copy(src, src + (m - i), tail);
                src = tail;
            }
            const __m512d x = _mm512_maskz_cvtps_pd(kAll, _mm256_loadu_ps(src));
            const __m512d y = _mm512_maskz_add_round_pd(kAll, _mm512_maskz_mul_round_pd(kAll, w, x, kNearest), plus,
                                                        kNearest);
            _mm512_store_si512(part + i, _mm512_maskz_cvttpd_epi64(kAll, y));
        }
        const std::uint32_t* const d = docs + start;
        for (std::size_t i = 0; i < m; ++i) acc[d[i]] += part[i];
    }
}
#endif

using AccumulateFn = void (*)(std::int64_t*, const std::uint32_t*, const float*, std::size_t, double);

AccumulateFn pick_accumulate() {
#ifdef FUNNELRANK_BM25_AVX512
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return accumulate_avx512;
#endif
    return nullptr;
}
}  // namespace

void BM25Index::Scorer::accumulate(std::int64_t* acc, const std::uint32_t* docs, const float* impacts, std::size_t n,
                                   double scaled_weight) {
    static const AccumulateFn fn = pick_accumulate();
    if (fn) {
        fn(acc, docs, impacts, n, scaled_weight);
    } else {
        accumulate_scalar(acc, docs, impacts, n, scaled_weight);
    }
}

// A position in one posting list, with lazily computed block-max bounds.
struct BM25Index::Cursor {
    const std::uint32_t* docs;
    const float* impacts;
    std::size_t n;
    const std::uint32_t* last_doc;  // by block
    const float* block_max;
    std::size_t nblocks;
    double weight;
    std::size_t qidx;  // position of the term in the query (canonical summation order)
    std::size_t pos = 0;
    std::size_t shallow = 0;  // block of the last bound_for() target (targets only increase)
    std::size_t bound_block = std::numeric_limits<std::size_t>::max();
    double bound_value = 0.0;
    double max_bound = 0.0;  // bound over the whole list

    Cursor(const QueryTerm& t, std::size_t query_index)
        : docs(t.list->docs.data()),
          impacts(t.list->impacts.data()),
          n(t.list->docs.size()),
          last_doc(t.list->last_doc.data()),
          block_max(t.list->block_max.data()),
          nblocks(t.list->last_doc.size()),
          weight(t.weight),
          qidx(query_index) {}

    std::uint32_t doc() const { return pos < n ? docs[pos] : kEnd; }
    double block_bound_at(std::size_t blk) {
        if (blk != bound_block) {
            bound_block = blk;
            bound_value = Scorer::to_double(Scorer::contribution(weight, block_max[blk]));
        }
        return bound_value;
    }
    // Upper bound of this term's contribution to document `target` (0 when the list cannot hold it).
    // Targets must not decrease between calls.
    double bound_for(std::uint32_t target) {
        if (pos >= n || docs[pos] > target) return 0.0;
        std::size_t blk = std::max(shallow, pos / kBlockSize);
        while (blk < nblocks && last_doc[blk] < target) ++blk;
        shallow = blk;
        return blk < nblocks ? block_bound_at(blk) : 0.0;
    }
    // Moves to the first posting with doc >= target.
    void advance(std::uint32_t target) {
        if (pos >= n || docs[pos] >= target) return;
        std::size_t blk = pos / kBlockSize;
        if (last_doc[blk] < target) {
            // gallop over blocks, then binary search: first block with last_doc >= target
            std::size_t lo = blk + 1;
            std::size_t step = 1;
            while (lo + step < nblocks && last_doc[lo + step] < target) {
                lo += step;
                step *= 2;
            }
            const std::uint32_t* first = last_doc + lo;
            const std::uint32_t* last = last_doc + std::min(nblocks, lo + step + 1);
            blk = static_cast<std::size_t>(std::lower_bound(first, last, target) - last_doc);
            if (blk >= nblocks) {
                pos = n;
                return;
            }
            pos = blk * kBlockSize;
        }
        const std::size_t end = std::min(n, (blk + 1) * kBlockSize);
        pos = static_cast<std::size_t>(std::lower_bound(docs + pos, docs + end, target) - docs);
    }
};

void BM25Index::Postings::append(std::uint32_t doc, std::uint32_t tf) {
    if (docs.size() % kBlockSize == 0) {
        last_doc.push_back(doc);
    } else {
        last_doc.back() = doc;
    }
    docs.push_back(doc);
    tfs.push_back(tf);
    ++df;
}

// ---------------------------------------------------------------------------------------------------
// Construction, add, remove

BM25Index::BM25Index(double k1, double b, std::shared_ptr<const Analyzer> analyzer)
    : k1_(k1), b_(b), analyzer_(std::move(analyzer)), epoch_(next_epoch()) {
    if (!(k1 >= 0.0 && k1 <= kMaxK1))  // (NaN fails too)
        throw InvalidArgument("k1 must be in [0, " + std::to_string(static_cast<int>(kMaxK1)) + "], got " +
                              std::to_string(k1));
    if (!std::isfinite(b) || b < 0.0 || b > 1.0) throw InvalidArgument("b must be in [0, 1]");
    if (!analyzer_) analyzer_ = std::make_shared<const Analyzer>(AnalyzerConfig{});
}

void BM25Index::add(const std::vector<std::string>& ids, const std::vector<std::string_view>& texts) {
    if (ids.size() != texts.size()) {
        throw InvalidArgument("add(): got " + std::to_string(ids.size()) + " ids but " +
                              std::to_string(texts.size()) + " texts");
    }
    {
        std::unordered_set<std::string_view> seen;
        seen.reserve(ids.size());
        for (const auto& id : ids) {
            if (id.empty()) throw InvalidArgument("add(): document ids must be non-empty strings");
            if (!io::is_valid_utf8(id)) throw InvalidArgument("add(): document id is not valid UTF-8");
            if (!seen.insert(id).second) throw InvalidArgument("add(): duplicate id in batch: '" + id + "'");
        }
    }

    // Phase 1, no lock held: analyze the batch into a local vocabulary and per-document (term, tf) lists.
    // Each distinct raw token is normalized (stopword check + stemming) once.
    constexpr std::uint32_t kStop = kEnd;
    std::deque<std::string> raw_store;
    std::unordered_map<std::string_view, std::uint32_t> raw_to_local;
    std::deque<std::string> local_terms;
    std::unordered_map<std::string_view, std::uint32_t> local_of;
    std::vector<std::uint32_t> local_df;
    std::vector<std::uint64_t> offsets{0};
    offsets.reserve(ids.size() + 1);
    std::vector<std::uint32_t> pair_terms;
    std::vector<std::uint32_t> pair_tfs;
    std::vector<std::uint32_t> lens;
    lens.reserve(ids.size());
    std::vector<std::uint32_t> counts;
    std::vector<std::uint32_t> touched;
    std::string term;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        std::uint64_t len = 0;
        try {
            analyzer_->split(texts[i], [&](std::string_view raw) {
                auto it = raw_to_local.find(raw);
                std::uint32_t local;
                if (it != raw_to_local.end()) {
                    local = it->second;
                } else {
                    if (analyzer_->normalize(raw, term)) {
                        auto jt = local_of.find(term);
                        if (jt == local_of.end()) {
                            local_terms.push_back(term);
                            jt = local_of.emplace(local_terms.back(), static_cast<std::uint32_t>(local_df.size()))
                                     .first;
                            local_df.push_back(0);
                            counts.push_back(0);
                        }
                        local = jt->second;
                    } else {
                        local = kStop;
                    }
                    raw_store.emplace_back(raw);
                    raw_to_local.emplace(raw_store.back(), local);
                }
                if (local == kStop) return;
                if (counts[local]++ == 0) touched.push_back(local);
                ++len;
            });
        } catch (const InvalidArgument& e) {
            throw InvalidArgument("add(): text of document '" + ids[i] + "': " + e.what());
        }
        if (len > std::numeric_limits<std::uint32_t>::max()) {
            throw InvalidArgument("add(): document '" + ids[i] + "' has more than 2^32-1 terms");
        }
        for (auto t : touched) {
            pair_terms.push_back(t);
            pair_tfs.push_back(counts[t]);
            ++local_df[t];
            counts[t] = 0;
        }
        touched.clear();
        offsets.push_back(pair_terms.size());
        lens.push_back(static_cast<std::uint32_t>(len));
    }

    // Phase 2, write lock: check ids against the index, then insert everything.
    std::unique_lock lock(mutex_);
    Data& d = data_;
    for (const auto& id : ids) {
        if (d.doc_of.count(id)) throw InvalidArgument("add(): id already in the index: '" + id + "'");
    }
    if (d.ext_ids.size() + ids.size() > kMaxDocs) throw InvalidArgument("add(): too many documents");
    impacts_valid_ = false;
    epoch_ = next_epoch();
    std::vector<std::uint32_t> global(local_terms.size());
    for (std::size_t t = 0; t < local_terms.size(); ++t) {
        auto it = d.term_of.find(local_terms[t]);
        if (it == d.term_of.end()) {
            d.terms.push_back(std::move(local_terms[t]));
            it = d.term_of.emplace(d.terms.back(), static_cast<std::uint32_t>(d.postings.size())).first;
            d.postings.emplace_back();
        }
        global[t] = it->second;
        Postings& p = d.postings[it->second];
        const std::size_t need = p.docs.size() + local_df[t];
        if (need > p.docs.capacity()) {  // exact on a fresh list, geometric when growing one
            const std::size_t cap = p.docs.empty() ? need : std::max(need, p.docs.capacity() * 3 / 2);
            p.docs.reserve(cap);
            p.tfs.reserve(cap);
        }
    }
    d.fwd_terms.reserve(d.fwd_terms.size() + pair_terms.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto doc = static_cast<std::uint32_t>(d.ext_ids.size());
        d.ext_ids.push_back(ids[i]);
        d.doc_of.emplace(d.ext_ids.back(), doc);
        d.doc_len.push_back(lens[i]);
        d.alive.push_back(1);
        for (std::uint64_t j = offsets[i]; j < offsets[i + 1]; ++j) {
            const std::uint32_t g = global[pair_terms[j]];
            d.postings[g].append(doc, pair_tfs[j]);
            d.fwd_terms.push_back(g);
        }
        d.fwd_offsets.push_back(d.fwd_terms.size());
        ++d.live_docs;
        d.live_len += lens[i];
    }
}

void BM25Index::remove(const std::vector<std::string>& ids) {
    std::unique_lock lock(mutex_);
    Data& d = data_;
    std::vector<std::uint32_t> docs;
    docs.reserve(ids.size());
    std::unordered_set<std::string_view> seen;
    for (const auto& id : ids) {
        auto it = d.doc_of.find(id);
        if (it == d.doc_of.end()) throw NotFound("delete(): id not in the index: '" + id + "'");
        if (!seen.insert(id).second) throw InvalidArgument("delete(): duplicate id in batch: '" + id + "'");
        docs.push_back(it->second);
    }
    impacts_valid_ = false;
    epoch_ = next_epoch();
    for (std::size_t i = 0; i < docs.size(); ++i) {
        const std::uint32_t doc = docs[i];
        d.doc_of.erase(ids[i]);
        d.alive[doc] = 0;
        --d.live_docs;
        d.live_len -= d.doc_len[doc];
        for (std::uint64_t j = d.fwd_offsets[doc]; j < d.fwd_offsets[doc + 1]; ++j) --d.postings[d.fwd_terms[j]].df;
    }
    const std::size_t dead = d.ext_ids.size() - d.live_docs;
    if (dead > 0 && dead * 4 > d.ext_ids.size()) compact_locked();
}

void BM25Index::compact() {
    std::unique_lock lock(mutex_);
    compact_locked();
}

void BM25Index::compact_locked() {
    Data& old = data_;
    if (old.live_docs == old.ext_ids.size()) return;
    impacts_valid_ = false;
    epoch_ = next_epoch();
    Data d;
    std::vector<std::uint32_t> new_doc(old.ext_ids.size(), kEnd);
    for (std::size_t doc = 0; doc < old.ext_ids.size(); ++doc) {
        if (!old.alive[doc]) continue;
        new_doc[doc] = static_cast<std::uint32_t>(d.ext_ids.size());
        d.ext_ids.push_back(std::move(old.ext_ids[doc]));
        d.doc_of.emplace(d.ext_ids.back(), new_doc[doc]);
        d.doc_len.push_back(old.doc_len[doc]);
        d.alive.push_back(1);
    }
    std::vector<std::uint32_t> new_term(old.terms.size(), kEnd);
    for (std::size_t t = 0; t < old.terms.size(); ++t) {
        const Postings& p = old.postings[t];
        if (p.df == 0) continue;
        new_term[t] = static_cast<std::uint32_t>(d.postings.size());
        d.terms.push_back(std::move(old.terms[t]));
        d.term_of.emplace(d.terms.back(), new_term[t]);
        Postings& q = d.postings.emplace_back();
        q.docs.reserve(p.df);
        q.tfs.reserve(p.df);
        for (std::size_t j = 0; j < p.docs.size(); ++j) {
            const std::uint32_t nd = new_doc[p.docs[j]];
            if (nd != kEnd) q.append(nd, p.tfs[j]);
        }
    }
    d.fwd_offsets.reserve(d.ext_ids.size() + 1);
    for (std::size_t doc = 0; doc < old.alive.size(); ++doc) {
        if (!old.alive[doc]) continue;
        for (std::uint64_t j = old.fwd_offsets[doc]; j < old.fwd_offsets[doc + 1]; ++j) {
            d.fwd_terms.push_back(new_term[old.fwd_terms[j]]);
        }
        d.fwd_offsets.push_back(d.fwd_terms.size());
    }
    d.live_docs = old.live_docs;
    d.live_len = old.live_len;
    data_ = std::move(d);
}

// ---------------------------------------------------------------------------------------------------
// Search

std::uint32_t BM25Index::query_term_id(std::string_view raw, std::string& scratch) const {
    if (!analyzer_->normalize(raw, scratch)) return kNoTerm;
    const auto it = data_.term_of.find(scratch);
    if (it == data_.term_of.end() || data_.postings[it->second].df == 0) return kNoTerm;
    return it->second;
}

namespace {
// Per thread: raw query token -> term id (or kNoTerm) of the index that last searched on this thread, as
// of its epoch. Queries repeat words, so most tokens then cost one hash lookup instead of a stopword
// lookup, stemming and a vocabulary lookup. Emptied when the index or its epoch changes, and when full.
// An open-addressing table (power-of-two size, linear probing, full hashes stored, token bytes in one
// arena): a lookup is about one cache miss and no division, where std::unordered_map chases nodes.
class QueryTokenCache {
public:
    static constexpr std::size_t kMaxEntries = 1u << 15;
    static constexpr std::size_t kMaxTokenBytes = 64;

    // Empties the cache unless it already holds `owner`'s tokens as of `epoch`.
    void use(const void* owner, std::uint64_t epoch) {
        if (owner == owner_ && epoch == epoch_) return;
        clear();
        owner_ = owner;
        epoch_ = epoch;
    }
    static std::uint64_t hash(std::string_view token) {
        const std::uint64_t h = std::hash<std::string_view>{}(token);
        return h ? h : 1;  // 0 marks an empty slot
    }
    // The cached id of `token` (with hash h), or nullptr.
    const std::uint32_t* find(std::string_view token, std::uint64_t h) const {
        if (slots_.empty()) return nullptr;
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = h & mask;; i = (i + 1) & mask) {
            const Slot& s = slots_[i];
            if (s.hash == 0) return nullptr;
            if (s.hash == h && s.length == token.size() &&
                std::memcmp(arena_.data() + s.offset, token.data(), token.size()) == 0) {
                return &s.id;
            }
        }
    }
    // Adds a token that find() did not hold (at most kMaxTokenBytes long).
    void insert(std::string_view token, std::uint64_t h, std::uint32_t id) {
        if (size_ >= kMaxEntries) clear();
        if (2 * (size_ + 1) > slots_.size()) grow();
        const auto offset = static_cast<std::uint32_t>(arena_.size());
        arena_.append(token);  // before the slot that points into it (append may throw)
        place(Slot{h, offset, static_cast<std::uint32_t>(token.size()), id});
        ++size_;
    }

private:
    struct Slot {
        std::uint64_t hash = 0;
        std::uint32_t offset = 0;
        std::uint32_t length = 0;
        std::uint32_t id = 0;
    };
    void place(const Slot& slot) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = slot.hash & mask;
        while (slots_[i].hash != 0) i = (i + 1) & mask;
        slots_[i] = slot;
    }
    void grow() {
        std::vector<Slot> old(std::max<std::size_t>(64, 2 * slots_.size()));
        old.swap(slots_);
        for (const Slot& s : old) {
            if (s.hash != 0) place(s);
        }
    }
    void clear() {
        std::vector<Slot>().swap(slots_);  // back to small: a cleared cache is refilled gradually
        arena_.clear();
        size_ = 0;
    }

    const void* owner_ = nullptr;
    std::uint64_t epoch_ = 0;
    std::vector<Slot> slots_;
    std::string arena_;
    std::size_t size_ = 0;
};
}  // namespace

std::vector<BM25Index::QueryTerm> BM25Index::prepare(std::string_view query, const BM25CorpusStats* global) const {
    thread_local QueryTokenCache cache;
    cache.use(this, epoch_);
    // The ids of the query's terms that occur in live documents, in query order, with their positions.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> found;  // (term id, position)
    std::string term;
    analyzer_->split(query, [&](std::string_view raw) {
        std::uint32_t id;
        if (raw.size() <= QueryTokenCache::kMaxTokenBytes) {
            const std::uint64_t h = QueryTokenCache::hash(raw);
            if (const std::uint32_t* hit = cache.find(raw, h)) {
                id = *hit;
            } else {
                id = query_term_id(raw, term);
                cache.insert(raw, h, id);
            }
        } else {
            id = query_term_id(raw, term);
        }
        if (id != kNoTerm) found.emplace_back(id, static_cast<std::uint32_t>(found.size()));
    });
    // Distinct terms in order of first occurrence; weight counts occurrences.
    std::sort(found.begin(), found.end());
    std::vector<std::pair<std::uint32_t, std::uint32_t>> first;  // (first position, term id) per distinct term
    std::vector<std::uint32_t> count(found.size(), 0);            // by first position
    for (std::size_t i = 0; i < found.size(); ++i) {
        if (i == 0 || found[i].first != found[i - 1].first) first.emplace_back(found[i].second, found[i].first);
        ++count[first.back().first];
    }
    std::sort(first.begin(), first.end());
    std::vector<QueryTerm> q;
    q.reserve(first.size());
    const double n = static_cast<double>(global ? global->docs : data_.live_docs);
    for (const auto& [pos, id] : first) {
        const Postings& p = data_.postings[id];
        std::uint64_t term_df = p.df;
        if (global) {
            const auto it = global->df.find(data_.terms[id]);
            if (it == global->df.end()) {
                throw InvalidArgument("search(): the corpus statistics give no document frequency for the query "
                                      "term '" + data_.terms[id] + "', which this index holds");
            }
            if (it->second < p.df || it->second > global->docs) {
                throw InvalidArgument("search(): the corpus document frequency of '" + data_.terms[id] + "' (" +
                                      std::to_string(it->second) + ") is below this index's (" +
                                      std::to_string(p.df) + ") or above the corpus's documents (" +
                                      std::to_string(global->docs) + ")");
            }
            term_df = it->second;
        }
        const double df = static_cast<double>(term_df);
        q.push_back(QueryTerm{&p, static_cast<double>(count[pos]) * std::log(1.0 + (n - df + 0.5) / (df + 0.5))});
    }
    // A document's score is summed in int64 units of 2^-32 and an impact is at most k1 + 1, so this bounds
    // every sum (and every contribution's double -> int64 conversion). Only a query repeating indexed
    // terms about a million times (at k1 = kMaxK1; a billion at k1 = 1.2) can exceed it: refused rather
    // than overflowed.
    double max_sum = 0.0;
    for (const QueryTerm& t : q) max_sum += t.weight * Scorer::kScale * (k1_ + 1.0) + 2.0;
    if (!(max_sum < 0x1p62))
        throw InvalidArgument("query too long: " + std::to_string(found.size()) +
                              " indexed terms could overflow the score range");
    return q;
}

namespace {
// "a ranks before b": higher score, then earlier document.
template <typename H>
bool better(const H& a, const H& b) {
    return a.score > b.score || (a.score == b.score && a.doc < b.doc);
}
}  // namespace

std::vector<BM25Index::Hit> BM25Index::top_k_pruned(const std::vector<QueryTerm>& q, std::size_t k,
                                                    const std::vector<std::uint8_t>* mask) const {
    // MaxScore over doc-id windows (as Lucene's MaxScoreBulkScorer): cursors sorted by their bound; the
    // first `fe` are non-essential (together they cannot lift a document into the top-k), so candidates
    // come only from the essential lists, which are accumulated term-at-a-time inside each window. A
    // candidate is then completed from the non-essential lists, highest bound first, and dropped as
    // soon as its partial score plus the remaining (block-max) bounds falls below the k-th score.
    const Data& d = data_;
    const std::size_t nq = q.size();
    std::vector<Cursor> cur;
    cur.reserve(nq);
    for (std::size_t i = 0; i < nq; ++i) {
        Cursor c(q[i], i);
        float top = 0.0f;
        for (const float m : q[i].list->block_max) top = std::max(top, m);
        c.max_bound = Scorer::to_double(Scorer::contribution(c.weight, top));
        cur.push_back(c);
    }
    std::sort(cur.begin(), cur.end(), [](const Cursor& a, const Cursor& b) {
        return a.max_bound < b.max_bound || (a.max_bound == b.max_bound && a.qidx < b.qidx);
    });
    std::vector<double> prefix(nq);  // prefix[i] = sum of bounds of cursors 0..i
    double acc_bound = 0.0;
    for (std::size_t i = 0; i < nq; ++i) prefix[i] = (acc_bound += cur[i].max_bound);

    std::vector<Hit> heap;
    heap.reserve(std::min<std::size_t>(k, d.live_docs));
    const auto heap_cmp = [](const Hit& a, const Hit& b) { return better(a, b); };  // front = worst
    double theta = -std::numeric_limits<double>::infinity();
    std::size_t fe = 0;
    std::vector<double> bounds(nq, 0.0);

    // Windows start small, so the k-th score (and with it the pruning) is established early, and grow.
    constexpr std::uint32_t kMaxWindow = 4096;
    std::uint32_t window = 64;
    // Per-thread scratch, all zero between queries (every set bit's accumulator is cleared when read).
    thread_local std::vector<std::int64_t> acc(kMaxWindow, 0);
    thread_local std::vector<std::uint64_t> bits(kMaxWindow / 64, 0);

    while (fe < nq) {
        std::uint32_t start = kEnd;
        for (std::size_t i = fe; i < nq; ++i) start = std::min(start, cur[i].doc());
        if (start == kEnd) break;
        const std::uint32_t end = start + std::min<std::uint32_t>(window, kEnd - start);
        window = std::min(kMaxWindow, window * 2);
        const std::size_t window_fe = fe;  // fixed for this window: its essential lists are accumulated
        for (std::size_t i = window_fe; i < nq; ++i) {
            Cursor& c = cur[i];
            while (c.pos < c.n && c.docs[c.pos] < end) {
                const std::uint32_t doc = c.docs[c.pos];
                const std::uint32_t off = doc - start;
                acc[off] += Scorer::contribution(c.weight, c.impacts[c.pos]);
                bits[off >> 6] |= std::uint64_t{1} << (off & 63);
                ++c.pos;
            }
        }
        const std::size_t words = (end - start + 63) / 64;
        for (std::size_t w = 0; w < words; ++w) {
            while (bits[w]) {
                const auto bit = static_cast<std::uint32_t>(__builtin_ctzll(bits[w]));
                bits[w] &= bits[w] - 1;
                const std::uint32_t off = static_cast<std::uint32_t>(w) * 64 + bit;
                const std::uint32_t doc = start + off;
                std::int64_t total = acc[off];
                acc[off] = 0;
                if (!d.alive[doc] || (mask && !(*mask)[doc])) continue;
                double partial = Scorer::to_double(total);
                if (window_fe > 0) {
                    if ((partial + prefix[window_fe - 1]) * kSlack < theta) continue;
                    double rest = 0.0;
                    for (std::size_t i = 0; i < window_fe; ++i) rest += (bounds[i] = cur[i].bound_for(doc));
                    if ((partial + rest) * kSlack < theta) continue;
                    bool pruned = false;
                    for (std::size_t i = window_fe; i-- > 0;) {
                        rest -= bounds[i];
                        if (bounds[i] == 0.0) continue;
                        Cursor& c = cur[i];
                        c.advance(doc);
                        if (c.doc() == doc) {
                            total += Scorer::contribution(c.weight, c.impacts[c.pos]);
                            partial = Scorer::to_double(total);
                        }
                        if ((partial + std::max(rest, 0.0)) * kSlack < theta) {
                            pruned = true;
                            break;
                        }
                    }
                    if (pruned) continue;
                }
                const double score = Scorer::to_double(total);
                if (heap.size() < k) {
                    heap.push_back(Hit{score, doc});
                    std::push_heap(heap.begin(), heap.end(), heap_cmp);
                } else if (score > heap.front().score) {  // equal score: the earlier document stays
                    std::pop_heap(heap.begin(), heap.end(), heap_cmp);
                    heap.back() = Hit{score, doc};
                    std::push_heap(heap.begin(), heap.end(), heap_cmp);
                } else {
                    continue;
                }
                if (heap.size() == k) theta = heap.front().score;
            }
        }
        while (fe < nq && prefix[fe] * kSlack < theta) ++fe;
    }
    std::sort(heap.begin(), heap.end(), heap_cmp);
    return heap;
}

namespace {
// Orderings of dense-search candidates (a fixed-point sum and a document slot), best first: higher sum,
// then earlier document. PackedKeys fits both in one integer (sum < 2^47, doc < 2^16) so selection
// compares plain integers; WideKeys holds any sum and slot.
struct PackedKeys {
    using Key = std::uint64_t;
    static constexpr std::uint64_t kDocMask = 0xFFFF;
    static Key make(std::int64_t sum, std::uint32_t doc) {
        return (static_cast<std::uint64_t>(sum) << 16) | (kDocMask - doc);
    }
    static std::int64_t sum(Key k) { return static_cast<std::int64_t>(k >> 16); }
    static std::uint32_t doc(Key k) { return static_cast<std::uint32_t>(kDocMask - (k & kDocMask)); }
    static bool better(Key a, Key b) { return a > b; }
};
struct WideKeys {
    struct Key {
        std::int64_t sum;
        std::uint32_t doc;
    };
    static Key make(std::int64_t sum, std::uint32_t doc) { return Key{sum, doc}; }
    static std::int64_t sum(const Key& k) { return k.sum; }
    static std::uint32_t doc(const Key& k) { return k.doc; }
    static bool better(const Key& a, const Key& b) { return a.sum > b.sum || (a.sum == b.sum && a.doc < b.doc); }
};

// The best min(k, candidates) (sum, slot) of acc[0, slots) with sum > 0, alive and allowed by `mask`, best
// first, into `buf`, zeroing acc[0, slots) on the way, which the caller sized to at least min(2k, live documents) + 4 keys (nothing here
// allocates). One ascending pass keeps up to 2k candidates and cuts them back to the best k
// (nth_element) when full: amortized O(1) per candidate. Candidates must beat the k-th kept sum: documents
// come in ascending order, so on an equal sum the earlier, kept one ranks first. Groups of 4 slots with
// no candidate are skipped with one comparison; inside a group every slot is written and kept or not
// without a branch (whether a slot passes is unpredictable while the threshold is still low).
template <typename Keys>
void select_dense(std::int64_t* acc, std::size_t slots, std::size_t k, const std::vector<std::uint8_t>& alive,
                  const std::vector<std::uint8_t>* mask, std::vector<typename Keys::Key>& buf) {
    const auto cmp = [](const typename Keys::Key& a, const typename Keys::Key& b) { return Keys::better(a, b); };
    typename Keys::Key* const out = buf.data();
    const std::uint8_t* const live = alive.data();
    const std::uint8_t* const allowed = mask ? mask->data() : nullptr;
    std::size_t n = 0;
    std::int64_t theta = 0;
    const auto cut = [&]() {  // keep the best k of the n candidates
        std::nth_element(out, out + (k - 1), out + n, cmp);
        n = k;
        theta = Keys::sum(out[k - 1]);
    };
    const std::size_t full = slots / 4 * 4;
    for (std::size_t base = 0; base < full; base += 4) {
        std::int64_t* const p = acc + base;
        const std::int64_t a[4] = {p[0], p[1], p[2], p[3]};
        p[0] = p[1] = p[2] = p[3] = 0;  // the scratch is left all zero for the next query
        if (std::max(std::max(a[0], a[1]), std::max(a[2], a[3])) <= theta) continue;
        for (std::size_t i = 0; i < 4; ++i) {
            const auto doc = static_cast<std::uint32_t>(base + i);
            out[n] = Keys::make(a[i], doc);
            const bool keep = (a[i] > theta) & (live[doc] != 0) & (!allowed || allowed[doc] != 0);
            n += keep ? 1 : 0;
        }
        if (n >= 2 * k) cut();
    }
    for (std::size_t doc = full; doc < slots; ++doc) {
        const std::int64_t total = acc[doc];
        acc[doc] = 0;
        if (total <= theta || !live[doc] || (allowed && !allowed[doc])) continue;
        out[n++] = Keys::make(total, static_cast<std::uint32_t>(doc));
        if (n >= 2 * k) cut();
    }
    if (n > k) cut();
    std::sort(out, out + n, cmp);
    buf.resize(n);
}
}  // namespace

std::vector<BM25Index::Hit> BM25Index::top_k_dense(const std::vector<QueryTerm>& q, std::size_t k,
                                                   const std::vector<std::uint8_t>* mask) const {
    // Term-at-a-time into a dense accumulator over all document slots (per-thread scratch, all zero
    // between queries; a matching document's sum is never 0), then one ascending pass over the slots
    // (select_dense). Selection compares packed 64-bit keys when every possible sum fits (always for
    // ordinary queries), else (sum, slot) pairs.
    const Data& d = data_;
    const std::size_t slots = d.ext_ids.size();
    thread_local std::vector<std::int64_t> scratch;
    if (scratch.size() < slots) scratch.resize(slots, 0);
    std::int64_t* const acc = scratch.data();  // a plain pointer: no thread-local lookups in the loops
    // An impact is at most k1 + 1, so this bounds every document's sum (in units of 2^-32).
    double max_sum = 0.0;
    for (const QueryTerm& t : q) max_sum += t.weight * Scorer::kScale * (k1_ + 1.0) + 2.0;
    const bool packed = slots <= PackedKeys::kDocMask + 1 && max_sum < 0x1p47;
    const std::size_t cap = k >= d.live_docs ? d.live_docs : 2 * k;  // never reached when cap == live_docs
    // Reserved before accumulating: nothing below allocates (or throws) while the scratch holds sums.
    std::vector<PackedKeys::Key> packed_buf;
    std::vector<WideKeys::Key> wide_buf;
    if (packed) {
        packed_buf.resize(cap + 4);
    } else {
        wide_buf.resize(cap + 4);
    }
    for (const QueryTerm& t : q) {
        Scorer::accumulate(acc, t.list->docs.data(), t.list->impacts.data(), t.list->docs.size(),
                           t.weight * Scorer::kScale);
    }
    if (packed) {
        select_dense<PackedKeys>(acc, slots, k, d.alive, mask, packed_buf);
    } else {
        select_dense<WideKeys>(acc, slots, k, d.alive, mask, wide_buf);
    }
    std::vector<Hit> hits;
    hits.reserve(packed ? packed_buf.size() : wide_buf.size());
    for (const auto key : packed_buf) hits.push_back(Hit{Scorer::to_double(PackedKeys::sum(key)), PackedKeys::doc(key)});
    for (const auto& key : wide_buf) hits.push_back(Hit{Scorer::to_double(WideKeys::sum(key)), WideKeys::doc(key)});
    return hits;
}

void BM25Index::compute_impacts(const CorpusStats& stats) const {
    const Data& d = data_;
    // The same expression as for the local statistics: equal integers give the same avgdl, bit for bit.
    const Scorer scorer(k1_, b_,
                        stats.docs > 0 ? static_cast<double>(stats.total_length) / static_cast<double>(stats.docs)
                                       : 0.0);
    for (const Postings& p : d.postings) {
        const std::size_t n = p.docs.size();
        p.impacts.resize(n);
        p.block_max.assign(p.last_doc.size(), 0.0f);
        for (std::size_t j = 0; j < n; ++j) {
            const float v = scorer.impact(p.tfs[j], d.doc_len[p.docs[j]]);
            p.impacts[j] = v;
            float& m = p.block_max[j / kBlockSize];
            m = std::max(m, v);
        }
    }
}

BM25Index::ReadGuard BM25Index::read_lock(const BM25CorpusStats* global) const {
    ReadGuard guard;
    guard.shared = std::shared_lock(mutex_);
    const auto wanted = [&] { return global ? CorpusStats{global->docs, global->total_length} : local_stats(); };
    if (impacts_valid_ && impacts_for_ == wanted()) return guard;
    guard.shared.unlock();
    guard.exclusive = std::unique_lock(mutex_);  // double-checked: another reader may have recomputed meanwhile
    const CorpusStats stats = wanted();
    if (!(impacts_valid_ && impacts_for_ == stats)) {
        if (global) check_global(*global);  // before the cache changes: a refused search changes nothing
        compute_impacts(stats);
        impacts_valid_ = true;
        impacts_for_ = stats;
    }
    return guard;
}

void BM25Index::check_global(const BM25CorpusStats& global) const {
    if (global.docs < data_.live_docs || global.total_length < data_.live_len) {
        throw InvalidArgument("search(): the corpus statistics (" + std::to_string(global.docs) + " documents, total "
                              "length " + std::to_string(global.total_length) + ") are smaller than this index's (" +
                              std::to_string(data_.live_docs) + ", " + std::to_string(data_.live_len) +
                              "): they must count every shard, this one included");
    }
}

void BM25Index::set_dense_max_docs(std::size_t n) {
    std::unique_lock lock(mutex_);
    dense_max_docs_ = n;
}

std::size_t BM25Index::dense_max_docs() const {
    std::shared_lock lock(mutex_);
    return dense_max_docs_;
}

std::vector<BM25Index::Hit> BM25Index::top_k_docs(const std::vector<QueryTerm>& q, std::size_t k,
                                                  const std::vector<std::uint32_t>& docs) const {
    std::vector<Cursor> cur;
    cur.reserve(q.size());
    for (std::size_t i = 0; i < q.size(); ++i) cur.emplace_back(q[i], i);
    std::vector<Hit> hits;
    for (const std::uint32_t doc : docs) {  // ascending
        std::int64_t total = 0;
        bool matched = false;
        for (Cursor& c : cur) {
            c.advance(doc);
            if (c.doc() == doc) {
                total += Scorer::contribution(c.weight, c.impacts[c.pos]);
                matched = true;
            }
        }
        if (matched) hits.push_back(Hit{Scorer::to_double(total), doc});
    }
    const auto cmp = [](const Hit& a, const Hit& b) { return better(a, b); };
    const std::size_t keep = std::min(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), cmp);
    hits.resize(keep);
    return hits;
}

std::vector<BM25Index::Hit> BM25Index::top_k_exhaustive(const std::vector<QueryTerm>& q, std::size_t k,
                                                        const std::vector<std::uint8_t>* mask) const {
    const Data& d = data_;
    std::vector<std::int64_t> acc(d.ext_ids.size(), 0);
    std::vector<std::uint8_t> matched(d.ext_ids.size(), 0);
    for (const QueryTerm& t : q) {
        for (std::size_t j = 0; j < t.list->docs.size(); ++j) {
            const std::uint32_t doc = t.list->docs[j];
            acc[doc] += Scorer::contribution(t.weight, t.list->impacts[j]);
            matched[doc] = 1;
        }
    }
    std::vector<Hit> hits;
    for (std::uint32_t doc = 0; doc < acc.size(); ++doc) {
        if (matched[doc] && d.alive[doc] && (!mask || (*mask)[doc])) hits.push_back(Hit{Scorer::to_double(acc[doc]), doc});
    }
    const auto cmp = [](const Hit& a, const Hit& b) { return better(a, b); };
    const std::size_t keep = std::min(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), cmp);
    hits.resize(keep);
    return hits;
}

std::optional<BM25Index::Allowed> BM25Index::resolve_allow(const std::vector<std::string>* allow) const {
    if (!allow) return std::nullopt;
    Allowed out;
    out.mask.assign(data_.ext_ids.size(), 0);
    for (const auto& id : *allow) {
        auto it = data_.doc_of.find(id);
        if (it == data_.doc_of.end()) continue;  // unknown or deleted: a filter, not a lookup (as in HNSW)
        if (!out.mask[it->second]) out.docs.push_back(it->second);
        out.mask[it->second] = 1;
    }
    std::sort(out.docs.begin(), out.docs.end());
    return out;
}

BM25Results BM25Index::to_results(const std::vector<Hit>& hits) const {
    BM25Results r;
    r.ids.reserve(hits.size());
    r.scores.reserve(hits.size());
    r.slots.reserve(hits.size());
    r.exact_scores.reserve(hits.size());
    for (const Hit& h : hits) {
        r.ids.push_back(data_.ext_ids[h.doc]);
        r.scores.push_back(static_cast<float>(h.score));
        r.exact_scores.push_back(h.score);
        r.slots.push_back(h.doc);
    }
    return r;
}

BM25Results BM25Index::search_locked(std::string_view query, std::size_t k, const std::optional<Allowed>& allowed,
                                     bool exhaustive, const BM25CorpusStats* global) const {
    if (k == 0) throw InvalidArgument("search(): k must be >= 1");
    if (global) check_global(*global);
    const auto q = prepare(query, global);
    if (q.empty() || data_.live_docs == 0 || (allowed && allowed->docs.empty())) return {};
    // No more than the live documents can come back; k must never size an allocation beyond them.
    k = std::min<std::size_t>(k, static_cast<std::size_t>(data_.live_docs));
    const std::vector<std::uint8_t>* mask = allowed ? &allowed->mask : nullptr;
    if (exhaustive) return to_results(top_k_exhaustive(q, k, mask));
    if (allowed) {
        std::size_t postings = 0;
        for (const auto& t : q) postings += t.list->docs.size();
        // Few allowed documents: score just those; else filter while traversing the lists.
        if (allowed->docs.size() * q.size() * 4 < postings) return to_results(top_k_docs(q, k, allowed->docs));
    }
    if (data_.ext_ids.size() <= dense_max_docs_) return to_results(top_k_dense(q, k, mask));
    return to_results(top_k_pruned(q, k, mask));
}

BM25Results BM25Index::search(std::string_view query, std::size_t k, const std::vector<std::string>* allow,
                              const BM25CorpusStats* global) const {
    const auto lock = read_lock(global);
    return search_locked(query, k, resolve_allow(allow), false, global);
}

BM25Results BM25Index::search_exhaustive(std::string_view query, std::size_t k,
                                         const std::vector<std::string>* allow,
                                         const BM25CorpusStats* global) const {
    const auto lock = read_lock(global);
    return search_locked(query, k, resolve_allow(allow), true, global);
}

std::vector<BM25Results> BM25Index::search_batch(const std::vector<std::string>& queries, std::size_t k,
                                                 unsigned threads, const std::vector<std::string>* allow,
                                                 const BM25CorpusStats* global) const {
    if (k == 0) throw InvalidArgument("search_batch(): k must be >= 1");
    std::vector<BM25Results> out(queries.size());
    const auto lock = read_lock(global);
    if (global) check_global(*global);
    const std::optional<Allowed> allowed = resolve_allow(allow);  // once for the batch
    parallel_for(queries.size(), threads,
                 [&](std::size_t i, std::size_t) { out[i] = search_locked(queries[i], k, allowed, false, global); });
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Introspection

std::size_t BM25Index::size() const {
    std::shared_lock lock(mutex_);
    return static_cast<std::size_t>(data_.live_docs);
}

bool BM25Index::contains(std::string_view id) const {
    std::shared_lock lock(mutex_);
    return data_.doc_of.count(id) > 0;
}

std::vector<std::string> BM25Index::ids() const {
    std::shared_lock lock(mutex_);
    std::vector<std::string> out;
    out.reserve(data_.live_docs);
    for (std::size_t doc = 0; doc < data_.ext_ids.size(); ++doc) {
        if (data_.alive[doc]) out.push_back(data_.ext_ids[doc]);
    }
    return out;
}

BM25Index::CorpusStats BM25Index::corpus_stats() const {
    std::shared_lock lock(mutex_);
    return local_stats();
}

std::vector<std::string> BM25Index::query_terms(std::string_view query) const {
    // The analyzer is immutable: no lock needed.
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    std::string term;
    analyzer_->split(query, [&](std::string_view raw) {
        if (analyzer_->normalize(raw, term) && seen.insert(term).second) out.push_back(term);
    });
    return out;
}

std::vector<std::uint64_t> BM25Index::doc_freqs(const std::vector<std::string>& terms) const {
    std::shared_lock lock(mutex_);
    std::vector<std::uint64_t> out;
    out.reserve(terms.size());
    for (const auto& t : terms) {
        const auto it = data_.term_of.find(t);
        out.push_back(it == data_.term_of.end() ? 0 : data_.postings[it->second].df);
    }
    return out;
}

BM25Index::Stats BM25Index::stats() const {
    std::shared_lock lock(mutex_);
    Stats s;
    s.live_docs = data_.live_docs;
    s.doc_slots = data_.ext_ids.size();
    s.terms = data_.terms.size();
    for (const auto& p : data_.postings) s.postings += p.docs.size();
    return s;
}

// ---------------------------------------------------------------------------------------------------
// Persistence
//
// Payload (version 1), after file_io's header:
//   f64 k1, f64 b
//   analyzer: u8 lowercase, u64 min_token_length, string stemmer, u64 n + n strings stopwords
//   u64 n_docs, n_docs strings (ids), vector<u32> doc lengths
//   u64 n_terms, then per term: string term, vector<u32> docs (ascending), vector<u32> tfs
// Only live documents are written (renumbered in order); terms with no live document are dropped.

void BM25Index::save(const std::string& path) const {
    std::shared_lock lock(mutex_);
    const Data& d = data_;
    io::AtomicFileWriter w(path, kMagic, kFormatVersion);
    w.write<double>(k1_);
    w.write<double>(b_);
    const AnalyzerConfig& cfg = analyzer_->config();
    w.write<std::uint8_t>(cfg.lowercase ? 1 : 0);
    w.write<std::uint64_t>(cfg.min_token_length);
    w.write_string(cfg.stemmer);
    w.write<std::uint64_t>(cfg.stopwords.size());
    for (const auto& s : cfg.stopwords) w.write_string(s);

    std::vector<std::uint32_t> new_doc(d.ext_ids.size(), kEnd);
    std::vector<std::uint32_t> lens;
    lens.reserve(d.live_docs);
    w.write<std::uint64_t>(d.live_docs);
    for (std::size_t doc = 0; doc < d.ext_ids.size(); ++doc) {
        if (!d.alive[doc]) continue;
        new_doc[doc] = static_cast<std::uint32_t>(lens.size());
        lens.push_back(d.doc_len[doc]);
        w.write_string(d.ext_ids[doc]);
    }
    w.write_vector(lens);
    std::uint64_t live_terms = 0;
    for (const auto& p : d.postings) live_terms += p.df > 0 ? 1 : 0;
    w.write<std::uint64_t>(live_terms);
    std::vector<std::uint32_t> docs;
    std::vector<std::uint32_t> tfs;
    for (std::size_t t = 0; t < d.postings.size(); ++t) {
        const Postings& p = d.postings[t];
        if (p.df == 0) continue;
        docs.clear();
        tfs.clear();
        for (std::size_t j = 0; j < p.docs.size(); ++j) {
            const std::uint32_t nd = new_doc[p.docs[j]];
            if (nd == kEnd) continue;
            docs.push_back(nd);
            tfs.push_back(p.tfs[j]);
        }
        w.write_string(d.terms[t]);
        w.write_vector(docs);
        w.write_vector(tfs);
    }
    w.commit();
}

std::unique_ptr<BM25Index> BM25Index::load(const std::string& path) {
    io::IndexFile file(path, kMagic, kFormatVersion);
    io::BinaryReader r = file.reader();
    const auto k1 = r.read<double>();
    const auto b = r.read<double>();
    AnalyzerConfig cfg;
    const auto lowercase = r.read<std::uint8_t>();
    if (lowercase > 1) r.fail("bad analyzer lowercase flag");
    cfg.lowercase = lowercase == 1;
    cfg.min_token_length = static_cast<std::size_t>(r.read<std::uint64_t>());
    cfg.stemmer = r.read_string();
    const auto n_stop = r.read_count(r.remaining() / 8, "stopwords");
    cfg.stopwords.clear();
    for (std::uint64_t i = 0; i < n_stop; ++i) cfg.stopwords.push_back(r.read_string());
    std::unique_ptr<BM25Index> index;
    try {
        index = std::make_unique<BM25Index>(k1, b, std::make_shared<const Analyzer>(std::move(cfg)));
    } catch (const InvalidArgument& e) {
        r.fail(std::string("bad index settings: ") + e.what());
    }
    Data& d = index->data_;
    const auto n_docs = r.read_count(std::min<std::uint64_t>(r.remaining() / 8, kMaxDocs), "documents");
    for (std::uint64_t i = 0; i < n_docs; ++i) {
        d.ext_ids.push_back(r.read_utf8_string("document id"));
        if (d.ext_ids.back().empty()) r.fail("empty document id");
        if (!d.doc_of.emplace(d.ext_ids.back(), static_cast<std::uint32_t>(i)).second) {
            r.fail("duplicate document id '" + d.ext_ids.back() + "'");
        }
    }
    d.doc_len = r.read_vector<std::uint32_t>();
    if (d.doc_len.size() != n_docs) r.fail("document length table has the wrong size");
    d.alive.assign(n_docs, 1);
    std::vector<std::uint64_t> len_check(n_docs, 0);
    std::vector<std::uint32_t> terms_per_doc(n_docs, 0);
    // Each term takes at least 24 bytes (three lengths); term ids are 32-bit.
    const auto n_terms = r.read_count(std::min<std::uint64_t>(r.remaining() / 24, kMaxDocs), "terms");
    for (std::uint64_t t = 0; t < n_terms; ++t) {
        d.terms.push_back(r.read_string());
        if (!d.term_of.emplace(d.terms.back(), static_cast<std::uint32_t>(t)).second) {
            r.fail("duplicate term '" + d.terms.back() + "'");
        }
        auto docs = r.read_vector<std::uint32_t>();
        auto tfs = r.read_vector<std::uint32_t>();
        if (docs.empty() || docs.size() != tfs.size()) r.fail("bad posting list for term '" + d.terms.back() + "'");
        Postings& p = d.postings.emplace_back();
        p.docs.reserve(docs.size());
        p.tfs.reserve(docs.size());
        for (std::size_t j = 0; j < docs.size(); ++j) {
            if (docs[j] >= n_docs || (j > 0 && docs[j] <= docs[j - 1]) || tfs[j] == 0) {
                r.fail("bad posting list for term '" + d.terms.back() + "'");
            }
            len_check[docs[j]] += tfs[j];
            ++terms_per_doc[docs[j]];
            p.append(docs[j], tfs[j]);
        }
    }
    r.expect_end();
    for (std::uint64_t i = 0; i < n_docs; ++i) {
        if (len_check[i] != d.doc_len[i]) r.fail("document lengths disagree with the postings");
        d.live_len += d.doc_len[i];
    }
    d.live_docs = n_docs;
    // forward index (doc -> terms), for delete
    d.fwd_offsets.assign(n_docs + 1, 0);
    for (std::uint64_t i = 0; i < n_docs; ++i) d.fwd_offsets[i + 1] = d.fwd_offsets[i] + terms_per_doc[i];
    d.fwd_terms.assign(d.fwd_offsets[n_docs], 0);
    std::vector<std::uint64_t> fill(d.fwd_offsets.begin(), d.fwd_offsets.end() - 1);
    for (std::size_t t = 0; t < d.postings.size(); ++t) {
        for (const std::uint32_t doc : d.postings[t].docs) d.fwd_terms[fill[doc]++] = static_cast<std::uint32_t>(t);
    }
    index->epoch_ = next_epoch();
    return index;
}

}  // namespace funnelrank
