#pragma once
// The float32 vectors an Int8 HNSWIndex re-scores its search candidates against (vector_storage.h), one
// row of dim floats per graph label.
//
// Where they live: an index built or changed in this process holds them in memory (they are what add()
// was given, prepared); an index loaded from a file reads them from the file through a read-only mapping
// (mapped_file.h), so they cost the page cache, shared and reclaimable, not the process's own memory, and
// a search touches only its candidates' rows (ef of them). The first add() after a load copies the mapped
// rows into memory (rows are rewritten in place when a deleted slot is reused, and a mapping is
// read-only); saving and loading again maps them once more.
//
// Thread safety: row() may be called concurrently (the index's shared lock); ensure_writable() and
// writable_row() only under the index's exclusive lock, writable_row() for distinct labels from the
// threads of one add().
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "mapped_file.h"

namespace funnelrank {

class RescoreStore {
public:
    explicit RescoreStore(std::size_t dim) : dim_(dim) {}

    const float* row(std::size_t label) const { return base_ + label * dim_; }
    std::size_t rows() const { return rows_; }

    // Makes rows [0, rows) writable in memory, copying mapped rows in first (and keeping those beyond).
    void ensure_writable(std::size_t rows) {
        if (!mapping_ && rows <= rows_) return;
        std::vector<float> owned(std::max(rows, rows_) * dim_);
        if (rows_ > 0) std::memcpy(owned.data(), base_, rows_ * dim_ * sizeof(float));
        owned_ = std::move(owned);
        mapping_.reset();
        base_ = owned_.data();
        rows_ = owned_.size() / dim_;
    }

    float* writable_row(std::size_t label) { return owned_.data() + label * dim_; }

    // Serves `rows` rows from `data`, which lies inside `mapping` (kept alive as long as this store uses it).
    void map(std::shared_ptr<const io::MappedFile> mapping, const float* data, std::size_t rows) {
        owned_ = {};
        mapping_ = std::move(mapping);
        base_ = data;
        rows_ = rows;
    }

    std::size_t resident_bytes() const { return owned_.size() * sizeof(float); }
    std::size_t mapped_bytes() const { return mapping_ ? rows_ * dim_ * sizeof(float) : 0; }

private:
    std::size_t dim_;
    std::vector<float> owned_;
    std::shared_ptr<const io::MappedFile> mapping_;
    const float* base_ = nullptr;
    std::size_t rows_ = 0;
};

}  // namespace funnelrank
