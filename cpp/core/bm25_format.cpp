// BM25 file format: save() and load() (atomic, checksummed files through file_io.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bm25_index.h"
#include "file_io.h"

namespace funnelrank {

namespace {
constexpr std::string_view kMagic("FRK-BM25", 8);
constexpr std::uint32_t kFormatVersion = 1;
}  // namespace

// Payload (version 1), after file_io's header:
//   f64 k1, f64 b
//   analyzer: u8 lowercase, u64 min_token_length, string stemmer, u64 n + n strings stopwords
//   u64 n_docs, n_docs strings (ids), vector<u32> doc lengths
//   u64 n_terms, then per term: string term, vector<u32> docs (ascending), vector<u32> tfs
// Only live documents are written (renumbered in order); terms with no live document are dropped.

void BM25Index::save(const std::string& path) const {
    std::shared_lock lock(mutex_);
    const Data& d = data_;
    io::AtomicFileWriter w(path, kMagic, kFormatVersion);
    w.write<double>(k1_);
    w.write<double>(b_);
    const AnalyzerConfig& cfg = analyzer_->config();
    w.write<std::uint8_t>(cfg.lowercase ? 1 : 0);
    w.write<std::uint64_t>(cfg.min_token_length);
    w.write_string(cfg.stemmer);
    w.write<std::uint64_t>(cfg.stopwords.size());
    for (const auto& s : cfg.stopwords) w.write_string(s);

    std::vector<std::uint32_t> new_doc(d.ext_ids.size(), kEnd);
    std::vector<std::uint32_t> lens;
    lens.reserve(d.live_docs);
    w.write<std::uint64_t>(d.live_docs);
    for (std::size_t doc = 0; doc < d.ext_ids.size(); ++doc) {
        if (!d.alive[doc]) continue;
        new_doc[doc] = static_cast<std::uint32_t>(lens.size());
        lens.push_back(d.doc_len[doc]);
        w.write_string(d.ext_ids[doc]);
    }
    w.write_vector(lens);
    std::uint64_t live_terms = 0;
    for (const auto& p : d.postings) live_terms += p.df > 0 ? 1 : 0;
    w.write<std::uint64_t>(live_terms);
    std::vector<std::uint32_t> docs;
    std::vector<std::uint32_t> tfs;
    for (std::size_t t = 0; t < d.postings.size(); ++t) {
        const Postings& p = d.postings[t];
        if (p.df == 0) continue;
        docs.clear();
        tfs.clear();
        for (std::size_t j = 0; j < p.docs.size(); ++j) {
            const std::uint32_t nd = new_doc[p.docs[j]];
            if (nd == kEnd) continue;
            docs.push_back(nd);
            tfs.push_back(p.tfs[j]);
        }
        w.write_string(d.terms[t]);
        w.write_vector(docs);
        w.write_vector(tfs);
    }
    w.commit();
}

std::unique_ptr<BM25Index> BM25Index::load(const std::string& path) {
    io::IndexFile file(path, kMagic, kFormatVersion);
    io::BinaryReader r = file.reader();
    const auto k1 = r.read<double>();
    const auto b = r.read<double>();
    AnalyzerConfig cfg;
    const auto lowercase = r.read<std::uint8_t>();
    if (lowercase > 1) r.fail("bad analyzer lowercase flag");
    cfg.lowercase = lowercase == 1;
    cfg.min_token_length = static_cast<std::size_t>(r.read<std::uint64_t>());
    cfg.stemmer = r.read_string();
    const auto n_stop = r.read_count(r.remaining() / 8, "stopwords");
    cfg.stopwords.clear();
    for (std::uint64_t i = 0; i < n_stop; ++i) cfg.stopwords.push_back(r.read_string());
    std::unique_ptr<BM25Index> index;
    try {
        index = std::make_unique<BM25Index>(k1, b, std::make_shared<const Analyzer>(std::move(cfg)));
    } catch (const InvalidArgument& e) {
        r.fail(std::string("bad index settings: ") + e.what());
    }
    Data& d = index->data_;
    const auto n_docs = r.read_count(std::min<std::uint64_t>(r.remaining() / 8, kMaxDocs), "documents");
    for (std::uint64_t i = 0; i < n_docs; ++i) {
        d.ext_ids.push_back(r.read_utf8_string("document id"));
        if (d.ext_ids.back().empty()) r.fail("empty document id");
        if (!d.doc_of.emplace(d.ext_ids.back(), static_cast<std::uint32_t>(i)).second) {
            r.fail("duplicate document id '" + d.ext_ids.back() + "'");
        }
    }
    d.doc_len = r.read_vector<std::uint32_t>();
    if (d.doc_len.size() != n_docs) r.fail("document length table has the wrong size");
    d.alive.assign(n_docs, 1);
    std::vector<std::uint64_t> len_check(n_docs, 0);
    std::vector<std::uint32_t> terms_per_doc(n_docs, 0);
    // Each term takes at least 24 bytes (three lengths); term ids are 32-bit.
    const auto n_terms = r.read_count(std::min<std::uint64_t>(r.remaining() / 24, kMaxDocs), "terms");
    for (std::uint64_t t = 0; t < n_terms; ++t) {
        d.terms.push_back(r.read_string());
        if (!d.term_of.emplace(d.terms.back(), static_cast<std::uint32_t>(t)).second) {
            r.fail("duplicate term '" + d.terms.back() + "'");
        }
        auto docs = r.read_vector<std::uint32_t>();
        auto tfs = r.read_vector<std::uint32_t>();
        if (docs.empty() || docs.size() != tfs.size()) r.fail("bad posting list for term '" + d.terms.back() + "'");
        Postings& p = d.postings.emplace_back();
        p.docs.reserve(docs.size());
        p.tfs.reserve(docs.size());
        for (std::size_t j = 0; j < docs.size(); ++j) {
            if (docs[j] >= n_docs || (j > 0 && docs[j] <= docs[j - 1]) || tfs[j] == 0) {
                r.fail("bad posting list for term '" + d.terms.back() + "'");
            }
            len_check[docs[j]] += tfs[j];
            ++terms_per_doc[docs[j]];
            p.append(docs[j], tfs[j]);
        }
    }
    r.expect_end();
    for (std::uint64_t i = 0; i < n_docs; ++i) {
        if (len_check[i] != d.doc_len[i]) r.fail("document lengths disagree with the postings");
        d.live_len += d.doc_len[i];
    }
    d.live_docs = n_docs;
    // forward index (doc -> terms), for delete
    d.fwd_offsets.assign(n_docs + 1, 0);
    for (std::uint64_t i = 0; i < n_docs; ++i) d.fwd_offsets[i + 1] = d.fwd_offsets[i] + terms_per_doc[i];
    d.fwd_terms.assign(d.fwd_offsets[n_docs], 0);
    std::vector<std::uint64_t> fill(d.fwd_offsets.begin(), d.fwd_offsets.end() - 1);
    for (std::size_t t = 0; t < d.postings.size(); ++t) {
        for (const std::uint32_t doc : d.postings[t].docs) d.fwd_terms[fill[doc]++] = static_cast<std::uint32_t>(t);
    }
    index->epoch_ = next_epoch();
    return index;
}

}  // namespace funnelrank
