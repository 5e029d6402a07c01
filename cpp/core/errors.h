#pragma once
// Exceptions thrown by the core; the bindings map them to Python exceptions.
#include <stdexcept>
#include <string>

namespace funnelrank {
// Bad argument from the caller (maps to ValueError).
struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
// A missing, truncated or corrupt index file (maps to funnelrank.IndexFileError, an OSError).
struct IndexFileError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A key that is not in the index (maps to KeyError).
struct NotFound : std::out_of_range {
    using std::out_of_range::out_of_range;
};
}  // namespace funnelrank
