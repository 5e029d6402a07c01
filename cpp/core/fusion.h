#pragma once
// Rank fusion of several retrievers' result lists: reciprocal-rank fusion (RRF) and a convex
// combination of normalised scores. Results keep every input rank and score for tracing.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace funnelrank {

// One retriever's results, best first: ids[i] has rank i + 1 and score scores[i] (higher = better).
struct Ranking {
    std::vector<std::string> ids;
    std::vector<double> scores;
};

struct FusedResult {
    std::vector<std::string> ids;       // fused order, best first
    std::vector<float> scores;          // fused score per id
    std::size_t n_retrievers = 0;
    std::vector<std::int32_t> ranks;    // [ids.size() x n_retrievers], 1-based rank, 0 = absent
    std::vector<float> input_scores;    // [ids.size() x n_retrievers], NaN = absent
};

enum class Normalization { MinMax, ZScore };

// "minmax" / "zscore"; anything else throws InvalidArgument.
Normalization parse_normalization(const std::string& name);

// score(d) = sum over rankings r containing d of weight_r / (k + rank_r(d)). Weights default to 1.
// Ties are broken by the best (lowest) rank d has in any input, then by id (byte order).
FusedResult rrf(const std::vector<Ranking>& rankings, double k = 60.0,
                const std::vector<double>* weights = nullptr, std::optional<std::size_t> top_k = std::nullopt);

// score(d) = sum over rankings r of w_r * norm_r(d), with w normalised to sum to 1 (default: equal) and
// norm_r(d) = 0 where d is absent from r. minmax maps r's scores to [0, 1] (all 1 when they are all
// equal); zscore maps them to (s - mean) / std (all 0 when std = 0). Same tie-breaking as rrf.
FusedResult convex_fusion(const std::vector<Ranking>& rankings, const std::vector<double>* weights = nullptr,
                          Normalization normalization = Normalization::MinMax,
                          std::optional<std::size_t> top_k = std::nullopt);

}  // namespace funnelrank
