// HNSWIndex: the inner-product kernels, recall, deletes and slot reuse, filtered and batch search, parameter
// bounds. The file format's tests are in test_hnsw_file.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "errors.h"
#include "hnsw_index.h"
#include "hnsw_test_data.h"
#include "inner_product.h"

using funnelrank::HNSWIndex;
using funnelrank::HNSWParams;
using funnelrank::InvalidArgument;
using funnelrank::Metric;
using funnelrank::NotFound;
using funnelrank::SearchHits;

using funnelrank::test::clustered;
using funnelrank::test::make_ids;
using funnelrank::test::params;

TEST(InnerProduct, KernelsAgreeWithScalarForEveryTailLength) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    const auto fn = funnelrank::best_inner_product();
    for (std::size_t dim = 1; dim <= 70; ++dim) {
        std::vector<float> a(dim), b(dim);
        for (auto& x : a) x = normal(rng);
        for (auto& x : b) x = normal(rng);
        double exact = 0;
        for (std::size_t i = 0; i < dim; ++i) exact += static_cast<double>(a[i]) * b[i];
        EXPECT_NEAR(fn(a.data(), b.data(), dim), exact, 1e-4 * (1 + std::abs(exact))) << "dim " << dim;
        EXPECT_NEAR(funnelrank::inner_product_scalar(a.data(), b.data(), dim), exact, 1e-4 * (1 + std::abs(exact)));
    }
}

TEST(InnerProduct, FourAtOnceIsBitIdenticalToOneAtATime) {
    // The graph walk mixes both forms (groups of four, then the rest one by one), and search results are
    // compared with exact search's: every distance must be the same float whichever form computed it.
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.f, 1.f);
    const auto one = funnelrank::best_inner_product_distance();
    const auto four = funnelrank::best_inner_product_distance4();
    std::vector<std::size_t> dims;
    for (std::size_t dim = 1; dim <= 140; ++dim) dims.push_back(dim);
    dims.insert(dims.end(), {384, 385, 768, 1024});
    for (const std::size_t dim : dims) {
        std::vector<float> a(dim);
        std::vector<std::vector<float>> b(4, std::vector<float>(dim));
        for (auto& x : a) x = normal(rng);
        for (auto& v : b)
            for (auto& x : v) x = normal(rng);
        const float* rows[4] = {b[0].data(), b[1].data(), b[2].data(), b[3].data()};
        float got[4];
        four(a.data(), rows, dim, got);
        for (std::size_t v = 0; v < 4; ++v) {
            const float want = one(a.data(), rows[v], &dim);
            EXPECT_EQ(std::memcmp(&got[v], &want, sizeof want), 0)
                << "dim " << dim << " vector " << v << ": " << got[v] << " vs " << want;
        }
    }
}

TEST(Hnsw, RecallAgainstExactSearchAtDefaultParams) {
    const std::size_t n = 5000, dim = 48, nq = 100, k = 10;
    const auto data = clustered(n, dim, 1);
    const auto queries = clustered(nq, dim, 2);
    HNSWIndex index(params(dim));
    index.add(make_ids(n), data.data(), n);
    EXPECT_EQ(index.size(), n);
    std::size_t hits = 0;
    for (std::size_t q = 0; q < nq; ++q) {
        const SearchHits approx = index.search(queries.data() + q * dim, k);
        const SearchHits exact = index.search_exact(queries.data() + q * dim, k);
        ASSERT_EQ(approx.ids.size(), k);
        const std::set<std::string> truth(exact.ids.begin(), exact.ids.end());
        for (const auto& id : approx.ids) hits += truth.count(id);
        for (std::size_t i = 1; i < k; ++i) EXPECT_GE(approx.scores[i - 1], approx.scores[i]);
    }
    EXPECT_GE(static_cast<double>(hits) / (nq * k), 0.95);
}

TEST(Hnsw, CosineScoresAreCosineSimilarities) {
    HNSWIndex index(params(3));
    const std::vector<float> v = {3, 0, 0, 0, 2, 2, 1, 1, 0};
    index.add({"x", "y", "xy"}, v.data(), 3);
    const std::vector<float> q = {10, 10, 0};
    const SearchHits h = index.search(q.data(), 3);
    ASSERT_EQ(h.ids, (std::vector<std::string>{"xy", "x", "y"}));
    EXPECT_NEAR(h.scores[0], 1.0f, 1e-6);
    EXPECT_NEAR(h.scores[1], std::sqrt(0.5f), 1e-6);
    EXPECT_NEAR(h.scores[2], 0.5f, 1e-6);
}

