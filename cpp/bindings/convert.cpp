#include "convert.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "errors.h"

namespace py = pybind11;

namespace funnelrank::bindings {

std::optional<std::string_view> utf8_if_str(const py::handle& s) {
    if (!PyUnicode_Check(s.ptr())) return std::nullopt;
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(s.ptr(), &size);
    if (data == nullptr) {
        PyErr_Clear();
        return std::nullopt;
    }
    return std::string_view(data, static_cast<std::size_t>(size));
}

namespace {
// utf8_view, with the name for errors made only when there is an error (string_list's per-item names).
template <typename Name>
std::string_view utf8_of(const py::handle& s, const Name& name) {
    if (!PyUnicode_Check(s.ptr()))
        throw py::type_error(name() + " must be a str, got " + std::string(py::str(py::type::of(s).attr("__name__"))));
    const std::optional<std::string_view> text = utf8_if_str(s);
    if (!text) throw InvalidArgument(name() + " is not valid Unicode (lone surrogate: cannot be encoded as UTF-8)");
    return *text;
}
}  // namespace

std::string_view utf8_view(const py::handle& s, const std::string& what) {
    return utf8_of(s, [&] { return what; });
}

std::string utf8(const py::handle& s, const char* what) { return std::string(utf8_view(s, what)); }

py::sequence sequence_arg(const py::handle& seq, const char* what) {
    if (PyUnicode_Check(seq.ptr()) || PyBytes_Check(seq.ptr()))
        throw py::type_error(std::string(what) + " must be a sequence of str, not a single string");
    if (!PySequence_Check(seq.ptr()))
        throw py::type_error(std::string(what) + " must be a sequence of str (a list or tuple), got " +
                             std::string(py::str(py::type::of(seq).attr("__name__"))));
    return py::reinterpret_borrow<py::sequence>(seq);
}

std::vector<std::string> string_list(const py::handle& seq, const char* what) {
    const py::sequence items = sequence_arg(seq, what);
    std::vector<std::string> out;
    out.reserve(items.size());
    for (const py::handle item : items) {
        const auto name = [&] { return std::string(what) + "[" + std::to_string(out.size()) + "]"; };
        out.emplace_back(utf8_of(item, name));
    }
    return out;
}

std::optional<std::vector<std::string>> allow_arg(const py::handle& allow) {
    if (allow.is_none()) return std::nullopt;
    return string_list(allow, "allow");
}

std::size_t non_negative(std::int64_t value, const char* name, std::int64_t minimum) {
    if (value < minimum)
        throw InvalidArgument(std::string(name) + " must be >= " + std::to_string(minimum) + ", got " +
                              std::to_string(value));
    return static_cast<std::size_t>(value);
}

std::uint64_t int_arg(const IntArg& arg, const char* name, std::uint64_t minimum, std::uint64_t maximum) {
    const std::string got = arg.overflow != 0 ? arg.text : std::to_string(arg.value);
    const bool below =
        arg.overflow < 0 || (arg.overflow == 0 && (arg.value < 0 || static_cast<std::uint64_t>(arg.value) < minimum));
    if (below) throw InvalidArgument(std::string(name) + " must be >= " + std::to_string(minimum) + ", got " + got);
    const bool fits = arg.overflow == 0 || arg.overflow == 1;
    const std::uint64_t value = arg.overflow == 1 ? arg.above : static_cast<std::uint64_t>(arg.value);
    if (!fits || value > maximum)
        throw InvalidArgument(std::string(name) + " must be <= " + std::to_string(maximum) + ", got " + got);
    return value;
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

py::object id_str(std::string_view id) {
    PyObject* s = PyUnicode_DecodeUTF8(id.data(), static_cast<Py_ssize_t>(id.size()), "surrogateescape");
    if (s == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(s);
}

StrList id_list(const std::vector<std::string>& ids) {
    StrList out(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), id_str(ids[i]).release().ptr());
    return out;
}

namespace {
// Whether the str `s` encodes to exactly the UTF-8 bytes `id`.
bool same_id(PyObject* s, const std::string& id) {
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        return static_cast<std::size_t>(PyUnicode_GET_LENGTH(s)) == id.size() &&
               std::memcmp(PyUnicode_DATA(s), id.data(), id.size()) == 0;
    }
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(s, &size);
    if (data == nullptr) {  // holds lone surrogates: never equal to an id, which is valid UTF-8 ...
        PyErr_Clear();      // ... or was decoded with surrogateescape: then just made anew
        return false;
    }
    return static_cast<std::size_t>(size) == id.size() && std::memcmp(data, id.data(), id.size()) == 0;
}
}  // namespace

StrList IdStrings::list(const std::vector<std::uint32_t>& slots, const std::vector<std::string>& ids) {
    if (slots.size() != ids.size()) throw std::logic_error("IdStrings::list: slots and ids differ in length");
    StrList out(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::size_t slot = slots[i];
        PyObject* cached = slot < by_slot_.size() ? by_slot_[slot].ptr() : nullptr;
        if (cached != nullptr && same_id(cached, ids[i])) {
            Py_INCREF(cached);
            PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), cached);
            continue;
        }
        py::object fresh = id_str(ids[i]);  // may run Python code (a collection): index by_slot_ anew below
        if (slot >= by_slot_.size()) by_slot_.resize(slot + 1);
        by_slot_[slot] = fresh;
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), fresh.release().ptr());
    }
    return out;
}

RankedHits ranked_to_python(IdStrings& id_strings, const std::vector<std::uint32_t>& slots,
                            const std::vector<std::string>& ids, const std::vector<float>& scores) {
    if (scores.size() != ids.size()) throw std::logic_error("ranked_to_python: ids and scores differ in length");
    StrList id_list = id_strings.list(slots, ids);
    py::array_t<float> score_array(static_cast<py::ssize_t>(scores.size()));
    std::copy(scores.begin(), scores.end(), score_array.mutable_data());
    return py::make_tuple(std::move(id_list), std::move(score_array));
}

}  // namespace funnelrank::bindings
