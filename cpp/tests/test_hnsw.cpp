#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "errors.h"
#include "file_io.h"
#include "hnsw_index.h"
#include "inner_product.h"
#include "temp_dir.h"

using funnelrank::HNSWIndex;
using funnelrank::HNSWParams;
using funnelrank::IndexFileError;
using funnelrank::InvalidArgument;
using funnelrank::Metric;
using funnelrank::NotFound;
using funnelrank::SearchHits;

namespace {

// Samples from a fixed gaussian mixture (the same centres for every call with the same dim, so data
// and queries drawn with different seeds share clusters): nearest neighbours are meaningful.
std::vector<float> clustered(std::size_t n, std::size_t dim, std::uint32_t seed, std::size_t clusters = 50) {
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

std::vector<std::string> make_ids(std::size_t n, const std::string& prefix = "doc") {
    std::vector<std::string> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = prefix + std::to_string(i);
    return ids;
}

HNSWParams params(std::size_t dim, Metric metric = Metric::Cosine) {
    HNSWParams p;
    p.dim = dim;
    p.metric = metric;
    p.initial_capacity = 16;  // exercise growth
    return p;
}

class HnswFileTest : public funnelrank::test::TempDirTest {
protected:
    HnswFileTest() : TempDirTest("index.hnsw") {}
};

}  // namespace

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

TEST_F(HnswFileTest, SaveLoadAnswersIdentically) {
    const std::size_t n = 1500, dim = 20;
    const auto data = clustered(n, dim, 16);
    HNSWParams p = params(dim);
    p.ef_search = 33;
    HNSWIndex index(p);
    const auto ids = make_ids(n);
    index.add(ids, data.data(), n);
    index.remove({"doc3", "doc4", "doc5"});
    index.save(path_);
    const HNSWIndex loaded = HNSWIndex::load(path_);
    EXPECT_EQ(loaded.size(), index.size());
    EXPECT_EQ(loaded.capacity(), index.capacity());
    EXPECT_EQ(loaded.ids(), index.ids());
    EXPECT_EQ(loaded.ef_search(), 33u);
    EXPECT_EQ(loaded.metric(), Metric::Cosine);
    EXPECT_FALSE(loaded.contains("doc4"));
    const auto queries = clustered(30, dim, 17);
    std::vector<std::string> allow(ids.begin(), ids.begin() + 100);
    for (std::size_t q = 0; q < 30; ++q) {
        const float* v = queries.data() + q * dim;
        const auto a = index.search(v, 10), b = loaded.search(v, 10);
        EXPECT_EQ(a.ids, b.ids);
        EXPECT_EQ(a.scores, b.scores);
        EXPECT_EQ(index.search(v, 5, 0, &allow).ids, loaded.search(v, 5, 0, &allow).ids);
    }
}

TEST_F(HnswFileTest, LoadedIndexKeepsGrowingAndReusingSlots) {
    const std::size_t dim = 8;
    const auto data = clustered(300, dim, 18);
    HNSWIndex index(params(dim));
    index.add(make_ids(200), data.data(), 200);
    index.remove({"doc0", "doc1"});
    index.save(path_);
    HNSWIndex loaded = HNSWIndex::load(path_);
    const std::size_t capacity = loaded.capacity();
    loaded.add({"x", "y"}, data.data() + 200 * dim, 2);  // reuses the two deleted slots
    EXPECT_EQ(loaded.capacity(), capacity);
    EXPECT_EQ(loaded.search(data.data() + 201 * dim, 1).ids, std::vector<std::string>{"y"});
    loaded.add(make_ids(98, "more"), data.data() + 202 * dim, 98);
    EXPECT_EQ(loaded.size(), 298u);
}

TEST_F(HnswFileTest, TruncatedOrCorruptFilesAreRejected) {
    const std::size_t n = 300, dim = 8;
    HNSWIndex index(params(dim));
    index.add(make_ids(n), clustered(n, dim, 19).data(), n);
    index.save(path_);
    const std::string good = read_raw();
    ASSERT_GT(good.size(), 1000u);
    for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{12}, good.size() / 3, good.size() / 2,
                            good.size() - 21, good.size() - 1}) {
        write_raw(good.substr(0, cut));
        EXPECT_THROW(HNSWIndex::load(path_), IndexFileError) << "cut at " << cut;
    }
    for (std::size_t pos : {std::size_t{3}, std::size_t{20}, std::size_t{100}, good.size() / 2, good.size() - 30,
                            good.size() - 3}) {
        std::string bad = good;
        bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
        write_raw(bad);
        EXPECT_THROW(HNSWIndex::load(path_), IndexFileError) << "flip at " << pos;
    }
    write_raw(good);
    EXPECT_NO_THROW(HNSWIndex::load(path_));
}

