#pragma once
// Argument conversion shared by the bindings: checked Python -> C++ conversions whose errors name the
// argument (TypeError for a wrong type, ValueError for a bad value), instead of pybind11's generic
// "incompatible function arguments".
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hints.h"

namespace funnelrank::bindings {

// `seq` as a sequence; a bare str/bytes ("not a single string": almost always a mistake) or a
// non-sequence (a set, a generator: no order or length to pair items by) raises TypeError naming `what`.
pybind11::sequence sequence_arg(const pybind11::handle& seq, const char* what);

// A sequence of str (see sequence_arg) -> UTF-8 strings. A non-str item raises TypeError, an unencodable
// string (lone surrogate) ValueError, naming `what` and the position ("ids[1] ...").
std::vector<std::string> string_list(const pybind11::handle& seq, const char* what);

// A search's `allow=` argument: None -> nullopt (no filter), else string_list(allow, "allow").
std::optional<std::vector<std::string>> allow_arg(const pybind11::handle& allow);

// The UTF-8 bytes of a Python str, valid while `s` lives (TypeError if not a str, ValueError if it
// cannot be encoded).
std::string_view utf8_view(const pybind11::handle& s, const std::string& what);

// For membership tests (`id in index`): the UTF-8 bytes of a str, or nullopt for anything that can never be
// an id (not a str, or a lone surrogate that cannot be encoded). Never raises.
std::optional<std::string_view> utf8_if_str(const pybind11::handle& s);

// A Python str -> UTF-8 (as utf8_view, copied).
std::string utf8(const pybind11::handle& s, const char* what);

// value >= minimum, else ValueError "`name` must be >= minimum".
std::size_t non_negative(std::int64_t value, const char* name, std::int64_t minimum);

// A Python int argument of any magnitude (an int, or anything with __index__ such as a NumPy integer; not a
// float), for counts and sizes. pybind11's own int64 conversion refuses an int beyond 64 bits with its
// generic "incompatible function arguments" TypeError; taking an IntArg instead lets int_arg() say which
// argument is out of range and what the range is. Shown as `int` in signatures.
struct IntArg {
    std::int64_t value = 0;   // the value when it fits in int64 (overflow == 0)
    std::uint64_t above = 0;  // the value when it is above int64 but fits in uint64 (overflow == 1)
    int overflow = 0;         // 0: fits int64; 1: fits uint64 only; 2: above uint64; -1: below int64
    std::string text;         // its decimal digits when overflow != 0, for the error message
};

// arg as a size in [minimum, maximum] (minimum >= 0): else ValueError "`name` must be >= minimum, got ..."
// or "`name` must be <= maximum, got ..." (with the caller's exact value, however large).
std::uint64_t int_arg(const IntArg& arg, const char* name, std::uint64_t minimum,
                      std::uint64_t maximum = static_cast<std::uint64_t>(INT64_MAX));

// str / bytes / os.PathLike -> filesystem path: the bytes the OS sees (os.fsencode), so non-UTF-8 names
// round-trip; anything else raises os.fsencode's TypeError.
std::string path_arg(const pybind11::handle& path);

// "(3, 4)" for an array's shape, for error messages.
std::string shape_of(const pybind11::array& a);

// A Python str from UTF-8 bytes (invalid bytes become lone surrogates, as os.fsdecode does).
pybind11::object id_str(std::string_view id);

// [id_str(id) for id in ids]: an index's ids as Python, decoded as search results decode them (an id that
// is not valid UTF-8, which only a file written by other code can hold, never raises).
StrList id_list(const std::vector<std::string>& ids);

// The Python str objects of one index's ids, by slot (a BM25 document slot, an HNSW label), created the
// first time a slot's id is returned and reused after that: a search result's ids then cost a reference
// count each instead of a new str. Each use compares the cached str with the id the search returned, so
// a slot whose id changed (deleted and reused, renumbered by compaction) simply gets a new str: the cache
// needs no invalidation and cannot return a stale id. Holds at most one str per slot ever returned.
// Only used with the GIL held, which serializes it; no reference into it is held across a call that
// could run Python code.
class IdStrings {
public:
    // [str of ids[i]] as a list; slots[i] is the slot ids[i] was found at.
    StrList list(const std::vector<std::uint32_t>& slots, const std::vector<std::string>& ids);

private:
    std::vector<pybind11::object> by_slot_;
};

// A ranked result as Python: (ids as a list of str through `id_strings`, scores as a float32 array), the
// result type of every BM25Index and HNSWIndex search.
RankedHits ranked_to_python(IdStrings& id_strings, const std::vector<std::uint32_t>& slots,
                                 const std::vector<std::string>& ids, const std::vector<float>& scores);

}  // namespace funnelrank::bindings

namespace pybind11::detail {
template <>
struct type_caster<funnelrank::bindings::IntArg> {
    PYBIND11_TYPE_CASTER(funnelrank::bindings::IntArg, const_name("int"));

    bool load(handle src, bool /*convert*/) {
        if (!src || PyFloat_Check(src.ptr()) || !PyIndex_Check(src.ptr())) return false;
        const object index = reinterpret_steal<object>(PyNumber_Index(src.ptr()));
        if (!index) {
            PyErr_Clear();
            return false;
        }
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return false;
        }
        value = funnelrank::bindings::IntArg{};
        if (overflow == 0) {
            value.value = v;
            return true;
        }
        value.overflow = overflow < 0 ? -1 : 2;
        if (overflow > 0) {
            const unsigned long long u = PyLong_AsUnsignedLongLong(index.ptr());
            if (PyErr_Occurred()) {
                PyErr_Clear();
            } else {
                value.above = u;
                value.overflow = 1;
            }
        }
        const object digits = reinterpret_steal<object>(PyObject_Str(index.ptr()));
        if (!digits) {
            PyErr_Clear();
            return false;
        }
        value.text = digits.cast<std::string>();
        return true;
    }

    static handle cast(const funnelrank::bindings::IntArg& v, return_value_policy, handle) {
        if (v.overflow == 0) return PyLong_FromLongLong(v.value);
        if (v.overflow == 1) return PyLong_FromUnsignedLongLong(v.above);
        return PyLong_FromString(v.text.c_str(), nullptr, 10);
    }
};
}  // namespace pybind11::detail
