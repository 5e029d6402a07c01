#include "file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <limits>
#include <random>
#include <sstream>

namespace funnelrank::io {
namespace {

constexpr std::string_view kEndMagic = "FRK-END!";
constexpr std::size_t kHeaderSize = kMagicSize + sizeof(std::uint32_t);
constexpr std::size_t kTrailerSize = sizeof(std::uint64_t) + sizeof(std::uint32_t) + kMagicSize;
constexpr std::size_t kBufferSize = 1 << 20;

std::string errno_text() { return std::strerror(errno); }

void check_magic(std::string_view magic) {
    if (magic.size() != kMagicSize) throw InvalidArgument("index file magic must be 8 bytes");
}

std::string parent_dir(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

void write_all(int fd, const unsigned char* data, std::size_t size, const std::string& path) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw IndexFileError("cannot write " + path + ": " + errno_text());
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

std::string base_name(const std::string& path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The pid in a temporary file name `<base>.tmp-<pid>-<hex>` (AtomicFileWriter's), or -1 when `name` is not one.
long temp_file_pid(std::string_view name, std::string_view base) {
    const std::string_view infix = ".tmp-";
    if (name.size() <= base.size() + infix.size() || name.substr(0, base.size()) != base ||
        name.substr(base.size(), infix.size()) != infix)
        return -1;
    std::string_view rest = name.substr(base.size() + infix.size());
    const auto dash = rest.find('-');
    if (dash == 0 || dash == std::string_view::npos || dash > 9) return -1;  // pids have at most 9 digits here
    long pid = 0;
    for (std::size_t i = 0; i < dash; ++i) {
        if (rest[i] < '0' || rest[i] > '9') return -1;
        pid = pid * 10 + (rest[i] - '0');
    }
    const std::string_view hex = rest.substr(dash + 1);
    if (hex.empty() || hex.size() > 16) return -1;
    for (const char c : hex)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
    return pid > 0 ? pid : -1;
}

// Whether no process with `pid` exists (kill(pid, 0) fails with ESRCH; EPERM means it exists).
bool process_gone(long pid) {
    if (pid == static_cast<long>(::getpid())) return false;
    return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

std::vector<std::string> stale_temp_files(const std::string& path) {
    std::vector<std::string> stale;
    const std::string base = base_name(path);
    if (base.empty()) return stale;
    const std::string dir = parent_dir(path);
    DIR* handle = ::opendir(dir.c_str());
    if (handle == nullptr) return stale;
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(handle)) {
        const long pid = temp_file_pid(entry->d_name, base);
        if (pid > 0 && process_gone(pid)) names.emplace_back(entry->d_name);
    }
    ::closedir(handle);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        const std::string full = dir + "/" + name;
        struct stat st {};
        if (::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) stale.push_back(full);  // never a link or dir
    }
    return stale;
}

std::vector<std::string> remove_stale_temp_files(const std::string& path) {
    std::vector<std::string> removed;
    for (auto& full : stale_temp_files(path))
        if (::unlink(full.c_str()) == 0) removed.push_back(std::move(full));
    return removed;
}

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t size) {
    return static_cast<std::uint32_t>(
        ::crc32_z(crc, static_cast<const Bytef*>(data), static_cast<z_size_t>(size)));
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string_view magic, std::uint32_t version)
    : path_(std::move(path)) {
    check_magic(magic);
    if (path_.empty()) throw InvalidArgument("index path is empty");
    remove_stale_temp_files(path_);
    std::random_device rd;
    std::ostringstream tmp;
    tmp << path_ << ".tmp-" << ::getpid() << "-" << std::hex << rd();
    tmp_path_ = tmp.str();
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IndexFileError("cannot create " + tmp_path_ + ": " + errno_text());
    buffer_.reserve(kBufferSize);
    // The header is not part of the checksummed payload; write it straight through.
    std::array<unsigned char, kHeaderSize> header{};
    std::memcpy(header.data(), magic.data(), kMagicSize);
    std::memcpy(header.data() + kMagicSize, &version, sizeof(version));
    write_all(fd_, header.data(), header.size(), tmp_path_);
}

AtomicFileWriter::~AtomicFileWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFileWriter::flush_buffer() {
    write_all(fd_, buffer_.data(), buffer_.size(), tmp_path_);
    buffer_.clear();
}

void AtomicFileWriter::write_bytes(const void* data, std::size_t size) {
    if (committed_) throw InvalidArgument("write after commit");
    if (size == 0) return;
    crc_ = crc32(crc_, data, size);
    payload_size_ += size;
    const auto* bytes = static_cast<const unsigned char*>(data);
    if (buffer_.size() + size > kBufferSize) flush_buffer();
    if (size >= kBufferSize) {
        write_all(fd_, bytes, size, tmp_path_);
    } else {
        buffer_.insert(buffer_.end(), bytes, bytes + size);
    }
}

void AtomicFileWriter::write_string(std::string_view s) {
    write<std::uint64_t>(s.size());
    write_bytes(s.data(), s.size());
}

void AtomicFileWriter::commit() {
    if (committed_) return;
    flush_buffer();
    std::array<unsigned char, kTrailerSize> trailer{};
    std::memcpy(trailer.data(), &payload_size_, sizeof(payload_size_));
    std::memcpy(trailer.data() + sizeof(payload_size_), &crc_, sizeof(crc_));
    std::memcpy(trailer.data() + sizeof(payload_size_) + sizeof(crc_), kEndMagic.data(), kMagicSize);
    write_all(fd_, trailer.data(), trailer.size(), tmp_path_);
    if (::fsync(fd_) != 0) throw IndexFileError("cannot fsync " + tmp_path_ + ": " + errno_text());
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw IndexFileError("cannot close " + tmp_path_ + ": " + errno_text());
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
        throw IndexFileError("cannot rename " + tmp_path_ + " to " + path_ + ": " + errno_text());
    committed_ = true;
    // Make the rename itself durable.
    const int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
}

BinaryReader::BinaryReader(std::string_view data, std::string context)
    : data_(data), context_(std::move(context)) {}

void BinaryReader::fail(const std::string& what) const {
    throw IndexFileError(context_ + ": corrupt index file (" + what + " at byte " +
                         std::to_string(pos_) + ")");
}

void BinaryReader::read_bytes(void* out, std::size_t size) {
    if (size > remaining()) fail("unexpected end of data");
    if (size > 0) std::memcpy(out, data_.data() + pos_, size);
    pos_ += size;
}

std::string_view BinaryReader::read_view(std::size_t size) {
    if (size > remaining()) fail("unexpected end of data");
    const std::string_view out = data_.substr(pos_, size);
    pos_ += size;
    return out;
}

std::string BinaryReader::read_string() {
    const auto size = read<std::uint64_t>();
    if (size > remaining()) fail("string length exceeds the file");
    std::string s(data_.substr(pos_, static_cast<std::size_t>(size)));
    pos_ += static_cast<std::size_t>(size);
    return s;
}

std::string BinaryReader::read_utf8_string(const char* what) {
    const std::size_t at = pos_;
    std::string s = read_string();
    if (!is_valid_utf8(s)) {
        pos_ = at;
        fail(std::string(what) + " is not valid UTF-8");
    }
    return s;
}

bool is_valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            return false;  // a continuation byte, an overlong 2-byte lead (C0, C1) or F5..FF
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return false;
        for (std::size_t j = 2; j < len; ++j)
            if (p[i + j] < 0x80 || p[i + j] > 0xBF) return false;
        i += len;
    }
    return true;
}

std::uint64_t BinaryReader::read_count(std::uint64_t max, const char* what) {
    const auto n = read<std::uint64_t>();
    if (n > max) fail(std::string(what) + " count " + std::to_string(n) + " exceeds limit " + std::to_string(max));
    return n;
}

void BinaryReader::expect_end() const {
    if (remaining() != 0) fail(std::to_string(remaining()) + " unexpected trailing bytes");
}

namespace {

// What a non-regular file is, for the error message.
const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

[[noreturn]] void not_regular(const std::string& path, mode_t mode) {
    throw IndexFileError("cannot load index file " + path + ": it is " + file_kind(mode) +
                         ", not a regular file");
}

// Closes a file descriptor on every exit path.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

}  // namespace

IndexFile::IndexFile(std::string path, std::string_view magic, std::uint32_t max_version, Read how)
    : path_(std::move(path)) {
    check_magic(magic);
    // Only regular files are read. A directory would "open" and then fail obscurely, and opening a FIFO
    // blocks until a writer appears (forever, usually), as would reading a terminal or a socket, so the
    // type is checked before opening. The file is opened non-blocking all the same (a FIFO swapped in
    // after the stat must not hang us either) and checked again on the open descriptor, whose size is
    // then what is read.
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0)
        throw IndexFileError("cannot open index file " + path_ + ": " + errno_text());
    if (!S_ISREG(st.st_mode)) not_regular(path_, st.st_mode);
    const FileDescriptor fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (fd.get() < 0) throw IndexFileError("cannot open index file " + path_ + ": " + errno_text());
    if (::fstat(fd.get(), &st) != 0) throw IndexFileError("cannot read index file " + path_ + ": " + errno_text());
    if (!S_ISREG(st.st_mode)) not_regular(path_, st.st_mode);
    if (st.st_size < 0 ||
        static_cast<std::uint64_t>(st.st_size) > std::numeric_limits<std::size_t>::max() / 2)
        throw IndexFileError("cannot read index file " + path_ + ": size " + std::to_string(st.st_size) +
                             " is out of range");
    if (how == Read::Map) {
        mapping_ = std::make_shared<const MappedFile>(fd.get(), static_cast<std::size_t>(st.st_size), path_);
        view_ = mapping_->bytes();
    } else {
        bytes_.resize(static_cast<std::size_t>(st.st_size));
        std::size_t done = 0;
        while (done < bytes_.size()) {
            const ssize_t n = ::read(fd.get(), bytes_.data() + done, bytes_.size() - done);
            if (n < 0) {
                if (errno == EINTR) continue;
                throw IndexFileError("cannot read index file " + path_ + ": " + errno_text());
            }
            if (n == 0)
                throw IndexFileError("cannot read index file " + path_ + ": it shrank while being read (" +
                                     std::to_string(done) + " of " + std::to_string(bytes_.size()) + " bytes)");
            done += static_cast<std::size_t>(n);
        }
        view_ = bytes_;
    }

