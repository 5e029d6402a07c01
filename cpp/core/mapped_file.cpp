#include "mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "errors.h"

namespace funnelrank::io {

MappedFile::MappedFile(int fd, std::size_t size, const std::string& path) : size_(size) {
    if (size == 0) return;
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw IndexFileError("cannot map index file " + path + ": " + std::strerror(errno));
    data_ = p;
}

MappedFile::~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
}

void MappedFile::release(std::size_t offset, std::size_t size) const {
    if (data_ == nullptr || offset >= size_) return;
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    // Whole pages inside the range only: a page shared with bytes outside it stays.
    const std::size_t first = (offset + page - 1) / page * page;
    const std::size_t end = std::min(size_, offset + size) / page * page;
    if (end <= first) return;
    ::madvise(static_cast<char*>(data_) + first, end - first, MADV_DONTNEED);
}

}  // namespace funnelrank::io
