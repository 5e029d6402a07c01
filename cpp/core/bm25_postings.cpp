// BM25 postings: how documents become posting lists (add), are deleted (remove) and dropped for good
// (compact). The lists' layout (ascending doc ids, tfs, the last doc id of each 128-posting block) is
// BM25Index::Postings in bm25_index.h.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bm25_index.h"
#include "file_io.h"

namespace funnelrank {

void BM25Index::Postings::append(std::uint32_t doc, std::uint32_t tf) {
    if (docs.size() % kBlockSize == 0) {
        last_doc.push_back(doc);
    } else {
        last_doc.back() = doc;
    }
    docs.push_back(doc);
    tfs.push_back(tf);
    ++df;
}

void BM25Index::add(const std::vector<std::string>& ids, const std::vector<std::string_view>& texts) {
    if (ids.size() != texts.size()) {
        throw InvalidArgument("add(): got " + std::to_string(ids.size()) + " ids but " +
                              std::to_string(texts.size()) + " texts");
    }
    {
        std::unordered_set<std::string_view> seen;
        seen.reserve(ids.size());
        for (const auto& id : ids) {
            if (id.empty()) throw InvalidArgument("add(): document ids must be non-empty strings");
            if (!io::is_valid_utf8(id)) throw InvalidArgument("add(): document id is not valid UTF-8");
            if (!seen.insert(id).second) throw InvalidArgument("add(): duplicate id in batch: '" + id + "'");
        }
    }

    // Phase 1, no lock held: analyze the batch into a local vocabulary and per-document (term, tf) lists.
    // Each distinct raw token is normalized (stopword check + stemming) once.
    constexpr std::uint32_t kStop = kEnd;
    std::deque<std::string> raw_store;
    std::unordered_map<std::string_view, std::uint32_t> raw_to_local;
    std::deque<std::string> local_terms;
    std::unordered_map<std::string_view, std::uint32_t> local_of;
    std::vector<std::uint32_t> local_df;
    std::vector<std::uint64_t> offsets{0};
    offsets.reserve(ids.size() + 1);
    std::vector<std::uint32_t> pair_terms;
    std::vector<std::uint32_t> pair_tfs;
    std::vector<std::uint32_t> lens;
    lens.reserve(ids.size());
    std::vector<std::uint32_t> counts;
    std::vector<std::uint32_t> touched;
    std::string term;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        std::uint64_t len = 0;
        try {
            analyzer_->split(texts[i], [&](std::string_view raw) {
                auto it = raw_to_local.find(raw);
                std::uint32_t local;
                if (it != raw_to_local.end()) {
                    local = it->second;
                } else {
                    if (analyzer_->normalize(raw, term)) {
                        auto jt = local_of.find(term);
                        if (jt == local_of.end()) {
                            local_terms.push_back(term);
                            jt = local_of.emplace(local_terms.back(), static_cast<std::uint32_t>(local_df.size()))
                                     .first;
                            local_df.push_back(0);
                            counts.push_back(0);
                        }
                        local = jt->second;
                    } else {
                        local = kStop;
                    }
                    raw_store.emplace_back(raw);
                    raw_to_local.emplace(raw_store.back(), local);
                }
                if (local == kStop) return;
                if (counts[local]++ == 0) touched.push_back(local);
                ++len;
            });
        } catch (const InvalidArgument& e) {
            throw InvalidArgument("add(): text of document '" + ids[i] + "': " + e.what());
        }
        if (len > std::numeric_limits<std::uint32_t>::max()) {
            throw InvalidArgument("add(): document '" + ids[i] + "' has more than 2^32-1 terms");
        }
        for (auto t : touched) {
            pair_terms.push_back(t);
            pair_tfs.push_back(counts[t]);
            ++local_df[t];
            counts[t] = 0;
        }
        touched.clear();
        offsets.push_back(pair_terms.size());
        lens.push_back(static_cast<std::uint32_t>(len));
    }

