// BM25Index: construction, the search entry points (locking, allow-lists, choosing a top-k strategy) and
// introspection. The other sources are listed in bm25_index.h.
#include "bm25_index.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>

#include "parallel_for.h"

namespace funnelrank {

// ---------------------------------------------------------------------------------------------------
// Construction

std::uint64_t BM25Index::next_epoch() {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

BM25Index::BM25Index(double k1, double b, std::shared_ptr<const Analyzer> analyzer)
    : k1_(k1), b_(b), analyzer_(std::move(analyzer)), epoch_(next_epoch()) {
    if (!(k1 >= 0.0 && k1 <= kMaxK1))  // (NaN fails too)
        throw InvalidArgument("k1 must be in [0, " + std::to_string(static_cast<int>(kMaxK1)) + "], got " +
                              std::to_string(k1));
    if (!std::isfinite(b) || b < 0.0 || b > 1.0) throw InvalidArgument("b must be in [0, 1]");
    if (!analyzer_) analyzer_ = std::make_shared<const Analyzer>(AnalyzerConfig{});
}

void BM25Index::set_dense_max_docs(std::size_t n) {
    std::unique_lock lock(mutex_);
    dense_max_docs_ = n;
}

std::size_t BM25Index::dense_max_docs() const {
    std::shared_lock lock(mutex_);
    return dense_max_docs_;
}

// ---------------------------------------------------------------------------------------------------
// Search entry points

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
    switch (choose(q, k, allowed)) {  // bm25_plan.cpp
        case Path::kEmpty: return {};
        case Path::kDocs: return to_results(top_k_docs(q, k, allowed->docs));
        case Path::kDense: return to_results(top_k_dense(q, k, mask));
        case Path::kImpact:
            if (auto hits = top_k_impact(q, k, mask)) return to_results(*hits);
            break;  // the bounds could not decide: MaxScore
        case Path::kMaxScore: break;
    }
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

BM25Index::Stats BM25Index::stats() const {
    std::shared_lock lock(mutex_);
    Stats s;
    s.live_docs = data_.live_docs;
    s.doc_slots = data_.ext_ids.size();
    s.terms = data_.terms.size();
    for (const auto& p : data_.postings) s.postings += p.docs.size();
    return s;
}

}  // namespace funnelrank
