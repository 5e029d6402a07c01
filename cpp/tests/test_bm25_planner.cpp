// The BM25 query planner and the quantized-impact path (bm25_plan.cpp, bm25_impact.cpp): every strategy,
// forced or chosen, returns exactly what exhaustive scoring returns (ids and scores, ties by insertion
// order), with deletions, allow-lists, repeated query terms, degenerate parameters and in batches.
#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "analyzer.h"
#include "bm25_index.h"
#include "bm25_test_data.h"

using funnelrank::BM25Index;
using funnelrank::BM25Results;
using funnelrank::test::plain_analyzer;
using Strategy = funnelrank::BM25Index::Strategy;

namespace {

// Zipf-like vocabulary "t0".."t{V-1}", lengths in [min_len, max_len]; ids "d0", "d1", ...
void fill(BM25Index& index, std::mt19937& rng, std::size_t n, std::size_t vocab, std::size_t min_len,
          std::size_t max_len) {
    std::vector<double> w(vocab);
    for (std::size_t i = 0; i < vocab; ++i) w[i] = 1.0 / static_cast<double>(i + 1);
    std::discrete_distribution<std::size_t> term(w.begin(), w.end());
    std::uniform_int_distribution<std::size_t> len(min_len, max_len);
    std::vector<std::string> ids;
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < n; ++i) {
        std::string text;
        const std::size_t l = len(rng);
        for (std::size_t j = 0; j < l; ++j) text += "t" + std::to_string(term(rng)) + " ";
        ids.push_back("d" + std::to_string(i));
        texts.push_back(std::move(text));
    }
    const std::vector<std::string_view> views(texts.begin(), texts.end());
    index.add(ids, views);
}

std::vector<std::string> queries(std::mt19937& rng, std::size_t n, std::size_t vocab, std::size_t max_terms = 8) {
    std::uniform_int_distribution<std::size_t> len(1, max_terms);
    std::uniform_int_distribution<std::size_t> term(0, vocab + 3);  // a few unknown terms
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::string q;
        for (std::size_t j = len(rng); j > 0; --j) q += "t" + std::to_string(term(rng)) + " ";
        out.push_back(q);
    }
    return out;
}

void expect_same(const BM25Results& a, const BM25Results& b, const std::string& what) {
    ASSERT_EQ(a.ids, b.ids) << what;
    ASSERT_EQ(a.scores, b.scores) << what;
    ASSERT_EQ(a.exact_scores, b.exact_scores) << what;
}

const Strategy kAll[] = {Strategy::kAuto, Strategy::kDense, Strategy::kMaxScore, Strategy::kImpact};

void check_all_strategies(BM25Index& index, const std::vector<std::string>& qs,
                          const std::vector<std::string>* allow = nullptr) {
    for (const Strategy s : kAll) {
        index.set_strategy(s);
        for (const auto& q : qs) {
            for (const std::size_t k : {1, 3, 10, 100, 5000}) {
                expect_same(index.search(q, k, allow), index.search_exhaustive(q, k, allow),
                            q + " k=" + std::to_string(k) + " strategy=" + std::to_string(static_cast<int>(s)));
            }
        }
    }
    index.set_strategy(Strategy::kAuto);
}

}  // namespace

TEST(BM25Planner, EveryStrategyEqualsExhaustive) {
    std::mt19937 rng(27);
    for (int round = 0; round < 3; ++round) {
        BM25Index index(1.2, 0.75, plain_analyzer());
        fill(index, rng, 2000 + 3000 * static_cast<std::size_t>(round), 200, 0, 60);
        index.set_dense_max_docs(round == 0 ? BM25Index::kDefaultDenseMaxDocs : 0);  // auto: dense, then not
        check_all_strategies(index, queries(rng, 40, 200));
    }
}

