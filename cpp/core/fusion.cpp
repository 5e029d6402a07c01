#include "fusion.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "errors.h"

namespace funnelrank {

namespace {

void validate_rankings(const std::vector<Ranking>& rankings) {
    if (rankings.empty()) throw InvalidArgument("fusion needs at least one ranking");
    for (std::size_t r = 0; r < rankings.size(); ++r) {
        const Ranking& ranking = rankings[r];
        const std::string where = "ranking " + std::to_string(r);
        if (ranking.ids.size() != ranking.scores.size())
            throw InvalidArgument(where + " has " + std::to_string(ranking.ids.size()) + " ids but " +
                                  std::to_string(ranking.scores.size()) + " scores");
        if (ranking.ids.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            throw InvalidArgument(where + " is too long");
        for (std::size_t i = 0; i < ranking.scores.size(); ++i)
            if (!std::isfinite(ranking.scores[i]))
                throw InvalidArgument(where + " has a non-finite score at position " + std::to_string(i));
        std::unordered_map<std::string_view, std::size_t> seen;
        seen.reserve(ranking.ids.size());
        for (const std::string& id : ranking.ids)
            if (!seen.emplace(id, 0).second) throw InvalidArgument(where + " lists id \"" + id + "\" twice");
    }
}

std::vector<double> resolve_weights(const std::vector<double>* weights, std::size_t n) {
    if (weights == nullptr) return std::vector<double>(n, 1.0);
    if (weights->size() != n)
        throw InvalidArgument("got " + std::to_string(weights->size()) + " weights for " + std::to_string(n) +
                              " rankings");
    bool any_positive = false;
    for (double w : *weights) {
        if (!std::isfinite(w) || w < 0.0) throw InvalidArgument("weights must be finite and >= 0");
        any_positive = any_positive || w > 0.0;
    }
    if (!any_positive) throw InvalidArgument("at least one weight must be > 0");
    return *weights;
}

// Collects every distinct id with its rank and score in each input; `contribution(r, i)` is added to
// the fused score of the document at position i of ranking r, in ranking order.
template <typename Contribution>
FusedResult fuse(const std::vector<Ranking>& rankings, std::optional<std::size_t> top_k,
                 const Contribution& contribution) {
    const std::size_t n_ret = rankings.size();
    std::size_t total = 0;
    for (const Ranking& r : rankings) total += r.ids.size();
    std::unordered_map<std::string_view, std::size_t> doc_of;
    doc_of.reserve(total);
    std::vector<std::string_view> docs;
    std::vector<double> fused;
    std::vector<std::int32_t> ranks;
    std::vector<float> input_scores;
    for (std::size_t r = 0; r < n_ret; ++r) {
        const Ranking& ranking = rankings[r];
        for (std::size_t i = 0; i < ranking.ids.size(); ++i) {
            const auto [it, inserted] = doc_of.emplace(ranking.ids[i], docs.size());
            if (inserted) {
                docs.push_back(ranking.ids[i]);
                fused.push_back(0.0);
                ranks.resize(ranks.size() + n_ret, 0);
                input_scores.resize(input_scores.size() + n_ret, std::numeric_limits<float>::quiet_NaN());
            }
            const std::size_t d = it->second;
            fused[d] += contribution(r, i);
            ranks[d * n_ret + r] = static_cast<std::int32_t>(i + 1);
            input_scores[d * n_ret + r] = static_cast<float>(ranking.scores[i]);
        }
    }
    std::vector<std::int32_t> best_rank(docs.size(), std::numeric_limits<std::int32_t>::max());
    for (std::size_t d = 0; d < docs.size(); ++d)
        for (std::size_t r = 0; r < n_ret; ++r)
            if (ranks[d * n_ret + r] > 0) best_rank[d] = std::min(best_rank[d], ranks[d * n_ret + r]);

    std::vector<std::size_t> order(docs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    auto better = [&](std::size_t a, std::size_t b) {
        if (fused[a] != fused[b]) return fused[a] > fused[b];
        if (best_rank[a] != best_rank[b]) return best_rank[a] < best_rank[b];
        return docs[a] < docs[b];
    };
    const std::size_t keep = std::min(order.size(), top_k.value_or(order.size()));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), better);
    order.resize(keep);

    FusedResult out;
    out.n_retrievers = n_ret;
    out.ids.reserve(keep);
    out.scores.reserve(keep);
    out.ranks.reserve(keep * n_ret);
    out.input_scores.reserve(keep * n_ret);
    for (std::size_t d : order) {
        out.ids.emplace_back(docs[d]);
        out.scores.push_back(static_cast<float>(fused[d]));
        out.ranks.insert(out.ranks.end(), ranks.begin() + static_cast<std::ptrdiff_t>(d * n_ret),
                         ranks.begin() + static_cast<std::ptrdiff_t>((d + 1) * n_ret));
        out.input_scores.insert(out.input_scores.end(), input_scores.begin() + static_cast<std::ptrdiff_t>(d * n_ret),
                                input_scores.begin() + static_cast<std::ptrdiff_t>((d + 1) * n_ret));
    }
    return out;
}

}  // namespace

Normalization parse_normalization(const std::string& name) {
    if (name == "minmax") return Normalization::MinMax;
    if (name == "zscore") return Normalization::ZScore;
    throw InvalidArgument("normalization must be \"minmax\" or \"zscore\", got \"" + name + "\"");
}

FusedResult rrf(const std::vector<Ranking>& rankings, double k, const std::vector<double>* weights,
                std::optional<std::size_t> top_k) {
    if (!std::isfinite(k) || k < 0.0) throw InvalidArgument("rrf k must be finite and >= 0");
    validate_rankings(rankings);
    const std::vector<double> w = resolve_weights(weights, rankings.size());
    return fuse(rankings, top_k, [&](std::size_t r, std::size_t i) {
        return w[r] / (k + static_cast<double>(i + 1));
    });
}

FusedResult convex_fusion(const std::vector<Ranking>& rankings, const std::vector<double>* weights,
                          Normalization normalization, std::optional<std::size_t> top_k) {
    validate_rankings(rankings);
    std::vector<double> w = resolve_weights(weights, rankings.size());
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    for (double& x : w) x /= total;

    std::vector<std::vector<double>> norm(rankings.size());
    for (std::size_t r = 0; r < rankings.size(); ++r) {
        const std::vector<double>& s = rankings[r].scores;
        std::vector<double>& out = norm[r];
        out.resize(s.size());
        if (s.empty()) continue;
        if (normalization == Normalization::MinMax) {
            const auto [lo_it, hi_it] = std::minmax_element(s.begin(), s.end());
            const double lo = *lo_it, range = *hi_it - *lo_it;
            for (std::size_t i = 0; i < s.size(); ++i) out[i] = range > 0.0 ? (s[i] - lo) / range : 1.0;
        } else {
            double sum = 0.0;
            for (double x : s) sum += x;
            const double mean = sum / static_cast<double>(s.size());
            double sq = 0.0;
            for (double x : s) sq += (x - mean) * (x - mean);
            const double sd = std::sqrt(sq / static_cast<double>(s.size()));
            for (std::size_t i = 0; i < s.size(); ++i) out[i] = sd > 0.0 ? (s[i] - mean) / sd : 0.0;
        }
    }
    return fuse(rankings, top_k, [&](std::size_t r, std::size_t i) { return w[r] * norm[r][i]; });
}

}  // namespace funnelrank
