#pragma once
#include <pybind11/pybind11.h>

namespace funnelrank::bindings {
void bind_errors(pybind11::module_& m);  // errors.cpp: exception translation
void bind_bm25(pybind11::module_& m);    // bind_bm25.cpp: Analyzer, BM25Index
void bind_hnsw(pybind11::module_& m);    // bind_hnsw.cpp: HNSWIndex
void bind_fusion(pybind11::module_& m);  // bind_fusion.cpp: rrf, convex fusion
}  // namespace funnelrank::bindings
