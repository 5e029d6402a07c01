// BM25 top-k over quantized impacts (the planner's path for queries with a large posting volume against
// the corpus, see bm25_plan.cpp), exact:
//
// 1. Each posting carries its impact quantized to 8 bits over its list's range (bm25_stats.cpp), so the
//    impact lies in [lo + q * step, lo + (q + 1) * step]. For a query, a unit u is chosen so that the sum of
//    every term's largest contribution fits 16 bits, and each term gets a 256-entry table
//    low[q] = floor(weight * (lo + q * step) / u) - 1 (at least 0) with a spread
//    max over q of (ceil(weight * (lo + (q + 1) * step) / u) + 1 - low[q]). So a document's contribution
//    from that term, in units of u, lies in [low[q], low[q] + spread): the -1 and +1 absorb every rounding
//    (the double products, the fixed-point contribution's 2^-32 units), which are orders of magnitude
//    below one unit.
// 2. The tables' entries are summed into a per-thread 16-bit accumulator, one byte and one table lookup
//    per posting: U(d) <= score(d) / u <= U(d) + E, E the sum of the terms' spreads. The document ids are
//    taken in partitions of kPartition slots (32 KiB of sums, an L1 data cache), each accumulated from
//    every term's postings in it and scanned (step 3) while still in cache.
// 3. The scan (32 slots at a time, AVX2 where the CPU has it, and branch-free but for the blocks holding a
//    candidate; every block is zeroed on the way) keeps the live, allowed documents with U(d) >= U_k - E,
//    U_k the k-th largest U: the k documents with the largest U all score at least U_k * u, and a
//    document with U(d) + E < U_k scores below that, so it ranks below k others and cannot be in the top
//    k. Its threshold rises as it goes (a running k-th largest never exceeds U_k), so the kept set stays
//    small (in the C++ tests' corpora typically k + a few).
// 4. The kept candidates are re-scored exactly (the fixed-point contributions of bm25_scoring.h, through
//    the block-max cursors in ascending document order) and the best k by (score, then earlier document)
//    returned: the same hits, bit for bit, as every other strategy and exhaustive search.
// When U_k <= E (fewer than k documents with a positive U, or scores too close to zero to tell a matching
// document from an empty slot) the bounds cannot decide, and the caller falls back to MaxScore.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "bm25_index.h"
#include "bm25_scoring.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FUNNELRANK_BM25_AVX2 1
#include <immintrin.h>
#endif

namespace funnelrank {

namespace {
constexpr std::size_t kLevels = 256;  // 8-bit impacts
constexpr std::size_t kLane = 32;     // accumulator slots per scan block (two AVX2 registers)
// Document slots accumulated and scanned at a time: 32 KiB of 16-bit sums, an L1 data cache's worth.
constexpr std::size_t kPartition = std::size_t{1} << 14;

// The first block at or after `block` (of `blocks`) holding a value >= need, its values copied to `out`;
// every block up to and including it is left all zero (the ones passed over hold no candidate).
std::size_t next_block_scalar(std::uint16_t* acc, std::size_t block, std::size_t blocks, std::uint16_t need,
                              std::uint16_t* out) {
    for (; block < blocks; ++block) {
        std::uint16_t* const p = acc + block * kLane;
        std::uint16_t top = 0;
        for (std::size_t i = 0; i < kLane; ++i) top = std::max(top, p[i]);
        if (top >= need) {
            std::memcpy(out, p, kLane * sizeof(std::uint16_t));
            std::memset(p, 0, kLane * sizeof(std::uint16_t));
            return block;
        }
        if (top) std::memset(p, 0, kLane * sizeof(std::uint16_t));
    }
    return blocks;
}

#ifdef FUNNELRANK_BM25_AVX2
// Branch-free but for the (rare, once the k-th score is known) block with a candidate: every block is
// loaded and overwritten with zeros whether it held anything or not.
__attribute__((target("avx2"))) std::size_t next_block_avx2(std::uint16_t* acc, std::size_t block,
                                                            std::size_t blocks, std::uint16_t need,
                                                            std::uint16_t* out) {
    // v >= need  <=>  max(v, need - 1) != need - 1 (unsigned); need >= 1.
    const __m256i below = _mm256_set1_epi16(static_cast<short>(need - 1));
    const __m256i zero = _mm256_setzero_si256();
    for (; block < blocks; ++block) {
        auto* const p = reinterpret_cast<__m256i*>(acc + block * kLane);
        const __m256i a = _mm256_loadu_si256(p);
        const __m256i b = _mm256_loadu_si256(p + 1);
        _mm256_storeu_si256(p, zero);
        _mm256_storeu_si256(p + 1, zero);
        const __m256i same = _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_max_epu16(a, below), below),
                                              _mm256_cmpeq_epi16(_mm256_max_epu16(b, below), below));
        if (_mm256_movemask_epi8(same) != -1) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), a);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out) + 1, b);
            return block;
        }
    }
    return blocks;
}
#endif

