#pragma once
// hnswlib's HierarchicalNSW as HNSWIndex uses it: the type aliases, the vector space with our run-time
// dispatched kernels, and the lease that returns a visited list to hnswlib's pool.
// Included by hnsw_index.cpp only, the one translation unit that includes the hnswlib headers (hnswlib 0.6.2
// defines non-inline functions and globals in them, so a second includer would not link). Its helpers keep
// the internal linkage (anonymous namespace) they had when they were all in that file, so they compile and
// inline as before.
#ifndef FUNNELRANK_HNSWLIB_TU
#error "hnswlib 0.6.2 defines non-inline functions and globals in its headers: only hnsw_index.cpp may include this"
#endif

#include <hnswlib/hnswlib.h>

#include <cstddef>
#include <limits>
#include <utility>

#include "hnsw_index.h"
#include "inner_product.h"
#include "vector_storage.h"

namespace funnelrank {

namespace {

using Graph = hnswlib::HierarchicalNSW<float>;
using hnswlib::labeltype;
using hnswlib::tableint;
using DistId = std::pair<float, tableint>;

static_assert(HNSWIndex::kMaxCapacity <= std::numeric_limits<tableint>::max(), "hnswlib's internal ids are 32-bit");

// Returns the visited list to hnswlib's pool on every exit path.
class VisitedListLease {
public:
    explicit VisitedListLease(hnswlib::VisitedListPool* pool) : pool_(pool), list_(pool->getFreeVisitedList()) {}
    ~VisitedListLease() { pool_->releaseVisitedList(list_); }
    VisitedListLease(const VisitedListLease&) = delete;
    VisitedListLease& operator=(const VisitedListLease&) = delete;
    hnswlib::VisitedList* operator->() const { return list_; }

private:
    hnswlib::VisitedListPool* pool_;
    hnswlib::VisitedList* list_;
};

}  // namespace

// (Outside the anonymous namespace: HNSWIndex::Impl, in hnsw_impl.h, holds one.)
// hnswlib distance space over the stored vectors of one VectorStorage (vector_storage.h), with our run-time
// dispatched SIMD kernels (hnswlib 0.6.2 picks its kernel at compile time, so a portable build would
// otherwise run its SSE code). Its distance compares two stored vectors: the graph's construction.
class VectorSpace final : public hnswlib::SpaceInterface<float> {
public:
    VectorSpace(std::size_t dim, VectorStorage storage)
        : dim_(dim), bytes_(stored_vector_bytes(storage, dim)), distance_(storage_kernels(storage).stored) {}
    std::size_t get_data_size() override { return bytes_; }
    hnswlib::DISTFUNC<float> get_dist_func() override { return distance_; }
    void* get_dist_func_param() override { return &dim_; }

private:
    std::size_t dim_;
    std::size_t bytes_;
    VectorDistanceFn distance_;
};

}  // namespace funnelrank
