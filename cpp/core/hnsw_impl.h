#pragma once
// HNSWIndex's state (HNSWIndex::Impl): the graph, the id maps and slot reuse, the lock, Int8's re-scoring
// vectors; preparing vectors (checks, normalisation, the storage's query form), exact scoring, allow-lists
// and the search on a prepared query (with Int8's re-scoring).
// Included by hnsw_index.cpp only, the one translation unit that includes the hnswlib headers (hnswlib 0.6.2
// defines non-inline functions and globals in them, so a second includer would not link). Its helpers keep
// the internal linkage (anonymous namespace) they had when they were all in that file, so they compile and
// inline as before.
#ifndef FUNNELRANK_HNSWLIB_TU
#error "hnswlib 0.6.2 defines non-inline functions and globals in its headers: only hnsw_index.cpp may include this"
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.h"
#include "hnsw_graph.h"
#include "hnsw_index.h"
#include "hnsw_rescore.h"
#include "hnsw_search.h"
#include "inner_product.h"
#include "shared_mutex.h"
#include "vector_storage.h"

namespace funnelrank {

namespace {

// Position of the first non-finite value of v[0, dim), or dim when every value is finite. The common
// all-finite case is one branch-free pass over the bits (it vectorizes); only a bad vector is scanned again.
std::size_t first_non_finite(const float* v, std::size_t dim) {
    std::uint32_t bad = 0;
    for (std::size_t j = 0; j < dim; ++j) {
        std::uint32_t bits;
        std::memcpy(&bits, v + j, sizeof bits);
        bad |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);  // exponent all ones: inf, NaN
    }
    if (bad == 0) return dim;
    std::size_t j = 0;
    while (std::isfinite(v[j])) ++j;
    return j;
}

// Sum of squares in double, over 8 independent partial sums (one serial chain of 384 additions would
// cost more than the rest of preparing a query).
double sum_of_squares(const float* v, std::size_t dim) {
    constexpr std::size_t kLanes = 8;
    double partial[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= dim; j += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) partial[l] += static_cast<double>(v[j + l]) * v[j + l];
    double sum = 0.0;
    for (double p : partial) sum += p;
    for (; j < dim; ++j) sum += static_cast<double>(v[j]) * v[j];
    return sum;
}

}  // namespace

struct HNSWIndex::Impl {
    HNSWParams params;
    std::atomic<std::size_t> ef_search;
    std::atomic<double> filter_crossover{HNSWIndex::kDefaultFilterCrossover};
    VectorSpace space;  // must outlive graph, which keeps a pointer into it
    const StorageKernels& kernels;  // the search's kernels for params.storage
    std::unique_ptr<Graph> graph;
    // Int8 only: the float32 vectors the top candidates are re-scored against, by label (hnsw_rescore.h).
    RescoreStore rescore;
    // Our labels are hnswlib labels. A label keeps its graph slot for life; deleting frees the label
    // (and so the slot) for the next add, which overwrites it in place (hnswlib's updatePoint).
    std::unordered_map<std::string, labeltype> label_of;  // live ids only
    std::vector<std::string> id_of;                       // per label; empty = deleted / unused
    std::vector<tableint> internal_of;                    // per label: hnswlib internal id
    std::vector<labeltype> free_labels;                   // deleted labels, reused last-in first-out
    std::size_t live = 0;
    // Searches (and save) shared; add/remove/resize exclusive. Writer-preferring, so a steady stream
    // of searches cannot starve an add. Never taken twice by one thread.
    mutable WriterPreferringSharedMutex mutex;

    explicit Impl(const HNSWParams& p)
        : params(p),
          ef_search(p.ef_search),
          space(p.dim, p.storage),
          kernels(storage_kernels(p.storage)),
          graph(std::make_unique<Graph>(&space, std::max<std::size_t>(1, p.initial_capacity), p.M,
                                        p.ef_construction, static_cast<std::size_t>(p.seed))),
          rescore(p.dim) {
        // hnswlib 0.6.2's searchBaseLayer prefetches link j + 1 while visiting link j, so on a full
        // upper-layer list it reads one link past the end of the list; for the top layer that is past
        // the end of its malloc'd block (AddressSanitizer: heap-buffer-overflow; fixed upstream in
        // 0.7). One spare link slot per upper-layer list keeps that read inside the block. Set before
        // any element is added; every upper-layer allocation, walk and our file format use this size.
        graph->size_links_per_element_ += sizeof(tableint);
    }

