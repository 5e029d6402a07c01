// HNSWIndex over hnswlib's HierarchicalNSW: parameters, the public operations and the file format. This is the
// only translation unit that includes the hnswlib headers: hnswlib 0.6.2 defines non-inline globals in its
// headers, so a second includer would not link. The rest of the index is in headers this file alone
// includes: hnsw_graph.h (hnswlib's types, our inner-product space), hnsw_search.h (the graph search loop),
// hnsw_impl.h (the index's state, vector preparation, exact and filtered search).
#include "hnsw_index.h"

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

#define FUNNELRANK_HNSWLIB_TU 1
#include "hnsw_graph.h"
#include "hnsw_impl.h"
#include "hnsw_search.h"

namespace funnelrank {

namespace {

constexpr std::string_view kMagic = "FRK-HNSW";
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kMaxM = HNSWIndex::kMaxM;
constexpr std::size_t kMaxDim = HNSWIndex::kMaxDim;
constexpr std::size_t kMaxEfSearch = HNSWIndex::kMaxEfSearch;
constexpr std::size_t kMaxEfConstruction = HNSWIndex::kMaxEfConstruction;
constexpr std::size_t kMaxCapacity = HNSWIndex::kMaxCapacity;
// Graph slots that load() allocates beyond twice the elements the file holds (so beyond what the file's
// own bytes pay for): at most this many bytes' worth. A saved capacity above both is not restored.
constexpr std::size_t kLoadSpareCapacityBytes = std::size_t{32} << 20;

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

}  // namespace

Metric parse_metric(const std::string& name) {
    if (name == "cosine") return Metric::Cosine;
    if (name == "ip") return Metric::InnerProduct;
    throw InvalidArgument("metric must be \"cosine\" or \"ip\", got \"" + name + "\"");
}

const char* metric_name(Metric metric) { return metric == Metric::Cosine ? "cosine" : "ip"; }

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
