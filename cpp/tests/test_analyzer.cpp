#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "analyzer.h"

using funnelrank::Analyzer;
using funnelrank::AnalyzerConfig;
using funnelrank::InvalidArgument;
using Terms = std::vector<std::string>;

namespace {
AnalyzerConfig plain() {
    AnalyzerConfig c;
    c.stopwords.clear();
    c.stemmer.clear();
    return c;
}
}  // namespace

TEST(Analyzer, LowercasesAndSplitsOnNonWordCharacters) {
    const Analyzer a(plain());
    EXPECT_EQ(a.tokenize("Hello, WORLD! foo_bar x-ray 42 a"), (Terms{"hello", "world", "foo_bar", "ray", "42"}));
    EXPECT_EQ(a.tokenize(""), Terms{});
    EXPECT_EQ(a.tokenize("   ...  "), Terms{});
}

TEST(Analyzer, UnicodeLettersDigitsAndCase) {
    const Analyzer a(plain());
    // accented letters, Greek with final sigma, Cyrillic, CJK, superscript digits (No), combining mark splits
    EXPECT_EQ(a.tokenize("Café ÉCOLE ΣΟΦΟΣ Москва 東京 x²y naïve"),
              (Terms{"café", "école", "σοφος", "москва", "東京", "x²y", "naïve"}));
    // U+0130 lowercases to "i" + U+0307 (as Python's str.lower), and U+0307 is not a word character
    EXPECT_EQ(a.tokenize("İstanbul"), (Terms{"stanbul"}));
    // a decomposed accent (U+0301) is a mark, not a word character
    EXPECT_EQ(a.tokenize("cafe\xCC\x81s"), (Terms{"cafe"}));
}

TEST(Analyzer, MinTokenLengthCountsCodePoints) {
    AnalyzerConfig c = plain();
    c.min_token_length = 3;
    const Analyzer a(c);
    EXPECT_EQ(a.tokenize("ab abc éé ééé"), (Terms{"abc", "ééé"}));
    c.min_token_length = 0;
    EXPECT_THROW(Analyzer{c}, InvalidArgument);
}

TEST(Analyzer, MinTokenLengthIsCapped) {
    AnalyzerConfig c = plain();
    c.min_token_length = funnelrank::kMaxMinTokenLength;
    EXPECT_NO_THROW(Analyzer{c});
    for (const std::size_t bad : {funnelrank::kMaxMinTokenLength + 1, std::size_t{1} << 31,
                                  std::numeric_limits<std::size_t>::max()}) {
        c.min_token_length = bad;
        EXPECT_THROW(Analyzer{c}, InvalidArgument) << bad;
    }
}

TEST(Analyzer, NoLowercasing) {
    AnalyzerConfig c = plain();
    c.lowercase = false;
    const Analyzer a(c);
    EXPECT_EQ(a.tokenize("Hello WORLD"), (Terms{"Hello", "WORLD"}));
}

TEST(Analyzer, DefaultStopwordsAndEnglishStemmer) {
    const Analyzer a{AnalyzerConfig{}};
    EXPECT_EQ(a.tokenize("The cats are running through the gardens"), (Terms{"cat", "run", "garden"}));
    AnalyzerConfig lucene;
    lucene.stopwords = funnelrank::lucene_stopwords();
    EXPECT_EQ(Analyzer(lucene).tokenize("The cats are running through the gardens"),
              (Terms{"cat", "run", "through", "garden"}));
}

TEST(Analyzer, CustomStopwordsAreLowercasedAndCheckedBeforeStemming) {
    AnalyzerConfig c;
    c.stopwords = {"Running", "CATS"};
    const Analyzer a(c);
    EXPECT_EQ(a.config().stopwords, (Terms{"cats", "running"}));
    EXPECT_EQ(a.tokenize("cats cat running runs"), (Terms{"cat", "run"}));
}

TEST(Analyzer, RejectsUnknownStemmer) {
    AnalyzerConfig c;
    c.stemmer = "klingon";
    EXPECT_THROW(Analyzer{c}, InvalidArgument);
    EXPECT_FALSE(Analyzer::available_stemmers().empty());
}

TEST(Analyzer, InvalidUtf8Throws) {
    const Analyzer a{AnalyzerConfig{}};
    for (const std::string& bad : {std::string("ok \xFF"), std::string("\xC3"), std::string("a\xED\xA0\x80z"),
                                  std::string("\xC0\xAF"), std::string("abc \xE2\x82")}) {
        EXPECT_THROW(a.tokenize(bad), InvalidArgument) << bad;
    }
    AnalyzerConfig c;
    c.stopwords = {"bad\xFF"};
    EXPECT_THROW(Analyzer{c}, InvalidArgument);
}

TEST(Analyzer, HugeTextAndHugeToken) {
    const Analyzer a{AnalyzerConfig{}};
    std::string text;
    for (int i = 0; i < 200000; ++i) text += "running dogs ";
    EXPECT_EQ(a.tokenize(text).size(), 400000U);
    const std::string token(5'000'000, 'x');
    const auto terms = a.tokenize(token);
    ASSERT_EQ(terms.size(), 1U);
    EXPECT_EQ(terms[0].size(), token.size());
}

TEST(Analyzer, ConcurrentTokenizationMatchesSerial) {
    const Analyzer a{AnalyzerConfig{}};
    const std::string text = "Relational databases were running queries over connected graphs of generalizations";
    const auto expected = a.tokenize(text);
    std::vector<std::thread> threads;
    std::vector<int> ok(4, 1);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; ++i) {
                if (a.tokenize(text) != expected) ok[static_cast<std::size_t>(t)] = 0;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok, std::vector<int>(4, 1));
}
