#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bm25_index.h"
#include "bm25_test_data.h"
#include "file_io.h"
#include "temp_dir.h"

using funnelrank::Analyzer;
using funnelrank::AnalyzerConfig;
using funnelrank::BM25Index;
using funnelrank::BM25Results;
using funnelrank::test::plain_analyzer;
using funnelrank::IndexFileError;
using funnelrank::InvalidArgument;
using funnelrank::NotFound;

namespace {

struct Corpus {
    std::vector<std::string> ids;
    std::vector<std::string> texts;
};

// Zipf-like vocabulary "t0".."t{V-1}"; document lengths 0..max_len.
Corpus random_corpus(std::mt19937& rng, std::size_t n, std::size_t vocab, std::size_t max_len,
                     const std::string& prefix = "d") {
    std::vector<double> w(vocab);
    for (std::size_t i = 0; i < vocab; ++i) w[i] = 1.0 / static_cast<double>(i + 1);
    std::discrete_distribution<std::size_t> term(w.begin(), w.end());
    std::uniform_int_distribution<std::size_t> len(0, max_len);
    Corpus c;
    for (std::size_t i = 0; i < n; ++i) {
        std::string text;
        const std::size_t l = len(rng);
        for (std::size_t j = 0; j < l; ++j) text += "t" + std::to_string(term(rng)) + " ";
        c.ids.push_back(prefix + std::to_string(i));
        c.texts.push_back(text);
    }
    return c;
}

std::vector<std::string> random_queries(std::mt19937& rng, std::size_t n, std::size_t vocab) {
    std::uniform_int_distribution<std::size_t> len(1, 8);
    std::uniform_int_distribution<std::size_t> term(0, vocab + 5);  // a few unknown terms
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::string q;
        const std::size_t l = len(rng);
        for (std::size_t j = 0; j < l; ++j) q += "t" + std::to_string(term(rng)) + " ";
        out.push_back(q);
    }
    return out;
}

void add_all(BM25Index& index, const Corpus& c) {
    std::vector<std::string_view> views(c.texts.begin(), c.texts.end());
    index.add(c.ids, views);
}

void expect_same(const BM25Results& a, const BM25Results& b, const std::string& what) {
    ASSERT_EQ(a.ids, b.ids) << what;
    ASSERT_EQ(a.scores, b.scores) << what;
}

// Straightforward Lucene BM25 over the analyzer's terms.
std::map<std::string, double> naive_scores(const Corpus& c, const std::string& query, const Analyzer& a,
                                           double k1, double b) {
    std::vector<std::map<std::string, int>> tf(c.texts.size());
    std::vector<double> dl(c.texts.size());
    std::map<std::string, int> df;
    double total = 0;
    for (std::size_t i = 0; i < c.texts.size(); ++i) {
        for (const auto& t : a.tokenize(c.texts[i])) ++tf[i][t];
        for (const auto& [t, n] : tf[i]) {
            ++df[t];
            dl[i] += n;
        }
        total += dl[i];
    }
    const double N = static_cast<double>(c.texts.size());
    const double avgdl = total / N;
    std::map<std::string, double> out;
    for (std::size_t i = 0; i < c.texts.size(); ++i) {
        double s = 0;
        bool matched = false;
        for (const auto& t : a.tokenize(query)) {
            auto it = tf[i].find(t);
            if (it == tf[i].end()) continue;
            matched = true;
            const double idf = std::log(1 + (N - df[t] + 0.5) / (df[t] + 0.5));
            s += idf * it->second * (k1 + 1) / (it->second + k1 * (1 - b + b * dl[i] / avgdl));
        }
        if (matched) out[c.ids[i]] = s;
    }
    return out;
}

using TempDir = funnelrank::test::TempDirTest;

}  // namespace

