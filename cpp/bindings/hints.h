#pragma once
// Type hints for the signatures pybind11 writes, from which the type stubs are generated
// (python/funnelrank/_core.pyi, `make stubs`).
//
// Most arguments are checked by the bindings themselves (convert.h), with errors that name the argument, so
// they are taken as any Python object. Hinted<H> is such an argument: every object is accepted, as by
// py::object, but the signature shows H::name, the type the binding accepts. Results are built as
// pybind11's typing classes (py::typing::List<py::str>, ...), which are plain Python lists, tuples and dicts
// whose signatures show their item types.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/typing.h>

namespace funnelrank::bindings {

namespace hint {
using pybind11::detail::const_name;
// str / bytes (UTF-8) texts
struct Text {
    static constexpr auto name = const_name("str | bytes");
};
struct Texts {
    static constexpr auto name = const_name("collections.abc.Sequence[str | bytes]");
};
struct Strs {
    static constexpr auto name = const_name("collections.abc.Sequence[str]");
};
// A search's allow-list (None: no filter).
struct AllowList {
    static constexpr auto name = const_name("collections.abc.Sequence[str] | None");
};
// What path_arg() takes: what os.fsencode takes.
struct Path {
    static constexpr auto name = const_name("str | bytes | os.PathLike[str] | os.PathLike[bytes]");
};
struct Stopwords {
    static constexpr auto name = const_name("str | collections.abc.Sequence[str] | None");
};
struct OptionalStr {
    static constexpr auto name = const_name("str | None");
};
struct DocFreqs {
    static constexpr auto name = const_name("dict[str, int]");
};
// Anything numpy.asarray turns into float32 of the right shape.
struct Vectors {
    static constexpr auto name = const_name("numpy.typing.ArrayLike");
};
// Fusion's inputs: (ids, scores) per retriever, and the weights.
struct Rankings {
    static constexpr auto name = const_name(
        "collections.abc.Sequence[tuple[collections.abc.Sequence[str], "
        "collections.abc.Sequence[float] | numpy.typing.NDArray[numpy.floating]]]");
};
struct Weights {
    static constexpr auto name = const_name("collections.abc.Sequence[float] | None");
};
// Any object (`x in index`).
struct Object {
    static constexpr auto name = const_name("object");
};
}  // namespace hint

inline bool accepts_any_object(PyObject* /*obj*/) { return true; }

template <typename Hint>
class Hinted : public pybind11::object {
public:
    PYBIND11_OBJECT_DEFAULT(Hinted, object, accepts_any_object)
};

// A search result: (ids, float32 scores), best first.
using RankedHits = pybind11::typing::Tuple<pybind11::typing::List<pybind11::str>, pybind11::array_t<float>>;
using StrList = pybind11::typing::List<pybind11::str>;

}  // namespace funnelrank::bindings

namespace pybind11::detail {
template <typename Hint>
struct handle_type_name<funnelrank::bindings::Hinted<Hint>> {
    static constexpr auto name = Hint::name;
};
}  // namespace pybind11::detail
