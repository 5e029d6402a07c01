#pragma once
// Test data shared by the BM25 tests (test_bm25.cpp, test_bm25_planner.cpp).
#include <memory>

#include "analyzer.h"

namespace funnelrank::test {

// An analyzer that keeps every token as it is (no stopwords, no stemming, no minimum length), so a test's
// documents are exactly the terms it wrote.
inline std::shared_ptr<const Analyzer> plain_analyzer() {
    AnalyzerConfig c;
    c.stopwords.clear();
    c.stemmer.clear();
    c.min_token_length = 1;
    return std::make_shared<const Analyzer>(c);
}

}  // namespace funnelrank::test