TEST(BM25, ScoresEqualNaiveReference) {
    std::mt19937 rng(7);
    const auto c = random_corpus(rng, 300, 80, 30);
    for (const double k1 : {1.2, 0.5, 2.0}) {
        for (const double b : {0.75, 0.0, 1.0}) {
            BM25Index index(k1, b, plain_analyzer());
            add_all(index, c);
            for (const auto& q : random_queries(rng, 20, 80)) {
                const auto expected = naive_scores(c, q, *index.analyzer(), k1, b);
                const auto got = index.search(q, 1000);
                ASSERT_EQ(got.ids.size(), expected.size()) << q;
                for (std::size_t i = 0; i < got.ids.size(); ++i) {
                    const double e = expected.at(got.ids[i]);
                    EXPECT_NEAR(got.scores[i], e, 1e-5 * e) << q;
                    if (i > 0) {
                        EXPECT_GE(got.scores[i - 1], got.scores[i]);
                    }
                }
            }
        }
    }
}

TEST(BM25, RepeatedQueryTermsCountTwice) {
    BM25Index index(1.2, 0.75, plain_analyzer());
    index.add({"a", "b"}, {"x y", "y z z"});
    const auto once = index.search("z", 10);
    const auto twice = index.search("z z", 10);
    ASSERT_EQ(once.ids, twice.ids);
    EXPECT_FLOAT_EQ(twice.scores[0], 2 * once.scores[0]);
}

TEST(BM25, PrunedTopKEqualsExhaustive) {
    std::mt19937 rng(11);
    for (int round = 0; round < 4; ++round) {
        // long lists (many blocks) with a skewed vocabulary exercise MaxScore and block skipping
        const auto c = random_corpus(rng, 3000 + 1000 * static_cast<std::size_t>(round), 300, 60);
        BM25Index index(1.2, 0.75, plain_analyzer());
        add_all(index, c);
        const auto queries = random_queries(rng, 60, 300);
        for (const std::size_t dense : {BM25Index::kDefaultDenseMaxDocs, std::size_t{0}}) {  // dense, MaxScore
            index.set_dense_max_docs(dense);
            for (const auto& q : queries) {
                for (const std::size_t k : {1, 3, 10, 100, 5000}) {
                    expect_same(index.search(q, k), index.search_exhaustive(q, k),
                                q + " k=" + std::to_string(k) + " dense_max_docs=" + std::to_string(dense));
                }
            }
        }
    }
}

TEST(BM25, TiesBrokenByInsertionOrder) {
    BM25Index index(1.2, 0.75, plain_analyzer());
    std::vector<std::string> ids;
    std::vector<std::string> texts;
    for (int i = 0; i < 500; ++i) {
        ids.push_back("doc" + std::to_string(i));
        texts.push_back(i % 2 ? "alpha beta" : "gamma delta");
    }
    add_all(index, Corpus{ids, texts});
    const auto r = index.search("alpha", 5);
    EXPECT_EQ(r.ids, (std::vector<std::string>{"doc1", "doc3", "doc5", "doc7", "doc9"}));
    expect_same(r, index.search_exhaustive("alpha", 5), "ties");
}

TEST(BM25, AllowRestrictsResults) {
    std::mt19937 rng(5);
    const auto c = random_corpus(rng, 2000, 100, 40);
    BM25Index index(1.2, 0.75, plain_analyzer());
    add_all(index, c);
    for (const std::size_t n_allow : {1, 10, 1500}) {
        std::vector<std::string> allow;
        for (std::size_t i = 0; i < n_allow; ++i) allow.push_back(c.ids[(i * 7919) % c.ids.size()]);
        for (const auto& q : random_queries(rng, 20, 100)) {
            for (const std::size_t dense : {BM25Index::kDefaultDenseMaxDocs, std::size_t{0}}) {
                index.set_dense_max_docs(dense);
                const auto r = index.search(q, 10, &allow);
                expect_same(r, index.search_exhaustive(q, 10, &allow), q);
                for (const auto& id : r.ids) EXPECT_NE(std::find(allow.begin(), allow.end(), id), allow.end());
            }
        }
    }
}