    // Checks one vector (finite; non-zero under cosine) and returns the factor that prepares it for the
    // graph: 1 / ||v|| under cosine, 1 under inner product. `what` and `row` name it in errors.
    double check_vector(const float* v, const char* what, std::size_t row) const {
        const std::size_t bad = first_non_finite(v, params.dim);
        if (bad != params.dim)
            throw InvalidArgument(std::string(what) + " " + std::to_string(row) + " has a non-finite value at " +
                                  std::to_string(bad));
        if (params.metric != Metric::Cosine) return 1.0;
        const double norm2 = sum_of_squares(v, params.dim);
        if (!(norm2 > 0.0))
            throw InvalidArgument(std::string(what) + " " + std::to_string(row) +
                                  " is a zero vector, which has no cosine similarity");
        return 1.0 / std::sqrt(norm2);
    }

    // Writes the vector to index (or search with) into `out`: v scaled by check_vector's factor.
    void scale_into(const float* v, double scale, float* out) const {
        if (params.metric != Metric::Cosine) {
            std::memcpy(out, v, params.dim * sizeof(float));
            return;
        }
        for (std::size_t j = 0; j < params.dim; ++j) out[j] = static_cast<float>(v[j] * scale);
    }

    // check_vector, then scale_into.
    void prepare(const float* v, float* out, const char* what, std::size_t row) const {
        scale_into(v, check_vector(v, what, row), out);
    }

    // The query as the graph needs it: `query` itself under inner product (no copy), else its normalised
    // copy in `buffer`. `scale` is check_vector's factor for it.
    const float* query_for_search(const float* query, double scale, std::vector<float>& buffer) const {
        if (params.metric != Metric::Cosine) return query;
        buffer.resize(params.dim);
        scale_into(query, scale, buffer.data());
        return buffer.data();
    }

    bool rescored() const { return params.storage == VectorStorage::Int8; }

    // A query ready to search: `exact` the prepared float32 query (exact and re-scoring distances), `walk` the
    // same in the storage's query form (the graph walk's distances); both valid while `scratch` is unchanged.
    struct PreparedQuery {
        const float* exact;
        const void* walk;
    };

    PreparedQuery prepare_query(const float* query, double scale, SearchScratch& scratch) const {
        const float* q = query_for_search(query, scale, scratch.query);
        if (params.storage != VectorStorage::Int8) return {q, q};
        scratch.encoded.resize(query_form_bytes(params.storage, params.dim));
        encode_query(params.storage, q, params.dim, scratch.encoded.data());
        return {q, scratch.encoded.data()};
    }

    // The distance of a live or deleted node from the query as exact scoring sees it: the float32 vector under
    // F32 and Int8 (its re-scoring copy), the f16 one against the float32 query under F16.
    float exact_distance(const PreparedQuery& q, tableint id) const {
        const Graph& g = *graph;
        if (rescored())
            return 1.f - best_inner_product()(q.exact, rescore.row(g.getExternalLabel(id)), params.dim);
        return kernels.query(q.walk, g.getDataByInternalId(id), g.dist_func_param_);
    }

    SearchHits to_hits(const std::vector<DistId>& found) const {
        SearchHits hits;
        hits.ids.reserve(found.size());
        hits.scores.reserve(found.size());
        hits.slots.reserve(found.size());
        for (const auto& [dist, internal] : found) {
            const labeltype label = graph->getExternalLabel(internal);
            hits.ids.push_back(id_of[label]);
            hits.scores.push_back(1.f - dist);
            hits.slots.push_back(static_cast<std::uint32_t>(label));
        }
        return hits;
    }

