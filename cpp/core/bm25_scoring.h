#pragma once
// Internal to the BM25 sources (bm25_*.cpp), not part of the library's interface: how a posting's impact
// and a term's contribution are computed (fixed point), and the posting-list cursor with block-max bounds
// that the top-k strategies walk (bm25_topk.cpp). Everything here but Scorer::accumulate (the SIMD kernel,
// in bm25_topk.cpp) is inline: these are the inner loops of every search.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "bm25_index.h"

namespace funnelrank {

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

// "a ranks before b": higher score, then earlier document; the one order of every top-k strategy's hits
// (H: BM25Index::Hit).
template <typename H>
bool ranks_before(const H& a, const H& b) {
    return a.score > b.score || (a.score == b.score && a.doc < b.doc);
}

// Keeps the best k of `hits` in ranks_before order, best first.
template <typename H>
void keep_best(std::vector<H>& hits, std::size_t k) {
    const auto cmp = [](const H& a, const H& b) { return ranks_before(a, b); };
    const std::size_t keep = std::min(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), cmp);
    hits.resize(keep);
}

}  // namespace funnelrank
