#include "bindings.h"

namespace funnelrank::bindings {
void bind_hnsw(pybind11::module_& /*m*/) {}
}  // namespace funnelrank::bindings
