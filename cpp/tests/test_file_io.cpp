#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "file_io.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using funnelrank::IndexFileError;
using funnelrank::io::AtomicFileWriter;
using funnelrank::io::IndexFile;

namespace {

constexpr const char* kMagic = "FRKTEST1";

class FileIoTest : public funnelrank::test::TempDirTest {
protected:
    void write_sample(const std::string& text, std::uint32_t version = 1) {
        AtomicFileWriter w(path_, kMagic, version);
        w.write<std::uint32_t>(42);
        w.write_string(text);
        w.write_vector(std::vector<float>{1.5F, -2.0F, 3.25F});
        w.commit();
    }
};

}  // namespace

TEST_F(FileIoTest, RoundTrip) {
    write_sample("hello");
    IndexFile f(path_, kMagic, 1);
    auto r = f.reader();
    EXPECT_EQ(r.read<std::uint32_t>(), 42U);
    EXPECT_EQ(r.read_string(), "hello");
    EXPECT_EQ(r.read_vector<float>(), (std::vector<float>{1.5F, -2.0F, 3.25F}));
    r.expect_end();
}

TEST_F(FileIoTest, LargePayloadBypassesBuffer) {
    std::string big(3 << 20, 'x');
    big[12345] = 'y';
    write_sample(big);
    IndexFile f(path_, kMagic, 1);
    auto r = f.reader();
    r.read<std::uint32_t>();
    EXPECT_EQ(r.read_string(), big);
}

TEST_F(FileIoTest, NoTemporaryFilesLeftBehind) {
    write_sample("a");
    write_sample("b");
    { AtomicFileWriter abandoned(path_, kMagic, 1); abandoned.write<int>(7); }  // never committed
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"index.bin"});
    // The abandoned write did not touch the committed file.
    IndexFile f(path_, kMagic, 1);
    auto r = f.reader();
    r.read<std::uint32_t>();
    EXPECT_EQ(r.read_string(), "b");
}

TEST_F(FileIoTest, MissingFileNamesThePath) {
    try {
        IndexFile f((dir_ / "nope.bin").string(), kMagic, 1);
        FAIL() << "expected IndexFileError";
    } catch (const IndexFileError& e) {
        EXPECT_NE(std::string(e.what()).find("nope.bin"), std::string::npos);
    }
}

TEST_F(FileIoTest, EveryTruncationIsDetected) {
    write_sample("some text in the payload");
    const std::string full = read_raw();
    for (std::size_t len = 0; len < full.size(); ++len) {
        write_raw(full.substr(0, len));
        EXPECT_THROW(IndexFile(path_, kMagic, 1), IndexFileError) << "length " << len;
    }
}

TEST_F(FileIoTest, EveryByteFlipIsDetected) {
    write_sample("some text in the payload");
    const std::string full = read_raw();
    for (std::size_t i = 0; i < full.size(); ++i) {
        std::string bad = full;
        bad[i] = static_cast<char>(bad[i] ^ 0x5A);
        write_raw(bad);
        EXPECT_THROW(IndexFile(path_, kMagic, 1), IndexFileError) << "byte " << i;
    }
}

TEST_F(FileIoTest, WrongMagicAndNewerVersionRejected) {
    write_sample("x", 2);
    EXPECT_THROW(IndexFile(path_, "OTHERMAG", 2), IndexFileError);
    EXPECT_THROW(IndexFile(path_, kMagic, 1), IndexFileError);
    EXPECT_NO_THROW(IndexFile(path_, kMagic, 2));
}

TEST_F(FileIoTest, ReaderNeverReadsPastTheEnd) {
    write_sample("abc");
    IndexFile f(path_, kMagic, 1);
    auto r = f.reader();
    r.read<std::uint32_t>();
    r.read_string();
    r.read_vector<float>();
    EXPECT_THROW(r.read<std::uint8_t>(), IndexFileError);
    auto r2 = f.reader();
    EXPECT_THROW(r2.read_count(3, "things"), IndexFileError);  // 42 > 3
}