TEST(Hnsw, InnerProductUsesRawVectors) {
    HNSWIndex index(params(2, Metric::InnerProduct));
    const std::vector<float> v = {1, 0, 5, 0};
    index.add({"small", "big"}, v.data(), 2);
    const std::vector<float> q = {2, 1};
    const SearchHits h = index.search(q.data(), 2);
    ASSERT_EQ(h.ids, (std::vector<std::string>{"big", "small"}));
    EXPECT_FLOAT_EQ(h.scores[0], 10.f);
    EXPECT_FLOAT_EQ(h.scores[1], 2.f);
}

TEST(Hnsw, VectorsReturnsWhatIsStoredAndCopiesIntoAnEqualIndex) {
    HNSWIndex cosine(params(2));
    const std::vector<float> v = {3, 4, 0, 2, 1, 1};
    cosine.add({"a", "b", "c"}, v.data(), 3);
    const std::vector<float> got = cosine.vectors({"c", "a"});
    ASSERT_EQ(got.size(), 4u);
    EXPECT_NEAR(got[0], std::sqrt(0.5f), 1e-6);  // c, normalised
    EXPECT_NEAR(got[1], std::sqrt(0.5f), 1e-6);
    EXPECT_NEAR(got[2], 0.6f, 1e-6);  // a = (3, 4) / 5
    EXPECT_NEAR(got[3], 0.8f, 1e-6);
    EXPECT_TRUE(cosine.vectors({}).empty());
    EXPECT_THROW(cosine.vectors({"a", "missing"}), NotFound);
    cosine.remove({"b"});
    EXPECT_THROW(cosine.vectors({"b"}), NotFound);

    HNSWIndex ip(params(2, Metric::InnerProduct));
    ip.add({"big"}, v.data(), 1);
    EXPECT_EQ(ip.vectors({"big"}), (std::vector<float>{3, 4}));

    // Copying every vector into a new index gives the same search results.
    const std::vector<float> data = clustered(300, 8, 7);
    HNSWIndex one(params(8));
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < 300; ++i) ids.push_back("d" + std::to_string(i));
    one.add(ids, data.data(), 300);
    const std::vector<float> copied = one.vectors(ids);
    HNSWIndex two(params(8));
    two.add(ids, copied.data(), 300);
    const std::vector<float> q = clustered(1, 8, 99);
    const SearchHits a = one.search_exact(q.data(), 10), b = two.search_exact(q.data(), 10);
    EXPECT_EQ(a.ids, b.ids);
    for (std::size_t i = 0; i < a.scores.size(); ++i) EXPECT_NEAR(a.scores[i], b.scores[i], 1e-6);
}

TEST(Hnsw, InvalidAddChangesNothing) {
    const std::size_t dim = 4;
    HNSWIndex index(params(dim));
    const std::vector<float> ok = {1, 2, 3, 4};
    index.add({"a"}, ok.data(), 1);
    std::vector<float> two = {1, 0, 0, 0, 0, 1, 0, 0};
    EXPECT_THROW(index.add({"b", "b"}, two.data(), 2), InvalidArgument);
    EXPECT_THROW(index.add({"a", "c"}, two.data(), 2), InvalidArgument);
    EXPECT_THROW(index.add({"", "c"}, two.data(), 2), InvalidArgument);
    EXPECT_THROW(index.add({"b"}, two.data(), 2), InvalidArgument);
    two[5] = std::nanf("");
    EXPECT_THROW(index.add({"b", "c"}, two.data(), 2), InvalidArgument);
    two[5] = INFINITY;
    EXPECT_THROW(index.add({"b", "c"}, two.data(), 2), InvalidArgument);
    two[5] = 0;  // second row is now all zeros
    EXPECT_THROW(index.add({"b", "c"}, two.data(), 2), InvalidArgument);
    EXPECT_EQ(index.size(), 1u);
    EXPECT_FALSE(index.contains("b"));
    EXPECT_EQ(index.ids(), std::vector<std::string>{"a"});
    // A zero vector is fine under inner product.
    HNSWIndex ip(params(dim, Metric::InnerProduct));
    EXPECT_NO_THROW(ip.add({"b", "c"}, two.data(), 2));
}

