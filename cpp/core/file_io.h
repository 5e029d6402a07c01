#pragma once
// Index files: atomic, checksummed writing and bounds-checked reading.
//
// On-disk layout of every funnelrank index file:
//   [8-byte magic][u32 format version] payload... [u64 payload bytes][u32 CRC-32 of payload][8-byte "FRK-END!"]
// All integers are little-endian (the only byte order we build for; checked at compile time).
//
// AtomicFileWriter streams the payload to a temporary file beside the target, then fsyncs and
// renames it over the target: a crash mid-save leaves the previous file intact and readable.
// read_index_file() verifies magic, version, size and checksum before any byte is parsed, and
// BinaryReader refuses to read past the end: a truncated or corrupt file always raises
// IndexFileError (with the path in the message), never undefined behaviour.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "errors.h"
#include "mapped_file.h"

namespace funnelrank::io {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE-754 floats required");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "funnelrank index files are little-endian; big-endian hosts are not supported"
#endif

constexpr std::size_t kMagicSize = 8;

// The temporary files that AtomicFileWriter for `path` left beside it in processes that are gone: named
// `<name of path>.tmp-<pid>-<hex>`, a regular file (not a link), and no process with that pid exists (what a
// save killed mid-write leaves behind). A temporary file of a live process (this one included) is never
// listed, nor anything else in the directory. Best effort: an unreadable directory lists nothing.
std::vector<std::string> stale_temp_files(const std::string& path);

// Removes stale_temp_files(path); returns the paths removed.
std::vector<std::string> remove_stale_temp_files(const std::string& path);

class AtomicFileWriter {
public:
    // Removes stale temporary files of `path` (remove_stale_temp_files), then opens a temporary file next to
    // `path` and writes the header. Throws IndexFileError on I/O failure.
    AtomicFileWriter(std::string path, std::string_view magic, std::uint32_t version);
    ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write_bytes(const void* data, std::size_t size);
    template <typename T>
    void write(const T& value) {
        static_assert(std::is_trivially_copyable_v<T>, "write() takes plain values");
        write_bytes(&value, sizeof(T));
    }
    void write_string(std::string_view s);  // u64 length + bytes
    template <typename T>
    void write_vector(const std::vector<T>& v) {  // u64 count + elements
        static_assert(std::is_trivially_copyable_v<T>, "write_vector() takes plain values");
        write<std::uint64_t>(v.size());
        write_bytes(v.data(), v.size() * sizeof(T));
    }
    // Payload bytes written so far (the next byte's offset in the file is IndexFile::payload_offset() + this).
    std::uint64_t payload_bytes() const { return payload_size_; }
    // Writes the trailer, fsyncs, renames over the target and fsyncs the directory.
    void commit();

private:
    void flush_buffer();
    std::string path_;
    std::string tmp_path_;
    int fd_ = -1;
    bool committed_ = false;
    std::uint64_t payload_size_ = 0;
    std::uint32_t crc_ = 0;
    std::vector<unsigned char> buffer_;
};

class BinaryReader {
public:
    // `data` must outlive the reader; `context` (usually the path) prefixes error messages.
    BinaryReader(std::string_view data, std::string context);

    void read_bytes(void* out, std::size_t size);
    template <typename T>
    T read() {
        static_assert(std::is_trivially_copyable_v<T>, "read() returns plain values");
        T value;
        read_bytes(&value, sizeof(T));
        return value;
    }
    std::string read_string();
    // The next `size` bytes in place (valid while the data the reader reads is), skipping past them.
    std::string_view read_view(std::size_t size);
    // Bytes read so far.
    std::size_t position() const { return pos_; }
    // read_string(), failing unless the bytes are valid UTF-8 (`what` names the string in the error).
    std::string read_utf8_string(const char* what);
    template <typename T>
    std::vector<T> read_vector() {
        static_assert(std::is_trivially_copyable_v<T>, "read_vector() returns plain values");
        const auto count = read<std::uint64_t>();
        if (count > remaining() / sizeof(T)) fail("vector length exceeds the file");
        std::vector<T> v(static_cast<std::size_t>(count));
        read_bytes(v.data(), v.size() * sizeof(T));
        return v;
    }
    // Reads a count that must not exceed `max` (use for sizes of things that follow in the file).
    std::uint64_t read_count(std::uint64_t max, const char* what);
    std::size_t remaining() const { return data_.size() - pos_; }
    void expect_end() const;
    [[noreturn]] void fail(const std::string& what) const;

private:
    std::string_view data_;
    std::size_t pos_ = 0;
    std::string context_;
};

// A verified index file: payload() is what was written between header and trailer. Read::Copy holds the file's
// bytes in memory; Read::Map maps the file instead (mapped_file.h: pages are read on access and shared with
// the page cache), and mapping() lets a loader keep parts of it in use after the IndexFile is gone. Either
// way the whole payload's checksum is verified before the constructor returns. A version above
// `max_version` is refused with a message that names both versions.
class IndexFile {
public:
    enum class Read { Copy, Map };
    IndexFile(std::string path, std::string_view magic, std::uint32_t max_version, Read how = Read::Copy);
    IndexFile(const IndexFile&) = delete;  // view_ points into bytes_ or the mapping
    IndexFile& operator=(const IndexFile&) = delete;
    std::uint32_t version() const { return version_; }
    const std::string& path() const { return path_; }
    BinaryReader reader() const;
    // The file's bytes (header, payload, trailer).
    std::string_view bytes() const { return view_; }
    // Where the payload starts in bytes().
    static std::size_t payload_offset();
    // The mapping under Read::Map (null under Read::Copy).
    const std::shared_ptr<const MappedFile>& mapping() const { return mapping_; }

private:
    std::string path_;
    std::string bytes_;
    std::shared_ptr<const MappedFile> mapping_;
    std::string_view view_;
    std::uint32_t version_ = 0;
};

// Whether `s` is well-formed UTF-8 (what Python's strict decoder accepts: no overlong forms, surrogates or
// code points above U+10FFFF). Index ids must be, so that every id an index holds is a Python str.
bool is_valid_utf8(std::string_view s);

// CRC-32 (zlib's), exposed for tests.
std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t size);

}  // namespace funnelrank::io
