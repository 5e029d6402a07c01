#pragma once
// GoogleTest fixture shared by the file tests: each test gets its own empty temporary directory, removed
// afterwards, with one index file path in it and raw read/write helpers for truncation/corruption tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>

namespace funnelrank::test {

class TempDirTest : public ::testing::Test {
protected:
    // `file_name`: the name of path_ inside the directory.
    explicit TempDirTest(std::string file_name = "index.bin") : file_name_(std::move(file_name)) {}

    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = std::filesystem::temp_directory_path() /
               ("frk_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        path_ = path(file_name_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    // A path in the test's directory.
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // The bytes of path_, and replacing them.
    std::string read_raw() const {
        std::ifstream in(path_, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    void write_raw(const std::string& bytes) const {
        std::ofstream out(path_, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }

    std::filesystem::path dir_;
    std::string path_;

private:
    std::string file_name_;
};

}  // namespace funnelrank::test
