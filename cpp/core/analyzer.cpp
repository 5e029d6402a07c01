#include "analyzer.h"

#include <libstemmer.h>
#include <utf8proc.h>

#include <algorithm>
#include <climits>
#include <new>
#include <memory>
#include <unordered_map>

namespace funnelrank {

const std::vector<std::string>& english_stopwords() {
    static const std::vector<std::string> words = {
        "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any", "are",
        "aren", "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
        "but", "by", "can", "couldn", "couldn't", "d", "did", "didn", "didn't", "do", "does", "doesn",
        "doesn't", "doing", "don", "don't", "down", "during", "each", "few", "for", "from", "further", "had",
        "hadn", "hadn't", "has", "hasn", "hasn't", "have", "haven", "haven't", "having", "he", "her", "here",
        "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "isn't",
        "it", "it's", "its", "itself", "just", "ll", "m", "ma", "me", "mightn", "mightn't", "more", "most",
        "mustn", "mustn't", "my", "myself", "needn", "needn't", "no", "nor", "not", "now", "o", "of", "off",
        "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "re", "s",
        "same", "shan", "shan't", "she", "she's", "should", "should've", "shouldn", "shouldn't", "so", "some",
        "such", "t", "than", "that", "that'll", "the", "their", "theirs", "them", "themselves", "then",
        "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "ve",
        "very", "was", "wasn", "wasn't", "we", "were", "weren", "weren't", "what", "when", "where", "which",
        "while", "who", "whom", "why", "will", "with", "won", "won't", "wouldn", "wouldn't", "y", "you",
        "you'd", "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves",
    };
    return words;
}

const std::vector<std::string>& lucene_stopwords() {
    static const std::vector<std::string> words = {
        "a",    "an",    "and",  "are",   "as",    "at",   "be",   "but",  "by",   "for",  "if",
        "in",   "into",  "is",   "it",    "no",    "not",  "of",   "on",   "or",   "such", "that",
        "the",  "their", "then", "there", "these", "they", "this", "to",   "was",  "will", "with"};
    return words;
}

namespace {
struct StemmerDeleter {
    void operator()(sb_stemmer* s) const { sb_stemmer_delete(s); }
};
using StemmerPtr = std::unique_ptr<sb_stemmer, StemmerDeleter>;

// libstemmer's sb_stemmer keeps per-call state, so each thread owns one per algorithm, with a cache of
// recent stems: stemming is a pure function of (algorithm, token), and query streams repeat words, so
// most query tokens are stemmed once per thread (PyStemmer caches the same way). Bounded: cleared when
// full; long tokens are not cached.
struct ThreadStemmer {
    static constexpr std::size_t kCacheEntries = 1u << 16;
    static constexpr std::size_t kMaxCachedBytes = 64;
    StemmerPtr stemmer;
    std::unordered_map<std::string, std::string> cache;  // token -> stem
    std::string key;                                     // lookup buffer (no allocation for most tokens)
};

ThreadStemmer& thread_stemmer(const std::string& algorithm) {
    thread_local std::unordered_map<std::string, std::unique_ptr<ThreadStemmer>> stemmers;
    thread_local ThreadStemmer* last = nullptr;
    thread_local std::string last_algorithm;
    if (last && last_algorithm == algorithm) return *last;
    auto it = stemmers.find(algorithm);
    if (it == stemmers.end()) {
        StemmerPtr s(sb_stemmer_new(algorithm.c_str(), "UTF_8"));
        if (!s) throw InvalidArgument("unknown stemmer '" + algorithm + "'");
        auto entry = std::make_unique<ThreadStemmer>();
        entry->stemmer = std::move(s);
        it = stemmers.emplace(algorithm, std::move(entry)).first;
    }
    last_algorithm = algorithm;
    last = it->second.get();
    return *last;
}
}  // namespace

std::vector<std::string> Analyzer::available_stemmers() {
    std::vector<std::string> out;
    for (const char** p = sb_stemmer_list(); p && *p; ++p) out.emplace_back(*p);
    return out;
}

Analyzer::Analyzer(AnalyzerConfig config) : config_(std::move(config)) {
    if (config_.min_token_length < 1 || config_.min_token_length > kMaxMinTokenLength)
        throw InvalidArgument("min_token_length must be in [1, " + std::to_string(kMaxMinTokenLength) + "], got " +
                              std::to_string(config_.min_token_length));
    if (!config_.stemmer.empty()) {
        const auto names = available_stemmers();
        if (std::find(names.begin(), names.end(), config_.stemmer) == names.end()) {
            std::string msg = "unknown stemmer '" + config_.stemmer + "'; available:";
            for (const auto& name : names) msg += " " + name;
            throw InvalidArgument(msg);
        }
    }
    std::vector<std::string> words;
    words.reserve(config_.stopwords.size());
    for (const auto& w : config_.stopwords) {
        std::string norm;
        if (config_.lowercase) {
            for (std::size_t pos = 0; pos < w.size();) {
                const auto byte = static_cast<unsigned char>(w[pos]);
                if (byte < 0x80) {
                    norm.push_back(detail::kAscii.lower[byte]);
                    ++pos;
                } else {
                    std::int32_t cp = 0;
                    pos += decode(w, pos, cp);
                    append_utf8(norm, to_lower(cp));
                }
            }
        } else {
            std::int32_t cp = 0;
            for (std::size_t pos = 0; pos < w.size();) {
                const auto byte = static_cast<unsigned char>(w[pos]);
                pos += byte < 0x80 ? 1 : decode(w, pos, cp);
            }
            norm = w;
        }
        words.push_back(std::move(norm));
    }
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    config_.stopwords = std::move(words);
    stop_set_.insert(config_.stopwords.begin(), config_.stopwords.end());
}

std::size_t Analyzer::decode(std::string_view text, std::size_t pos, std::int32_t& cp) {
    utf8proc_int32_t value = 0;
    const auto len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                                      static_cast<utf8proc_ssize_t>(text.size() - pos), &value);
    if (len <= 0) {
        throw InvalidArgument("invalid UTF-8 at byte offset " + std::to_string(pos));
    }
    cp = value;
    return static_cast<std::size_t>(len);
}

