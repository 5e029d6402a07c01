#include "bindings.h"

namespace funnelrank::bindings {
void bind_bm25(pybind11::module_& /*m*/) {}
}  // namespace funnelrank::bindings
