// HNSWIndex's vector storages (f16, int8): the encodings and kernels against portable references, recall with
// and without re-scoring, the version-2 file (round trips, the mapped re-scoring vectors, version-1 files,
// newer versions refused, corrupt blocks), and the memory accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "errors.h"
#include "file_io.h"
#include "hnsw_index.h"
#include "hnsw_test_data.h"
#include "temp_dir.h"
#include "vector_storage.h"

using funnelrank::HNSWIndex;
using funnelrank::HNSWParams;
using funnelrank::IndexFileError;
using funnelrank::InvalidArgument;
using funnelrank::Metric;
using funnelrank::VectorStorage;

using funnelrank::test::clustered;
using funnelrank::test::make_ids;
using funnelrank::test::params;

namespace {

constexpr VectorStorage kStorages[] = {VectorStorage::F32, VectorStorage::F16, VectorStorage::Int8};

HNSWParams storage_params(std::size_t dim, VectorStorage storage, Metric metric = Metric::Cosine) {
    HNSWParams p = params(dim, metric);
    p.storage = storage;
    return p;
}

std::vector<float> normal_vector(std::mt19937& rng, std::size_t dim, float scale = 1.f) {
    std::normal_distribution<float> normal(0.f, scale);
    std::vector<float> v(dim);
    for (float& x : v) x = normal(rng);
    return v;
}

// Mean recall@k of index.search against exact search over the float32 data (cosine).
double recall(const HNSWIndex& index, const std::vector<float>& data, std::size_t n, const std::vector<float>& queries,
              std::size_t nq, std::size_t dim, std::size_t k, std::size_t ef) {
    std::size_t hits = 0;
    std::vector<double> norms(n);
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0;
        for (std::size_t j = 0; j < dim; ++j) s += static_cast<double>(data[i * dim + j]) * data[i * dim + j];
        norms[i] = std::sqrt(s);
    }
    for (std::size_t q = 0; q < nq; ++q) {
        const float* v = queries.data() + q * dim;
        std::vector<std::pair<double, std::size_t>> scored(n);
        for (std::size_t i = 0; i < n; ++i) {
            double s = 0;
            for (std::size_t j = 0; j < dim; ++j) s += static_cast<double>(v[j]) * data[i * dim + j];
            scored[i] = {-s / norms[i], i};
        }
        std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(k), scored.end());
        std::set<std::string> truth;
        for (std::size_t i = 0; i < k; ++i) truth.insert("doc" + std::to_string(scored[i].second));
        for (const std::string& id : index.search(v, k, ef).ids) hits += truth.count(id);
    }
    return static_cast<double>(hits) / static_cast<double>(nq * k);
}

class HnswStorageFileTest : public funnelrank::test::TempDirTest {
protected:
    HnswStorageFileTest() : TempDirTest("index.hnsw") {}
};

// Recomputes an index file's trailer (payload size and CRC-32) after its payload was edited.
void reseal(std::string& file) {
    constexpr std::size_t kHeader = 12, kTrailer = 20;
    const std::uint64_t payload = file.size() - kHeader - kTrailer;
    const std::uint32_t crc = funnelrank::io::crc32(0, file.data() + kHeader, payload);
    std::memcpy(&file[file.size() - kTrailer], &payload, sizeof payload);
    std::memcpy(&file[file.size() - kTrailer + 8], &crc, sizeof crc);
}

constexpr std::size_t kStorageOffset = 12 + 8 + 4 + 4 * 8;  // after dim, metric, M, ef_c, ef_s, seed

}  // namespace

TEST(VectorStorage, NamesRoundTripAndUnknownOnesAreRejected) {
    for (const VectorStorage s : kStorages) EXPECT_EQ(funnelrank::parse_storage(funnelrank::storage_name(s)), s);
    EXPECT_THROW(funnelrank::parse_storage("bf16"), InvalidArgument);
    EXPECT_EQ(funnelrank::stored_vector_bytes(VectorStorage::F32, 384), 1536u);
    EXPECT_EQ(funnelrank::stored_vector_bytes(VectorStorage::F16, 384), 768u);
    EXPECT_EQ(funnelrank::stored_vector_bytes(VectorStorage::Int8, 384), 388u);
}