bool Analyzer::is_word(std::int32_t cp) {
    switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO:
            return true;
        default:
            return cp == '_';
    }
}

bool Analyzer::is_cased(std::int32_t cp) {
    const auto cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

std::int32_t Analyzer::to_lower(std::int32_t cp) { return utf8proc_tolower(cp); }

void Analyzer::append_utf8(std::string& out, std::int32_t cp) {
    utf8proc_uint8_t buf[4];
    const auto len = utf8proc_encode_char(cp, buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(len));
}

bool Analyzer::normalize(std::string_view raw, std::string& out) const {
    if (!stop_set_.empty() && stop_set_.count(raw)) return false;
    if (config_.stemmer.empty() || raw.size() > static_cast<std::size_t>(INT32_MAX)) {
        out.assign(raw);
        return true;
    }
    ThreadStemmer& ts = thread_stemmer(config_.stemmer);
    const bool cacheable = raw.size() <= ThreadStemmer::kMaxCachedBytes;
    if (cacheable) {
        ts.key.assign(raw);
        const auto hit = ts.cache.find(ts.key);
        if (hit != ts.cache.end()) {
            out.assign(hit->second);
            return true;
        }
    }
    const sb_symbol* stem = sb_stemmer_stem(ts.stemmer.get(), reinterpret_cast<const sb_symbol*>(raw.data()),
                                            static_cast<int>(raw.size()));
    if (!stem) throw std::bad_alloc();
    out.assign(reinterpret_cast<const char*>(stem), static_cast<std::size_t>(sb_stemmer_length(ts.stemmer.get())));
    if (cacheable) {
        if (ts.cache.size() >= ThreadStemmer::kCacheEntries) ts.cache.clear();
        ts.cache.emplace(ts.key, out);
    }
    return true;
}

std::vector<std::string> Analyzer::tokenize(std::string_view text) const {
    std::vector<std::string> terms;
    std::string term;
    split(text, [&](std::string_view raw) {
        if (normalize(raw, term)) terms.push_back(term);
    });
    return terms;
}

}  // namespace funnelrank
