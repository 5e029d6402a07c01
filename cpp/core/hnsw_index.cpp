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
// Version 1: float32 vectors. Version 2 adds the storage code after the parameters and, for int8, the
// re-scoring vectors after everything else. Files of either version load; a newer one is refused.
constexpr std::uint32_t kFormatVersion = 2;
// The re-scoring block starts at a multiple of this in the file (so a mapped row is aligned).
constexpr std::size_t kRescoreAlignment = 64;
constexpr std::size_t kMaxM = HNSWIndex::kMaxM;
constexpr std::size_t kMaxDim = HNSWIndex::kMaxDim;
constexpr std::size_t kMaxEfSearch = HNSWIndex::kMaxEfSearch;
constexpr std::size_t kMaxEfConstruction = HNSWIndex::kMaxEfConstruction;
constexpr std::size_t kMaxCapacity = HNSWIndex::kMaxCapacity;
// Graph slots that load() allocates beyond twice the elements the file holds (so beyond what the file's
// own bytes pay for): at most this many bytes' worth. A saved capacity above both is not restored.
constexpr std::size_t kLoadSpareCapacityBytes = std::size_t{32} << 20;

// Whether v * scale fits f16 (|x| <= 65504), so that encoding it makes no infinity.
bool fits_f16(const float* v, std::size_t dim, double scale) {
    float max_abs = 0.f;
    for (std::size_t j = 0; j < dim; ++j) max_abs = std::max(max_abs, std::fabs(v[j]));
    return static_cast<double>(max_abs) * scale <= static_cast<double>(kMaxF16);
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
    // Every row is checked first (all or nothing); each is then prepared (normalised, encoded) into its
    // worker's buffer as it is inserted, so no copy of the whole input is held.
    const VectorStorage storage = s.params.storage;
    std::vector<double> scales(n);
    for (std::size_t i = 0; i < n; ++i) {
        scales[i] = s.check_vector(vectors + i * dim, "vector", i);
        if (storage == VectorStorage::F16 && !fits_f16(vectors + i * dim, dim, scales[i]))
            throw InvalidArgument("vector " + std::to_string(i) + " has a value beyond f16's range (" +
                                  std::to_string(kMaxF16) + "); use storage \"f32\" or scale it down");
    }

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
    if (s.rescored()) s.rescore.prepare(s.id_of.size(), labels);
    // Reused labels go through hnswlib's existing-label path: unmark deleted + updatePoint, which
    // rewires the slot's neighbourhood for the new vector (what later hnswlib calls replaceDeleted).
    std::vector<char> done(n, 0);
    std::exception_ptr failure;
    const std::size_t workers = resolve_threads(threads, n);
    const std::size_t stored_bytes = stored_vector_bytes(storage, dim);
    std::vector<std::vector<float>> prepared(workers, std::vector<float>(dim));
    std::vector<std::vector<unsigned char>> encoded(workers, std::vector<unsigned char>(stored_bytes));
    try {
        parallel_for(n, workers, [&](std::size_t i, std::size_t worker) {
            float* row = prepared[worker].data();
            s.scale_into(vectors + i * dim, scales[i], row);
            // The caller's buffer is read again here (the bindings release the GIL meanwhile): a row changed
            // since its check must not put a non-finite value into the graph.
            if (first_non_finite(row, dim) != dim || (storage == VectorStorage::F16 && !fits_f16(row, dim, 1.0)))
                throw InvalidArgument("vector " + std::to_string(i) + " changed while it was being added");
            const void* data = row;
            if (storage != VectorStorage::F32) {
                encode_vector(storage, row, dim, encoded[worker].data());
                data = encoded[worker].data();
            }
            if (s.rescored()) std::memcpy(s.rescore.writable_row(labels[i]), row, dim * sizeof(float));
            g.addPoint(data, labels[i]);
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
    const Impl::PreparedQuery q = s.prepare_query(query, s.check_vector(query, "query", 0), scratch);
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
        const Impl::PreparedQuery q = s.prepare_query(queries + i * dim, scales[i], mine);
        out[i] = s.to_hits(s.search_unlocked(q, k, ef, allowed, mine));
    });
    return out;
}

SearchHits HNSWIndex::search_exact(const float* query, std::size_t k) const {
    const Impl& s = *impl_;
    SearchScratch scratch;
    const Impl::PreparedQuery q = s.prepare_query(query, s.check_vector(query, "query", 0), scratch);
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
        float* row = out.data() + i * dim;
        if (s.rescored())
            std::memcpy(row, s.rescore.row(it->second), dim * sizeof(float));
        else
            decode_vector(s.params.storage, s.graph->getDataByInternalId(s.internal_of[it->second]), dim, row);
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
VectorStorage HNSWIndex::storage() const { return impl_->params.storage; }

HNSWMemory HNSWIndex::memory() const {
    const Impl& s = *impl_;
    std::shared_lock lock(s.mutex);
    const Graph& g = *s.graph;
    HNSWMemory m;
    const std::size_t rescore = s.rescore.resident_bytes();
    m.graph_bytes = g.max_elements_ * g.size_data_per_element_ + rescore;
    for (std::size_t i = 0; i < g.cur_element_count; ++i)
        m.graph_bytes += g.size_links_per_element_ * static_cast<std::size_t>(g.element_levels_[i]);
    m.vector_bytes = g.cur_element_count * g.data_size_ + rescore;
    m.mapped_bytes = s.rescore.mapped_bytes();
    return m;
}
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
// Payload: params (version 2: then the storage code), hnswlib's own index layout (header fields, level-0
// block, upper-layer link lists, exactly what HierarchicalNSW::saveIndex writes; vectors in the storage's
// encoding), then the id of every slot (empty = deleted) and the random generators' states; version 2 under
// int8 then: u64 rows, u64 padding, that many zero bytes (the rows start at a multiple of 64 in the file),
// rows x dim float32 re-scoring vectors in internal-id order. Loading rebuilds the graph from these bytes
// only after io::IndexFile has verified the checksum, and checks every link and vector before use.

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
    w.write<std::uint32_t>(static_cast<std::uint32_t>(s.params.storage));

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
    if (s.rescored()) {
        // Rows in internal-id order (load renumbers labels to internal ids), aligned in the file.
        const std::size_t here = io::IndexFile::payload_offset() + w.payload_bytes() + 2 * sizeof(std::uint64_t);
        const std::size_t pad = (kRescoreAlignment - here % kRescoreAlignment) % kRescoreAlignment;
        w.write<std::uint64_t>(g.cur_element_count);
        w.write<std::uint64_t>(pad);
        const char zeros[kRescoreAlignment] = {};
        w.write_bytes(zeros, pad);
        for (std::size_t i = 0; i < g.cur_element_count; ++i)
            w.write_bytes(s.rescore.row(g.getExternalLabel(static_cast<tableint>(i))), s.params.dim * sizeof(float));
    }
    w.commit();
}

HNSWIndex HNSWIndex::load(const std::string& path) {
    // Mapped, not read into memory: an int8 index keeps its re-scoring rows in the mapping.
    const io::IndexFile file(path, kMagic, kFormatVersion, io::IndexFile::Read::Map);
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
    if (file.version() >= 2) {
        const auto storage = r.read<std::uint32_t>();
        if (!valid_storage_code(storage)) r.fail("unknown vector storage code " + std::to_string(storage));
        p.storage = static_cast<VectorStorage>(storage);
    }
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
                                     stored_vector_bytes(p.storage, p.dim) + sizeof(labeltype);
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
        if (!stored_vector_is_finite(p.storage, g.getDataByInternalId(static_cast<tableint>(i)), p.dim))
            r.fail("non-finite value in stored vector " + std::to_string(i));
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
    if (s.rescored()) {
        const std::uint64_t rows = r.read<std::uint64_t>();
        const std::uint64_t pad = r.read<std::uint64_t>();
        if (rows != n) r.fail("re-scoring vectors do not match the graph");
        if (pad >= kRescoreAlignment) r.fail("bad re-scoring block padding");
        r.read_view(static_cast<std::size_t>(pad));
        const std::size_t row_floats = p.dim;
        if (n > r.remaining() / (row_floats * sizeof(float))) r.fail("re-scoring vectors exceed the file");
        const std::string_view block = r.read_view(n * row_floats * sizeof(float));
        if (reinterpret_cast<std::uintptr_t>(block.data()) % alignof(float) != 0)
            r.fail("misaligned re-scoring vectors");
        const auto* rows_data = reinterpret_cast<const float*>(block.data());
        for (std::size_t i = 0; i < n; ++i)
            if (first_non_finite(rows_data + i * row_floats, row_floats) != row_floats)
                r.fail("non-finite value in re-scoring vector " + std::to_string(i));
        s.rescore.map(file.mapping(), rows_data, n);
    }
    r.expect_end();
    // Everything else was copied out, and the re-scoring rows come back from the page cache when searched.
    file.mapping()->release(0, file.bytes().size());
    return HNSWIndex(std::move(impl));
}

}  // namespace funnelrank
