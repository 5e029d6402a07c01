// funnelrank._core.HNSWIndex: string-keyed HNSW index; the GIL is released around all heavy work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "errors.h"
#include "hnsw_index.h"

namespace py = pybind11;

namespace funnelrank::bindings {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

FloatArray as_float_array(const py::handle& obj, const char* what) {
    try {
        return FloatArray::ensure(obj);
    } catch (const py::error_already_set&) {
        throw InvalidArgument(std::string(what) + " must be convertible to a float32 array");
    }
}

FloatArray vector_arg(const py::handle& obj, std::size_t dim) {
    FloatArray a = as_float_array(obj, "query vector");
    if (!a) throw InvalidArgument("query vector must be convertible to a float32 array");
    if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != dim)
        throw InvalidArgument("query vector must have shape (" + std::to_string(dim) + ",), got " + shape_of(a));
    return a;
}

FloatArray matrix_arg(const py::handle& obj, std::size_t dim, const char* what) {
    FloatArray a = as_float_array(obj, what);
    if (!a) throw InvalidArgument(std::string(what) + " must be convertible to a float32 array");
    if (a.ndim() != 2 || static_cast<std::size_t>(a.shape(1)) != dim)
        throw InvalidArgument(std::string(what) + " must have shape (n, " + std::to_string(dim) + "), got " +
                              shape_of(a));
    return a;
}

// The Python HNSWIndex: the core index and the str objects of its ids.
struct PyHNSWIndex : HNSWIndex {
    explicit PyHNSWIndex(HNSWIndex&& index) : HNSWIndex(std::move(index)) {}
    IdStrings id_strings;
};

RankedHits hits_to_python(const SearchHits& hits, IdStrings& id_strings) {
    return ranked_to_python(id_strings, hits.slots, hits.ids, hits.scores);
}

// A per-query ef: any value >= 1 (one beyond len(index) searches as ef = len(index)); None -> 0, the
// index's ef_search.
std::size_t ef_arg(const std::optional<IntArg>& ef) { return ef ? int_arg(*ef, "ef", 1) : 0; }

}  // namespace

