// BM25 query analysis: a query's tokens to the index's term ids (through a per-thread token cache) and
// their weights, idf * occurrences, from this index's statistics or a corpus's (sharded scoring).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bm25_index.h"
#include "bm25_scoring.h"

namespace funnelrank {

std::uint32_t BM25Index::query_term_id(std::string_view raw, std::string& scratch) const {
    if (!analyzer_->normalize(raw, scratch)) return kNoTerm;
    const auto it = data_.term_of.find(scratch);
    if (it == data_.term_of.end() || data_.postings[it->second].df == 0) return kNoTerm;
    return it->second;
}

namespace {
// Per thread: raw query token -> term id (or kNoTerm) of the index that last searched on this thread, as
// of its epoch. Queries repeat words, so most tokens then cost one hash lookup instead of a stopword
// lookup, stemming and a vocabulary lookup. Emptied when the index or its epoch changes, and when full.
// An open-addressing table (power-of-two size, linear probing, full hashes stored, token bytes in one
// arena): a lookup is about one cache miss and no division, where std::unordered_map chases nodes.
class QueryTokenCache {
public:
    static constexpr std::size_t kMaxEntries = 1u << 15;
    static constexpr std::size_t kMaxTokenBytes = 64;

    // Empties the cache unless it already holds `owner`'s tokens as of `epoch`.
    void use(const void* owner, std::uint64_t epoch) {
        if (owner == owner_ && epoch == epoch_) return;
        clear();
        owner_ = owner;
        epoch_ = epoch;
    }
    static std::uint64_t hash(std::string_view token) {
        const std::uint64_t h = std::hash<std::string_view>{}(token);
        return h ? h : 1;  // 0 marks an empty slot
    }
    // The cached id of `token` (with hash h), or nullptr.
    const std::uint32_t* find(std::string_view token, std::uint64_t h) const {
        if (slots_.empty()) return nullptr;
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = h & mask;; i = (i + 1) & mask) {
            const Slot& s = slots_[i];
            if (s.hash == 0) return nullptr;
            if (s.hash == h && s.length == token.size() &&
                std::memcmp(arena_.data() + s.offset, token.data(), token.size()) == 0) {
                return &s.id;
            }
        }
    }
    // Adds a token that find() did not hold (at most kMaxTokenBytes long).
    void insert(std::string_view token, std::uint64_t h, std::uint32_t id) {
        if (size_ >= kMaxEntries) clear();
        if (2 * (size_ + 1) > slots_.size()) grow();
        const auto offset = static_cast<std::uint32_t>(arena_.size());
        arena_.append(token);  // before the slot that points into it (append may throw)
        place(Slot{h, offset, static_cast<std::uint32_t>(token.size()), id});
        ++size_;
    }

private:
    struct Slot {
        std::uint64_t hash = 0;
        std::uint32_t offset = 0;
        std::uint32_t length = 0;
        std::uint32_t id = 0;
    };
    void place(const Slot& slot) {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = slot.hash & mask;
        while (slots_[i].hash != 0) i = (i + 1) & mask;
        slots_[i] = slot;
    }
    void grow() {
        std::vector<Slot> old(std::max<std::size_t>(64, 2 * slots_.size()));
        old.swap(slots_);
        for (const Slot& s : old) {
            if (s.hash != 0) place(s);
        }
    }
    void clear() {
        std::vector<Slot>().swap(slots_);  // back to small: a cleared cache is refilled gradually
        arena_.clear();
        size_ = 0;
    }

    const void* owner_ = nullptr;
    std::uint64_t epoch_ = 0;
    std::vector<Slot> slots_;
    std::string arena_;
    std::size_t size_ = 0;
};
}  // namespace

std::vector<BM25Index::QueryTerm> BM25Index::prepare(std::string_view query, const BM25CorpusStats* global) const {
    thread_local QueryTokenCache cache;
    cache.use(this, epoch_);
    // The ids of the query's terms that occur in live documents, in query order, with their positions.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> found;  // (term id, position)
    std::string term;
    analyzer_->split(query, [&](std::string_view raw) {
        std::uint32_t id;
        if (raw.size() <= QueryTokenCache::kMaxTokenBytes) {
            const std::uint64_t h = QueryTokenCache::hash(raw);
            if (const std::uint32_t* hit = cache.find(raw, h)) {
                id = *hit;
            } else {
                id = query_term_id(raw, term);
                cache.insert(raw, h, id);
            }
        } else {
            id = query_term_id(raw, term);
        }
        if (id != kNoTerm) found.emplace_back(id, static_cast<std::uint32_t>(found.size()));
    });
    // Distinct terms in order of first occurrence; weight counts occurrences.
    std::sort(found.begin(), found.end());
    std::vector<std::pair<std::uint32_t, std::uint32_t>> first;  // (first position, term id) per distinct term
    std::vector<std::uint32_t> count(found.size(), 0);            // by first position
    for (std::size_t i = 0; i < found.size(); ++i) {
        if (i == 0 || found[i].first != found[i - 1].first) first.emplace_back(found[i].second, found[i].first);
        ++count[first.back().first];
    }
    std::sort(first.begin(), first.end());
    std::vector<QueryTerm> q;
    q.reserve(first.size());
    const double n = static_cast<double>(global ? global->docs : data_.live_docs);
    for (const auto& [pos, id] : first) {
        const Postings& p = data_.postings[id];
        std::uint64_t term_df = p.df;
        if (global) {
            const auto it = global->df.find(data_.terms[id]);
            if (it == global->df.end()) {
                throw InvalidArgument("search(): the corpus statistics give no document frequency for the query "
                                      "term '" + data_.terms[id] + "', which this index holds");
            }
            if (it->second < p.df || it->second > global->docs) {
                throw InvalidArgument("search(): the corpus document frequency of '" + data_.terms[id] + "' (" +
                                      std::to_string(it->second) + ") is below this index's (" +
                                      std::to_string(p.df) + ") or above the corpus's documents (" +
                                      std::to_string(global->docs) + ")");
            }
            term_df = it->second;
        }
        const double df = static_cast<double>(term_df);
        q.push_back(QueryTerm{&p, static_cast<double>(count[pos]) * std::log(1.0 + (n - df + 0.5) / (df + 0.5))});
    }
    // A document's score is summed in int64 units of 2^-32 and an impact is at most k1 + 1, so this bounds
    // every sum (and every contribution's double -> int64 conversion). Only a query repeating indexed
    // terms about a million times (at k1 = kMaxK1; a billion at k1 = 1.2) can exceed it: refused rather
    // than overflowed.
    double max_sum = 0.0;
    for (const QueryTerm& t : q) max_sum += t.weight * Scorer::kScale * (k1_ + 1.0) + 2.0;
    if (!(max_sum < 0x1p62))
        throw InvalidArgument("query too long: " + std::to_string(found.size()) +
                              " indexed terms could overflow the score range");
    return q;
}

}  // namespace funnelrank