    // Exact scores for the given internal ids (all live ids when `subset` is null), best k first;
    // ties broken by internal id so the answer is deterministic.
    std::vector<DistId> exact(const PreparedQuery& q, std::size_t k, const std::vector<tableint>* subset) const {
        const Graph& g = *graph;
        std::vector<DistId> scored;
        auto score = [&](tableint id) { scored.emplace_back(exact_distance(q, id), id); };
        if (subset) {
            scored.reserve(subset->size());
            for (tableint id : *subset) score(id);
        } else {
            scored.reserve(live);
            for (std::size_t id = 0; id < g.cur_element_count; ++id)
                if (!g.isMarkedDeleted(static_cast<tableint>(id))) score(static_cast<tableint>(id));
        }
        k = std::min(k, scored.size());
        std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(k), scored.end());
        scored.resize(k);
        return scored;
    }

    // An allow-list resolved against the graph (caller holds the lock): its live ids, deduplicated, as
    // internal ids, and the same as a bit set. Resolved once, it serves any number of queries.
    struct Allowed {
        std::vector<std::uint64_t> bits;
        std::vector<tableint> internal;
    };

    // nullopt for no allow-list (no filter).
    std::optional<Allowed> resolve_allow(const std::vector<std::string>* allow) const {
        if (!allow) return std::nullopt;
        const Graph& g = *graph;
        Allowed out;
        out.bits.assign((g.cur_element_count + 63) / 64, 0);
        out.internal.reserve(std::min(allow->size(), live));
        for (const std::string& id : *allow) {
            const auto it = label_of.find(id);
            if (it == label_of.end()) continue;
            const tableint internal = internal_of[it->second];
            std::uint64_t& word = out.bits[internal / 64];
            const std::uint64_t bit = std::uint64_t{1} << (internal % 64);
            if (word & bit) continue;
            word |= bit;
            out.internal.push_back(internal);
        }
        return out;
    }

    // Approximate search on a prepared query, restricted to `allowed` when given; caller holds the lock
    // (shared or exclusive).
    // The best k of the walk's results (scratch.top): as the walk scored them, or under Int8 all of them
    // re-scored against the float32 vectors first (ties by internal id, as exact() breaks them).
    std::vector<DistId> walk_results(const PreparedQuery& q, std::size_t k, SearchScratch& scratch) const {
        if (!rescored()) return best_first(scratch.top, k);
        std::vector<DistId>& all = scratch.rescored;
        all.clear();
        for (const DistId& found : scratch.top) all.emplace_back(exact_distance(q, found.second), found.second);
        scratch.top.clear();
        k = std::min(k, all.size());
        std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end());
        return std::vector<DistId>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
    }

    std::vector<DistId> search_unlocked(const PreparedQuery& q, std::size_t k, std::size_t ef,
                                        const std::optional<Allowed>& allowed, SearchScratch& scratch) const {
        if (live == 0 || k == 0) return {};
        const Graph& g = *graph;
        k = std::min(k, live);  // no more than the live vectors can come back
        // The ef asked for (at least k) decides exact scoring of allow-lists, as documented; the walk itself
        // never holds more than `live` results, so an ef beyond that is the same search as ef = live (and
        // must not size the heaps: ef = 2**40 would be a 16 TB reservation).
        const std::size_t ef_asked = std::max(ef == 0 ? ef_search.load(std::memory_order_relaxed) : ef, k);
        const std::size_t ef_eff = std::min(ef_asked, live);
        if (!allowed) {
            const std::size_t want = std::min(k, live);
            const tableint entry = descend(g, kernels, q.walk);
            if (g.num_deleted_)
                filtered_base_layer_search(
                    g, kernels, entry, q.walk, ef_eff, [&](tableint id) { return !g.isMarkedDeleted(id); }, scratch);
            else
                filtered_base_layer_search(g, kernels, entry, q.walk, ef_eff, [](tableint) { return true; }, scratch);
            std::vector<DistId> found = walk_results(q, k, scratch);
            // A graph cut apart by deletions can leave fewer than k reachable: answer exactly then.
            if (found.size() < want) return exact(q, k, nullptr);
            return found;
        }
        if (allowed->internal.empty()) return {};
        const std::size_t want = std::min(k, allowed->internal.size());
        if (allowed->internal.size() <= exact_threshold(ef_asked)) return exact(q, k, &allowed->internal);
        const std::vector<std::uint64_t>& bits = allowed->bits;
        const auto accept = [&](tableint id) {
            return ((bits[id / 64] >> (id % 64)) & 1u) != 0 && !g.isMarkedDeleted(id);
        };
        filtered_base_layer_search(g, kernels, descend(g, kernels, q.walk), q.walk, ef_eff, accept, scratch);
        std::vector<DistId> found = walk_results(q, k, scratch);
        if (found.size() < want) return exact(q, k, &allowed->internal);
        return found;
    }

    // Below this many allowed ids, exact scoring beats the filtered graph walk. The walk visits about
    // ef * live / allowed nodes before it holds ef allowed results while exact scoring costs `allowed`
    // distances, so the crossover is sqrt(c * ef * live); c is measured by bench/bench_hnsw.py --filter.
    std::size_t exact_threshold(std::size_t ef) const {
        const double c = filter_crossover.load(std::memory_order_relaxed);
        const double t = std::sqrt(c * static_cast<double>(ef) * static_cast<double>(live));
        return t >= static_cast<double>(live) ? live : static_cast<std::size_t>(t);
    }

    void grow_to(std::size_t needed) {
        Graph& g = *graph;
        if (needed <= g.max_elements_) return;
        if (needed > kMaxCapacity)
            throw InvalidArgument("an HNSWIndex holds at most " + std::to_string(kMaxCapacity) +
                                  " slots; this add needs " + std::to_string(needed));
        g.resizeIndex(std::min(std::max(needed, 2 * g.max_elements_), kMaxCapacity));
    }
};

}  // namespace funnelrank