TEST(VectorStorage, HalfConversionRoundsToNearestEvenAndRoundTrips) {
    using funnelrank::float_to_half;
    using funnelrank::half_to_float;
    // Every finite half survives half -> float -> half.
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        if ((h & 0x7c00u) == 0x7c00u) continue;
        EXPECT_EQ(float_to_half(half_to_float(static_cast<std::uint16_t>(h))), h) << h;
    }
    EXPECT_EQ(half_to_float(float_to_half(1.f)), 1.f);
    EXPECT_EQ(half_to_float(float_to_half(65504.f)), 65504.f);
    EXPECT_TRUE(std::isinf(half_to_float(float_to_half(65520.f))));   // rounds up to infinity
    EXPECT_EQ(half_to_float(float_to_half(1.f + 1.f / 2048)), 1.f);   // a tie: to even (down)
    EXPECT_EQ(half_to_float(float_to_half(1.f + 3.f / 2048)), 1.f + 1.f / 512);  // a tie: to even (up)
    EXPECT_EQ(half_to_float(float_to_half(1.f + 3.f / 4096)), 1.f + 1.f / 1024);  // not a tie: to nearest
    EXPECT_EQ(half_to_float(float_to_half(-0.f)), 0.f);
    EXPECT_EQ(half_to_float(float_to_half(1e-8f)), 0.f);               // below half the smallest subnormal
    EXPECT_EQ(half_to_float(float_to_half(6e-8f)), std::ldexp(1.f, -24));  // the smallest subnormal
    // Relative error of normal values within 2^-11.
    std::mt19937 rng(3);
    for (const float x : normal_vector(rng, 10000, 100.f)) {
        if (std::fabs(x) < 1e-4f) continue;
        EXPECT_NEAR(half_to_float(float_to_half(x)), x, std::fabs(x) / 2048.f) << x;
    }
}

TEST(VectorStorage, Int8EncodingIsSymmetricPerVectorScale) {
    const std::vector<float> v = {0.5f, -1.f, 0.25f, 0.f, 1.f / 127.f};
    std::vector<unsigned char> code(funnelrank::stored_vector_bytes(VectorStorage::Int8, v.size()));
    funnelrank::encode_vector(VectorStorage::Int8, v.data(), v.size(), code.data());
    std::vector<float> back(v.size());
    funnelrank::decode_vector(VectorStorage::Int8, code.data(), v.size(), back.data());
    for (std::size_t j = 0; j < v.size(); ++j) EXPECT_NEAR(back[j], v[j], 0.5f / 127.f) << j;
    EXPECT_FLOAT_EQ(back[1], -1.f);  // the largest magnitude is exact
    const std::vector<float> zero(7, 0.f);
    std::vector<unsigned char> zcode(funnelrank::stored_vector_bytes(VectorStorage::Int8, 7));
    funnelrank::encode_vector(VectorStorage::Int8, zero.data(), 7, zcode.data());
    std::vector<float> zback(7, 1.f);
    funnelrank::decode_vector(VectorStorage::Int8, zcode.data(), 7, zback.data());
    EXPECT_EQ(zback, zero);
}

