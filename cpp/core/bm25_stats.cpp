// BM25 statistics: this index's own (for a coordinator to sum: corpus_stats, query_terms, doc_freqs), the
// check that corpus-wide ones can include this index's, and the impact cache, computed for whichever
// statistics a search scores with (read_lock).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "bm25_index.h"
#include "bm25_scoring.h"

namespace funnelrank {

namespace {
// 8-bit impacts over the list's own range [lo, hi] (bm25_impact.cpp relies on this): q = floor((v - lo) /
// step) clamped to [0, 255], step = (hi - lo) / 255, so lo + q * step <= v <= lo + (q + 1) * step up to
// one double rounding (which the impact path's bounds absorb).
template <typename P>
void quantize_impacts(const P& p) {
    const std::size_t n = p.impacts.size();
    p.qimpacts.resize(n);
    float lo = n ? p.impacts[0] : 0.0f;
    float hi = lo;
    for (const float v : p.impacts) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    p.qlo = lo;
    p.qstep = (static_cast<double>(hi) - static_cast<double>(lo)) / 255.0;
    const double inv = p.qstep > 0.0 ? 1.0 / p.qstep : 0.0;
    for (std::size_t j = 0; j < n; ++j) {
        const double x = (static_cast<double>(p.impacts[j]) - p.qlo) * inv;
        p.qimpacts[j] = static_cast<std::uint8_t>(std::min(255.0, std::max(0.0, std::floor(x))));
    }
}
}  // namespace

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
        quantize_impacts(p);
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

}  // namespace funnelrank