TEST(Hnsw, BadQueriesAndParams) {
    HNSWIndex index(params(2));
    const std::vector<float> v = {1, 0};
    index.add({"a"}, v.data(), 1);
    const std::vector<float> zero = {0, 0}, nan = {std::nanf(""), 1};
    EXPECT_THROW(index.search(zero.data(), 1), InvalidArgument);
    EXPECT_THROW(index.search(nan.data(), 1), InvalidArgument);
    HNSWParams p = params(0);
    EXPECT_THROW(HNSWIndex{p}, InvalidArgument);
    p = params(4);
    p.M = 1;
    EXPECT_THROW(HNSWIndex{p}, InvalidArgument);
    EXPECT_THROW(funnelrank::parse_metric("l2"), InvalidArgument);
}

TEST(Hnsw, DeletedIdsAreNeverReturned) {
    const std::size_t n = 2000, dim = 16;
    const auto data = clustered(n, dim, 3);
    HNSWIndex index(params(dim));
    const auto ids = make_ids(n);
    index.add(ids, data.data(), n);
    std::vector<std::string> gone;
    for (std::size_t i = 0; i < n; i += 2) gone.push_back(ids[i]);
    index.remove(gone);
    EXPECT_EQ(index.size(), n - gone.size());
    const std::set<std::string> gone_set(gone.begin(), gone.end());
    for (std::size_t q = 0; q < 50; ++q) {
        // Query with a deleted vector itself: its own slot would be the top hit if not excluded.
        const SearchHits h = index.search(data.data() + 2 * q * dim, 10);
        ASSERT_EQ(h.ids.size(), 10u);
        for (const auto& id : h.ids) EXPECT_EQ(gone_set.count(id), 0u) << id;
    }
    EXPECT_THROW(index.remove({"doc1", "nope"}), NotFound);
    EXPECT_TRUE(index.contains("doc1"));  // nothing deleted on error
    EXPECT_THROW(index.remove({"doc1", "doc1"}), InvalidArgument);
    EXPECT_THROW(index.remove({"doc0"}), NotFound);  // already deleted
}

TEST(Hnsw, DeleteEverythingThenSearchIsEmpty) {
    HNSWIndex index(params(2));
    const std::vector<float> v = {1, 0, 0, 1};
    index.add({"a", "b"}, v.data(), 2);
    index.remove({"a", "b"});
    EXPECT_TRUE(index.search(v.data(), 5).ids.empty());
    index.add({"a"}, v.data() + 2, 1);  // an id can come back after deletion
    EXPECT_EQ(index.search(v.data(), 5).ids, std::vector<std::string>{"a"});
}

TEST(Hnsw, SlotReuseKeepsCapacityBounded) {
    const std::size_t n = 1000, dim = 16;
    HNSWParams p = params(dim);
    p.initial_capacity = n;
    HNSWIndex index(p);
    index.add(make_ids(n), clustered(n, dim, 4).data(), n);
    const std::size_t capacity = index.capacity();
    EXPECT_EQ(capacity, n);
    for (int round = 0; round < 5; ++round) {
        const auto old_ids = make_ids(200, "r" + std::to_string(round - 1) + "_");
        std::vector<std::string> victims;
        for (std::size_t i = 0; i < 200; ++i) victims.push_back(round == 0 ? "doc" + std::to_string(i) : old_ids[i]);
        index.remove(victims);
        const auto fresh = clustered(200, dim, 10 + round);
        index.add(make_ids(200, "r" + std::to_string(round) + "_"), fresh.data(), 200);
        EXPECT_EQ(index.size(), n);
        EXPECT_EQ(index.capacity(), capacity);
        // A re-added vector is found as its own nearest neighbour.
        const SearchHits h = index.search(fresh.data() + 7 * dim, 1);
        ASSERT_EQ(h.ids.size(), 1u);
        EXPECT_EQ(h.ids[0], "r" + std::to_string(round) + "_7");
    }
}

TEST(Hnsw, RecallHoldsAfterHeavyDeleteAndReuse) {
    const std::size_t n = 3000, dim = 32;
    const auto data = clustered(n, dim, 5);
    HNSWIndex index(params(dim));
    auto ids = make_ids(n);
    index.add(ids, data.data(), n);
    std::vector<std::string> half(ids.begin(), ids.begin() + n / 2);
    index.remove(half);
    const auto replacement = clustered(n / 2, dim, 6);
    index.add(make_ids(n / 2, "new"), replacement.data(), n / 2);
    const auto queries = clustered(50, dim, 7);
    std::size_t hits = 0;
    for (std::size_t q = 0; q < 50; ++q) {
        const auto a = index.search(queries.data() + q * dim, 10);
        const auto e = index.search_exact(queries.data() + q * dim, 10);
        const std::set<std::string> truth(e.ids.begin(), e.ids.end());
        for (const auto& id : a.ids) hits += truth.count(id);
    }
    EXPECT_GE(static_cast<double>(hits) / 500.0, 0.95);
}

