// funnelrank._core: the native core. Each component binds itself in its own file.
#include <pybind11/pybind11.h>

#include "bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "funnelrank native core: BM25 inverted index, HNSW index, rank fusion.";
    funnelrank::bindings::bind_errors(m);
    funnelrank::bindings::bind_bm25(m);
    funnelrank::bindings::bind_hnsw(m);
    funnelrank::bindings::bind_fusion(m);
}