    const std::string corrupt = path_ + ": not a valid funnelrank index file (";
    if (view_.size() < kHeaderSize + kTrailerSize)
        throw IndexFileError(corrupt + "truncated: " + std::to_string(view_.size()) + " bytes)");
    if (view_.substr(0, kMagicSize) != magic)
        throw IndexFileError(corrupt + "wrong magic; expected " + std::string(magic) + ")");
    std::memcpy(&version_, view_.data() + kMagicSize, sizeof(version_));
    if (version_ == 0 || version_ > max_version)
        throw IndexFileError(path_ + ": unsupported format version " + std::to_string(version_) +
                             " (this build reads up to " + std::to_string(max_version) +
                             "; the file was written by a newer funnelrank: upgrade to load it)");
    const char* trailer = view_.data() + view_.size() - kTrailerSize;
    if (std::string_view(trailer + sizeof(std::uint64_t) + sizeof(std::uint32_t), kMagicSize) != kEndMagic)
        throw IndexFileError(corrupt + "truncated or incomplete write: end marker missing)");
    std::uint64_t payload_size = 0;
    std::uint32_t stored_crc = 0;
    std::memcpy(&payload_size, trailer, sizeof(payload_size));
    std::memcpy(&stored_crc, trailer + sizeof(payload_size), sizeof(stored_crc));
    if (payload_size != view_.size() - kHeaderSize - kTrailerSize)
        throw IndexFileError(corrupt + "size mismatch: truncated or extended)");
    if (crc32(0, view_.data() + kHeaderSize, static_cast<std::size_t>(payload_size)) != stored_crc)
        throw IndexFileError(corrupt + "checksum mismatch: the file is corrupt)");
}

BinaryReader IndexFile::reader() const {
    return BinaryReader(view_.substr(kHeaderSize, view_.size() - kHeaderSize - kTrailerSize), path_);
}

std::size_t IndexFile::payload_offset() { return kHeaderSize; }

}  // namespace funnelrank::io