TEST(Hnsw, FilteredSearchReturnsKAllowedResults) {
    const std::size_t n = 4000, dim = 24;
    const auto data = clustered(n, dim, 8);
    HNSWIndex index(params(dim));
    const auto ids = make_ids(n);
    index.add(ids, data.data(), n);
    const auto queries = clustered(20, dim, 9);
    // Selective, medium and broad allow-lists, through the default choice, the graph walk and exact scoring.
    for (double crossover : {HNSWIndex::kDefaultFilterCrossover, 0.0, static_cast<double>(INFINITY)})
    for (std::size_t stride : {400, 37, 3}) {
        index.set_exact_filter_crossover(crossover);
        std::vector<std::string> allow;
        for (std::size_t i = 0; i < n; i += stride) allow.push_back(ids[i]);
        allow.push_back("not-in-index");
        const std::set<std::string> allowed(allow.begin(), allow.end());
        for (std::size_t q = 0; q < 20; ++q) {
            const SearchHits h = index.search(queries.data() + q * dim, 10, 0, &allow);
            ASSERT_EQ(h.ids.size(), std::min<std::size_t>(10, allow.size() - 1)) << "stride " << stride;
            for (const auto& id : h.ids) EXPECT_EQ(allowed.count(id), 1u);
            for (std::size_t i = 1; i < h.ids.size(); ++i) EXPECT_GE(h.scores[i - 1], h.scores[i]);
        }
    }
    EXPECT_THROW(index.set_exact_filter_crossover(-1.0), InvalidArgument);
    EXPECT_THROW(index.set_exact_filter_crossover(NAN), InvalidArgument);
    // Deleted ids in the allow-list are not returned; an allow-list of only unknown ids gives nothing.
    index.remove({"doc0", "doc400"});
    std::vector<std::string> allow = {"doc0", "doc400", "doc800"};
    EXPECT_EQ(index.search(queries.data(), 10, 0, &allow).ids, std::vector<std::string>{"doc800"});
    allow = {"zzz"};
    EXPECT_TRUE(index.search(queries.data(), 10, 0, &allow).ids.empty());
}

TEST(Hnsw, FilteredGraphSearchMatchesExactOnBroadFilters) {
    const std::size_t n = 4000, dim = 24;
    const auto data = clustered(n, dim, 10);
    HNSWIndex index(params(dim));
    const auto ids = make_ids(n);
    index.add(ids, data.data(), n);
    std::vector<std::string> allow;
    for (std::size_t i = 0; i < n; i += 2) allow.push_back(ids[i]);
    index.set_exact_filter_crossover(0.0);  // always the filtered graph walk
    ASSERT_EQ(index.exact_filter_threshold(64), 0u);
    const auto queries = clustered(30, dim, 11);
    std::size_t hits = 0;
    for (std::size_t q = 0; q < 30; ++q) {
        const auto h = index.search(queries.data() + q * dim, 10, 0, &allow);
        // Exact answer restricted to the allowed half.
        const auto e = index.search_exact(queries.data() + q * dim, 200);
        std::set<std::string> truth;
        for (const auto& id : e.ids) {
            if (std::stoul(id.substr(3)) % 2 == 0 && truth.size() < 10) truth.insert(id);
        }
        for (const auto& id : h.ids) hits += truth.count(id);
    }
    EXPECT_GE(static_cast<double>(hits) / 300.0, 0.95);
}

TEST(Hnsw, SearchBatchMatchesSingleSearch) {
    const std::size_t n = 2000, dim = 16, nq = 40;
    const auto data = clustered(n, dim, 12);
    HNSWIndex index(params(dim));
    index.add(make_ids(n), data.data(), n, 1);
    const auto queries = clustered(nq, dim, 13);
    const auto batch = index.search_batch(queries.data(), nq, 5, 0, 4);
    ASSERT_EQ(batch.size(), nq);
    for (std::size_t q = 0; q < nq; ++q) {
        const auto single = index.search(queries.data() + q * dim, 5);
        EXPECT_EQ(batch[q].ids, single.ids);
        EXPECT_EQ(batch[q].scores, single.scores);
    }
}

