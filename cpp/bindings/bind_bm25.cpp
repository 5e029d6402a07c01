// Python bindings for Analyzer and BM25Index. Texts are read as UTF-8 (str, or bytes that must be valid
// UTF-8); the GIL is released around analysis, indexing, search and file I/O.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "analyzer.h"
#include "bindings.h"
#include "bm25_index.h"
#include "convert.h"
#include "errors.h"

namespace py = pybind11;

namespace funnelrank::bindings {
namespace {

// UTF-8 view of a str (or bytes) object; the object must stay alive while the view is used. Bytes are
// taken as they are (the core checks that they are valid UTF-8).
std::string_view text_view(py::handle obj, const std::string& what) {
    if (PyBytes_Check(obj.ptr())) {
        char* data = nullptr;
        Py_ssize_t size = 0;
        PyBytes_AsStringAndSize(obj.ptr(), &data, &size);
        return {data, static_cast<std::size_t>(size)};
    }
    if (PyUnicode_Check(obj.ptr())) return utf8_view(obj, what);
    throw py::type_error(what + " must be str or bytes, not " + std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
}

// The items of a sequence argument of texts, each held here: text views into them stay valid with the
// GIL released even if another thread changes the sequence meanwhile.
std::vector<py::object> items_of(const py::handle& seq, const char* name) {
    const py::sequence items = sequence_arg(seq, name);
    std::vector<py::object> out;
    out.reserve(items.size());
    for (const py::handle item : items) out.push_back(py::reinterpret_borrow<py::object>(item));
    return out;
}

// The Python BM25Index: the core index and the str objects of its ids.
struct PyBM25Index {
    std::shared_ptr<BM25Index> index;
    IdStrings id_strings;
};

py::tuple to_python(const BM25Results& r, IdStrings& id_strings) {
    return ranked_to_python(id_strings, r.slots, r.ids, r.scores);
}

// A ranked result with its exact (float64) scores too: (ids, float32 scores, float64 scores).
py::tuple to_python_exact(const BM25Results& r, IdStrings& id_strings) {
    const py::tuple base = to_python(r, id_strings);
    py::array_t<double> exact(static_cast<py::ssize_t>(r.exact_scores.size()));
    std::copy(r.exact_scores.begin(), r.exact_scores.end(), exact.mutable_data());
    return py::make_tuple(base[0], base[1], std::move(exact));
}

// The corpus-wide statistics of search_global(), checked at the edge: counts are ints >= 0 (any magnitude
// refused with a ValueError naming it), df a dict of str -> int.
BM25CorpusStats corpus_stats_arg(const IntArg& documents, const IntArg& total_length, const py::handle& df) {
    BM25CorpusStats stats;
    stats.docs = int_arg(documents, "documents", 0);
    stats.total_length = int_arg(total_length, "total_length", 0);
    if (!PyDict_Check(df.ptr())) {
        throw py::type_error("df must be a dict of str -> int, not " +
                             std::string(py::str(py::type::handle_of(df).attr("__name__"))));
    }
    for (const auto& item : py::reinterpret_borrow<py::dict>(df)) {
        if (!PyUnicode_Check(item.first.ptr())) throw py::type_error("df keys must be str (analyzed terms)");
        std::string term(utf8_view(item.first, "df term"));
        IntArg value;
        try {
            value = item.second.cast<IntArg>();
        } catch (const py::cast_error&) {
            throw py::type_error("df['" + term + "'] must be an int");
        }
        const std::string name = "df['" + term + "']";
        stats.df[std::move(term)] = int_arg(value, name.c_str(), 0);
    }
    return stats;
}

// k >= 1 (one beyond len(index) is len(index)); an int too large for 64 bits is a ValueError too.
std::size_t checked_k(const IntArg& k) { return int_arg(k, "k", 1); }

std::shared_ptr<Analyzer> make_analyzer(bool lowercase, const py::object& stopwords, const py::object& stemmer,
                                        const IntArg& min_token_length) {
    AnalyzerConfig cfg;
    cfg.lowercase = lowercase;
    if (stopwords.is_none()) {
        cfg.stopwords.clear();
    } else if (PyUnicode_Check(stopwords.ptr())) {
        const auto name = stopwords.cast<std::string>();
        if (name == "lucene") {
            cfg.stopwords = lucene_stopwords();
        } else if (name != "english") {
            throw InvalidArgument("stopwords must be 'english', 'lucene', a list of words or None, got '" + name +
                                  "'");
        }
    } else {
        cfg.stopwords = string_list(stopwords, "stopwords");
    }
    if (stemmer.is_none()) {
        cfg.stemmer.clear();
    } else {
        cfg.stemmer = stemmer.cast<std::string>();
        if (cfg.stemmer.empty()) throw InvalidArgument("stemmer must be a Snowball algorithm name or None");
    }
    cfg.min_token_length = int_arg(min_token_length, "min_token_length", 1, kMaxMinTokenLength);
    return std::make_shared<Analyzer>(std::move(cfg));
}

}  // namespace

void bind_bm25(py::module_& m) {
    py::class_<Analyzer, std::shared_ptr<Analyzer>>(m, "Analyzer", R"doc(
Text analysis shared by documents and queries: Unicode lowercasing, tokenization into runs of Unicode
letters, digits and '_' (bm25s's default pattern ``(?u)\b\w\w+\b``), stopword removal and Snowball
stemming (libstemmer).

stopwords: "english" (NLTK's 179-word English list, bm25s's "en_plus"; the default), "lucene"
(Lucene's 33-word EnglishAnalyzer list, bm25s's "en"), a list of words, or None.
stemmer: a Snowball algorithm name (see ``Analyzer.available_stemmers()``) or None.
min_token_length: tokens shorter than this many code points are dropped; 1 to 255 (ValueError otherwise).
)doc")
        .def(py::init(&make_analyzer), py::kw_only(), py::arg("lowercase") = true,
             py::arg("stopwords") = py::str("english"), py::arg("stemmer") = py::str("english"),
             py::arg("min_token_length") = 2)
        .def(
            "tokenize",
            [](const Analyzer& a, const py::object& text) {
                const auto view = text_view(text, "text");
                std::vector<std::string> terms;
                {
                    py::gil_scoped_release release;
                    terms = a.tokenize(view);
                }
                return terms;
            },
            py::arg("text"), "The terms of `text` after the full analysis, in order.")
        .def_property_readonly("lowercase", [](const Analyzer& a) { return a.config().lowercase; })
        .def_property_readonly("stopwords", [](const Analyzer& a) { return a.config().stopwords; },
                               "The effective stopword list (sorted).")
        .def_property_readonly("stemmer",
                               [](const Analyzer& a) -> std::optional<std::string> {
                                   if (a.config().stemmer.empty()) return std::nullopt;
                                   return a.config().stemmer;
                               })
        .def_property_readonly("min_token_length", [](const Analyzer& a) { return a.config().min_token_length; })
        .def_static("available_stemmers", &Analyzer::available_stemmers, "Snowball algorithm names.")
        .def("__repr__", [](const Analyzer& a) {
            const auto& c = a.config();
            return "Analyzer(lowercase=" + std::string(c.lowercase ? "True" : "False") +
                   ", stopwords=<" + std::to_string(c.stopwords.size()) + " words>, stemmer=" +
                   (c.stemmer.empty() ? std::string("None") : "'" + c.stemmer + "'") +
                   ", min_token_length=" + std::to_string(c.min_token_length) + ")";
        });

    py::class_<PyBM25Index, std::shared_ptr<PyBM25Index>>(m, "BM25Index", R"doc(
Lucene BM25 over an inverted index with user string ids, exact top-k (MaxScore with block-max bounds),
incremental add/delete (N, df and avgdl always count only live documents) and atomic save/load.
Empty documents are indexed with length 0 and never match. Scores are float32, best first; ties go to
the document added first.
)doc")
        .def(py::init([](double k1, double b, std::shared_ptr<Analyzer> analyzer) {
                 return std::make_shared<PyBM25Index>(
                     PyBM25Index{std::make_shared<BM25Index>(k1, b, std::move(analyzer)), {}});
             }),
             py::kw_only(), py::arg("k1") = 1.2, py::arg("b") = 0.75, py::arg("analyzer") = py::none())
        .def(
            "add",
            [](PyBM25Index& self, const py::object& ids, const py::object& texts) {
                auto id_list = string_list(ids, "ids");
                const auto items = items_of(texts, "texts");
                if (id_list.size() != items.size()) {
                    throw InvalidArgument("add(): got " + std::to_string(id_list.size()) + " ids but " +
                                          std::to_string(items.size()) + " texts");
                }
                std::vector<std::string_view> views;
                views.reserve(items.size());
                for (std::size_t i = 0; i < items.size(); ++i) {
                    views.push_back(text_view(items[i], "text of document '" + id_list[i] + "'"));
                }
                py::gil_scoped_release release;  // `items` keeps the texts alive
                self.index->add(id_list, views);
            },
            py::arg("ids"), py::arg("texts"),
            "Index documents. All-or-nothing: mismatched lengths, empty or duplicate ids (in the batch or "
            "already indexed) and invalid text raise ValueError and insert nothing.")
        .def(
            "delete",
            [](PyBM25Index& self, const py::object& ids) {
                const auto id_list = string_list(ids, "ids");
                py::gil_scoped_release release;
                self.index->remove(id_list);
            },
            py::arg("ids"), "Delete documents. An unknown id raises KeyError and deletes nothing.")
        .def(
            "search",
            [](PyBM25Index& self, const py::object& query, const IntArg& k, const py::object& allow) {
                const auto n = checked_k(k);
                const std::string q(text_view(query, "query"));
                const std::optional<std::vector<std::string>> allow_list = allow_arg(allow);
                BM25Results r;
                {
                    py::gil_scoped_release release;
                    r = self.index->search(q, n, allow_list ? &*allow_list : nullptr);
                }
                return to_python(r, self.id_strings);
            },
            py::arg("query"), py::arg("k") = 10, py::arg("allow") = py::none(),
            "Top-k (ids, float32 scores), best first. `allow` restricts results to those ids that are in the "
            "index (unknown or deleted ids in it are ignored, as in HNSWIndex.search). A k beyond len(index) "
            "is the same as len(index).")
        .def(
            "_search_exhaustive",
            [](PyBM25Index& self, const py::object& query, const IntArg& k, const py::object& allow) {
                const auto n = checked_k(k);
                const std::string q(text_view(query, "query"));
                const std::optional<std::vector<std::string>> allow_list = allow_arg(allow);
                BM25Results r;
                {
                    py::gil_scoped_release release;
                    r = self.index->search_exhaustive(q, n, allow_list ? &*allow_list : nullptr);
                }
                return to_python(r, self.id_strings);
            },
            py::arg("query"), py::arg("k") = 10, py::arg("allow") = py::none(),
            "search() computed without pruning (reference for tests).")
        .def(
            "search_batch",
            [](PyBM25Index& self, const py::object& queries, const IntArg& k, const IntArg& threads,
               const py::object& allow) {
                const auto n = checked_k(k);
                // 0 = every CPU this process may use; more threads than queries are never started, so a
                // larger count is the same as UINT_MAX.
                const auto t = static_cast<unsigned>(
                    std::min<std::size_t>(int_arg(threads, "threads", 0), std::numeric_limits<unsigned>::max()));
                std::vector<std::string> qs;
                for (const auto& item : items_of(queries, "queries")) qs.emplace_back(text_view(item, "query"));
                const std::optional<std::vector<std::string>> allow_list = allow_arg(allow);
                std::vector<BM25Results> rs;
                {
                    py::gil_scoped_release release;
                    rs = self.index->search_batch(qs, n, t,
                                                  allow_list ? &*allow_list : nullptr);
                }
                py::list out(rs.size());
                for (std::size_t i = 0; i < rs.size(); ++i) out[i] = to_python(rs[i], self.id_strings);
                return out;
            },
            py::arg("queries"), py::arg("k") = 10, py::arg("threads") = 0, py::arg("allow") = py::none(),
            "search() for many queries, in parallel on `threads` threads (0 = every CPU this process may use); "
            "`allow` (as in search) applies to every query and is resolved once for the batch.")
        .def(
            "search_global",
            [](PyBM25Index& self, const py::object& queries, const IntArg& k, const IntArg& documents,
               const IntArg& total_length, const py::object& df, const IntArg& threads, const py::object& allow) {
                const auto n = checked_k(k);
                const auto t = static_cast<unsigned>(
                    std::min<std::size_t>(int_arg(threads, "threads", 0), std::numeric_limits<unsigned>::max()));
                const BM25CorpusStats stats = corpus_stats_arg(documents, total_length, df);
                std::vector<std::string> qs;
                for (const auto& item : items_of(queries, "queries")) qs.emplace_back(text_view(item, "query"));
                const std::optional<std::vector<std::string>> allow_list = allow_arg(allow);
                std::vector<BM25Results> rs;
                {
                    py::gil_scoped_release release;
                    rs = self.index->search_batch(qs, n, t, allow_list ? &*allow_list : nullptr, &stats);
                }
                py::list out(rs.size());
                for (std::size_t i = 0; i < rs.size(); ++i) out[i] = to_python_exact(rs[i], self.id_strings);
                return out;
            },
            py::arg("queries"), py::arg("k") = 10, py::kw_only(), py::arg("documents"), py::arg("total_length"),
            py::arg("df"), py::arg("threads") = 0, py::arg("allow") = py::none(),
            "search_batch() scored with corpus-wide statistics (a shard of a larger corpus): `documents` and "
            "`total_length` of the whole corpus, `df` the corpus-wide document frequency of every analyzed query "
            "term this index holds. Returns (ids, float32 scores, float64 exact scores) per query; ValueError when "
            "the statistics cannot include this index's.")
        .def(
            "corpus_stats",
            [](const PyBM25Index& self) {
                const auto s = self.index->corpus_stats();
                return py::make_tuple(s.docs, s.total_length);
            },
            "(live documents, their total length in analyzed terms): a shard's share of the corpus statistics.")
        .def(
            "query_terms",
            [](const PyBM25Index& self, const py::object& query) {
                const std::string q(text_view(query, "query"));
                std::vector<std::string> terms;
                {
                    py::gil_scoped_release release;
                    terms = self.index->query_terms(q);
                }
                return terms;
            },
            py::arg("query"), "The distinct analyzed terms of `query`, in order of first occurrence.")
        .def(
            "doc_freqs",
            [](const PyBM25Index& self, const py::object& terms) {
                const auto list = string_list(terms, "terms");
                std::vector<std::uint64_t> out;
                {
                    py::gil_scoped_release release;
                    out = self.index->doc_freqs(list);
                }
                return out;
            },
            py::arg("terms"), "The live documents holding each analyzed term (0 for one this index lacks).")
        .def(
            "save",
            [](const PyBM25Index& self, const py::object& path) {
                const auto p = path_arg(path);
                py::gil_scoped_release release;
                self.index->save(p);
            },
            py::arg("path"),
            "Write the index atomically (deleted documents are left out), first removing the temporary files "
            "that saves of `path` killed mid-write left behind (stale_temp_files).")
        .def_static(
            "load",
            [](const py::object& path) {
                const auto p = path_arg(path);
                std::unique_ptr<BM25Index> index;
                {
                    py::gil_scoped_release release;
                    index = BM25Index::load(p);
                }
                return std::make_shared<PyBM25Index>(PyBM25Index{std::shared_ptr<BM25Index>(std::move(index)), {}});
            },
            py::arg("path"),
            "Read an index written by save(); IndexFileError if missing, not a regular file, truncated or corrupt.")
        .def(
            "compact",
            [](PyBM25Index& self) {
                py::gil_scoped_release release;
                self.index->compact();
            },
            "Reclaim deleted documents' postings now (delete() does it when over a quarter are deleted).")
        .def("ids", [](const PyBM25Index& self) { return id_list(self.index->ids()); }, "Live ids in insertion order.")
        .def("__len__", [](const PyBM25Index& self) { return self.index->size(); })
        .def("__contains__",
             [](const PyBM25Index& self, const py::object& id) {
                 const auto key = utf8_if_str(id);
                 return key.has_value() && self.index->contains(*key);
             })
        .def_property(
            "_dense_max_docs", [](const PyBM25Index& self) { return self.index->dense_max_docs(); },
            [](PyBM25Index& self, std::size_t n) { self.index->set_dense_max_docs(n); },
                      "Corpora with at most this many document slots are searched with dense term-at-a-time "
                      "accumulation, larger ones with MaxScore (both exact; a speed knob, used by tests).")
        .def_property_readonly("k1", [](const PyBM25Index& self) { return self.index->k1(); })
        .def_property_readonly("b", [](const PyBM25Index& self) { return self.index->b(); })
        .def_property_readonly(
            "analyzer", [](const PyBM25Index& self) { return std::const_pointer_cast<Analyzer>(self.index->analyzer()); })
        .def("_stats",
             [](const PyBM25Index& self) {
                 const auto s = self.index->stats();
                 py::dict d;
                 d["live_docs"] = s.live_docs;
                 d["doc_slots"] = s.doc_slots;
                 d["terms"] = s.terms;
                 d["postings"] = s.postings;
                 return d;
             })
        .def("__repr__", [](const PyBM25Index& self) {
            const BM25Index& index = *self.index;
            return "BM25Index(len=" + std::to_string(index.size()) + ", k1=" + py::str(py::float_(index.k1())).cast<std::string>() +
                   ", b=" + py::str(py::float_(index.b())).cast<std::string>() + ")";
        });
}

}  // namespace funnelrank::bindings
