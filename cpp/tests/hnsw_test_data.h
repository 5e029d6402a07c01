#pragma once
// Test data shared by the HNSW tests (test_hnsw.cpp, test_hnsw_file.cpp).
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "hnsw_index.h"

namespace funnelrank::test {

// Samples from a fixed gaussian mixture (the same centres for every call with the same dim, so data
// and queries drawn with different seeds share clusters): nearest neighbours are meaningful.
inline std::vector<float> clustered(std::size_t n, std::size_t dim, std::uint32_t seed, std::size_t clusters = 50) {
    std::mt19937 center_rng(12345);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> centers(clusters * dim);
    for (float& c : centers) c = normal(center_rng);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> pick(0, clusters - 1);
    std::vector<float> out(n * dim);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t c = pick(rng);
        for (std::size_t j = 0; j < dim; ++j) out[i * dim + j] = centers[c * dim + j] + 0.5f * normal(rng);
    }
    return out;
}

inline std::vector<std::string> make_ids(std::size_t n, const std::string& prefix = "doc") {
    std::vector<std::string> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = prefix + std::to_string(i);
    return ids;
}

inline HNSWParams params(std::size_t dim, Metric metric = Metric::Cosine) {
    HNSWParams p;
    p.dim = dim;
    p.metric = metric;
    p.initial_capacity = 16;  // exercise growth
    return p;
}


}  // namespace funnelrank::test
