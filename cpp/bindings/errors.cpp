#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "errors.h"
#include "file_io.h"

namespace py = pybind11;

namespace funnelrank::bindings {
void bind_errors(py::module_& m) {
    static py::exception<IndexFileError> index_file_error(m, "IndexFileError", PyExc_OSError);
    index_file_error.attr("__doc__") =
        "A missing, truncated or corrupt index file, or a path that is not a regular file (a directory, a FIFO,\n"
        "a device: refused by type before it is opened, so loading one never blocks).";
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
    m.def(
        "stale_temp_files",
        [](const Hinted<hint::Path>& path) {
            StrList out;
            for (const auto& p : io::stale_temp_files(path_arg(path))) out.append(id_str(p));  // as os.fsdecode
            return out;
        },
        py::arg("path"),
        R"doc(The temporary files an index save of `path` left beside it in processes that no longer exist
(``<name>.tmp-<pid>-<hex>``, regular files only), sorted; a live process's (this one's included) is never
listed. Saving `path` (``BM25Index.save`` / ``HNSWIndex.save``) removes them first.)doc");
}
}  // namespace funnelrank::bindings