    // Phase 2, write lock: check ids against the index, then insert everything.
    std::unique_lock lock(mutex_);
    Data& d = data_;
    for (const auto& id : ids) {
        if (d.doc_of.count(id)) throw InvalidArgument("add(): id already in the index: '" + id + "'");
    }
    if (d.ext_ids.size() + ids.size() > kMaxDocs) throw InvalidArgument("add(): too many documents");
    impacts_valid_ = false;
    epoch_ = next_epoch();
    std::vector<std::uint32_t> global(local_terms.size());
    for (std::size_t t = 0; t < local_terms.size(); ++t) {
        auto it = d.term_of.find(local_terms[t]);
        if (it == d.term_of.end()) {
            d.terms.push_back(std::move(local_terms[t]));
            it = d.term_of.emplace(d.terms.back(), static_cast<std::uint32_t>(d.postings.size())).first;
            d.postings.emplace_back();
        }
        global[t] = it->second;
        Postings& p = d.postings[it->second];
        const std::size_t need = p.docs.size() + local_df[t];
        if (need > p.docs.capacity()) {  // exact on a fresh list, geometric when growing one
            const std::size_t cap = p.docs.empty() ? need : std::max(need, p.docs.capacity() * 3 / 2);
            p.docs.reserve(cap);
            p.tfs.reserve(cap);
        }
    }
    d.fwd_terms.reserve(d.fwd_terms.size() + pair_terms.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto doc = static_cast<std::uint32_t>(d.ext_ids.size());
        d.ext_ids.push_back(ids[i]);
        d.doc_of.emplace(d.ext_ids.back(), doc);
        d.doc_len.push_back(lens[i]);
        d.alive.push_back(1);
        for (std::uint64_t j = offsets[i]; j < offsets[i + 1]; ++j) {
            const std::uint32_t g = global[pair_terms[j]];
            d.postings[g].append(doc, pair_tfs[j]);
            d.fwd_terms.push_back(g);
        }
        d.fwd_offsets.push_back(d.fwd_terms.size());
        ++d.live_docs;
        d.live_len += lens[i];
    }
}

void BM25Index::remove(const std::vector<std::string>& ids) {
    std::unique_lock lock(mutex_);
    Data& d = data_;
    std::vector<std::uint32_t> docs;
    docs.reserve(ids.size());
    std::unordered_set<std::string_view> seen;
    for (const auto& id : ids) {
        auto it = d.doc_of.find(id);
        if (it == d.doc_of.end()) throw NotFound("delete(): id not in the index: '" + id + "'");
        if (!seen.insert(id).second) throw InvalidArgument("delete(): duplicate id in batch: '" + id + "'");
        docs.push_back(it->second);
    }
    impacts_valid_ = false;
    epoch_ = next_epoch();
    for (std::size_t i = 0; i < docs.size(); ++i) {
        const std::uint32_t doc = docs[i];
        d.doc_of.erase(ids[i]);
        d.alive[doc] = 0;
        --d.live_docs;
        d.live_len -= d.doc_len[doc];
        for (std::uint64_t j = d.fwd_offsets[doc]; j < d.fwd_offsets[doc + 1]; ++j) --d.postings[d.fwd_terms[j]].df;
    }
    const std::size_t dead = d.ext_ids.size() - d.live_docs;
    if (dead > 0 && dead * 4 > d.ext_ids.size()) compact_locked();
}

void BM25Index::compact() {
    std::unique_lock lock(mutex_);
    compact_locked();
}

void BM25Index::compact_locked() {
    Data& old = data_;
    if (old.live_docs == old.ext_ids.size()) return;
    impacts_valid_ = false;
    epoch_ = next_epoch();
    Data d;
    std::vector<std::uint32_t> new_doc(old.ext_ids.size(), kEnd);
    for (std::size_t doc = 0; doc < old.ext_ids.size(); ++doc) {
        if (!old.alive[doc]) continue;
        new_doc[doc] = static_cast<std::uint32_t>(d.ext_ids.size());
        d.ext_ids.push_back(std::move(old.ext_ids[doc]));
        d.doc_of.emplace(d.ext_ids.back(), new_doc[doc]);
        d.doc_len.push_back(old.doc_len[doc]);
        d.alive.push_back(1);
    }
    std::vector<std::uint32_t> new_term(old.terms.size(), kEnd);
    for (std::size_t t = 0; t < old.terms.size(); ++t) {
        const Postings& p = old.postings[t];
        if (p.df == 0) continue;
        new_term[t] = static_cast<std::uint32_t>(d.postings.size());
        d.terms.push_back(std::move(old.terms[t]));
        d.term_of.emplace(d.terms.back(), new_term[t]);
        Postings& q = d.postings.emplace_back();
        q.docs.reserve(p.df);
        q.tfs.reserve(p.df);
        for (std::size_t j = 0; j < p.docs.size(); ++j) {
            const std::uint32_t nd = new_doc[p.docs[j]];
            if (nd != kEnd) q.append(nd, p.tfs[j]);
        }
    }
    d.fwd_offsets.reserve(d.ext_ids.size() + 1);
    for (std::size_t doc = 0; doc < old.alive.size(); ++doc) {
        if (!old.alive[doc]) continue;
        for (std::uint64_t j = old.fwd_offsets[doc]; j < old.fwd_offsets[doc + 1]; ++j) {
            d.fwd_terms.push_back(new_term[old.fwd_terms[j]]);
        }
        d.fwd_offsets.push_back(d.fwd_terms.size());
    }
    d.live_docs = old.live_docs;
    d.live_len = old.live_len;
    data_ = std::move(d);
}

}  // namespace funnelrank
