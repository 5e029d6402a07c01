#pragma once
// The float32 vectors an Int8 HNSWIndex re-scores its search candidates against (vector_storage.h), one
// row of dim floats per graph label.
//
// Where they live: an index built in this process holds them in memory (they are what add() was given,
// prepared); an index loaded from a file reads them from the file through a read-only mapping
// (mapped_file.h), so they cost the page cache, shared and reclaimable, not the process's own memory, and a
// search touches only its candidates' rows (ef of them). An add() after a load keeps the mapped rows mapped:
// rows for new labels go to an in-memory block after them, and a mapped row that is rewritten (a deleted
// slot reused for a new vector) gets its own in-memory copy, as the mapping is read-only. Saving writes every
// row; loading the saved file maps them all again.
//
// Thread safety: row() may be called concurrently (the index's shared lock); prepare() only under the
// index's exclusive lock, and writable_row() then for distinct prepared labels from the threads of one add().
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "mapped_file.h"

namespace funnelrank {

class RescoreStore {
public:
    explicit RescoreStore(std::size_t dim) : dim_(dim) {}

    const float* row(std::size_t label) const {
        if (label >= mapped_rows_) return owned_.data() + (label - mapped_rows_) * dim_;
        if (!replaced_.empty()) {
            const auto it = replaced_.find(label);
            if (it != replaced_.end()) return it->second.data();
        }
        return mapped_ + label * dim_;
    }

    // Makes rows [0, rows) addressable and each of `rewritten` (labels below `rows`) writable by
    // writable_row(): labels past the mapped rows live in the in-memory block (grown to `rows`), a mapped
    // label that is rewritten gets its own in-memory row (starting as the mapped one).
    template <typename Label>
    void prepare(std::size_t rows, const std::vector<Label>& rewritten) {
        if (rows > mapped_rows_ && (rows - mapped_rows_) * dim_ > owned_.size())
            owned_.resize((rows - mapped_rows_) * dim_);
        for (const Label label : rewritten) {
            const auto l = static_cast<std::size_t>(label);
            if (l < mapped_rows_ && !replaced_.count(l))
                replaced_.emplace(l, std::vector<float>(mapped_ + l * dim_, mapped_ + (l + 1) * dim_));
        }
    }

    // A row prepare() made writable.
    float* writable_row(std::size_t label) {
        if (label >= mapped_rows_) return owned_.data() + (label - mapped_rows_) * dim_;
        return replaced_.at(label).data();
    }

    // Serves `rows` rows from `data`, which lies inside `mapping` (kept alive as long as this store uses it).
    void map(std::shared_ptr<const io::MappedFile> mapping, const float* data, std::size_t rows) {
        owned_ = {};
        replaced_.clear();
        mapping_ = std::move(mapping);
        mapped_ = data;
        mapped_rows_ = rows;
    }

    // Bytes of the rows held in this process's memory (the in-memory block and the rewritten mapped rows).
    std::size_t resident_bytes() const { return (owned_.size() + replaced_.size() * dim_) * sizeof(float); }
    // Bytes of the rows read through the mapping.
    std::size_t mapped_bytes() const { return mapped_rows_ * dim_ * sizeof(float); }

private:
    std::size_t dim_;
    std::shared_ptr<const io::MappedFile> mapping_;
    const float* mapped_ = nullptr;
    std::size_t mapped_rows_ = 0;  // labels [0, mapped_rows_) are read from the mapping ...
    std::unordered_map<std::size_t, std::vector<float>> replaced_;  // ... unless rewritten since the load
    std::vector<float> owned_;  // labels [mapped_rows_, ...) in memory
};

}  // namespace funnelrank
