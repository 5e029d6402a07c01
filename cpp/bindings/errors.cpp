#include <pybind11/pybind11.h>

#include "bindings.h"
#include "errors.h"

namespace py = pybind11;

namespace funnelrank::bindings {
void bind_errors(py::module_& m) {
    static py::exception<IndexFileError> index_file_error(m, "IndexFileError", PyExc_OSError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const IndexFileError& e) {
            py::set_error(index_file_error, e.what());
        } catch (const InvalidArgument& e) {
            py::set_error(PyExc_ValueError, e.what());
        } catch (const NotFound& e) {
            py::set_error(PyExc_KeyError, e.what());
        }
    });
}
}  // namespace funnelrank::bindings
