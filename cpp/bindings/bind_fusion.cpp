// funnelrank._core.rrf / convex_fusion / FusedResult.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "convert.h"
#include "errors.h"
#include "fusion.h"

namespace py = pybind11;

namespace funnelrank::bindings {

namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::vector<double> double_list(const py::handle& obj, const std::string& what) {
    if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr())) throw InvalidArgument(what + " must be numbers");
    DoubleArray a;
    try {
        a = DoubleArray::ensure(obj);
    } catch (const py::error_already_set&) {
        throw InvalidArgument(what + " must be a sequence of numbers");
    }
    if (!a || a.ndim() != 1) throw InvalidArgument(what + " must be a 1-D sequence of numbers");
    return std::vector<double>(a.data(), a.data() + a.shape(0));
}

std::vector<Ranking> rankings_arg(const py::handle& obj) {
    if (!PySequence_Check(obj.ptr()) || PyUnicode_Check(obj.ptr()))
        throw InvalidArgument("rankings must be a sequence of (ids, scores) pairs");
    const auto seq = py::reinterpret_borrow<py::sequence>(obj);
    std::vector<Ranking> out;
    out.reserve(seq.size());
    for (std::size_t r = 0; r < seq.size(); ++r) {
        const py::object pair = seq[r];
        const std::string where = "rankings[" + std::to_string(r) + "]";
        if (!PySequence_Check(pair.ptr()) || PyUnicode_Check(pair.ptr()) || py::len(pair) != 2)
            throw InvalidArgument(where + " must be an (ids, scores) pair");
        Ranking ranking;
        ranking.ids = string_list(pair[py::int_(0)], (where + " ids").c_str());
        ranking.scores = double_list(pair[py::int_(1)], where + " scores");
        out.push_back(std::move(ranking));
    }
    return out;
}

std::optional<std::vector<double>> weights_arg(const py::object& obj) {
    if (obj.is_none()) return std::nullopt;
    return double_list(obj, "weights");
}

// top_k as a size: any Python int is accepted by the signature, and one outside [0, 2**63 - 1] is a
// ValueError naming top_k (not pybind11's generic TypeError for an int beyond 64 bits).
std::optional<std::size_t> top_k_arg(const std::optional<IntArg>& top_k) {
    if (!top_k) return std::nullopt;
    return static_cast<std::size_t>(int_arg(*top_k, "top_k", 0));
}

template <typename T>
py::array_t<T> matrix(const std::vector<T>& data, std::size_t rows, std::size_t cols) {
    py::array_t<T> a({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
    std::copy(data.begin(), data.end(), a.mutable_data());
    return a;
}

}  // namespace

void bind_fusion(py::module_& m) {
    py::class_<FusedResult>(m, "FusedResult", R"doc(
Fused ranking, best first. ids[i] has fused score scores[i]; ranks[i, r] is its 1-based rank in input
ranking r (0 = absent) and input_scores[i, r] its score there (NaN = absent). Array properties return copies.
)doc")
        .def_property_readonly("ids", [](const FusedResult& f) { return f.ids; })
        .def_property_readonly("scores",
                               [](const FusedResult& f) {
                                   py::array_t<float> a(static_cast<py::ssize_t>(f.scores.size()));
                                   std::copy(f.scores.begin(), f.scores.end(), a.mutable_data());
                                   return a;
                               })
        .def_property_readonly("ranks",
                               [](const FusedResult& f) { return matrix(f.ranks, f.ids.size(), f.n_retrievers); })
        .def_property_readonly(
            "input_scores", [](const FusedResult& f) { return matrix(f.input_scores, f.ids.size(), f.n_retrievers); })
        .def_property_readonly("n_retrievers", [](const FusedResult& f) { return f.n_retrievers; })
        .def("__len__", [](const FusedResult& f) { return f.ids.size(); })
        .def("__repr__", [](const FusedResult& f) {
            return "FusedResult(n=" + std::to_string(f.ids.size()) + ", n_retrievers=" +
                   std::to_string(f.n_retrievers) + ")";
        });

    m.def(
        "rrf",
        [](const Hinted<hint::Rankings>& rankings, double k, const Hinted<hint::Weights>& weights,
           std::optional<IntArg> top_k) {
            const std::vector<Ranking> in = rankings_arg(rankings);
            const auto w = weights_arg(weights);
            const auto top = top_k_arg(top_k);
            py::gil_scoped_release release;
            return rrf(in, k, w ? &*w : nullptr, top);
        },
        py::arg("rankings"), py::kw_only(), py::arg("k") = 60.0, py::arg("weights") = py::none(),
        py::arg("top_k") = py::none(),
        R"doc(Reciprocal-rank fusion: score(d) = sum_r weights[r] / (k + rank_r(d)).

rankings: (ids, scores) per retriever, best first (rank = position + 1; scores are kept for tracing).
Ties: best rank in any input, then id. ValueError on mismatched lengths, bad weights, non-finite
scores or an id listed twice in one ranking.)doc");

    m.def(
        "convex_fusion",
        [](const Hinted<hint::Rankings>& rankings, const Hinted<hint::Weights>& weights,
           const std::string& normalization, std::optional<IntArg> top_k) {
            const std::vector<Ranking> in = rankings_arg(rankings);
            const auto w = weights_arg(weights);
            const Normalization norm = parse_normalization(normalization);
            const auto top = top_k_arg(top_k);
            py::gil_scoped_release release;
            return convex_fusion(in, w ? &*w : nullptr, norm, top);
        },
        py::arg("rankings"), py::kw_only(), py::arg("weights") = py::none(), py::arg("normalization") = "minmax",
        py::arg("top_k") = py::none(),
        R"doc(Convex combination of normalised scores: score(d) = sum_r w_r * norm_r(d), w normalised to sum 1.

normalization "minmax" maps each ranking's scores to [0, 1] (all 1 if equal), "zscore" to
(s - mean) / std (all 0 if std = 0). A document missing from a ranking contributes 0 there.)doc");
}

}  // namespace funnelrank::bindings