TEST(BM25, AllowIgnoresUnknownAndDeletedIds) {
    BM25Index index(1.2, 0.75, plain_analyzer());
    index.add({"a", "b", "c", "d"}, {"apple pie", "apple tart", "apple cake", "apple jam"});
    index.remove({"b"});
    for (const std::size_t dense : {BM25Index::kDefaultDenseMaxDocs, std::size_t{0}}) {
        index.set_dense_max_docs(dense);
        const std::vector<std::string> unknown{"nope", "zzz"};
        EXPECT_TRUE(index.search("apple", 10, &unknown).ids.empty());
        EXPECT_TRUE(index.search_exhaustive("apple", 10, &unknown).ids.empty());
        // Known, unknown, deleted and repeated ids: just the known live ones come back, each once.
        const std::vector<std::string> mixed{"nope", "c", "b", "a", "c"};
        const auto r = index.search("apple", 10, &mixed);
        EXPECT_EQ(std::set<std::string>(r.ids.begin(), r.ids.end()), (std::set<std::string>{"a", "c"}));
        EXPECT_EQ(r.ids.size(), 2u);
        expect_same(r, index.search_exhaustive("apple", 10, &mixed), "apple");
        const std::vector<std::string> deleted{"b"};
        EXPECT_TRUE(index.search("apple", 10, &deleted).ids.empty());
    }
}

TEST(BM25, EmptyInputs) {
    BM25Index empty(1.2, 0.75, nullptr);
    EXPECT_TRUE(empty.search("anything", 10).ids.empty());
    BM25Index index(1.2, 0.75, nullptr);
    index.add({"a", "b", "empty"}, {"cats and dogs", "the dogs", ""});
    EXPECT_EQ(index.size(), 3U);
    EXPECT_TRUE(index.search("", 10).ids.empty());
    EXPECT_TRUE(index.search("the and of", 10).ids.empty());  // stopwords only
    EXPECT_TRUE(index.search("   !!! ", 10).ids.empty());
    EXPECT_THROW(index.search("dogs", 0), InvalidArgument);
    const auto r = index.search("dogs", 10);
    EXPECT_EQ(r.ids.size(), 2U);  // the empty document never matches
}

TEST(BM25, EmptyDocumentsCountInNAndAvgdl) {
    BM25Index with_empty(1.2, 0.75, plain_analyzer());
    with_empty.add({"a", "b", "e1", "e2"}, {"x y", "y", "", ""});
    const auto r = with_empty.search("x", 10);
    // N = 4, df = 1, avgdl = 3/4, dl = 2
    const double idf = std::log(1 + (4 - 1 + 0.5) / 1.5);
    const double expected = idf * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 0.75));
    ASSERT_EQ(r.ids.size(), 1U);
    EXPECT_NEAR(r.scores[0], expected, 1e-6);
}

TEST(BM25, AddIsAllOrNothing) {
    BM25Index index(1.2, 0.75, nullptr);
    index.add({"a"}, {"first document"});
    EXPECT_THROW(index.add({"b", "a"}, {"x", "y"}), InvalidArgument);          // already present
    EXPECT_THROW(index.add({"c", "c"}, {"x", "y"}), InvalidArgument);          // duplicate in batch
    EXPECT_THROW(index.add({"d"}, {"x", "y"}), InvalidArgument);               // size mismatch
    EXPECT_THROW(index.add({""}, {"x"}), InvalidArgument);                     // empty id
    EXPECT_THROW(index.add({"e", "f"}, {"fine", "bad \xFF utf8"}), InvalidArgument);
    EXPECT_EQ(index.size(), 1U);
    EXPECT_EQ(index.ids(), std::vector<std::string>{"a"});
    EXPECT_EQ(index.stats().postings, 2U);
}

TEST(BM25, DeleteIsAllOrNothing) {
    BM25Index index(1.2, 0.75, nullptr);
    index.add({"a", "b", "c"}, {"one", "two", "three"});
    EXPECT_THROW(index.remove({"a", "zzz"}), NotFound);
    EXPECT_THROW(index.remove({"a", "a"}), InvalidArgument);
    EXPECT_EQ(index.size(), 3U);
    EXPECT_TRUE(index.contains("a"));
    index.remove({"a"});
    EXPECT_FALSE(index.contains("a"));
    EXPECT_EQ(index.ids(), (std::vector<std::string>{"b", "c"}));
    index.add({"a"}, {"one again"});  // a deleted id can be reused
    EXPECT_EQ(index.ids(), (std::vector<std::string>{"b", "c", "a"}));
}

