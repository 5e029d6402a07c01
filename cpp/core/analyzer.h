#pragma once
// Text analysis for BM25: Unicode-aware lowercasing and tokenization, stopword removal, Snowball stemming.
//
// The pipeline mirrors bm25s's default (`text.lower()`, regex `(?u)\b\w\w+\b`, stopwords, stemmer):
//   1. lowercase (utf8proc simple case mapping, plus Python's two context rules: U+0130 -> "i" + U+0307,
//      final capital sigma -> U+03C2), when enabled;
//   2. split into maximal runs of "word" code points: Unicode letters (Lu Ll Lt Lm Lo), numbers
//      (Nd Nl No) and '_' (what Python's `\w` matches); runs shorter than min_token_length code points
//      are dropped;
//   3. drop stopwords (compared with the lowercased, unstemmed token);
//   4. stem with a Snowball algorithm from libstemmer (one sb_stemmer per thread: they are not thread-safe).
// Invalid UTF-8 raises InvalidArgument (never undefined behaviour).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "errors.h"

namespace funnelrank {

// The default English stopword list: NLTK's 179 English stop words (bm25s ships it as "en_plus").
// Chosen over Lucene's list on the held-out splits (scifact train, nfcorpus dev nDCG@10). Sorted.
// Entries with an apostrophe or of one letter never match a token; they are kept so the list is NLTK's.
const std::vector<std::string>& english_stopwords();
// Lucene's English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, 33 words; bm25s's "en"). Sorted.
const std::vector<std::string>& lucene_stopwords();

// The largest min_token_length: Lucene's default maximum token length. A longer minimum would drop every
// real word (a query would then find nothing), so it is refused as a mistake rather than accepted.
constexpr std::size_t kMaxMinTokenLength = 255;

struct AnalyzerConfig {
    bool lowercase = true;
    std::vector<std::string> stopwords = english_stopwords();  // the effective list
    std::string stemmer = "english";                            // libstemmer algorithm; "" = none
    std::size_t min_token_length = 2;                           // in code points, in [1, kMaxMinTokenLength]
};

class Analyzer {
public:
    // Validates the config (unknown stemmer, min_token_length outside [1, kMaxMinTokenLength], invalid UTF-8 in stopwords ->
    // InvalidArgument). Stopwords are lowercased when `lowercase` is on, deduplicated and sorted.
    explicit Analyzer(AnalyzerConfig config);
    Analyzer(const Analyzer&) = delete;
    Analyzer& operator=(const Analyzer&) = delete;

    const AnalyzerConfig& config() const { return config_; }

    // The full pipeline: the terms of `text`, in order (duplicates kept).
    std::vector<std::string> tokenize(std::string_view text) const;

    // Steps 1-2: calls on_token(std::string_view) for each raw (lowercased, length-filtered) token.
    template <typename F>
    void split(std::string_view text, F&& on_token) const;

    // Steps 3-4 on one raw token: false for a stopword, else the term in `out`.
    bool normalize(std::string_view raw, std::string& out) const;

    // Names of the available Snowball algorithms.
    static std::vector<std::string> available_stemmers();

private:
    // Decodes one non-ASCII code point at text[pos]; returns its byte length. Throws on invalid UTF-8.
    static std::size_t decode(std::string_view text, std::size_t pos, std::int32_t& cp);
    static bool is_word(std::int32_t cp);
    static bool is_cased(std::int32_t cp);
    static void append_utf8(std::string& out, std::int32_t cp);
    static std::int32_t to_lower(std::int32_t cp);

    AnalyzerConfig config_;
    std::unordered_set<std::string_view> stop_set_;  // views into config_.stopwords
};

namespace detail {
struct AsciiTable {
    bool word[128];
    char lower[128];
    constexpr AsciiTable() : word(), lower() {
        for (int c = 0; c < 128; ++c) {
            const bool digit = c >= '0' && c <= '9';
            const bool upper = c >= 'A' && c <= 'Z';
            const bool low = c >= 'a' && c <= 'z';
            word[c] = digit || upper || low || c == '_';
            lower[c] = static_cast<char>(upper ? c + ('a' - 'A') : c);
        }
    }
};
inline constexpr AsciiTable kAscii{};
}  // namespace detail

template <typename F>
void Analyzer::split(std::string_view text, F&& on_token) const {
    std::string token;
    std::size_t length = 0;  // code points in `token`
    bool last_cased = false;
    const bool lower = config_.lowercase;
    const std::size_t min_len = config_.min_token_length;
    auto flush = [&]() {
        if (length >= min_len) on_token(std::string_view(token));
        token.clear();
        length = 0;
        last_cased = false;
    };
    const std::size_t n = text.size();
    std::size_t pos = 0;
    while (pos < n) {
        const auto byte = static_cast<unsigned char>(text[pos]);
        if (byte < 0x80) {
            if (detail::kAscii.word[byte]) {
                token.push_back(lower ? detail::kAscii.lower[byte] : static_cast<char>(byte));
                ++length;
                last_cased = (byte | 0x20) >= 'a' && (byte | 0x20) <= 'z';
            } else if (!token.empty()) {
                flush();
            }
            ++pos;
            continue;
        }
        std::int32_t cp = 0;
        pos += decode(text, pos, cp);
        if (!is_word(cp)) {
            if (!token.empty()) flush();
            continue;
        }
        if (lower && cp == 0x130) {  // Python: "İ".lower() == "i\u0307"; U+0307 is not a word char
            token.push_back('i');
            ++length;
            flush();
            continue;
        }
        const bool cased = is_cased(cp);
        if (lower && cp == 0x3A3) {  // final sigma: after a cased letter, not followed by one
            bool followed = false;
            if (pos < n) {
                std::int32_t next = 0;
                const auto nb = static_cast<unsigned char>(text[pos]);
                if (nb < 0x80) {
                    followed = (nb | 0x20) >= 'a' && (nb | 0x20) <= 'z';
                } else {
                    decode(text, pos, next);
                    followed = is_cased(next);
                }
            }
            append_utf8(token, (last_cased && !followed) ? 0x3C2 : 0x3C3);
        } else {
            append_utf8(token, lower ? to_lower(cp) : cp);
        }
        ++length;
        last_cased = cased;
    }
    if (!token.empty()) flush();
}

}  // namespace funnelrank