TEST(VectorStorage, KernelsAgreeWithScalarAndWithTheDecodedDotProduct) {
    std::mt19937 rng(5);
    std::vector<std::size_t> dims;
    for (std::size_t d = 1; d <= 70; ++d) dims.push_back(d);
    dims.insert(dims.end(), {384, 385, 768, 1000});
    for (const VectorStorage storage : kStorages) {
        const auto& best = funnelrank::storage_kernels(storage);
        const auto& scalar = funnelrank::scalar_storage_kernels(storage);
        for (const std::size_t dim : dims) {
            const std::size_t bytes = funnelrank::stored_vector_bytes(storage, dim);
            std::vector<std::vector<unsigned char>> rows(5, std::vector<unsigned char>(bytes));
            std::vector<std::vector<float>> decoded(5, std::vector<float>(dim));
            for (std::size_t r = 0; r < 5; ++r) {
                const auto v = normal_vector(rng, dim);
                funnelrank::encode_vector(storage, v.data(), dim, rows[r].data());
                funnelrank::decode_vector(storage, rows[r].data(), dim, decoded[r].data());
            }
            const auto qv = normal_vector(rng, dim);
            std::vector<unsigned char> query(funnelrank::query_form_bytes(storage, dim));
            funnelrank::encode_query(storage, qv.data(), dim, query.data());
            std::vector<float> qdecoded(dim);
            if (storage == VectorStorage::Int8)
                funnelrank::decode_vector(storage, query.data(), dim, qdecoded.data());
            else
                qdecoded = qv;
            auto reference = [&](const std::vector<float>& a, const std::vector<float>& b) {
                double s = 0;
                for (std::size_t j = 0; j < dim; ++j) s += static_cast<double>(a[j]) * b[j];
                return 1.0 - s;
            };
            const double tol = 1e-4 * (1.0 + static_cast<double>(dim));
            const double stored_ref = reference(decoded[0], decoded[1]);
            EXPECT_NEAR(best.stored(rows[0].data(), rows[1].data(), &dim), stored_ref, tol) << dim;
            EXPECT_NEAR(scalar.stored(rows[0].data(), rows[1].data(), &dim), stored_ref, tol) << dim;
            const void* four[4] = {rows[1].data(), rows[2].data(), rows[3].data(), rows[4].data()};
            float got[4], got_scalar[4];
            best.query4(query.data(), four, dim, got);
            scalar.query4(query.data(), four, dim, got_scalar);
            for (std::size_t v = 0; v < 4; ++v) {
                const double ref = reference(qdecoded, decoded[v + 1]);
                EXPECT_NEAR(best.query(query.data(), four[v], &dim), ref, tol) << dim;
                EXPECT_NEAR(got[v], ref, tol) << funnelrank::storage_name(storage) << " dim " << dim;
                EXPECT_NEAR(got_scalar[v], ref, tol) << dim;
            }
        }
    }
}

TEST(HnswStorage, CompactStoragesKeepRecall) {
    const std::size_t n = 3000, dim = 48, nq = 100, k = 10;
    const auto data = clustered(n, dim, 60);
    const auto queries = clustered(nq, dim, 61);
    for (const VectorStorage storage : kStorages) {
        HNSWIndex index(storage_params(dim, storage));
        index.add(make_ids(n), data.data(), n, 2);
        EXPECT_EQ(index.storage(), storage);
        const double r = recall(index, data, n, queries, nq, dim, k, 64);
        EXPECT_GE(r, storage == VectorStorage::F16 ? 0.95 : 0.97) << funnelrank::storage_name(storage) << " " << r;
        // search_exact is exact under f32 and int8 (re-scored against float32), within f16's rounding under f16.
        if (storage != VectorStorage::F16) {
            HNSWIndex reference(storage_params(dim, VectorStorage::F32));
            reference.add(make_ids(n), data.data(), n, 2);
            EXPECT_EQ(index.search_exact(queries.data(), k).ids, reference.search_exact(queries.data(), k).ids);
        }
    }
}

TEST(HnswStorage, Int8ScoresAreTheFloat32Scores) {
    const std::size_t n = 500, dim = 24;
    const auto data = clustered(n, dim, 62);
    HNSWIndex f32(storage_params(dim, VectorStorage::F32));
    HNSWIndex int8(storage_params(dim, VectorStorage::Int8));
    f32.add(make_ids(n), data.data(), n, 1);
    int8.add(make_ids(n), data.data(), n, 1);
    const auto q = clustered(1, dim, 63);
    const auto a = f32.search(q.data(), 5, 200), b = int8.search(q.data(), 5, 200);
    EXPECT_EQ(a.ids, b.ids);
    for (std::size_t i = 0; i < a.scores.size(); ++i) EXPECT_FLOAT_EQ(a.scores[i], b.scores[i]);
    // vectors() gives the float32 copies under int8 and the f16-rounded values under f16.
    const auto exact = f32.vectors({"doc7"});
    EXPECT_EQ(int8.vectors({"doc7"}), exact);
    HNSWIndex f16(storage_params(dim, VectorStorage::F16));
    f16.add(make_ids(n), data.data(), n, 1);
    const auto rounded = f16.vectors({"doc7"});
    for (std::size_t j = 0; j < dim; ++j) EXPECT_NEAR(rounded[j], exact[j], 1e-3);
}

