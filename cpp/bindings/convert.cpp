#include "convert.h"

#include "errors.h"

namespace py = pybind11;

namespace funnelrank::bindings {

std::string utf8(const py::handle& s, const char* what) {
    if (!PyUnicode_Check(s.ptr())) throw py::type_error(std::string(what) + " must be a str");
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(s.ptr(), &size);
    if (data == nullptr) {
        PyErr_Clear();
        throw InvalidArgument(std::string(what) + " is not valid Unicode (cannot be encoded as UTF-8)");
    }
    return std::string(data, static_cast<std::size_t>(size));
}

std::vector<std::string> string_list(const py::handle& seq, const char* what) {
    if (PyUnicode_Check(seq.ptr()) || PyBytes_Check(seq.ptr()))
        throw py::type_error(std::string(what) + " must be a sequence of str, not a single string");
    if (!PySequence_Check(seq.ptr())) throw py::type_error(std::string(what) + " must be a sequence of str");
    const auto items = py::reinterpret_borrow<py::sequence>(seq);
    std::vector<std::string> out;
    out.reserve(items.size());
    std::size_t i = 0;
    for (const py::handle item : items) {
        if (!PyUnicode_Check(item.ptr()))
            throw py::type_error(std::string(what) + "[" + std::to_string(i) + "] must be a str, got " +
                                  std::string(py::str(py::type::of(item).attr("__name__"))));
        out.push_back(utf8(item, what));
        ++i;
    }
    return out;
}

std::size_t non_negative(std::int64_t value, const char* name, std::int64_t minimum) {
    if (value < minimum)
        throw InvalidArgument(std::string(name) + " must be >= " + std::to_string(minimum) + ", got " +
                              std::to_string(value));
    return static_cast<std::size_t>(value);
}

std::string path_arg(const py::handle& path) {
    // os.fsencode gives the bytes the OS sees (non-UTF-8 names included).
    const py::bytes encoded = py::module_::import("os").attr("fsencode")(path);
    return std::string(encoded);
}

std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (d) s += ", ";
        s += std::to_string(a.shape(d));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

}  // namespace funnelrank::bindings
