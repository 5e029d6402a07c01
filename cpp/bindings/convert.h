#pragma once
// Argument conversion shared by the bindings: checked Python -> C++ conversions whose errors name the
// argument (TypeError for a wrong type, ValueError for a bad value), instead of pybind11's generic
// "incompatible function arguments".
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace funnelrank::bindings {

// A sequence of str (not a bare str/bytes) -> UTF-8 strings. A non-sequence or non-str item raises
// TypeError, an unencodable string (lone surrogate) ValueError, naming `what` and the position.
std::vector<std::string> string_list(const pybind11::handle& seq, const char* what);

// A Python str -> UTF-8 (ValueError if it cannot be encoded).
std::string utf8(const pybind11::handle& s, const char* what);

// value >= minimum, else ValueError "`name` must be >= minimum".
std::size_t non_negative(std::int64_t value, const char* name, std::int64_t minimum);

// str / bytes / os.PathLike -> filesystem path string.
std::string path_arg(const pybind11::handle& path);

// "(3, 4)" for an array's shape, for error messages.
std::string shape_of(const pybind11::array& a);

}  // namespace funnelrank::bindings