TEST(BM25, IncrementalUpdatesEqualRebuild) {
    std::mt19937 rng(3);
    BM25Index index(1.2, 0.75, plain_analyzer());
    std::vector<std::pair<std::string, std::string>> live;  // in insertion order
    std::size_t next_id = 0;
    const auto queries = random_queries(rng, 40, 200);
    for (int step = 0; step < 12; ++step) {
        auto batch = random_corpus(rng, 150 + static_cast<std::size_t>(step) * 20, 200, 50, "s");
        for (auto& id : batch.ids) id = "doc" + std::to_string(next_id++);
        add_all(index, batch);
        for (std::size_t i = 0; i < batch.ids.size(); ++i) live.emplace_back(batch.ids[i], batch.texts[i]);
        // delete a random subset (sometimes enough to trigger compaction)
        std::vector<std::string> del;
        std::vector<std::pair<std::string, std::string>> keep;
        const double p = step % 3 == 2 ? 0.5 : 0.1;
        std::bernoulli_distribution drop(p);
        for (auto& doc : live) (drop(rng) ? del.push_back(doc.first) : keep.push_back(doc));
        index.remove(del);
        live = keep;

        BM25Index rebuilt(1.2, 0.75, plain_analyzer());
        // alternate the strategies (dense accumulation vs MaxScore) on both sides
        index.set_dense_max_docs(step % 2 == 0 ? BM25Index::kDefaultDenseMaxDocs : 0);
        rebuilt.set_dense_max_docs(step % 2 == 0 ? 0 : BM25Index::kDefaultDenseMaxDocs);
        Corpus c;
        for (const auto& [id, text] : live) {
            c.ids.push_back(id);
            c.texts.push_back(text);
        }
        add_all(rebuilt, c);
        ASSERT_EQ(index.size(), live.size());
        ASSERT_EQ(index.ids(), c.ids);
        for (const auto& q : queries) {
            for (const std::size_t k : {1, 10, 1000}) {
                expect_same(index.search(q, k), rebuilt.search(q, k), "step " + std::to_string(step) + ": " + q);
                expect_same(index.search(q, k), index.search_exhaustive(q, k), "pruned vs exhaustive: " + q);
            }
        }
    }
    const auto before = index.stats();
    index.compact();
    const auto after = index.stats();
    EXPECT_EQ(after.doc_slots, after.live_docs);
    EXPECT_LE(after.postings, before.postings);
}

TEST(BM25, BatchEqualsSingleQueries) {
    std::mt19937 rng(13);
    const auto c = random_corpus(rng, 1500, 150, 40);
    BM25Index index(1.2, 0.75, plain_analyzer());
    add_all(index, c);
    const auto queries = random_queries(rng, 100, 150);
    for (const unsigned threads : {0U, 1U, 3U}) {
        const auto batch = index.search_batch(queries, 10, threads);
        ASSERT_EQ(batch.size(), queries.size());
        for (std::size_t i = 0; i < queries.size(); ++i) expect_same(batch[i], index.search(queries[i], 10), queries[i]);
    }
    EXPECT_THROW(index.search_batch(queries, 0, 1), InvalidArgument);
}

TEST(BM25, ConcurrentSearchWhileAdding) {
    std::mt19937 rng(17);
    BM25Index index(1.2, 0.75, plain_analyzer());
    add_all(index, random_corpus(rng, 500, 100, 30));
    const auto queries = random_queries(rng, 50, 100);
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
        readers.emplace_back([&] {
            while (!stop) {
                for (const auto& q : queries) {
                    const auto r = index.search(q, 10);
                    for (std::size_t i = 1; i < r.scores.size(); ++i) {
                        if (r.scores[i - 1] < r.scores[i]) ++errors;
                    }
                }
            }
        });
    }
    for (int step = 0; step < 20; ++step) {
        add_all(index, random_corpus(rng, 100, 100, 30, "w" + std::to_string(step) + "_"));
        std::vector<std::string> del;
        for (int i = 0; i < 30; ++i) del.push_back("w" + std::to_string(step) + "_" + std::to_string(i));
        index.remove(del);
    }
    stop = true;
    for (auto& th : readers) th.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(index.size(), 500U + 20 * 70);
}

