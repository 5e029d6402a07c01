#pragma once
// hnswlib's HierarchicalNSW as HNSWIndex uses it: the type aliases, the inner-product space with our
// run-time dispatched kernel, and the lease that returns a visited list to hnswlib's pool.
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
// hnswlib distance space for inner product, using our run-time dispatched SIMD kernel (hnswlib 0.6.2
// picks its kernel at compile time, so a portable build would otherwise run its SSE code).
class InnerProductSpace final : public hnswlib::SpaceInterface<float> {
public:
    explicit InnerProductSpace(std::size_t dim) : dim_(dim), distance_(best_inner_product_distance()) {}
    std::size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return distance_; }
    void* get_dist_func_param() override { return &dim_; }

private:
    std::size_t dim_;
    InnerProductDistanceFn distance_;
};

}  // namespace funnelrank