using NextBlockFn = std::size_t (*)(std::uint16_t*, std::size_t, std::size_t, std::uint16_t, std::uint16_t*);

NextBlockFn pick_next_block() {
#ifdef FUNNELRANK_BM25_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return next_block_avx2;
#endif
    return next_block_scalar;
}

struct Candidate {
    std::uint32_t u;  // quantized lower bound, in units
    std::uint32_t doc;
};

// Zeroes the accumulator's first n slots unless dismissed: keeps the per-thread scratch all zero if the
// scan is left by an exception (a failed allocation).
struct ZeroOnUnwind {
    std::uint16_t* acc;
    std::size_t n;
    bool armed = true;
    ~ZeroOnUnwind() {
        if (armed) std::memset(acc, 0, n * sizeof(std::uint16_t));
    }
};
}  // namespace

std::optional<std::vector<BM25Index::Hit>> BM25Index::top_k_impact(const std::vector<QueryTerm>& q, std::size_t k,
                                                                   const std::vector<std::uint8_t>* mask) const {
    const Data& d = data_;
    const std::size_t slots = d.ext_ids.size();
    const std::size_t nq = q.size();
    // 1. The unit and the per-term tables.
    double top = 0.0;  // the largest possible score (every term's largest bound)
    for (const QueryTerm& t : q) top += t.weight * (t.list->qlo + 256.0 * t.list->qstep);
    const double budget = 65535.0 - 4.0 * static_cast<double>(nq + 1);
    if (!(top > 0.0) || budget < 4096.0) return std::nullopt;
    const double unit = top / budget;
    std::vector<std::uint16_t> table(nq * kLevels);
    std::uint32_t spread = 0;  // E
    for (std::size_t i = 0; i < nq; ++i) {
        const Postings& p = *q[i].list;
        const double w = q[i].weight / unit;
        // Level l's bounds in units: [floor(x_l) - 1, ceil(x_{l+1}) + 1], x_l = w * (lo + l * step) >= 0, with
        // floor and ceil by truncation (x >= 0; no libm call in this loop).
        const auto bound = [&](std::size_t l) { return w * (p.qlo + static_cast<double>(l) * p.qstep); };
        std::uint32_t worst = 0;
        double x = bound(0);
        for (std::size_t l = 0; l < kLevels; ++l) {
            const double next = bound(l + 1);
            const auto fl = static_cast<std::int64_t>(x);                   // floor(x)
            auto ce = static_cast<std::int64_t>(next);                      // ceil(next)
            ce += static_cast<double>(ce) < next ? 1 : 0;
            const std::int64_t lo_u = std::max<std::int64_t>(0, fl - 1);
            table[i * kLevels + l] = static_cast<std::uint16_t>(lo_u);
            worst = std::max(worst, static_cast<std::uint32_t>(ce + 1 - lo_u));
            x = next;
        }
        spread += worst;
    }

    // 2-3. Document-id partitions of kPartition slots, each accumulated from every term's postings in it and
    // then scanned while it is still in the L1 cache (per-thread scratch, all zero between partitions).
    thread_local std::vector<std::uint16_t> scratch(kPartition, 0);
    std::uint16_t* const acc = scratch.data();
    ZeroOnUnwind guard{acc, kPartition};
    std::vector<Cursor> cur;
    cur.reserve(nq);
    for (std::size_t i = 0; i < nq; ++i) cur.emplace_back(q[i], i);
    static const NextBlockFn next_block = pick_next_block();
    const std::uint8_t* const live = d.alive.data();
    const std::uint8_t* const allowed = mask ? mask->data() : nullptr;
    std::vector<Candidate> buf;
    std::size_t cap = std::max<std::size_t>(2 * k, 256);
    buf.reserve(cap + kPartition / 8);
    std::uint32_t theta = 0;
    alignas(32) std::uint16_t values[kLane];
    std::uint16_t need = 1;  // candidates: U(d) >= max(1, theta - E), theta the running k-th largest U (<= U_k)
    const auto by_u = [](const Candidate& a, const Candidate& b) { return a.u > b.u; };
    const auto cut = [&]() {  // theta = the k-th largest U so far; drop what can no longer qualify
        std::nth_element(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k - 1), buf.end(), by_u);
        theta = buf[k - 1].u;
        need = static_cast<std::uint16_t>(theta > spread + 1 ? theta - spread : 1);
        buf.erase(std::remove_if(buf.begin(), buf.end(), [&](const Candidate& c) { return c.u < need; }), buf.end());
        cap = std::max(cap, 2 * buf.size());
    };
    for (std::size_t start = 0; start < slots; start += kPartition) {
        const auto base = static_cast<std::uint32_t>(start);
        const auto end = static_cast<std::uint32_t>(std::min(slots, start + kPartition));
        bool any = false;
        for (std::size_t i = 0; i < nq; ++i) {
            Cursor& c = cur[i];
            const std::size_t from = c.pos;
            c.advance(end);
            if (c.pos == from) continue;
            any = true;
            const std::uint16_t* const tab = table.data() + i * kLevels;
            const std::uint32_t* const docs = c.docs;
            const std::uint8_t* const qi = q[i].list->qimpacts.data();
            for (std::size_t j = from; j < c.pos; ++j) {
                std::uint16_t& a = acc[docs[j] - base];
                a = static_cast<std::uint16_t>(a + tab[qi[j]]);
            }
        }
        if (!any) continue;
        const std::size_t blocks = (end - base + kLane - 1) / kLane;
        for (std::size_t block = 0;; ++block) {
            block = next_block(acc, block, blocks, need, values);
            if (block >= blocks) break;
            for (std::size_t i = 0; i < kLane; ++i) {
                const std::uint16_t u = values[i];
                const auto doc = static_cast<std::uint32_t>(base + block * kLane + i);
                if (u >= need && live[doc] && (!allowed || allowed[doc])) buf.push_back(Candidate{u, doc});
            }
            if (buf.size() >= cap) cut();
        }
    }
    guard.armed = false;  // the scan zeroed every block
    if (buf.size() < k) return std::nullopt;
    cut();
    if (theta <= spread) return std::nullopt;  // a document with U = 0 might still make the top k

    // 4. Exact re-scoring of the candidates, in ascending document order.
    std::sort(buf.begin(), buf.end(), [](const Candidate& a, const Candidate& b) { return a.doc < b.doc; });
    cur.clear();
    for (std::size_t i = 0; i < nq; ++i) cur.emplace_back(q[i], i);
    std::vector<Hit> hits;
    hits.reserve(buf.size());
    for (const Candidate& c : buf) {
        std::int64_t total = 0;
        for (Cursor& cu : cur) {
            cu.advance(c.doc);
            if (cu.doc() == c.doc) total += Scorer::contribution(cu.weight, cu.impacts[cu.pos]);
        }
        hits.push_back(Hit{Scorer::to_double(total), c.doc});  // U > 0: the document matches a term
    }
    keep_best(hits, k);
    return hits;
}

}  // namespace funnelrank