TEST(HnswStorage, F16RefusesValuesBeyondItsRange) {
    HNSWIndex ip(storage_params(4, VectorStorage::F16, Metric::InnerProduct));
    const std::vector<float> big = {1.f, 70000.f, 0.f, 0.f};
    EXPECT_THROW(ip.add({"a"}, big.data(), 1), InvalidArgument);
    EXPECT_EQ(ip.size(), 0u);
    HNSWIndex cosine(storage_params(4, VectorStorage::F16));  // normalised first: fits
    cosine.add({"a"}, big.data(), 1);
    EXPECT_EQ(cosine.size(), 1u);
}

TEST(HnswStorage, MemoryCountsTheCompactVectors) {
    const std::size_t n = 400, dim = 64;
    const auto data = clustered(n, dim, 64);
    std::size_t vectors[3] = {};
    for (const VectorStorage storage : kStorages) {
        HNSWIndex index(storage_params(dim, storage));
        index.add(make_ids(n), data.data(), n, 1);
        const auto m = index.memory();
        vectors[static_cast<int>(storage)] = m.vector_bytes;
        EXPECT_GT(m.graph_bytes, m.vector_bytes);
        EXPECT_EQ(m.mapped_bytes, 0u);
    }
    EXPECT_EQ(vectors[0], n * dim * 4);
    EXPECT_EQ(vectors[1], n * dim * 2);
    EXPECT_EQ(vectors[2], n * (dim + 4) + n * dim * 4);  // + the in-memory float32 copies until saved and loaded
}

TEST_F(HnswStorageFileTest, EveryStorageRoundTripsAndInt8MapsItsFloat32Vectors) {
    const std::size_t n = 1200, dim = 32;
    const auto data = clustered(n, dim, 65);
    const auto queries = clustered(20, dim, 66);
    for (const VectorStorage storage : kStorages) {
        HNSWIndex index(storage_params(dim, storage));
        index.add(make_ids(n), data.data(), n, 2);
        index.remove({"doc1", "doc2"});
        index.save(path_);
        HNSWIndex loaded = HNSWIndex::load(path_);
        EXPECT_EQ(loaded.storage(), storage);
        EXPECT_EQ(loaded.ids(), index.ids());
        for (std::size_t q = 0; q < 20; ++q) {
            const auto a = index.search(queries.data() + q * dim, 10), b = loaded.search(queries.data() + q * dim, 10);
            EXPECT_EQ(a.ids, b.ids);
            EXPECT_EQ(a.scores, b.scores);
        }
        EXPECT_EQ(loaded.vectors({"doc5", "doc900"}), index.vectors({"doc5", "doc900"}));
        const auto m = loaded.memory();
        if (storage == VectorStorage::Int8) {
            EXPECT_EQ(m.mapped_bytes, n * dim * 4);
            EXPECT_EQ(m.vector_bytes, n * (dim + 4));
        } else {
            EXPECT_EQ(m.mapped_bytes, 0u);
        }
        // Adds after a load (two reused slots, then a new label) keep the other float32 rows mapped: only
        // the rewritten and the new rows are held in memory.
        loaded.add({"again", "fresh", "new"}, queries.data(), 3, 1);
        EXPECT_EQ(loaded.search(queries.data() + dim, 1).ids, std::vector<std::string>{"fresh"});
        EXPECT_EQ(loaded.search(queries.data() + 2 * dim, 1).ids, std::vector<std::string>{"new"});
        EXPECT_EQ(loaded.vectors({"doc900"}), index.vectors({"doc900"}));
        EXPECT_EQ(loaded.vectors({"again", "fresh", "new"}).size(), 3 * dim);
        const auto after = loaded.memory();
        if (storage == VectorStorage::Int8) {
            EXPECT_EQ(after.mapped_bytes, n * dim * 4);
            // int8 codes of n + 1 slots, and in memory only the float32 rows of the 2 rewritten and 1 new label
            EXPECT_EQ(after.vector_bytes, (n + 1) * (dim + 4) + 3 * dim * 4);
            index.add({"again", "fresh", "new"}, queries.data(), 3, 1);  // the same adds in memory: the same results
            for (std::size_t q = 0; q < 20; ++q)
                EXPECT_EQ(loaded.search(queries.data() + q * dim, 10).scores,
                          index.search(queries.data() + q * dim, 10).scores);
        } else {
            EXPECT_EQ(after.mapped_bytes, 0u);
        }
        loaded.save(path_);  // the file it had mapped is replaced by rename while the old mapping is gone
        EXPECT_EQ(HNSWIndex::load(path_).size(), n + 1);
    }
}

