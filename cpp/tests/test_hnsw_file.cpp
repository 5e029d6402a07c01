// HNSWIndex's file format: save/load round trips, and truncated, corrupt or forged files rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "file_io.h"
#include "hnsw_index.h"
#include "hnsw_test_data.h"
#include "temp_dir.h"

using funnelrank::HNSWIndex;
using funnelrank::HNSWParams;
using funnelrank::IndexFileError;
using funnelrank::Metric;

using funnelrank::test::clustered;
using funnelrank::test::make_ids;
using funnelrank::test::params;

namespace {

class HnswFileTest : public funnelrank::test::TempDirTest {
protected:
    HnswFileTest() : TempDirTest("index.hnsw") {}
};

}  // namespace

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
constexpr std::size_t kCapacityOffset = 12 + 8 + 4 + 4 * 8 + 4;  // after dim, metric, M, ef_c, ef_s, seed, storage
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