TEST_F(TempDir, SaveLoadAnswersIdentically) {
    std::mt19937 rng(19);
    AnalyzerConfig cfg;
    cfg.stopwords = {"t1", "t2"};
    cfg.min_token_length = 1;
    BM25Index index(0.9, 0.4, std::make_shared<const Analyzer>(cfg));
    add_all(index, random_corpus(rng, 2000, 150, 40));
    std::vector<std::string> del;
    for (int i = 0; i < 100; ++i) del.push_back("d" + std::to_string(i * 3));
    index.remove(del);  // deleted docs are left out of the file
    index.save(path("idx.bm25"));
    const auto loaded = BM25Index::load(path("idx.bm25"));
    EXPECT_EQ(loaded->k1(), 0.9);
    EXPECT_EQ(loaded->b(), 0.4);
    EXPECT_EQ(loaded->analyzer()->config().stopwords, (std::vector<std::string>{"t1", "t2"}));
    EXPECT_EQ(loaded->analyzer()->config().min_token_length, 1U);
    EXPECT_EQ(loaded->ids(), index.ids());
    EXPECT_EQ(loaded->stats().doc_slots, index.size());
    for (const auto& q : random_queries(rng, 50, 150)) expect_same(loaded->search(q, 20), index.search(q, 20), q);
    // the loaded index keeps working incrementally
    loaded->remove({"d1"});
    loaded->add({"new"}, {"t5 t6"});
    EXPECT_TRUE(loaded->contains("new"));
    // saving over an existing file replaces it
    loaded->save(path("idx.bm25"));
    EXPECT_TRUE(BM25Index::load(path("idx.bm25"))->contains("new"));
}

TEST_F(TempDir, CorruptOrTruncatedFilesRaiseIndexFileError) {
    BM25Index index(1.2, 0.75, nullptr);
    index.add({"a", "b", "c"}, {"running cats", "sleeping dogs", "cats and dogs"});
    index.save(path_);
    const std::string bytes = read_raw();
    for (std::size_t cut = 0; cut < bytes.size(); cut += std::max<std::size_t>(1, bytes.size() / 40)) {
        write_raw(bytes.substr(0, cut));
        EXPECT_THROW(BM25Index::load(path_), IndexFileError) << "truncated at " << cut;
    }
    for (std::size_t at = 0; at < bytes.size(); at += 7) {
        std::string flipped = bytes;
        flipped[at] = static_cast<char>(flipped[at] ^ 0x5A);
        write_raw(flipped);
        EXPECT_THROW(BM25Index::load(path_), IndexFileError) << "flipped byte " << at;
    }
    try {
        BM25Index::load(path("missing.bm25"));
        FAIL() << "no exception";
    } catch (const IndexFileError& e) {
        EXPECT_NE(std::string(e.what()).find("missing.bm25"), std::string::npos) << e.what();
    }
}

TEST(BM25, HugeDocument) {
    BM25Index index(1.2, 0.75, nullptr);
    std::string big;
    big.reserve(10'500'000);
    while (big.size() < 10'000'000) big += "neural retrieval systems rank documents quickly ";
    index.add({"big", "small"}, {big, "documents about retrieval"});
    const auto r = index.search("retrieval", 10);
    ASSERT_EQ(r.ids.size(), 2U);
    EXPECT_TRUE(std::isfinite(r.scores[0]) && std::isfinite(r.scores[1]));
    expect_same(r, index.search_exhaustive("retrieval", 10), "huge");
}

TEST(BM25, RejectsBadParameters) {
    EXPECT_THROW(BM25Index(-1.0, 0.75, nullptr), InvalidArgument);
    EXPECT_THROW(BM25Index(1.2, 1.5, nullptr), InvalidArgument);
    EXPECT_THROW(BM25Index(std::nan(""), 0.75, nullptr), InvalidArgument);
}

