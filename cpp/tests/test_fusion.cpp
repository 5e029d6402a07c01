#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "errors.h"
#include "fusion.h"

using funnelrank::convex_fusion;
using funnelrank::FusedResult;
using funnelrank::InvalidArgument;
using funnelrank::Normalization;
using funnelrank::Ranking;
using funnelrank::rrf;

namespace {
Ranking ranking(std::vector<std::string> ids, std::vector<double> scores) { return {std::move(ids), std::move(scores)}; }
}  // namespace

TEST(Rrf, HandComputedScoresAndTracing) {
    const std::vector<Ranking> in = {ranking({"a", "b", "c"}, {9, 5, 1}), ranking({"c", "d"}, {0.9, 0.8})};
    const FusedResult f = rrf(in, 60.0);
    // c: 1/63 + 1/61; a: 1/61; d: 1/62; b: 1/62 -> tie between b and d broken by best rank (both 2), then id.
    ASSERT_EQ(f.ids, (std::vector<std::string>{"c", "a", "b", "d"}));
    EXPECT_FLOAT_EQ(f.scores[0], static_cast<float>(1.0 / 63 + 1.0 / 61));
    EXPECT_FLOAT_EQ(f.scores[1], static_cast<float>(1.0 / 61));
    EXPECT_FLOAT_EQ(f.scores[2], static_cast<float>(1.0 / 62));
    ASSERT_EQ(f.n_retrievers, 2u);
    EXPECT_EQ(f.ranks, (std::vector<std::int32_t>{3, 1, 1, 0, 2, 0, 0, 2}));
    EXPECT_FLOAT_EQ(f.input_scores[0], 1.f);
    EXPECT_FLOAT_EQ(f.input_scores[1], 0.9f);
    EXPECT_TRUE(std::isnan(f.input_scores[3]));  // a is absent from ranking 1
    EXPECT_FLOAT_EQ(f.input_scores[4], 5.f);
}

TEST(Rrf, WeightsKAndTopK) {
    const std::vector<Ranking> in = {ranking({"a", "b"}, {2, 1}), ranking({"b", "a"}, {2, 1})};
    const std::vector<double> w = {1.0, 3.0};
    const FusedResult f = rrf(in, 0.0, &w, 1);
    ASSERT_EQ(f.ids, std::vector<std::string>{"b"});
    EXPECT_FLOAT_EQ(f.scores[0], 1.0f / 2 + 3.0f);
    EXPECT_EQ(rrf(in, 60.0, nullptr, 0).ids.size(), 0u);
}

TEST(Rrf, TiesAreDeterministic) {
    // Symmetric inputs: every pair ties on score and best rank; order falls back to id.
    const std::vector<Ranking> in = {ranking({"z", "y"}, {1, 0}), ranking({"y", "z"}, {1, 0})};
    EXPECT_EQ(rrf(in).ids, (std::vector<std::string>{"y", "z"}));
    const std::vector<Ranking> swapped = {in[1], in[0]};
    EXPECT_EQ(rrf(swapped).ids, (std::vector<std::string>{"y", "z"}));
}

TEST(Rrf, InvalidInput) {
    EXPECT_THROW(rrf({}), InvalidArgument);
    EXPECT_THROW(rrf({ranking({"a", "b"}, {1})}), InvalidArgument);
    EXPECT_THROW(rrf({ranking({"a", "a"}, {1, 0})}), InvalidArgument);
    EXPECT_THROW(rrf({ranking({"a"}, {NAN})}), InvalidArgument);
    EXPECT_THROW(rrf({ranking({"a"}, {INFINITY})}), InvalidArgument);
    const std::vector<Ranking> one = {ranking({"a"}, {1})};
    std::vector<double> w = {1, 2};
    EXPECT_THROW(rrf(one, 60, &w), InvalidArgument);
    w = {-1};
    EXPECT_THROW(rrf(one, 60, &w), InvalidArgument);
    w = {0};
    EXPECT_THROW(rrf(one, 60, &w), InvalidArgument);
    EXPECT_THROW(rrf(one, -1), InvalidArgument);
    EXPECT_THROW(rrf(one, NAN), InvalidArgument);
}

TEST(Rrf, EmptyRankingsAreFine) {
    const FusedResult f = rrf({ranking({}, {}), ranking({"a"}, {3})});
    EXPECT_EQ(f.ids, std::vector<std::string>{"a"});
    EXPECT_EQ(f.ranks, (std::vector<std::int32_t>{0, 1}));
}

TEST(Convex, MinMaxHandComputed) {
    const std::vector<Ranking> in = {ranking({"a", "b", "c"}, {10, 6, 2}), ranking({"c", "d"}, {0.5, 0.1})};
    const std::vector<double> w = {1, 3};  // normalised to 0.25 / 0.75
    const FusedResult f = convex_fusion(in, &w, Normalization::MinMax);
    // a: .25*1; b: .25*.5; c: .25*0 + .75*1; d: .75*0
    ASSERT_EQ(f.ids, (std::vector<std::string>{"c", "a", "b", "d"}));
    EXPECT_FLOAT_EQ(f.scores[0], 0.75f);
    EXPECT_FLOAT_EQ(f.scores[1], 0.25f);
    EXPECT_FLOAT_EQ(f.scores[2], 0.125f);
    EXPECT_FLOAT_EQ(f.scores[3], 0.0f);
}

TEST(Convex, ConstantScoresAndZScore) {
    const FusedResult mm = convex_fusion({ranking({"a", "b"}, {4, 4})}, nullptr, Normalization::MinMax);
    EXPECT_EQ(mm.scores, (std::vector<float>{1.f, 1.f}));
    const FusedResult zc = convex_fusion({ranking({"a", "b"}, {4, 4})}, nullptr, Normalization::ZScore);
    EXPECT_EQ(zc.scores, (std::vector<float>{0.f, 0.f}));
    const FusedResult z = convex_fusion({ranking({"a", "b", "c"}, {3, 2, 1})}, nullptr, Normalization::ZScore);
    EXPECT_NEAR(z.scores[0], std::sqrt(1.5), 1e-6);
    EXPECT_NEAR(z.scores[2], -std::sqrt(1.5), 1e-6);
    EXPECT_THROW(funnelrank::parse_normalization("l2"), InvalidArgument);
}
