// BM25 query planner: which exact top-k strategy answers a query (see bm25_index.h, Strategy).
//
// - An allow-list of few documents (against the query's postings): score just those (top_k_docs).
// - A corpus within dense_max_docs() slots: term-at-a-time into the dense 64-bit accumulator (top_k_dense),
//   whose pass over every slot is cheap at that size.
// - A larger corpus and a query whose lists hold at least 1/kImpactVolumeRatio postings per document slot:
//   the quantized-impact path (bm25_impact.cpp), one byte and one table lookup per posting into a 16-bit
//   accumulator, one SIMD pass over it and an exact re-scoring of the few candidates. MaxScore would touch
//   most of those postings anyway, at several times the cost per posting.
// - Otherwise MaxScore over block-max bounds (top_k_pruned), whose cost follows the postings it touches,
//   not the corpus size.
// The threshold and the cut-overs were measured on 1M-document MS MARCO-like corpora (docs/guides/bm25.md).
#include <mutex>
#include <string>
#include <string_view>

#include "bm25_index.h"

namespace funnelrank {

void BM25Index::set_strategy(Strategy s) {
    if (static_cast<std::uint8_t>(s) > static_cast<std::uint8_t>(Strategy::kImpact))
        throw InvalidArgument("unknown BM25 strategy");
    std::unique_lock lock(mutex_);
    strategy_ = s;
}

BM25Index::Strategy BM25Index::strategy() const {
    std::shared_lock lock(mutex_);
    return strategy_;
}

BM25Index::Path BM25Index::choose(const std::vector<QueryTerm>& q, std::size_t k,
                                  const std::optional<Allowed>& allowed) const {
    if (q.empty() || data_.live_docs == 0 || (allowed && allowed->docs.empty())) return Path::kEmpty;
    switch (strategy_) {
        case Strategy::kDense: return Path::kDense;
        case Strategy::kMaxScore: return Path::kMaxScore;
        case Strategy::kImpact: return Path::kImpact;
        case Strategy::kAuto: break;
    }
    std::size_t postings = 0;
    for (const auto& t : q) postings += t.list->docs.size();
    // Few allowed documents: score just those; else filter while traversing the lists.
    if (allowed && allowed->docs.size() * q.size() * 4 < postings) return Path::kDocs;
    const std::size_t slots = data_.ext_ids.size();
    if (slots <= dense_max_docs_) return Path::kDense;
    // (A k near the corpus size keeps too many candidates for the impact path's bounds to pay.)
    if (postings * kImpactVolumeRatio >= slots && k * 64 <= slots) return Path::kImpact;
    return Path::kMaxScore;
}

std::string BM25Index::plan(std::string_view query, std::size_t k) const {
    if (k == 0) throw InvalidArgument("plan(): k must be >= 1");
    std::shared_lock lock(mutex_);
    const auto q = prepare(query, nullptr);
    switch (choose(q, k, std::nullopt)) {
        case Path::kEmpty: return "empty";
        case Path::kDocs: return "docs";
        case Path::kDense: return "dense";
        case Path::kMaxScore: return "maxscore";
        case Path::kImpact: return "impact";
    }
    return "maxscore";
}

}  // namespace funnelrank