TEST(BM25Planner, ImpactPathWithDeletionsAndAllowLists) {
    std::mt19937 rng(3);
    BM25Index index(1.2, 0.75, plain_analyzer());
    fill(index, rng, 6000, 150, 1, 50);
    std::vector<std::string> gone;
    for (std::size_t i = 0; i < 6000; i += 7) gone.push_back("d" + std::to_string(i));  // < 1/4: no compaction
    index.remove(gone);
    const auto qs = queries(rng, 30, 150);
    check_all_strategies(index, qs);
    for (const std::size_t n_allow : {5, 300, 4000}) {
        std::vector<std::string> allow;
        for (std::size_t i = 0; i < n_allow; ++i) allow.push_back("d" + std::to_string((i * 7919) % 6000));
        check_all_strategies(index, qs, &allow);
    }
}

TEST(BM25Planner, ImpactPathTiesAndDegenerateParameters) {
    // Equal lengths and tf: every impact of a list equal (a zero quantization step) and long runs of tied
    // scores around the k-th; k1 = 0 (impacts all 1) and b = 0; repeated query terms (large weights).
    for (const auto& [k1, b] : {std::pair{1.2, 0.75}, std::pair{0.0, 0.75}, std::pair{1.2, 0.0},
                                std::pair{BM25Index::kMaxK1, 1.0}}) {
        BM25Index index(k1, b, plain_analyzer());
        std::vector<std::string> ids;
        std::vector<std::string> texts;
        for (int i = 0; i < 3000; ++i) {
            ids.push_back("d" + std::to_string(i));
            texts.push_back(i % 3 == 0 ? "alpha beta" : (i % 3 == 1 ? "alpha gamma" : "beta gamma"));
        }
        const std::vector<std::string_view> views(texts.begin(), texts.end());
        index.add(ids, views);
        check_all_strategies(index, {"alpha", "alpha beta", "gamma gamma gamma beta", "alpha alpha alpha alpha"});
        BM25Index mixed(k1, b, plain_analyzer());  // mixed lengths
        std::mt19937 rng(9);
        fill(mixed, rng, 3000, 40, 1, 30);
        check_all_strategies(mixed, queries(rng, 10, 40));
    }
}

TEST(BM25Planner, ImpactPathManyTermsAndLongLists) {
    std::mt19937 rng(41);
    BM25Index index(1.2, 0.75, plain_analyzer());
    fill(index, rng, 20000, 500, 5, 80);
    index.set_dense_max_docs(0);
    check_all_strategies(index, queries(rng, 12, 500, 40));
}

TEST(BM25Planner, PlanFollowsPostingVolume) {
    std::mt19937 rng(1);
    BM25Index index(1.2, 0.75, plain_analyzer());
    fill(index, rng, 5000, 2000, 10, 40);
    index.add({"rare"}, {"zzrare"});
    EXPECT_EQ(index.plan("t0 t1", 10), "dense");  // small corpus
    index.set_dense_max_docs(0);
    EXPECT_EQ(index.plan("t0 t1", 10), "impact");       // the most frequent terms: most documents
    EXPECT_EQ(index.plan("zzrare", 10), "maxscore");    // a rare term: a few postings
    EXPECT_EQ(index.plan("unknownterm", 10), "empty");
    EXPECT_EQ(index.plan("t0 t1", 1000), "maxscore");   // k too large against the corpus for the bounds
    index.set_strategy(Strategy::kImpact);
    EXPECT_EQ(index.plan("zzrare", 10), "impact");
    EXPECT_EQ(index.strategy(), Strategy::kImpact);
    EXPECT_THROW(index.set_strategy(static_cast<Strategy>(9)), funnelrank::InvalidArgument);
    EXPECT_THROW(index.plan("t0", 0), funnelrank::InvalidArgument);
}

TEST(BM25Planner, BatchOnThreadsEqualsSingleQueries) {
    std::mt19937 rng(8);
    BM25Index index(1.2, 0.75, plain_analyzer());
    fill(index, rng, 8000, 300, 1, 50);
    index.set_dense_max_docs(0);
    const auto qs = queries(rng, 64, 300);
    for (const Strategy s : kAll) {
        index.set_strategy(s);
        for (const unsigned threads : {1u, 2u, 4u}) {
            const auto batch = index.search_batch(qs, 10, threads);
            ASSERT_EQ(batch.size(), qs.size());
            for (std::size_t i = 0; i < qs.size(); ++i) expect_same(batch[i], index.search_exhaustive(qs[i], 10), qs[i]);
        }
    }
}
