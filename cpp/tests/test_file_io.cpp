#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
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

TEST_F(FileIoTest, SavingRemovesStaleTemporaryFilesOfDeadProcessesOnly) {
    // A pid no process has: a child that has exited and been reaped.
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) ::_exit(0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    const std::string dead = path_ + ".tmp-" + std::to_string(child) + "-1a2b3c";
    const std::string live = path_ + ".tmp-" + std::to_string(::getpid()) + "-4d5e6f";  // this process: alive
    const std::string other_target = path("other.bin") + ".tmp-" + std::to_string(child) + "-77";  // not ours
    const std::string not_a_temp = path_ + ".tmp-" + std::to_string(child) + "-xyz";  // not our name pattern
    for (const auto& p : {dead, live, other_target, not_a_temp}) std::ofstream(p) << "partial";
    write_sample("fresh");
    EXPECT_FALSE(fs::exists(dead));
    EXPECT_TRUE(fs::exists(live));
    EXPECT_TRUE(fs::exists(other_target));
    EXPECT_TRUE(fs::exists(not_a_temp));
    // A directory with a stale temporary name is left alone too (only regular files are removed).
    const std::string dir_named = path_ + ".tmp-" + std::to_string(child) + "-abc";
    fs::create_directory(dir_named);
    EXPECT_TRUE(funnelrank::io::remove_stale_temp_files(path_).empty());
    EXPECT_TRUE(fs::exists(dir_named));
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

namespace {
// The IndexFileError message of opening `path`, or "" if it opened.
std::string open_error(const std::string& path) {
    try {
        IndexFile f(path, kMagic, 1);
    } catch (const IndexFileError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_F(FileIoTest, DirectoryIsRejectedByType) {
    // Used to "open" (std::ifstream opens a directory) and fail with basic_string::_M_replace_aux.
    const std::string error = open_error(dir_.string());
    EXPECT_NE(error.find("is a directory, not a regular file"), std::string::npos) << error;
    EXPECT_NE(error.find(dir_.string()), std::string::npos) << error;
}

TEST_F(FileIoTest, FifoIsRejectedWithoutBlocking) {
    const std::string fifo = path("pipe");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    auto loading = std::async(std::launch::async, [&] { return open_error(fifo); });
    const bool finished = loading.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    if (!finished) {
        // A blocked open(2) of the FIFO returns once a writer appears: release it so the test can end.
        const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (writer >= 0) ::close(writer);
    }
    EXPECT_TRUE(finished) << "opening a FIFO blocked";
    const std::string error = loading.get();
    EXPECT_NE(error.find("is a FIFO (named pipe), not a regular file"), std::string::npos) << error;
}

TEST_F(FileIoTest, DevicesAreRejectedByType) {
    if (!std::filesystem::exists("/dev/zero")) GTEST_SKIP() << "no /dev/zero";
    const std::string error = open_error("/dev/zero");
    EXPECT_NE(error.find("is a character device, not a regular file"), std::string::npos) << error;
}

TEST_F(FileIoTest, SymlinkToAFileStillLoads) {
    write_sample("linked");
    const std::string link = path("link");
    std::filesystem::create_symlink(path_, link);
    EXPECT_EQ(open_error(link), "");
    const std::string dangling = path("dangling");
    std::filesystem::create_symlink(path("nothing-here"), dangling);
    EXPECT_NE(open_error(dangling).find("cannot open index file"), std::string::npos);
}

TEST(Utf8, ValidatorMatchesPythonsStrictDecoder) {
    using funnelrank::io::is_valid_utf8;
    const std::vector<std::string> valid = {
        "", "abc", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xf4\x8f\xbf\xbf", std::string("a\0b", 3)};
    const std::vector<std::string> invalid = {
        "\xff", "\x80", "caf\xc3", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf0\x80\x80\xaf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x82", "\xe2\x28\xa1"};
    for (const std::string& s : valid) EXPECT_TRUE(is_valid_utf8(s)) << s;
    for (const std::string& s : invalid) EXPECT_FALSE(is_valid_utf8(s)) << s;
}

TEST_F(FileIoTest, ReadUtf8StringRejectsInvalidBytes) {
    {
        AtomicFileWriter w(path_, kMagic, 1);
        w.write_string("ok");
        w.write_string("bad\xff");
        w.commit();
    }
    IndexFile f(path_, kMagic, 1);
    auto r = f.reader();
    EXPECT_EQ(r.read_utf8_string("first"), "ok");
    try {
        r.read_utf8_string("second");
        FAIL() << "no exception";
    } catch (const IndexFileError& e) {
        EXPECT_NE(std::string(e.what()).find("second is not valid UTF-8 at byte 10"), std::string::npos) << e.what();
    }
}