TEST(Hnsw, SingleThreadedBuildIsDeterministic) {
    const std::size_t n = 1500, dim = 16;
    const auto data = clustered(n, dim, 14);
    HNSWIndex a(params(dim)), b(params(dim));
    a.add(make_ids(n), data.data(), n, 1);
    b.add(make_ids(n), data.data(), n, 1);
    const auto queries = clustered(20, dim, 15);
    for (std::size_t q = 0; q < 20; ++q)
        EXPECT_EQ(a.search(queries.data() + q * dim, 10, 16).ids, b.search(queries.data() + q * dim, 10, 16).ids);
}

TEST(Hnsw, HugeKAndEfAreClampedToTheIndexSize) {
    const std::size_t n = 40, dim = 6;
    HNSWIndex index(params(dim));
    const auto data = clustered(n, dim, 44);
    index.add(make_ids(n), data.data(), n, 1);
    index.remove({"doc1"});
    const std::size_t huge_k = 1'000'000'000'000;  // used to reserve k + 1 heap entries: std::bad_alloc
    const std::size_t huge_ef = std::size_t{1} << 40;
    const SearchHits all = index.search_exact(data.data(), n);
    ASSERT_EQ(all.ids.size(), n - 1);
    EXPECT_EQ(index.search(data.data(), huge_k).ids, all.ids);
    EXPECT_EQ(index.search(data.data(), 3, huge_ef).ids, index.search(data.data(), 3, n).ids);
    EXPECT_EQ(index.search(data.data(), huge_k, huge_ef).ids, all.ids);
    EXPECT_EQ(index.search_exact(data.data(), huge_k).ids, all.ids);
    const auto batch = index.search_batch(data.data(), 2, huge_k, huge_ef, 1);
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].ids, all.ids);
    const std::vector<std::string> allow = {"doc0", "doc1", "doc2", "doc30"};
    EXPECT_EQ(index.search(data.data(), huge_k, huge_ef, &allow).ids.size(), 3u);
    index.set_exact_filter_crossover(0.0);  // the graph walk, with ef clamped
    EXPECT_EQ(index.search(data.data(), huge_k, huge_ef, &allow).ids.size(), 3u);
}

TEST(Hnsw, ParametersBeyondTheirBoundsAreRejected) {
    const auto rejects = [](auto change) {
        HNSWParams p = params(4);
        change(p);
        EXPECT_THROW(HNSWIndex{p}, InvalidArgument);
    };
    rejects([](HNSWParams& p) { p.ef_search = HNSWIndex::kMaxEfSearch + 1; });
    rejects([](HNSWParams& p) { p.ef_search = std::size_t{1} << 40; });
    rejects([](HNSWParams& p) { p.ef_construction = HNSWIndex::kMaxEfConstruction + 1; });
    rejects([](HNSWParams& p) { p.M = HNSWIndex::kMaxM + 1; });
    rejects([](HNSWParams& p) { p.dim = HNSWIndex::kMaxDim + 1; });
    rejects([](HNSWParams& p) { p.initial_capacity = std::size_t{1} << 40; });  // was std::bad_alloc
    HNSWParams ok = params(4);
    ok.ef_search = HNSWIndex::kMaxEfSearch;
    ok.ef_construction = HNSWIndex::kMaxEfConstruction;
    HNSWIndex index(ok);
    EXPECT_EQ(index.ef_search(), HNSWIndex::kMaxEfSearch);
    EXPECT_THROW(index.set_ef_search(HNSWIndex::kMaxEfSearch + 1), InvalidArgument);
    EXPECT_THROW(index.set_ef_search(0), InvalidArgument);
    index.set_ef_search(7);
    EXPECT_EQ(index.ef_search(), 7u);
}

TEST(Hnsw, NonUtf8IdsAreRejected) {
    HNSWIndex index(params(2));
    const std::vector<float> v = {1, 2, 3, 4};
    EXPECT_THROW(index.add({"ok", "bad\xc3"}, v.data(), 2), InvalidArgument);
    EXPECT_EQ(index.size(), 0u);
    index.add({"ok", "caf\xc3\xa9"}, v.data(), 2);
    EXPECT_EQ(index.size(), 2u);
}
