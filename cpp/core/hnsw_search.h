#pragma once
// The graph search: the greedy descent through the upper layers and the base-layer search loop (hnswlib's
// with a filter hook, distances computed four at a time), with the working memory a search reuses.
// Included by hnsw_index.cpp only, the one translation unit that includes the hnswlib headers (hnswlib 0.6.2
// defines non-inline functions and globals in them, so a second includer would not link). Its helpers keep
// the internal linkage (anonymous namespace) they had when they were all in that file, so they compile and
// inline as before.
#ifndef FUNNELRANK_HNSWLIB_TU
#error "hnswlib 0.6.2 defines non-inline functions and globals in its headers: only hnsw_index.cpp may include this"
#endif

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "hnsw_graph.h"
#include "vector_storage.h"

namespace funnelrank {

namespace {

// The query's distances to the nodes ids[0, count), count in [1, 4], in one call of the storage's four-vector
// kernel (a group of fewer than four repeats its last vector): the same values as one call per node.
[[gnu::always_inline]] inline void distances4(const Graph& g, const StorageKernels& kernels, const void* query,
                                              const tableint* ids, std::size_t count, float* out) {
    const void* vectors[4];
    for (std::size_t t = 0; t < 4; ++t) vectors[t] = g.getDataByInternalId(ids[std::min(t, count - 1)]);
    kernels.query4(query, vectors, *static_cast<const std::size_t*>(g.dist_func_param_), out);
}

// Greedy descent through the upper layers (as in HierarchicalNSW::searchKnn, minus its shared metric
// counters, which every searching thread would otherwise contend on), a node's neighbours' distances
// computed four at a time and then taken in list order, as one at a time would.
// `query` is in the storage's query form and `kernels` its kernels (vector_storage.h).
tableint descend(const Graph& g, const StorageKernels& kernels, const void* query) {
    tableint current = g.enterpoint_node_;
    float current_dist = kernels.query(query, g.getDataByInternalId(current), g.dist_func_param_);
    for (int level = g.maxlevel_; level > 0; --level) {
        bool changed = true;
        while (changed) {
            changed = false;
            hnswlib::linklistsizeint* list = g.get_linklist(current, level);
            const std::size_t size = g.getListCount(list);
            const auto* neighbours = reinterpret_cast<const tableint*>(list + 1);
            for (std::size_t i = 0; i < size; i += 4) {
                const std::size_t group = std::min<std::size_t>(4, size - i);
                float d4[4];
                distances4(g, kernels, query, neighbours + i, group, d4);
                for (std::size_t t = 0; t < group; ++t) {
                    if (d4[t] < current_dist) {
                        current_dist = d4[t];
                        current = neighbours[i + t];
                        changed = true;
                    }
                }
            }
        }
    }
    return current;
}

// Working memory of one search, reused by the queries of a batch that run on one thread (so a query
// allocates nothing once the vectors have grown to ef). The heaps are binary heaps ordered as
// hnswlib's priority queues (std::push_heap / pop_heap with its comparator), so results are the same.
// Cache-line aligned: the workers' scratches sit side by side in one vector, and the heaps' size fields
// change on every push, which would otherwise bounce a shared line between cores.
struct alignas(64) SearchScratch {
    std::vector<DistId> top;         // max-heap on distance: the best (up to ef) accepted nodes so far
    std::vector<DistId> candidates;  // max-heap on negated distance: the closest unexpanded node on top
    std::vector<tableint> fresh;     // the unvisited neighbours of the node being expanded
    std::vector<float> query;        // the normalised query under cosine (query_for_search)
    std::vector<unsigned char> encoded;  // the query in its storage's query form, when that is not float32
    std::vector<DistId> rescored;    // an Int8 search's candidates, re-scored
};

[[gnu::always_inline]] inline void heap_push(std::vector<DistId>& heap, float d, tableint id) {
    heap.emplace_back(d, id);
    std::push_heap(heap.begin(), heap.end(), Graph::CompareByFirst());
}

[[gnu::always_inline]] inline void heap_pop(std::vector<DistId>& heap) {
    std::pop_heap(heap.begin(), heap.end(), Graph::CompareByFirst());
    heap.pop_back();
}

// Replaces the top (largest) entry of a non-empty max-heap: one sift-down, where a pop and a push would
// sift twice. Leaves the same entries as heap_pop + heap_push (or, for a smaller entry, push + pop).
[[gnu::always_inline]] inline void heap_replace_top(std::vector<DistId>& heap, float d, tableint id) {
    const std::size_t n = heap.size();
    std::size_t hole = 0;
    for (;;) {
        std::size_t child = 2 * hole + 1;
        if (child >= n) break;
        if (child + 1 < n && heap[child].first < heap[child + 1].first) ++child;
        if (!(d < heap[child].first)) break;
        heap[hole] = heap[child];
        hole = child;
    }
    heap[hole] = DistId(d, id);
}

// hnswlib's searchBaseLayerST with an extra acceptance test: every node is traversed, only accepted
// ones (live and allowed) become results. hnswlib 0.6.2 has no filter hook, so this is the one search
// loop we carry ourselves. It follows searchBaseLayerST<has_deletions=true>, except that it first
// collects a node's unvisited neighbours, then computes their distances four at a time while the first
// cache lines of the next four vectors are prefetched (hnswlib computes one at a time and prefetches only
// the first cache line of the next neighbour), and both heaps replace their top entry in one sift where
// hnswlib pops and pushes. The results are hnswlib's loop's, faster (bench_hnsw.py).
// Leaves the (up to ef) nearest accepted nodes in scratch.top, a max-heap on distance.
// `query` is in the storage's query form and `kernels` its kernels (vector_storage.h).
template <typename Accept>
void filtered_base_layer_search(const Graph& g, const StorageKernels& kernels, tableint entry, const void* query,
                                std::size_t ef, const Accept& accept, SearchScratch& scratch) {
    VisitedListLease visited(g.visited_list_pool_);
    hnswlib::vl_type* mark = visited->mass;
    const hnswlib::vl_type tag = visited->curV;
    const std::size_t vector_bytes = g.data_size_;
    std::vector<tableint>& fresh = scratch.fresh;
    fresh.resize(g.maxM0_);
    // The first kPrefetchLines cache lines of a vector: the hardware's stream prefetcher follows the kernel's
    // loads through the rest. Prefetching all of each vector (24 lines at 384 float32 dimensions, 96 for the
    // next four) filled the core's queue of outstanding misses and stalled on the prefetches themselves; the
    // depth was chosen with bench_hnsw.py (docs/guides/dense.md).
    constexpr std::size_t kPrefetchLines = 8;
    const std::size_t prefetch_bytes = std::min(vector_bytes, kPrefetchLines * 64);
    auto prefetch_vector = [&](tableint id) {
#ifdef USE_SSE
        const char* p = g.getDataByInternalId(id);
        for (std::size_t off = 0; off < prefetch_bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
#else
        (void)id;
#endif
    };

    auto prefetch_links = [&](tableint id) {
#ifdef USE_SSE
        _mm_prefetch(reinterpret_cast<const char*>(g.get_linklist0(id)), _MM_HINT_T0);
#else
        (void)id;
#endif
    };

    std::vector<DistId>& top = scratch.top;
    std::vector<DistId>& candidates = scratch.candidates;
    top.clear();
    candidates.clear();
    top.reserve(ef + 1);
    float lower_bound;
    if (accept(entry)) {
        const float d = kernels.query(query, g.getDataByInternalId(entry), g.dist_func_param_);
        lower_bound = d;
        heap_push(top, d, entry);
        heap_push(candidates, -d, entry);
    } else {
        lower_bound = std::numeric_limits<float>::max();
        heap_push(candidates, -lower_bound, entry);
    }
    mark[entry] = tag;

    // The node being expanded stays on top of `candidates` until its first new candidate replaces it (one
    // sift-down instead of a pop and a push); popped at the end of its expansion if none came.
    bool expanded_on_top = false;
    // One neighbour at distance d: a candidate to expand, and a result if accepted, when it beats the
    // current ef-th best (or fewer than ef are held).
    auto consider = [&](tableint candidate, float d) {
        if (top.size() < ef || lower_bound > d) {
            if (expanded_on_top) {
                heap_replace_top(candidates, -d, candidate);
                expanded_on_top = false;
            } else {
                heap_push(candidates, -d, candidate);
            }
            prefetch_links(candidates.front().second);  // the next node to expand, as hnswlib does
            if (accept(candidate)) {
                if (top.size() < ef)
                    heap_push(top, d, candidate);
                else
                    heap_replace_top(top, d, candidate);  // d < lower_bound: the farthest goes
            }
            if (!top.empty()) lower_bound = top.front().first;
        }
    };

    while (!candidates.empty()) {
        const DistId current = candidates.front();
        if (-current.first > lower_bound && top.size() == ef) break;
        expanded_on_top = true;
        hnswlib::linklistsizeint* list = g.get_linklist0(current.second);
        const std::size_t size = g.getListCount(list);
        const auto* neighbours = reinterpret_cast<const tableint*>(list + 1);
        std::size_t n_fresh = 0;
        for (std::size_t j = 0; j < size; ++j) {
            const tableint candidate = neighbours[j];
            if (mark[candidate] == tag) continue;
            mark[candidate] = tag;
            fresh[n_fresh++] = candidate;
        }
        // Distances four at a time (the kernels' query4: the same values as one at a time, with the four
        // vectors' loads in flight together; a last group of one to three repeats its last vector), the next
        // four prefetched meanwhile; then each neighbour is considered in order, exactly as if its distance
        // had been computed alone.
        for (std::size_t t = 0; t < std::min<std::size_t>(4, n_fresh); ++t) prefetch_vector(fresh[t]);
        for (std::size_t j = 0; j < n_fresh; j += 4) {
            for (std::size_t t = j + 4; t < std::min(j + 8, n_fresh); ++t) prefetch_vector(fresh[t]);
            const std::size_t group = std::min<std::size_t>(4, n_fresh - j);
            float d4[4];
            distances4(g, kernels, query, fresh.data() + j, group, d4);
            for (std::size_t t = 0; t < group; ++t) consider(fresh[j + t], d4[t]);
        }
        if (expanded_on_top) {
            heap_pop(candidates);
            expanded_on_top = false;
        }
    }
}

// Empties the max-heap into best-first order, keeping at most k.
std::vector<DistId> best_first(std::vector<DistId>& heap, std::size_t k) {
    while (heap.size() > k) heap_pop(heap);
    std::vector<DistId> out(heap.size());
    for (std::size_t i = out.size(); i-- > 0;) {
        out[i] = heap.front();
        heap_pop(heap);
    }
    return out;
}

}  // namespace

}  // namespace funnelrank
