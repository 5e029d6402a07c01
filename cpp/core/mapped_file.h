#pragma once
// A read-only memory mapping of a whole open file (RAII: unmapped when the last owner lets go). Reading it
// is thread-safe. io::IndexFile maps files this way when asked (IndexFile::Read::Map), so a loader can keep
// a part of the file (HNSW's float32 re-scoring vectors) in the page cache instead of in its own memory.
//
// The mapping is MAP_PRIVATE and read-only: the file's pages are shared with the page cache and cost this
// process only what it touches. Index files are replaced by rename (AtomicFileWriter), never rewritten in
// place, so a mapped file's bytes do not change under the mapping; truncating one by other means would
// make a later read of a lost page fault with SIGBUS, as with any mapped file.
#include <cstddef>
#include <string>
#include <string_view>

namespace funnelrank::io {

class MappedFile {
public:
    // Maps `size` bytes of the open descriptor `fd` (not taken over; it may be closed afterwards). A size
    // of 0 maps nothing. Throws IndexFileError naming `path` on failure.
    MappedFile(int fd, std::size_t size, const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
    // Drops the pages of [offset, offset + size) from this process's resident memory (best effort): they
    // stay in the page cache and are read back on the next access. For a loader that has copied a range
    // out, or read it once to verify it.
    void release(std::size_t offset, std::size_t size) const;

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace funnelrank::io
