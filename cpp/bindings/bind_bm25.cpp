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

RankedHits to_python(const BM25Results& r, IdStrings& id_strings) {
    return ranked_to_python(id_strings, r.slots, r.ids, r.scores);
}

// A ranked result with its exact (float64) scores too: (ids, float32 scores, float64 scores).
using ExactHits = py::typing::Tuple<StrList, py::array_t<float>, py::array_t<double>>;

ExactHits to_python_exact(const BM25Results& r, IdStrings& id_strings) {
    const RankedHits base = to_python(r, id_strings);
    py::array_t<double> exact(static_cast<py::ssize_t>(r.exact_scores.size()));
    std::copy(r.exact_scores.begin(), r.exact_scores.end(), exact.mutable_data());
    return ExactHits(py::make_tuple(base[0], base[1], std::move(exact)));
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

std::shared_ptr<Analyzer> make_analyzer(bool lowercase, const Hinted<hint::Stopwords>& stopwords,
                                        const Hinted<hint::OptionalStr>& stemmer, const IntArg& min_token_length) {
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


const char* strategy_name(BM25Index::Strategy s) {
    switch (s) {
        case BM25Index::Strategy::kDense: return "dense";
        case BM25Index::Strategy::kMaxScore: return "maxscore";
        case BM25Index::Strategy::kImpact: return "impact";
        case BM25Index::Strategy::kAuto: break;
    }
    return "auto";
}

BM25Index::Strategy strategy_of(const std::string& name) {
    if (name == "auto") return BM25Index::Strategy::kAuto;
    if (name == "dense") return BM25Index::Strategy::kDense;
    if (name == "maxscore") return BM25Index::Strategy::kMaxScore;
    if (name == "impact") return BM25Index::Strategy::kImpact;
    throw InvalidArgument("unknown BM25 strategy '" + name + "': expected 'auto', 'dense', 'maxscore' or 'impact'");
}
}  // namespace

void bind_bm25(py::module_& m) {
    py::class_<Analyzer, std::shared_ptr<Analyzer>>(m, "Analyzer", R"doc(Text analysis shared by documents and queries.

Lowercasing (Unicode simple case mapping, plus Python's ``str.lower`` rules for U+0130 and final
sigma), tokenization into maximal runs of Unicode letters, numbers and ``_`` (what bm25s's default
pattern ``(?u)\b\w\w+\b`` matches), stopword removal (on the lowercased, unstemmed token) and
Snowball stemming through libstemmer.

stopwords: ``"english"`` (NLTK's 179-word English list, bm25s's ``"en_plus"``; the default),
``"lucene"`` (Lucene's 33-word EnglishAnalyzer list, bm25s's ``"en"``), a list of words, or None.
stemmer: a Snowball algorithm name (``Analyzer.available_stemmers()``) or None.
min_token_length: tokens shorter than this many code points are dropped (1 to 255; ValueError otherwise).
Invalid text (lone surrogates, invalid UTF-8 bytes) raises ValueError.)doc")
        .def(py::init(&make_analyzer), py::kw_only(), py::arg("lowercase") = true,
             py::arg("stopwords") = py::str("english"), py::arg("stemmer") = py::str("english"),
             py::arg("min_token_length") = 2)
        .def(
            "tokenize",
            [](const Analyzer& a, const Hinted<hint::Text>& text) {
                const auto view = text_view(text, "text");
                std::vector<std::string> terms;
                {
                    py::gil_scoped_release release;
                    terms = a.tokenize(view);
                }
                return terms;
            },
            py::arg("text"), "The terms of ``text`` after the full analysis, in order (duplicates kept).")
        .def_property_readonly("lowercase", [](const Analyzer& a) { return a.config().lowercase; })
        .def_property_readonly("stopwords", [](const Analyzer& a) { return a.config().stopwords; },
                               "The effective stopword list (sorted).")
        .def_property_readonly("stemmer",
                               [](const Analyzer& a) -> std::optional<std::string> {
                                   if (a.config().stemmer.empty()) return std::nullopt;
                                   return a.config().stemmer;
                               })
        .def_property_readonly("min_token_length", [](const Analyzer& a) { return a.config().min_token_length; })
        .def_static("available_stemmers", &Analyzer::available_stemmers,
                    "Names of the Snowball algorithms libstemmer provides.")
        .def("__repr__", [](const Analyzer& a) {
            const auto& c = a.config();
            return "Analyzer(lowercase=" + std::string(c.lowercase ? "True" : "False") +
                   ", stopwords=<" + std::to_string(c.stopwords.size()) + " words>, stemmer=" +
                   (c.stemmer.empty() ? std::string("None") : "'" + c.stemmer + "'") +
                   ", min_token_length=" + std::to_string(c.min_token_length) + ")";
        });

    py::class_<PyBM25Index, std::shared_ptr<PyBM25Index>>(m, "BM25Index", R"doc(Lucene BM25 over an inverted index keyed by user string ids.

score = sum over query terms (with multiplicity) of
idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
with N, df and avgdl over live documents only (exactly right after any add/delete). Top-k is exact
(MaxScore with block-max bounds); ties go to the document added first. Empty documents are indexed
with length 0 and never match. Scores are float32, best first. The GIL is released while indexing,
searching, saving and loading; searches may run from many threads while another thread adds or deletes.

k1 must be in [0, 1000] and b in [0, 1] (else ValueError). Integer arguments (k, threads) take any Python
int: one outside the accepted range, however large, is a ValueError naming the argument and the range.)doc")
        .def(py::init([](double k1, double b, std::optional<std::shared_ptr<Analyzer>> analyzer) {
                 return std::make_shared<PyBM25Index>(PyBM25Index{
                     std::make_shared<BM25Index>(k1, b, analyzer ? std::move(*analyzer) : nullptr), {}});
             }),
             py::kw_only(), py::arg("k1") = 1.2, py::arg("b") = 0.75, py::arg("analyzer") = py::none())
        .def(
            "add",
            [](PyBM25Index& self, const Hinted<hint::Strs>& ids, const Hinted<hint::Texts>& texts) {
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
            "Index documents. All-or-nothing: length mismatch, empty or duplicate ids (in the batch or already "
            "indexed) and invalid text raise ValueError and insert nothing.")
        .def(
            "delete",
            [](PyBM25Index& self, const Hinted<hint::Strs>& ids) {
                const auto id_list = string_list(ids, "ids");
                py::gil_scoped_release release;
                self.index->remove(id_list);
            },
            py::arg("ids"),
            "Delete documents. An unknown id raises KeyError (a repeated one ValueError); nothing is deleted.")
        .def(
            "search",
            [](PyBM25Index& self, const Hinted<hint::Text>& query, const IntArg& k,
               const Hinted<hint::AllowList>& allow) {
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
            R"doc(Top-k (ids, float32 scores), best first; only documents matching a query term. ``allow``
restricts results to those ids that are in the index (unknown or deleted ids in it are ignored,
as in HNSWIndex.search). k <= 0: ValueError; a k beyond len(index) is the same as len(index) (it never
sizes an allocation), up to 2**63 - 1 (beyond: ValueError). An empty or all-stopword query, or an empty
index, gives empty results. A query repeating indexed terms about a million times or more, whose
scores could overflow the fixed-point sums, is a ValueError.)doc")
        .def(
            "_search_exhaustive",
            [](PyBM25Index& self, const Hinted<hint::Text>& query, const IntArg& k,
               const Hinted<hint::AllowList>& allow) {
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
            "search() computed by scoring every matching document (reference for tests).")
        .def(
            "search_batch",
            [](PyBM25Index& self, const Hinted<hint::Texts>& queries, const IntArg& k, const IntArg& threads,
               const Hinted<hint::AllowList>& allow) {
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
                py::typing::List<RankedHits> out(rs.size());
                for (std::size_t i = 0; i < rs.size(); ++i) out[i] = to_python(rs[i], self.id_strings);
                return out;
            },
            py::arg("queries"), py::arg("k") = 10, py::arg("threads") = 0, py::arg("allow") = py::none(),
            R"doc(search() for each query, in parallel on ``threads`` threads (0 = every CPU this process may use; never
more threads than queries); ``allow`` (as in search()) applies to every query and is resolved once for
the batch. k as in search().)doc")
        .def(
            "search_global",
            [](PyBM25Index& self, const Hinted<hint::Texts>& queries, const IntArg& k, const IntArg& documents,
               const IntArg& total_length, const Hinted<hint::DocFreqs>& df, const IntArg& threads,
               const Hinted<hint::AllowList>& allow) {
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
                py::typing::List<ExactHits> out(rs.size());
                for (std::size_t i = 0; i < rs.size(); ++i) out[i] = to_python_exact(rs[i], self.id_strings);
                return out;
            },
            py::arg("queries"), py::arg("k") = 10, py::kw_only(), py::arg("documents"), py::arg("total_length"),
            py::arg("df"), py::arg("threads") = 0, py::arg("allow") = py::none(),
            R"doc(search_batch() for a shard of a larger corpus, scored with the corpus-wide statistics (Elasticsearch's
DFS query-then-fetch): N = `documents`, avgdl = `total_length` / `documents`, and `df` (analyzed term ->
documents holding it, for every query term this index holds; see query_terms()). The scores are then
bit-identical to one index over the whole corpus. Each result is (ids, float32 scores, float64 exact
scores: what the top-k was ranked by, to merge shards on). ValueError when the statistics cannot include
this index's (fewer documents or a smaller df than here, a missing df).

    >>> shard.search_global(["cat"], 2, documents=10, total_length=40, df={"cat": 3})
    [(['a'], array([0.98], dtype=float32), array([0.98...]))])doc")
        .def(
            "corpus_stats",
            [](const PyBM25Index& self) {
                const auto s = self.index->corpus_stats();
                return py::make_tuple(s.docs, s.total_length);
            },
            "(live documents, their total length in analyzed terms), e.g. ``(2, 7)``: a shard's share of the corpus "
            "statistics.")
        .def(
            "query_terms",
            [](const PyBM25Index& self, const Hinted<hint::Text>& query) {
                const std::string q(text_view(query, "query"));
                std::vector<std::string> terms;
                {
                    py::gil_scoped_release release;
                    terms = self.index->query_terms(q);
                }
                return terms;
            },
            py::arg("query"),
            "The distinct analyzed terms of `query` in order of first occurrence, e.g. ``['cat', 'sleep']`` for "
            "\"the cats sleep, cats!\" (stopwords dropped, stemmed), whether or not this index holds them.")
        .def(
            "doc_freqs",
            [](const PyBM25Index& self, const Hinted<hint::Strs>& terms) {
                const auto list = string_list(terms, "terms");
                std::vector<std::uint64_t> out;
                {
                    py::gil_scoped_release release;
                    out = self.index->doc_freqs(list);
                }
                return out;
            },
            py::arg("terms"),
            "The live documents holding each analyzed term (0 for a term this index lacks), e.g. ``[2, 0]``.")
        .def(
            "save",
            [](const PyBM25Index& self, const Hinted<hint::Path>& path) {
                const auto p = path_arg(path);
                py::gil_scoped_release release;
                self.index->save(p);
            },
            py::arg("path"),
            "Write the index atomically (temporary file, fsync, rename); deleted documents are dropped. First "
            "removes the temporary files that saves of `path` killed mid-write left behind (:func:`stale_temp_files`).")
        .def_static(
            "load",
            [](const Hinted<hint::Path>& path) {
                const auto p = path_arg(path);
                std::unique_ptr<BM25Index> index;
                {
                    py::gil_scoped_release release;
                    index = BM25Index::load(p);
                }
                return std::make_shared<PyBM25Index>(PyBM25Index{std::shared_ptr<BM25Index>(std::move(index)), {}});
            },
            py::arg("path"),
            "Read a saved index. IndexFileError (naming the path) if missing, not a regular file, truncated or "
            "corrupt. Every count in the file is checked against the bytes that remain before anything is "
            "allocated for it, so memory use is proportional to the file's size.")
        .def(
            "compact",
            [](PyBM25Index& self) {
                py::gil_scoped_release release;
                self.index->compact();
            },
            "Reclaim deleted documents' postings now (delete() does it when over a quarter are deleted).")
        .def("ids", [](const PyBM25Index& self) { return id_list(self.index->ids()); }, "Live ids in insertion order.")
        .def("__len__", [](const PyBM25Index& self) { return self.index->size(); })
        .def(
            "__contains__",
            [](const PyBM25Index& self, const Hinted<hint::Object>& id) {
                const auto key = utf8_if_str(id);
                return key.has_value() && self.index->contains(*key);
            },
            py::arg("id"))
        .def_property(
            "_dense_max_docs", [](const PyBM25Index& self) { return self.index->dense_max_docs(); },
            py::cpp_function([](PyBM25Index& self, std::size_t n) { self.index->set_dense_max_docs(n); },
                             py::arg("self"), py::arg("value")),
            "Corpora with at most this many document slots are searched with dense term-at-a-time "
            "accumulation, larger ones with MaxScore (both exact; a speed knob, used by tests).")
        .def_property(
            "_strategy",
            [](const PyBM25Index& self) { return std::string(strategy_name(self.index->strategy())); },
            py::cpp_function([](PyBM25Index& self, const std::string& name) { self.index->set_strategy(strategy_of(name)); },
                             py::arg("self"), py::arg("value")),
            "The query planner's choice: 'auto' (per query, by posting volume), or one of 'dense', 'maxscore', "
            "'impact' forced for every query (all exact; for tests and benchmarks).")
        .def(
            "_plan",
            [](const PyBM25Index& self, std::string_view query, std::size_t k) {
                py::gil_scoped_release release;
                return self.index->plan(query, k);
            },
            py::arg("query"), py::arg("k") = 10,
            "The strategy search() would use for this query and k: 'dense', 'maxscore', 'impact', 'docs' or 'empty'.")
        .def_property_readonly("k1", [](const PyBM25Index& self) { return self.index->k1(); })
        .def_property_readonly("b", [](const PyBM25Index& self) { return self.index->b(); })
        .def_property_readonly(
            "analyzer", [](const PyBM25Index& self) { return std::const_pointer_cast<Analyzer>(self.index->analyzer()); })
        .def("_stats",
             [](const PyBM25Index& self) {
                 const auto s = self.index->stats();
                 py::typing::Dict<py::str, py::int_> d;
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
