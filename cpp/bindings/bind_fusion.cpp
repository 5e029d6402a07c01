#include "bindings.h"

namespace funnelrank::bindings {
void bind_fusion(pybind11::module_& /*m*/) {}
}  // namespace funnelrank::bindings
