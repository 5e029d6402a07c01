// HNSWIndex over hnswlib's HierarchicalNSW. This is the only translation unit that includes the hnswlib
// headers: hnswlib 0.6.2 defines non-inline globals in its headers, so a second includer would not link.
#include "hnsw_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <shared_mutex>  // std::shared_lock
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "errors.h"
#include "file_io.h"
#include "inner_product.h"
#include "parallel_for.h"
#include "shared_mutex.h"

namespace funnelrank {

namespace {

using Graph = hnswlib::HierarchicalNSW<float>;
using hnswlib::labeltype;
using hnswlib::tableint;
using DistId = std::pair<float, tableint>;

constexpr std::string_view kMagic = "FRK-HNSW";
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kMaxM = HNSWIndex::kMaxM;
constexpr std::size_t kMaxDim = HNSWIndex::kMaxDim;
constexpr std::size_t kMaxEfSearch = HNSWIndex::kMaxEfSearch;
constexpr std::size_t kMaxEfConstruction = HNSWIndex::kMaxEfConstruction;
constexpr std::size_t kMaxCapacity = HNSWIndex::kMaxCapacity;
static_assert(kMaxCapacity <= std::numeric_limits<tableint>::max(), "hnswlib's internal ids are 32-bit");
// Graph slots that load() allocates beyond twice the elements the file holds (so beyond what the file's
// own bytes pay for): at most this many bytes' worth. A saved capacity above both is not restored.
constexpr std::size_t kLoadSpareCapacityBytes = std::size_t{32} << 20;

// hnswlib distance space for inner product, using our run-time dispatched SIMD kernel (hnswlib 0.6.2
// picks its kernel at compile time, so a portable build would otherwise run its SSE code).
class InnerProductSpace final : public hnswlib::SpaceInterface<float> {
public:
    explicit InnerProductSpace(std::size_t dim) : dim_(dim), distance_(best_inner_product_distance()) {}
    std::size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return distance_; }
    void* get_dist_func_param() override { return &dim_; }

private:
    std::size_t dim_;
    InnerProductDistanceFn distance_;
};

// Returns the visited list to hnswlib's pool on every exit path.
class VisitedListLease {
public:
    explicit VisitedListLease(hnswlib::VisitedListPool* pool) : pool_(pool), list_(pool->getFreeVisitedList()) {}
    ~VisitedListLease() { pool_->releaseVisitedList(list_); }
    VisitedListLease(const VisitedListLease&) = delete;
    VisitedListLease& operator=(const VisitedListLease&) = delete;
    hnswlib::VisitedList* operator->() const { return list_; }

private:
    hnswlib::VisitedListPool* pool_;
    hnswlib::VisitedList* list_;
};

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

void validate_params(const HNSWParams& p) {
    if (p.dim == 0 || p.dim > kMaxDim)
        throw InvalidArgument("dim must be in [1, " + std::to_string(kMaxDim) + "], got " + std::to_string(p.dim));
    if (p.M < 2 || p.M > kMaxM)
        throw InvalidArgument("M must be in [2, " + std::to_string(kMaxM) + "], got " + std::to_string(p.M));
    if (p.ef_construction == 0 || p.ef_construction > kMaxEfConstruction)
        throw InvalidArgument("ef_construction must be in [1, " + std::to_string(kMaxEfConstruction) + "], got " +
                              std::to_string(p.ef_construction));
    if (p.ef_search == 0 || p.ef_search > kMaxEfSearch)
        throw InvalidArgument("ef_search must be in [1, " + std::to_string(kMaxEfSearch) + "], got " +
                              std::to_string(p.ef_search));
    if (p.initial_capacity > kMaxCapacity)
        throw InvalidArgument("initial_capacity must be <= " + std::to_string(kMaxCapacity) + ", got " +
                              std::to_string(p.initial_capacity));
}

// Greedy descent through the upper layers (as in HierarchicalNSW::searchKnn, minus its shared metric
// counters, which every searching thread would otherwise contend on).
tableint descend(const Graph& g, const void* query) {
    tableint current = g.enterpoint_node_;
    float current_dist = g.fstdistfunc_(query, g.getDataByInternalId(current), g.dist_func_param_);
    for (int level = g.maxlevel_; level > 0; --level) {
        bool changed = true;
        while (changed) {
            changed = false;
            hnswlib::linklistsizeint* list = g.get_linklist(current, level);
            const std::size_t size = g.getListCount(list);
            const auto* neighbours = reinterpret_cast<const tableint*>(list + 1);
            for (std::size_t i = 0; i < size; ++i) {
                const tableint candidate = neighbours[i];
                const float d = g.fstdistfunc_(query, g.getDataByInternalId(candidate), g.dist_func_param_);
                if (d < current_dist) {
                    current_dist = d;
                    current = candidate;
                    changed = true;
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
// collects a node's unvisited neighbours, then computes their distances four at a time while the next
// four vectors are prefetched whole (hnswlib computes one at a time and prefetches only the first cache
// line of the next neighbour), and both heaps replace their top entry in one sift where hnswlib pops and
// pushes. The results are hnswlib's loop's, faster (bench_hnsw.py).
// Leaves the (up to ef) nearest accepted nodes in scratch.top, a max-heap on distance.
template <typename Accept>
void filtered_base_layer_search(const Graph& g, tableint entry, const void* query, std::size_t ef,
                                const Accept& accept, SearchScratch& scratch) {
    VisitedListLease visited(g.visited_list_pool_);
    hnswlib::vl_type* mark = visited->mass;
    const hnswlib::vl_type tag = visited->curV;
    const std::size_t vector_bytes = g.data_size_;
    std::vector<tableint>& fresh = scratch.fresh;
    fresh.resize(g.maxM0_);
    auto prefetch_vector = [&](tableint id) {
#ifdef USE_SSE
        const char* p = g.getDataByInternalId(id);
        for (std::size_t off = 0; off < vector_bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
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
        const float d = g.fstdistfunc_(query, g.getDataByInternalId(entry), g.dist_func_param_);
        lower_bound = d;
        heap_push(top, d, entry);
        heap_push(candidates, -d, entry);
    } else {
        lower_bound = std::numeric_limits<float>::max();
        heap_push(candidates, -lower_bound, entry);
    }
    mark[entry] = tag;

    const InnerProductDistance4Fn distance4 = best_inner_product_distance4();
    const std::size_t dim = *static_cast<const std::size_t*>(g.dist_func_param_);
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
        // Distances four at a time (best_inner_product_distance4: the same values as one at a time, with
        // the four vectors' loads in flight together), the next four prefetched meanwhile; then each
        // neighbour is considered in order, exactly as if its distance had been computed alone.
        for (std::size_t t = 0; t < std::min<std::size_t>(4, n_fresh); ++t) prefetch_vector(fresh[t]);
        std::size_t j = 0;
        for (; j + 4 <= n_fresh; j += 4) {
            for (std::size_t t = j + 4; t < std::min(j + 8, n_fresh); ++t) prefetch_vector(fresh[t]);
            const float* vectors[4];
            for (std::size_t t = 0; t < 4; ++t)
                vectors[t] = reinterpret_cast<const float*>(g.getDataByInternalId(fresh[j + t]));
            float d4[4];
            distance4(static_cast<const float*>(query), vectors, dim, d4);
            for (std::size_t t = 0; t < 4; ++t) consider(fresh[j + t], d4[t]);
        }
        for (; j < n_fresh; ++j)
            consider(fresh[j], g.fstdistfunc_(query, g.getDataByInternalId(fresh[j]), g.dist_func_param_));
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

Metric parse_metric(const std::string& name) {
    if (name == "cosine") return Metric::Cosine;
    if (name == "ip") return Metric::InnerProduct;
    throw InvalidArgument("metric must be \"cosine\" or \"ip\", got \"" + name + "\"");
}

const char* metric_name(Metric metric) { return metric == Metric::Cosine ? "cosine" : "ip"; }

struct HNSWIndex::Impl {
    HNSWParams params;
    std::atomic<std::size_t> ef_search;
    std::atomic<double> filter_crossover{HNSWIndex::kDefaultFilterCrossover};
    InnerProductSpace space;  // must outlive graph, which keeps a pointer into it
    std::unique_ptr<Graph> graph;
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
          space(p.dim),
          graph(std::make_unique<Graph>(&space, std::max<std::size_t>(1, p.initial_capacity), p.M,
                                        p.ef_construction, static_cast<std::size_t>(p.seed))) {
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
    std::vector<DistId> exact(const float* q, std::size_t k, const std::vector<tableint>* subset) const {
        const Graph& g = *graph;
        std::vector<DistId> scored;
        auto score = [&](tableint id) {
            scored.emplace_back(g.fstdistfunc_(q, g.getDataByInternalId(id), g.dist_func_param_), id);
        };
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
    std::vector<DistId> search_unlocked(const float* q, std::size_t k, std::size_t ef,
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
            const tableint entry = descend(g, q);
            if (g.num_deleted_)
                filtered_base_layer_search(g, entry, q, ef_eff, [&](tableint id) { return !g.isMarkedDeleted(id); },
                                           scratch);
            else
                filtered_base_layer_search(g, entry, q, ef_eff, [](tableint) { return true; }, scratch);
            std::vector<DistId> found = best_first(scratch.top, k);
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
        filtered_base_layer_search(g, descend(g, q), q, ef_eff, accept, scratch);
        std::vector<DistId> found = best_first(scratch.top, k);
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

HNSWIndex::HNSWIndex(const HNSWParams& params) {
    validate_params(params);
    impl_ = std::make_unique<Impl>(params);
}
HNSWIndex::HNSWIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HNSWIndex::~HNSWIndex() = default;
HNSWIndex::HNSWIndex(HNSWIndex&&) noexcept = default;
HNSWIndex& HNSWIndex::operator=(HNSWIndex&&) noexcept = default;

void HNSWIndex::add(const std::vector<std::string>& ids, const float* vectors, std::size_t n, std::size_t threads) {
    Impl& s = *impl_;
    const std::size_t dim = s.params.dim;
    if (ids.size() != n)
        throw InvalidArgument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(n) + " vectors");
    if (n == 0) return;
    {
        std::unordered_set<std::string_view> seen;
        seen.reserve(n);
        for (const std::string& id : ids) {
            if (id.empty()) throw InvalidArgument("ids must be non-empty strings");
            if (!io::is_valid_utf8(id)) throw InvalidArgument("id is not valid UTF-8");
            if (!seen.insert(id).second) throw InvalidArgument("duplicate id in batch: \"" + id + "\"");
        }
    }
    std::vector<float> rows(n * dim);
    for (std::size_t i = 0; i < n; ++i) s.prepare(vectors + i * dim, rows.data() + i * dim, "vector", i);

    std::unique_lock lock(s.mutex);
    for (const std::string& id : ids)
        if (s.label_of.count(id)) throw InvalidArgument("id already in the index: \"" + id + "\"");

    Graph& g = *s.graph;
    const std::size_t reused = std::min(n, s.free_labels.size());
    s.grow_to(g.cur_element_count + (n - reused));

    std::vector<labeltype> labels(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (i < reused) {
            labels[i] = s.free_labels.back();
            s.free_labels.pop_back();
        } else {
            labels[i] = s.id_of.size();
            s.id_of.emplace_back();
            s.internal_of.push_back(0);
        }
    }
    // Reused labels go through hnswlib's existing-label path: unmark deleted + updatePoint, which
    // rewires the slot's neighbourhood for the new vector (what later hnswlib calls replaceDeleted).
    std::vector<char> done(n, 0);
    std::exception_ptr failure;
    try {
        parallel_for(n, threads, [&](std::size_t i, std::size_t) {
            g.addPoint(rows.data() + i * dim, labels[i]);
            done[i] = 1;
        });
    } catch (...) {
        failure = std::current_exception();
    }
    for (std::size_t i = 0; i < n; ++i) {
        const labeltype label = labels[i];
        if (done[i]) {
            s.internal_of[label] = g.label_lookup_.at(label);
            s.id_of[label] = ids[i];
            s.label_of.emplace(ids[i], label);
            ++s.live;
        } else if (const auto it = g.label_lookup_.find(label); it != g.label_lookup_.end()) {
            // Failed part-way (out of memory): keep the slot, deleted, for reuse.
            s.internal_of[label] = it->second;
            if (!g.isMarkedDeleted(it->second)) g.markDeletedInternal(it->second);
            s.free_labels.push_back(label);
        }
    }
    if (failure) std::rethrow_exception(failure);
}

void HNSWIndex::remove(const std::vector<std::string>& ids) {
    Impl& s = *impl_;
    std::unique_lock lock(s.mutex);
    std::unordered_set<std::string_view> seen;
    seen.reserve(ids.size());
    for (const std::string& id : ids) {
        if (!s.label_of.count(id)) throw NotFound("id not in the index: \"" + id + "\"");
        if (!seen.insert(id).second) throw InvalidArgument("duplicate id in delete: \"" + id + "\"");
    }
    for (const std::string& id : ids) {
        const auto it = s.label_of.find(id);
        const labeltype label = it->second;
        s.graph->markDeletedInternal(s.internal_of[label]);
        s.id_of[label].clear();
        s.free_labels.push_back(label);
        s.label_of.erase(it);
        --s.live;
    }
}

SearchHits HNSWIndex::search(const float* query, std::size_t k, std::size_t ef,
                             const std::vector<std::string>* allow) const {
    const Impl& s = *impl_;
    SearchScratch scratch;
    const float* q = s.query_for_search(query, s.check_vector(query, "query", 0), scratch.query);
    std::shared_lock lock(s.mutex);
    return s.to_hits(s.search_unlocked(q, k, ef, s.resolve_allow(allow), scratch));
}

std::vector<SearchHits> HNSWIndex::search_batch(const float* queries, std::size_t n, std::size_t k, std::size_t ef,
                                                std::size_t threads, const std::vector<std::string>* allow) const {
    const Impl& s = *impl_;
    const std::size_t dim = s.params.dim;
    // Every row is checked before any search, so a bad row is reported the same way at any thread count;
    // the workers normalise their own rows (cosine), and under inner product search the caller's rows.
    std::vector<double> scales(n);
    for (std::size_t i = 0; i < n; ++i) scales[i] = s.check_vector(queries + i * dim, "query", i);
    std::vector<SearchHits> out(n);
    const std::size_t workers = resolve_threads(threads, n);
    std::vector<SearchScratch> scratch(workers);  // one per worker, reused by its queries
    std::shared_lock lock(s.mutex);
    const std::optional<Impl::Allowed> allowed = s.resolve_allow(allow);  // once for the batch
    parallel_for(n, workers, [&](std::size_t i, std::size_t worker) {
        SearchScratch& mine = scratch[worker];
        const float* q = s.query_for_search(queries + i * dim, scales[i], mine.query);
        out[i] = s.to_hits(s.search_unlocked(q, k, ef, allowed, mine));
    });
    return out;
}

SearchHits HNSWIndex::search_exact(const float* query, std::size_t k) const {
    const Impl& s = *impl_;
    std::vector<float> buffer;
    const float* q = s.query_for_search(query, s.check_vector(query, "query", 0), buffer);
    std::shared_lock lock(s.mutex);
    return s.to_hits(s.exact(q, k, nullptr));
}

std::vector<float> HNSWIndex::vectors(const std::vector<std::string>& ids) const {
    const Impl& s = *impl_;
    const std::size_t dim = s.params.dim;
    std::vector<float> out(ids.size() * dim);
    std::shared_lock lock(s.mutex);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto it = s.label_of.find(ids[i]);
        if (it == s.label_of.end()) throw NotFound("id not in the index: \"" + ids[i] + "\"");
        const auto* v = reinterpret_cast<const float*>(s.graph->getDataByInternalId(s.internal_of[it->second]));
        std::copy(v, v + dim, out.begin() + static_cast<std::ptrdiff_t>(i * dim));
    }
    return out;
}

std::size_t HNSWIndex::size() const {
    std::shared_lock lock(impl_->mutex);
    return impl_->live;
}

std::size_t HNSWIndex::capacity() const {
    std::shared_lock lock(impl_->mutex);
    return impl_->graph->max_elements_;
}

bool HNSWIndex::contains(const std::string& id) const {
    std::shared_lock lock(impl_->mutex);
    return impl_->label_of.count(id) != 0;
}

std::vector<std::string> HNSWIndex::ids() const {
    std::shared_lock lock(impl_->mutex);
    const Graph& g = *impl_->graph;
    std::vector<std::string> out;
    out.reserve(impl_->live);
    for (std::size_t i = 0; i < g.cur_element_count; ++i) {
        const auto internal = static_cast<tableint>(i);
        if (!g.isMarkedDeleted(internal)) out.push_back(impl_->id_of[g.getExternalLabel(internal)]);
    }
    return out;
}

std::size_t HNSWIndex::dim() const { return impl_->params.dim; }
Metric HNSWIndex::metric() const { return impl_->params.metric; }
const HNSWParams& HNSWIndex::params() const { return impl_->params; }
std::size_t HNSWIndex::ef_search() const { return impl_->ef_search.load(); }

void HNSWIndex::set_ef_search(std::size_t ef) {
    if (ef == 0 || ef > kMaxEfSearch)
        throw InvalidArgument("ef_search must be in [1, " + std::to_string(kMaxEfSearch) + "], got " +
                              std::to_string(ef));
    impl_->ef_search.store(ef);
}

double HNSWIndex::exact_filter_crossover() const { return impl_->filter_crossover.load(); }

void HNSWIndex::set_exact_filter_crossover(double c) {
    if (std::isnan(c) || c < 0.0) throw InvalidArgument("exact_filter_crossover must be >= 0");
    impl_->filter_crossover.store(c);
}

std::size_t HNSWIndex::exact_filter_threshold(std::size_t ef) const {
    std::shared_lock lock(impl_->mutex);
    return impl_->exact_threshold(ef);
}

// ---- persistence ----
// Payload: params, hnswlib's own index layout (header fields, level-0 block, upper-layer link lists,
// exactly what HierarchicalNSW::saveIndex writes), then the id of every slot (empty = deleted) and the
// random generators' states. Loading rebuilds the graph from these bytes only after io::IndexFile has
// verified the checksum, and checks every link before the graph is used.

void HNSWIndex::save(const std::string& path) const {
    const Impl& s = *impl_;
    std::shared_lock lock(s.mutex);  // excludes every writer; concurrent searches may go on
    const Graph& g = *s.graph;
    io::AtomicFileWriter w(path, kMagic, kFormatVersion);
    w.write<std::uint64_t>(s.params.dim);
    w.write<std::uint32_t>(s.params.metric == Metric::Cosine ? 0u : 1u);
    w.write<std::uint64_t>(s.params.M);
    w.write<std::uint64_t>(s.params.ef_construction);
    w.write<std::uint64_t>(s.ef_search.load());
    w.write<std::uint64_t>(s.params.seed);

    w.write<std::uint64_t>(g.max_elements_);
    w.write<std::uint64_t>(g.cur_element_count);
    w.write<std::uint64_t>(g.size_data_per_element_);
    w.write<std::int32_t>(g.maxlevel_);
    w.write<std::uint32_t>(g.enterpoint_node_);
    w.write_bytes(g.data_level0_memory_, g.cur_element_count * g.size_data_per_element_);
    for (std::size_t i = 0; i < g.cur_element_count; ++i) {
        const int level = g.element_levels_[i];
        w.write<std::int32_t>(level);
        if (level > 0) w.write_bytes(g.linkLists_[i], g.size_links_per_element_ * static_cast<std::size_t>(level));
    }
    for (std::size_t i = 0; i < g.cur_element_count; ++i) w.write_string(s.id_of[g.getExternalLabel(static_cast<tableint>(i))]);
    std::ostringstream rng;
    rng << g.level_generator_ << ' ' << g.update_probability_generator_;
    w.write_string(rng.str());
    w.commit();
}

HNSWIndex HNSWIndex::load(const std::string& path) {
    const io::IndexFile file(path, kMagic, kFormatVersion);
    io::BinaryReader r = file.reader();
    HNSWParams p;
    p.dim = r.read<std::uint64_t>();
    const auto metric = r.read<std::uint32_t>();
    if (metric > 1) r.fail("unknown metric code " + std::to_string(metric));
    p.metric = metric == 0 ? Metric::Cosine : Metric::InnerProduct;
    p.M = r.read<std::uint64_t>();
    p.ef_construction = r.read<std::uint64_t>();
    p.ef_search = r.read<std::uint64_t>();
    p.seed = r.read<std::uint64_t>();
    try {
        validate_params(p);
    } catch (const InvalidArgument& e) {
        r.fail(std::string("bad parameters: ") + e.what());
    }
    const std::uint64_t capacity = r.read<std::uint64_t>();
    const std::uint64_t count = r.read<std::uint64_t>();
    const std::uint64_t row_bytes = r.read<std::uint64_t>();
    const std::int32_t max_level = r.read<std::int32_t>();
    const std::uint32_t entry = r.read<std::uint32_t>();
    if (count > capacity) r.fail("element count exceeds capacity");
    if (capacity > kMaxCapacity) r.fail("capacity too large");

    // hnswlib's level-0 row: link count + 2*M links, the vector, the label.
    const std::size_t expected_row = sizeof(hnswlib::linklistsizeint) + 2 * p.M * sizeof(tableint) +
                                     p.dim * sizeof(float) + sizeof(labeltype);
    if (row_bytes != expected_row) r.fail("level-0 row size does not match the parameters");
    if (count > r.remaining() / row_bytes) r.fail("level-0 block exceeds the file");
    // Everything allocated below is bounded by the file's size: `count` rows are in it (just checked), and
    // the saved capacity, a claim no byte of the file backs (a forged 32 KB file could claim 10^7 slots,
    // 460 MB), is restored only up to twice the elements or kLoadSpareCapacityBytes' worth of slots, beyond
    // which the loaded graph grows again on demand as any graph does.
    const std::size_t slot_bytes = row_bytes + sizeof(void*) + sizeof(int) + sizeof(std::mutex) +
                                   sizeof(hnswlib::vl_type);  // + link list pointer, level, lock, visited mark
    const std::size_t spare_slots = std::max<std::size_t>(1, kLoadSpareCapacityBytes / slot_bytes);
    p.initial_capacity = std::max<std::size_t>(
        1, std::min<std::size_t>(capacity, std::max<std::size_t>(2 * count, spare_slots)));

    auto impl = std::make_unique<Impl>(p);
    Impl& s = *impl;
    Graph& g = *s.graph;
    if (g.size_data_per_element_ != row_bytes) r.fail("level-0 row size does not match hnswlib's layout");
    r.read_bytes(g.data_level0_memory_, count * row_bytes);
    const std::size_t n = count;
    // The destructor frees linkLists_[i] for i < cur_element_count with element_levels_[i] > 0, so
    // levels are only published as each list is allocated.
    for (std::size_t i = 0; i < n; ++i) {
        const std::int32_t level = r.read<std::int32_t>();
        if (level < 0 || level > max_level) r.fail("element level out of range");
        g.element_levels_[i] = 0;
        g.linkLists_[i] = nullptr;
        g.cur_element_count = i + 1;
        if (level > 0) {
            const std::size_t bytes = g.size_links_per_element_ * static_cast<std::size_t>(level);
            if (bytes > r.remaining()) r.fail("link lists exceed the file");
            g.linkLists_[i] = static_cast<char*>(std::malloc(bytes));
            if (g.linkLists_[i] == nullptr) throw std::bad_alloc();
            g.element_levels_[i] = level;
            r.read_bytes(g.linkLists_[i], bytes);
        }
    }
    if (n > 0 && (max_level < 0 || entry >= n || g.element_levels_[entry] != max_level))
        r.fail("entry point is inconsistent with the graph");
    // Every link must point at an existing element that lives on that level.
    auto check_list = [&](hnswlib::linklistsizeint* list, std::size_t max_links, int level) {
        const std::size_t size = g.getListCount(list);
        if (size > max_links) r.fail("link list longer than the graph allows");
        const auto* links = reinterpret_cast<const tableint*>(list + 1);
        for (std::size_t j = 0; j < size; ++j)
            if (links[j] >= n || g.element_levels_[links[j]] < level) r.fail("link to a missing element");
    };
    for (std::size_t i = 0; i < n; ++i) {
        check_list(g.get_linklist0(static_cast<tableint>(i)), g.maxM0_, 0);
        for (int level = 1; level <= g.element_levels_[i]; ++level)
            check_list(g.get_linklist(static_cast<tableint>(i), level), g.maxM_, level);
    }
    // Every stored vector (deleted slots' too: searches walk through them) must be finite: a NaN distance
    // would break the heaps' ordering.
    for (std::size_t i = 0; i < n; ++i) {
        const auto* v = reinterpret_cast<const float*>(g.getDataByInternalId(static_cast<tableint>(i)));
        if (first_non_finite(v, p.dim) != p.dim) r.fail("non-finite value in stored vector " + std::to_string(i));
    }
    g.enterpoint_node_ = n > 0 ? entry : static_cast<tableint>(-1);
    g.maxlevel_ = n > 0 ? max_level : -1;

    // Labels are ours: renumber them to the internal ids, and rebuild the id maps.
    s.id_of.resize(n);
    s.internal_of.resize(n);
    g.num_deleted_ = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto internal = static_cast<tableint>(i);
        std::string id = r.read_utf8_string("id");
        const bool deleted = g.isMarkedDeleted(internal);
        if (deleted != id.empty()) r.fail("deleted marks and ids disagree");
        g.setExternalLabel(internal, i);
        g.label_lookup_[i] = internal;
        s.internal_of[i] = internal;
        if (deleted) {
            ++g.num_deleted_;
            s.free_labels.push_back(i);
        } else {
            if (!s.label_of.emplace(id, i).second) r.fail("duplicate id \"" + id + "\"");
            s.id_of[i] = std::move(id);
            ++s.live;
        }
    }
    std::reverse(s.free_labels.begin(), s.free_labels.end());  // reuse the lowest slot first
    std::istringstream rng(r.read_string());
    rng >> g.level_generator_ >> std::ws >> g.update_probability_generator_;  // engines clear skipws
    if (!rng || !(rng >> std::ws).eof()) r.fail("bad random generator state");
    {
        // The engines' states are parsed from text the file supplies. hnswlib draws each new element's
        // level as (int)(-log(u) * mult) with u uniform in [0, 1) from level_generator_: a u of exactly 0
        // would be an infinite level (undefined behaviour), and a state outside the engine's cycle (for
        // std::minstd_rand0, 0 or a multiple of its modulus: it then returns 0 forever, below its min())
        // yields out-of-range numbers. A state a real engine reaches does neither, so probe copies.
        auto level_probe = g.level_generator_;
        auto update_probe = g.update_probability_generator_;
        using Engine = decltype(level_probe);
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        for (int draw = 0; draw < 256; ++draw) {
            const auto a = level_probe(), b = update_probe();
            if (a < Engine::min() || a > Engine::max() || b < Engine::min() || b > Engine::max() ||
                !(uniform(level_probe) > 0.0))
                r.fail("degenerate random generator state");
        }
    }
    r.expect_end();
    return HNSWIndex(std::move(impl));
}

}  // namespace funnelrank
