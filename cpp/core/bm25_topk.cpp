// BM25 top-k: the SIMD accumulation kernel and the four exact top-k strategies over the cached impacts
// (see bm25_index.h): term-at-a-time into a dense accumulator (small corpora), MaxScore over doc-id windows
// with block-max bounds (large ones), scoring an allow-list's few documents, and exhaustive (the reference).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "bm25_index.h"
#include "bm25_scoring.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FUNNELRANK_BM25_AVX512 1
#include <immintrin.h>
#endif

namespace funnelrank {

// ---------------------------------------------------------------------------------------------------
// SIMD accumulation (top_k_dense's inner loop)

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

// ---------------------------------------------------------------------------------------------------
// Top-k strategies

namespace {
// Bounds are compared after scaling by this, so floating-point rounding can never make pruning unsafe.
constexpr double kSlack = 1.0 + 1e-9;
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
    const auto heap_cmp = [](const Hit& a, const Hit& b) { return ranks_before(a, b); };  // front = worst
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

// Whether slot `doc` of the dense path may be a result: alive, and allowed when there is an allow-list (`allowed`
// non-null). Branch-free between the two, for the selection's unpredictable slots.
inline bool eligible(const std::uint8_t* live, const std::uint8_t* allowed, std::size_t doc) {
    return (live[doc] != 0) & (allowed == nullptr || allowed[doc] != 0);
}

// The best min(k, candidates) (sum, slot) of acc[0, slots) with sum > 0, alive and allowed by `mask`, best
// first, into `buf`, zeroing acc[0, slots) on the way, which the caller sized to at least min(2k, live
// documents) + 4 keys (nothing here allocates). One ascending pass keeps up to 2k candidates and cuts them back
// to the best k (nth_element) when full: amortized O(1) per candidate. Candidates must beat theta0 (0, or
// dense_floor's floor under the k-th best sum) and the k-th kept sum: documents come in ascending order, so
// on an equal sum the earlier, kept one ranks first. Groups of 4 slots with no candidate are skipped with one
// comparison; inside a group every slot is written and kept or not without a branch (whether a slot passes
// is unpredictable while the threshold is still low).
template <typename Keys>
void select_dense(std::int64_t* acc, std::size_t slots, std::size_t k, const std::vector<std::uint8_t>& alive,
                  const std::vector<std::uint8_t>* mask, std::int64_t theta0, std::vector<typename Keys::Key>& buf) {
    const auto cmp = [](const typename Keys::Key& a, const typename Keys::Key& b) { return Keys::better(a, b); };
    typename Keys::Key* const out = buf.data();
    const std::uint8_t* const live = alive.data();
    const std::uint8_t* const allowed = mask ? mask->data() : nullptr;
    std::size_t n = 0;
    std::int64_t theta = theta0;
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
            const bool keep = (a[i] > theta) & eligible(live, allowed, doc);
            n += keep ? 1 : 0;
        }
        if (n >= 2 * k) cut();
    }
    for (std::size_t doc = full; doc < slots; ++doc) {
        const std::int64_t total = acc[doc];
        acc[doc] = 0;
        if (total <= theta || !eligible(live, allowed, doc)) continue;
        out[n++] = Keys::make(total, static_cast<std::uint32_t>(doc));
        if (n >= 2 * k) cut();
    }
    if (n > k) cut();
    std::sort(out, out + n, cmp);
    buf.resize(n);
}

// dense_floor pays for its extra pass only when the selection would otherwise see many candidates: a k of
// at least kDenseFloorMinK (below it the pass's own threshold rises within the first few hundred slots)
// and at least kDenseFloorPostingsPerK * k postings in the query (with fewer matching documents than that
// the selection keeps them all cheaply).
constexpr std::size_t kDenseFloorMinK = 32;
constexpr std::size_t kDenseFloorPostingsPerK = 8;

// Blocks of dense_floor: about 4k of them.
std::size_t dense_block(std::size_t slots, std::size_t k) { return std::max<std::size_t>(4, slots / (4 * k)); }

// A floor under the k-th best eligible sum of acc[0, slots), for select_dense to start from: the k-th largest
// of the best eligible sums of blocks of slots, minus one (k blocks whose best reaches t hold k eligible
// documents at >= t, so every document of the top k has a sum above the floor). 0 (no floor) when fewer
// than k blocks hold a match. `maxima` is scratch the caller sized to at least slots / dense_block + 1
// (nothing here allocates).
std::int64_t dense_floor(const std::int64_t* acc, std::size_t slots, std::size_t k,
                         const std::vector<std::uint8_t>& alive, const std::vector<std::uint8_t>* mask,
                         std::vector<std::int64_t>& maxima) {
    const std::size_t block = dense_block(slots, k);
    const std::uint8_t* const live = alive.data();
    const std::uint8_t* const allowed = mask ? mask->data() : nullptr;
    std::size_t blocks = 0;
    for (std::size_t base = 0; base < slots; base += block) {
        const std::size_t end = std::min(slots, base + block);
        std::int64_t best = 0;
        for (std::size_t doc = base; doc < end; ++doc)
            best = std::max(best, eligible(live, allowed, doc) ? acc[doc] : std::int64_t{0});
        if (best > 0) maxima[blocks++] = best;
    }
    if (blocks < k) return 0;
    std::nth_element(maxima.begin(), maxima.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     maxima.begin() + static_cast<std::ptrdiff_t>(blocks), std::greater<>());
    return maxima[k - 1] - 1;
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
    std::size_t postings = 0;
    for (const QueryTerm& t : q) postings += t.list->docs.size();
    const bool use_floor = k >= kDenseFloorMinK && k < d.live_docs && postings >= kDenseFloorPostingsPerK * k;
    std::vector<std::int64_t> maxima(use_floor ? slots / dense_block(slots, k) + 1 : 0);
    for (const QueryTerm& t : q) {
        Scorer::accumulate(acc, t.list->docs.data(), t.list->impacts.data(), t.list->docs.size(),
                           t.weight * Scorer::kScale);
    }
    const std::int64_t theta0 = use_floor ? dense_floor(acc, slots, k, d.alive, mask, maxima) : 0;
    if (packed) {
        select_dense<PackedKeys>(acc, slots, k, d.alive, mask, theta0, packed_buf);
    } else {
        select_dense<WideKeys>(acc, slots, k, d.alive, mask, theta0, wide_buf);
    }
    std::vector<Hit> hits;
    hits.reserve(packed ? packed_buf.size() : wide_buf.size());
    for (const auto key : packed_buf) hits.push_back(Hit{Scorer::to_double(PackedKeys::sum(key)), PackedKeys::doc(key)});
    for (const auto& key : wide_buf) hits.push_back(Hit{Scorer::to_double(WideKeys::sum(key)), WideKeys::doc(key)});
    return hits;
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
    keep_best(hits, k);
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
    keep_best(hits, k);
    return hits;
}

}  // namespace funnelrank