void bind_hnsw(py::module_& m) {
    py::class_<PyHNSWIndex>(m, "HNSWIndex", R"doc(Approximate nearest-neighbour index (hnswlib's HNSW graph) over float32 vectors keyed by string ids.

metric "cosine" L2-normalises vectors on add and query and scores by cosine similarity; "ip" scores by
inner product. storage "f32" keeps the vectors as float32; "f16" as half precision (half the vector bytes;
searches score the float32 query against them); "int8" as 8-bit codes with a per-vector scale (a quarter,
plus 4 bytes), walking the graph on int8 dot products and re-scoring the ef best candidates against float32
copies, which a loaded index reads from its file through a memory mapping instead of holding them.
Searches run concurrently from many threads; add/delete wait for running searches.
Deleted slots are reused by later adds, so delete+add cycles do not grow the index.

Parameter bounds (ValueError beyond them): dim in [1, 65536], M in [2, 1024], ef_construction in
[1, 65536], ef_search in [1, 2**20], initial_capacity in [0, 2**32 - 1], seed in [0, 2**64 - 1]. Integer
arguments take any Python int: one outside its range, however large, is a ValueError naming it.)doc")
        .def(py::init([](const IntArg& dim, const std::string& metric, const IntArg& M, const IntArg& ef_construction,
                         const IntArg& ef_search, const IntArg& initial_capacity, const IntArg& seed,
                         const std::string& storage) {
                 HNSWParams p;
                 p.dim = int_arg(dim, "dim", 1, HNSWIndex::kMaxDim);
                 p.metric = parse_metric(metric);
                 p.M = int_arg(M, "M", 2, HNSWIndex::kMaxM);
                 p.ef_construction = int_arg(ef_construction, "ef_construction", 1, HNSWIndex::kMaxEfConstruction);
                 p.ef_search = int_arg(ef_search, "ef_search", 1, HNSWIndex::kMaxEfSearch);
                 p.initial_capacity = int_arg(initial_capacity, "initial_capacity", 0, HNSWIndex::kMaxCapacity);
                 p.seed = int_arg(seed, "seed", 0, UINT64_MAX);
                 p.storage = parse_storage(storage);
                 return PyHNSWIndex(HNSWIndex(p));
             }),
             py::arg("dim"), py::kw_only(), py::arg("metric") = "cosine", py::arg("M") = 16,
             py::arg("ef_construction") = 200, py::arg("ef_search") = 64, py::arg("initial_capacity") = 1024,
             py::arg("seed") = 100, py::arg("storage") = "f32")
        .def(
            "add",
            [](PyHNSWIndex& self, const Hinted<hint::Strs>& ids, const Hinted<hint::Vectors>& vectors,
               const IntArg& threads) {
                std::vector<std::string> id_list = string_list(ids, "ids");
                FloatArray a = matrix_arg(vectors, self.dim(), "vectors");
                const auto n = static_cast<std::size_t>(a.shape(0));
                const std::size_t t = int_arg(threads, "threads", 0);
                const float* data = a.data();
                py::gil_scoped_release release;
                self.add(id_list, data, n, t);
            },
            py::arg("ids"), py::arg("vectors"), py::arg("threads") = 0,
            "Add vectors (n x dim) under string ids; all-or-nothing validation. threads=0 uses every CPU this process may "
            "use. A C-contiguous float32 array is read in place (no copy), without the GIL: do not change it from "
            "another thread until add returns.")
        .def(
            "delete",
            [](PyHNSWIndex& self, const Hinted<hint::Strs>& ids) {
                std::vector<std::string> id_list = string_list(ids, "ids");
                py::gil_scoped_release release;
                self.remove(id_list);
            },
            py::arg("ids"), "Delete ids (KeyError for an unknown id; nothing is deleted then).")
        .def(
            "search",
            [](PyHNSWIndex& self, const Hinted<hint::Vectors>& vector, const IntArg& k,
               const std::optional<IntArg>& ef, const Hinted<hint::AllowList>& allow) {
                FloatArray q = vector_arg(vector, self.dim());
                const std::size_t kk = int_arg(k, "k", 1);
                const std::size_t e = ef_arg(ef);
                const std::optional<std::vector<std::string>> allowed = allow_arg(allow);
                SearchHits hits;
                {
                    py::gil_scoped_release release;
                    hits = self.search(q.data(), kk, e, allowed ? &*allowed : nullptr);
                }
                return hits_to_python(hits, self.id_strings);
            },
            py::arg("vector"), py::arg("k") = 10, py::arg("ef") = py::none(), py::arg("allow") = py::none(),
            R"doc(The k most similar live ids and their similarities, best first. ``allow`` restricts results to
those ids that are in the index (unknown or deleted ids in it are ignored, as in BM25Index.search).
ef (>= 1; None: ``ef_search``) is the search breadth, at least k. k and ef beyond len(index) are the
same as len(index) (neither sizes an allocation), up to 2**63 - 1 (beyond: ValueError).)doc")
        .def(
            "search_batch",
            [](PyHNSWIndex& self, const Hinted<hint::Vectors>& vectors, const IntArg& k,
               const std::optional<IntArg>& ef, const IntArg& threads, const Hinted<hint::AllowList>& allow) {
                FloatArray a = matrix_arg(vectors, self.dim(), "query vectors");
                const auto n = static_cast<std::size_t>(a.shape(0));
                const std::size_t kk = int_arg(k, "k", 1);
                const std::size_t e = ef_arg(ef);
                const std::size_t t = int_arg(threads, "threads", 0);
                const std::optional<std::vector<std::string>> allowed = allow_arg(allow);
                std::vector<SearchHits> all;
                {
                    py::gil_scoped_release release;
                    all = self.search_batch(a.data(), n, kk, e, t, allowed ? &*allowed : nullptr);
                }
                py::typing::List<RankedHits> out(all.size());
                for (std::size_t i = 0; i < all.size(); ++i) out[i] = hits_to_python(all[i], self.id_strings);
                return out;
            },
            py::arg("vectors"), py::arg("k") = 10, py::arg("ef") = py::none(), py::arg("threads") = 0,
            py::arg("allow") = py::none(),
            "search() for every row, in parallel (``threads`` 0 = every CPU this process may use); ``allow`` (as "
            "in search()) applies to every row and is resolved once for the batch.")
        .def(
            "search_exact",
            [](PyHNSWIndex& self, const Hinted<hint::Vectors>& vector, const IntArg& k) {
                FloatArray q = vector_arg(vector, self.dim());
                const std::size_t kk = int_arg(k, "k", 1);
                SearchHits hits;
                {
                    py::gil_scoped_release release;
                    hits = self.search_exact(q.data(), kk);
                }
                return hits_to_python(hits, self.id_strings);
            },
            py::arg("vector"), py::arg("k") = 10,
            "Brute-force k nearest live ids (the recall reference); k as in search().")
        .def(
            "vectors",
            [](const PyHNSWIndex& self, const Hinted<hint::Strs>& ids) {
                std::vector<std::string> id_list = string_list(ids, "ids");
                const std::size_t dim = self.dim();
                std::vector<float> data;
                {
                    py::gil_scoped_release release;
                    data = self.vectors(id_list);
                }
                py::array_t<float> out({static_cast<py::ssize_t>(id_list.size()), static_cast<py::ssize_t>(dim)});
                std::copy(data.begin(), data.end(), out.mutable_data());
                return out;
            },
            py::arg("ids"),
            R"doc(The stored vectors of `ids`, ``[len(ids), dim]`` float32 (L2-normalised under cosine, as given under
"ip"); KeyError for an id not in the index. Adding them to another index of the same metric indexes
the same vectors, e.g. ``HNSWIndex.vectors(["a"]).shape == (1, dim)``.)doc")
        .def(
            "save",
            [](const PyHNSWIndex& self, const Hinted<hint::Path>& path) {
                const std::string p = path_arg(path);
                py::gil_scoped_release release;
                self.save(p);
            },
            py::arg("path"),
            "Write the index atomically (temporary file, fsync, rename) to a checksummed file, first removing the "
            "temporary files that saves of `path` killed mid-write left behind (:func:`stale_temp_files`).")
        .def_static(
            "load",
            [](const Hinted<hint::Path>& path) {
                const std::string p = path_arg(path);
                py::gil_scoped_release release;
                return PyHNSWIndex(HNSWIndex::load(p));
            },
            py::arg("path"),
            R"doc(Load a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or
corrupt (every count, link, level and vector is checked). What it allocates is bounded by the file's
size: the saved capacity is restored up to max(2 x stored slots, 32 MiB of slots); beyond that the
graph grows again on demand.)doc")
        .def("__len__", &HNSWIndex::size)
        .def(
            "__contains__",
            [](const PyHNSWIndex& self, const Hinted<hint::Object>& id) {
                const auto key = utf8_if_str(id);
                return key.has_value() && self.contains(std::string(*key));
            },
            py::arg("id"))
        .def(
            "ids", [](const PyHNSWIndex& self) { return id_list(self.ids()); }, "Live ids in slot order.")
        .def_property_readonly("dim", &HNSWIndex::dim)
        .def_property_readonly("metric", [](const PyHNSWIndex& self) { return metric_name(self.metric()); })
        .def_property_readonly(
            "storage", [](const PyHNSWIndex& self) { return storage_name(self.storage()); },
            "How the graph stores its vectors: \"f32\", \"f16\" or \"int8\" (saved with the index).")
        .def_property_readonly(
            "index_bytes", [](const PyHNSWIndex& self) { return self.memory().graph_bytes; },
            "Bytes the index holds in memory: the graph's level-0 block (links, vectors, labels of every allocated "
            "slot), its upper layers' links, and int8's in-memory float32 re-scoring vectors (ids not counted).")
        .def_property_readonly(
            "vector_bytes", [](const PyHNSWIndex& self) { return self.memory().vector_bytes; },
            "Of index_bytes, the vectors: the stored vectors of the slots in use, plus int8's in-memory float32 "
            "re-scoring vectors.")
        .def_property_readonly(
            "mapped_bytes", [](const PyHNSWIndex& self) { return self.memory().mapped_bytes; },
            "int8's float32 re-scoring vectors read from the file the index was loaded from, through a read-only "
            "memory mapping (page cache, touched per search only for its candidates); 0 otherwise. Adds after a load "
            "keep them mapped: only new rows, and rows of reused deleted slots, are held in memory.")
        .def_property_readonly("M", [](const PyHNSWIndex& self) { return self.params().M; })
        .def_property_readonly("ef_construction", [](const PyHNSWIndex& self) { return self.params().ef_construction; })
        .def_property(
            "ef_search", &HNSWIndex::ef_search,
            py::cpp_function(
                [](PyHNSWIndex& self, const IntArg& ef) {
                    self.set_ef_search(int_arg(ef, "ef_search", 1, HNSWIndex::kMaxEfSearch));
                },
                py::arg("self"), py::arg("value")),
            "Default ef for searches that pass none, in [1, 2**20] (ValueError beyond).")
        .def_property_readonly("capacity", &HNSWIndex::capacity,
                               "Slots allocated in the graph (grows by doubling; deleted slots are reused).")
        .def(
            "exact_filter_threshold",
            [](const PyHNSWIndex& self, const IntArg& ef) { return self.exact_filter_threshold(int_arg(ef, "ef", 0)); },
            py::arg("ef"),
             "Allow-lists with at most this many live ids are scored exactly rather than searched in the graph.")
        .def_property("exact_filter_crossover", &HNSWIndex::exact_filter_crossover,
                      py::cpp_function([](PyHNSWIndex& self, double value) { self.set_exact_filter_crossover(value); },
                                       py::arg("self"), py::arg("value")),
                      "c in the exact-scoring threshold sqrt(c * ef * len(index)) for allow-lists (0: always the "
                      "graph, inf: always exact). Not saved with the index.")
        .def("__repr__", [](const PyHNSWIndex& self) {
            return "HNSWIndex(dim=" + std::to_string(self.dim()) + ", metric='" + metric_name(self.metric()) +
                   "', M=" + std::to_string(self.params().M) + ", storage='" + storage_name(self.storage()) +
                   "', size=" + std::to_string(self.size()) + ")";
        });
}

}  // namespace funnelrank::bindings