TEST(BM25, HugeKIsClampedToTheLiveDocuments) {
    // k = 2^63 used to make the dense selection's 2k wrap to 0 (out-of-bounds nth_element).
    std::mt19937 rng(31);
    BM25Index index(1.2, 0.75, plain_analyzer());
    add_all(index, random_corpus(rng, 300, 20, 10));
    index.remove({"d3"});
    const auto queries = random_queries(rng, 10, 20);
    for (const std::size_t dense : {BM25Index::kDefaultDenseMaxDocs, std::size_t{0}}) {
        index.set_dense_max_docs(dense);
        for (const auto& q : queries) {
            const BM25Results all = index.search(q, index.size());
            for (const std::size_t k : {std::size_t{1'000'000'000'000}, std::size_t{1} << 63, SIZE_MAX}) {
                expect_same(index.search(q, k), all, q);
                expect_same(index.search_exhaustive(q, k), all, q);
                const std::vector<std::string> allow = {"d1", "d2", "d3", "d200"};
                expect_same(index.search(q, k, &allow), index.search(q, 4, &allow), q);
                const auto batch = index.search_batch({q, q}, k, 2);
                ASSERT_EQ(batch.size(), 2u);
                expect_same(batch[1], all, q);
            }
        }
    }
}

TEST_F(TempDir, LoadRejectsDirectories) {
    try {
        BM25Index::load(dir_.string());
        FAIL() << "no exception";
    } catch (const IndexFileError& e) {
        EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
    }
    // (FIFOs: FileIoTest.FifoIsRejectedWithoutBlocking, through the same IndexFile.)
}

TEST(BM25, K1IsBoundedAndOverlongQueriesAreRefused) {
    // k1 = 1e308 made every impact infinite (t * (k1 + 1) overflows), and the contributions' double ->
    // int64 conversion undefined; so did ~2.2 million repetitions of a term (idf ~1) at k1 = 1000.
    EXPECT_THROW(BM25Index(1e308, 0.75, nullptr), InvalidArgument);
    EXPECT_THROW(BM25Index(BM25Index::kMaxK1 * 1.01, 0.75, nullptr), InvalidArgument);
    BM25Index index(BM25Index::kMaxK1, 0.75, plain_analyzer());
    index.add({"a", "b", "c"}, {"rare word", "common word", "common thing"});
    EXPECT_EQ(index.search("rare rare rare", 5).ids, std::vector<std::string>{"a"});
    std::string flood;
    for (int i = 0; i < 3'000'000; ++i) flood += "rare ";
    EXPECT_THROW(index.search(flood, 5), InvalidArgument);
    EXPECT_THROW(index.search_batch({"rare", flood}, 5, 2), InvalidArgument);
    flood += "unknownterm";  // tokens that no document has cost nothing and count for nothing
    BM25Index normal(1.2, 0.75, plain_analyzer());
    normal.add({"a"}, {"word"});
    EXPECT_EQ(normal.search(flood + " word", 5).ids, std::vector<std::string>{"a"});
}

TEST_F(TempDir, IdsAreValidUtf8InMemoryAndOnDisk) {
    // Python can only pass UTF-8 ids, so a non-UTF-8 id in a file is corruption (it could not even be
    // returned as a str); add() refuses one too, so that every saved index loads.
    BM25Index index(1.2, 0.75, plain_analyzer());
    EXPECT_THROW(index.add({"ok", "bad\xff"}, {"x", "y"}), InvalidArgument);
    EXPECT_EQ(index.size(), 0u);
    index.add({"caf\xc3\xa9", "abc"}, {"x", "y"});
    index.save(path_);
    std::string bytes = read_raw();
    const auto at = bytes.find("caf\xc3\xa9");
    ASSERT_NE(at, std::string::npos);
    bytes[at + 3] = '\xff';
    // (the checksum: recomputed, so only the id check can object)
    const std::size_t payload = bytes.size() - 12 - 20;
    const std::uint32_t crc = funnelrank::io::crc32(0, bytes.data() + 12, payload);
    std::memcpy(&bytes[bytes.size() - 12], &crc, sizeof crc);
    write_raw(bytes);
    EXPECT_THROW(BM25Index::load(path_), IndexFileError);
}