TEST_F(HnswStorageFileTest, Version1FilesLoadAsF32AndNewerVersionsAreRefused) {
    const std::size_t n = 300, dim = 8;
    const auto data = clustered(n, dim, 67);
    HNSWIndex index(params(dim));
    index.add(make_ids(n), data.data(), n, 1);
    index.save(path_);
    const std::string v2 = read_raw();
    // A version-1 file is the version-2 f32 file without the storage code.
    std::string v1 = v2;
    std::uint32_t storage = 99;
    std::memcpy(&storage, &v1[kStorageOffset], sizeof storage);
    ASSERT_EQ(storage, 0u);
    v1.erase(kStorageOffset, 4);
    const std::uint32_t one = 1;
    std::memcpy(&v1[8], &one, sizeof one);
    reseal(v1);
    write_raw(v1);
    const HNSWIndex old = HNSWIndex::load(path_);
    EXPECT_EQ(old.storage(), VectorStorage::F32);
    EXPECT_EQ(old.ids(), index.ids());
    EXPECT_EQ(old.search(data.data(), 5).ids, index.search(data.data(), 5).ids);

    std::string v3 = v2;
    const std::uint32_t three = 3;
    std::memcpy(&v3[8], &three, sizeof three);
    write_raw(v3);
    try {
        HNSWIndex::load(path_);
        FAIL() << "expected IndexFileError";
    } catch (const IndexFileError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("unsupported format version 3"), std::string::npos) << what;
        EXPECT_NE(what.find("reads up to 2"), std::string::npos) << what;
    }
    std::string bad_storage = v2;
    const std::uint32_t seven = 7;
    std::memcpy(&bad_storage[kStorageOffset], &seven, sizeof seven);
    reseal(bad_storage);
    write_raw(bad_storage);
    EXPECT_THROW(HNSWIndex::load(path_), IndexFileError);
}

TEST_F(HnswStorageFileTest, CorruptInt8FilesAreRejected) {
    const std::size_t n = 200, dim = 16;
    HNSWIndex index(storage_params(dim, VectorStorage::Int8));
    index.add(make_ids(n), clustered(n, dim, 68).data(), n, 1);
    index.save(path_);
    const std::string good = read_raw();
    // A NaN in the last re-scoring row (the checksum recomputed: only the value check can catch it).
    std::string nan_row = good;
    const float nan = std::nanf("");
    std::memcpy(&nan_row[nan_row.size() - 20 - 4], &nan, sizeof nan);
    reseal(nan_row);
    write_raw(nan_row);
    EXPECT_THROW(HNSWIndex::load(path_), IndexFileError);
    // The block cut short (rows and trailer consistent otherwise).
    std::string cut = good;
    cut.erase(cut.size() - 20 - 64, 64);
    reseal(cut);
    write_raw(cut);
    EXPECT_THROW(HNSWIndex::load(path_), IndexFileError);
    write_raw(good);
    EXPECT_EQ(HNSWIndex::load(path_).size(), n);
}