TEST_F(HnswFileTest, MissingFileNamesThePath) {
    const std::string missing = (dir_ / "nope.hnsw").string();
    try {
        HNSWIndex::load(missing);
        FAIL() << "expected IndexFileError";
    } catch (const IndexFileError& e) {
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
}

TEST_F(HnswFileTest, SaveOfEmptyIndexRoundTrips) {
    HNSWIndex index(params(5));
    index.save(path_);
    HNSWIndex loaded = HNSWIndex::load(path_);
    EXPECT_EQ(loaded.size(), 0u);
    const std::vector<float> v = {1, 2, 3, 4, 5};
    EXPECT_TRUE(loaded.search(v.data(), 3).ids.empty());
    loaded.add({"a"}, v.data(), 1);
    EXPECT_EQ(loaded.search(v.data(), 3).ids, std::vector<std::string>{"a"});
}

namespace {
// Overwrites the u64 at `offset` of an index file's bytes and recomputes its checksum (file_io.h layout:
// 12-byte header, payload, then u64 payload size, u32 CRC-32 of the payload, 8-byte end marker).
void forge_u64(std::string& file, std::size_t offset, std::uint64_t value) {
    std::memcpy(&file[offset], &value, sizeof value);
    constexpr std::size_t kHeader = 12, kTrailer = 20;
    const std::size_t payload = file.size() - kHeader - kTrailer;
    const std::uint32_t crc = funnelrank::io::crc32(0, file.data() + kHeader, payload);
    std::memcpy(&file[file.size() - kTrailer + 8], &crc, sizeof crc);
}
constexpr std::size_t kCapacityOffset = 12 + 8 + 4 + 4 * 8;  // after dim, metric, M, ef_c, ef_s, seed
}  // namespace

TEST_F(HnswFileTest, ForgedCapacityIsNotAllocated) {
    // A 32 KB file claiming 10^7 slots used to allocate them all up front (460 MB; 5 x 10^7: 2.1 GB)
    // before reading a single element. The claim is capped by what the file's bytes back.
    const std::size_t n = 180, dim = 8;
    HNSWIndex index(params(dim));
    index.add(make_ids(n), clustered(n, dim, 40).data(), n, 1);
    index.save(path_);
    std::string bytes = read_raw();
    ASSERT_LT(bytes.size(), 40000u);
    std::uint64_t saved = 0;
    std::memcpy(&saved, &bytes[kCapacityOffset], sizeof saved);
    ASSERT_EQ(saved, index.capacity());  // the offset is the capacity field
    for (const std::uint64_t claim :
         {std::uint64_t{10'000'000}, std::uint64_t{50'000'000}, std::uint64_t{0xFFFFFFFFu}}) {
        forge_u64(bytes, kCapacityOffset, claim);
        write_raw(bytes);
        HNSWIndex loaded = HNSWIndex::load(path_);  // a consistent file (checksum recomputed): it loads ...
        EXPECT_LT(loaded.capacity(), std::size_t{200'000}) << "claim " << claim;  // ... without the claim
        EXPECT_GE(loaded.capacity(), n);
        EXPECT_EQ(loaded.ids(), index.ids());
        const auto q = clustered(1, dim, 41);
        EXPECT_EQ(loaded.search(q.data(), 5).ids, index.search(q.data(), 5).ids);
        loaded.add({"new"}, q.data(), 1);  // and keeps growing on demand
        EXPECT_TRUE(loaded.contains("new"));
    }
    forge_u64(bytes, kCapacityOffset, std::uint64_t{1} << 40);  // beyond hnswlib's 32-bit ids
    write_raw(bytes);
    EXPECT_THROW(HNSWIndex::load(path_), IndexFileError);
}

TEST_F(HnswFileTest, CapacityWithinTheLoadBoundRoundTrips) {
    HNSWParams p = params(8);
    p.initial_capacity = 5000;  // well above 2 x elements, within 32 MiB of slots
    HNSWIndex index(p);
    index.add(make_ids(10), clustered(10, 8, 42).data(), 10, 1);
    index.save(path_);
    EXPECT_EQ(HNSWIndex::load(path_).capacity(), 5000u);
}

TEST_F(HnswFileTest, ForgedCountsAndParametersAreRejected) {
    const std::size_t n = 50, dim = 8;
    HNSWIndex index(params(dim));
    index.add(make_ids(n), clustered(n, dim, 43).data(), n, 1);
    index.save(path_);
    const std::string good = read_raw();
    const std::size_t count_offset = kCapacityOffset + 8;
    // (offset, value): element count beyond the file, then beyond capacity; ef_search / ef_construction /
    // M / dim beyond their bounds; the level-0 row size.
    const std::vector<std::pair<std::size_t, std::uint64_t>> forgeries = {
        {count_offset, 1'000'000},      {count_offset, std::uint64_t{1} << 62},
        {kCapacityOffset, 10},          {12 + 8 + 4 + 16, std::uint64_t{1} << 40},
        {12 + 8 + 4 + 8, std::uint64_t{1} << 40}, {12 + 8 + 4, 1 << 20},
        {12, std::uint64_t{1} << 30},   {count_offset + 8, 1u << 20},
    };
    for (const auto& [offset, value] : forgeries) {
        std::string bad = good;
        forge_u64(bad, offset, value);
        write_raw(bad);
        EXPECT_THROW(HNSWIndex::load(path_), IndexFileError) << "offset " << offset << " value " << value;
    }
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

namespace {
// Replaces the payload of an index file's bytes from `from` (an offset into the file) to its end, then
// rewrites the trailer (size, CRC-32): a consistent file with forged contents.
std::string forge_payload_tail(const std::string& file, std::size_t from, const std::string& tail) {
    constexpr std::size_t kHeader = 12;
    std::string out = file.substr(0, from) + tail;
    const std::uint64_t payload = out.size() - kHeader;
    const std::uint32_t crc = funnelrank::io::crc32(0, out.data() + kHeader, payload);
    out.append(reinterpret_cast<const char*>(&payload), sizeof payload);
    out.append(reinterpret_cast<const char*>(&crc), sizeof crc);
    out += "FRK-END!";
    return out;
}
}  // namespace

TEST_F(HnswFileTest, ForgedVectorsAndGeneratorStatesAreRejected) {
    const std::size_t n = 30, dim = 8;
    HNSWParams p = params(dim);
    HNSWIndex index(p);
    index.add(make_ids(n), clustered(n, dim, 45).data(), n, 1);
    index.save(path_);
    const std::string good = read_raw();
    // The last payload field is the generators' state as text: u64 length, then the text.
    const std::size_t payload_end = good.size() - 20;
    std::size_t text_size = 0;
    for (std::size_t len = 1; len < 200 && text_size == 0; ++len) {
        std::uint64_t stored = 0;
        std::memcpy(&stored, &good[payload_end - len - 8], sizeof stored);
        if (stored == len) text_size = len;
    }
    ASSERT_GT(text_size, 0u);
    const std::size_t rng_at = payload_end - text_size - 8;
    const auto with_rng = [&](const std::string& text) {
        std::string field(8, '\0');
        const std::uint64_t len = text.size();
        std::memcpy(&field[0], &len, sizeof len);
        return forge_payload_tail(good, rng_at, field + text);
    };
    write_raw(with_rng(good.substr(rng_at + 8, text_size)));  // the helper itself changes nothing
    EXPECT_NO_THROW(HNSWIndex::load(path_));
    // An engine state of 0 (or a multiple of the modulus) returns 0 forever; trailing text; no number.
    for (const std::string bad : {"0 5", "5 0", "2147483647 5", "5 5 junk", "x 5", "5"}) {
        write_raw(with_rng(bad));
        EXPECT_THROW(HNSWIndex::load(path_), IndexFileError) << bad;
    }
    // A NaN or infinite coordinate in a stored vector (row 0; its vector follows the link count and 2M links).
    const std::size_t vector_at = 12 + 5 * 8 + 4 + 3 * 8 + 4 + 4 + 4 + 2 * p.M * 4;
    for (const float bad : {std::nanf(""), INFINITY}) {
        std::string forged = good;
        std::memcpy(&forged[vector_at + 4], &bad, sizeof bad);
        forged = forge_payload_tail(forged, payload_end, "");
        write_raw(forged);
        EXPECT_THROW(HNSWIndex::load(path_), IndexFileError);
    }
    {
        std::string finite = good;  // a finite change in the same place is a valid (different) vector
        const float value = 0.25f;
        std::memcpy(&finite[vector_at + 4], &value, sizeof value);
        write_raw(forge_payload_tail(finite, payload_end, ""));
        EXPECT_EQ(HNSWIndex::load(path_).size(), n);
    }
}

TEST(Hnsw, NonUtf8IdsAreRejected) {
    HNSWIndex index(params(2));
    const std::vector<float> v = {1, 2, 3, 4};
    EXPECT_THROW(index.add({"ok", "bad\xc3"}, v.data(), 2), InvalidArgument);
    EXPECT_EQ(index.size(), 0u);
    index.add({"ok", "caf\xc3\xa9"}, v.data(), 2);
    EXPECT_EQ(index.size(), 2u);
}
