// Sharded BM25 (DFS query-then-fetch): shards searched with the corpus-wide statistics give exactly the
// scores of one index over the union, and a merge of their top-k on (exact score, corpus insertion order)
// is exactly its top-k.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bm25_index.h"
#include "errors.h"

using funnelrank::Analyzer;
using funnelrank::AnalyzerConfig;
using funnelrank::BM25CorpusStats;
using funnelrank::BM25Index;
using funnelrank::BM25Results;
using funnelrank::InvalidArgument;

namespace {

struct Doc {
    std::string id;
    std::string text;
    std::size_t position;  // in the union's insertion order
};

std::vector<Doc> corpus(std::mt19937& rng, std::size_t n) {
    std::vector<double> w(60);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 1.0 / static_cast<double>(i + 1);
    std::discrete_distribution<std::size_t> term(w.begin(), w.end());
    std::uniform_int_distribution<std::size_t> len(0, 25);
    std::vector<Doc> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::string text;
        const std::size_t l = len(rng);
        for (std::size_t j = 0; j < l; ++j) text += "w" + std::to_string(term(rng)) + " ";
        if (i % 7 == 0) text = "w1 w2 w3";  // repeated documents: ties across shards
        out.push_back(Doc{"d" + std::to_string(i), text, i});
    }
    return out;
}

std::shared_ptr<const Analyzer> plain() {
    AnalyzerConfig c;
    c.stopwords = {"the"};
    c.stemmer.clear();
    c.min_token_length = 1;
    return std::make_shared<const Analyzer>(c);
}

void add(BM25Index& index, const std::vector<Doc>& docs) {
    std::vector<std::string> ids;
    std::vector<std::string_view> texts;
    for (const auto& d : docs) {
        ids.push_back(d.id);
        texts.emplace_back(d.text);
    }
    index.add(ids, texts);
}

struct Sharded {
    std::vector<std::unique_ptr<BM25Index>> shards;
    std::map<std::string, std::size_t> position;
};

Sharded split(const std::vector<Doc>& docs, std::size_t k) {
    Sharded s;
    std::vector<std::vector<Doc>> parts(k);
    for (const auto& d : docs) {
        parts[std::hash<std::string>{}(d.id) % k].push_back(d);
        s.position[d.id] = d.position;
    }
    for (const auto& p : parts) {
        s.shards.push_back(std::make_unique<BM25Index>(1.2, 0.75, plain()));
        add(*s.shards.back(), p);
    }
    return s;
}

// The coordinator: sum the shards' statistics (N, total length, df of the query's terms).
BM25CorpusStats global_stats(const Sharded& s, const std::vector<std::string>& queries) {
    BM25CorpusStats g;
    std::vector<std::string> terms;  // the distinct analyzed terms of every query (any shard analyzes alike)
    for (const auto& q : queries) {
        for (const auto& t : s.shards.back()->query_terms(q)) {
            if (std::find(terms.begin(), terms.end(), t) == terms.end()) terms.push_back(t);
        }
    }
    for (const auto& shard : s.shards) {
        const auto c = shard->corpus_stats();
        g.docs += c.docs;
        g.total_length += c.total_length;
        const auto dfs = shard->doc_freqs(terms);
        for (std::size_t i = 0; i < terms.size(); ++i) g.df[terms[i]] += dfs[i];
    }
    return g;
}

// The merged top-k: every shard's top-k ordered by (exact score desc, union position asc), cut to k.
BM25Results merge(const Sharded& s, const std::vector<BM25Results>& parts, std::size_t k) {
    std::vector<std::tuple<double, std::size_t, std::string, float>> all;
    for (const auto& r : parts) {
        for (std::size_t i = 0; i < r.ids.size(); ++i) {
            all.emplace_back(-r.exact_scores[i], s.position.at(r.ids[i]), r.ids[i], r.scores[i]);
        }
    }
    std::sort(all.begin(), all.end());
    BM25Results out;
    for (std::size_t i = 0; i < std::min(k, all.size()); ++i) {
        out.ids.push_back(std::get<2>(all[i]));
        out.scores.push_back(std::get<3>(all[i]));
        out.exact_scores.push_back(-std::get<0>(all[i]));
    }
    return out;
}

TEST(BM25Sharded, MergedShardsEqualOneIndexExactly) {
    std::mt19937 rng(7);
    const auto docs = corpus(rng, 700);
    BM25Index whole(1.2, 0.75, plain());
    add(whole, docs);
    const std::vector<std::string> queries = {"w1", "w2 w3", "w0 w5 w9 w9", "w1 w2 w3", "w40 w41 w59",
                                              "the w3", "nothing here", "w7 w7 w7 w11 w13 w17"};
    for (const std::size_t nshards : {1u, 2u, 3u, 5u}) {
        const Sharded s = split(docs, nshards);
        const BM25CorpusStats g = global_stats(s, queries);
        EXPECT_EQ(g.docs, whole.corpus_stats().docs);
        EXPECT_EQ(g.total_length, whole.corpus_stats().total_length);
        for (const std::size_t k : {1u, 5u, 10u, 50u, 1000u}) {
            for (const auto& q : queries) {
                std::vector<BM25Results> parts;
                for (const auto& shard : s.shards) parts.push_back(shard->search(q, k, nullptr, &g));
                const BM25Results want = whole.search(q, k);
                const BM25Results got = merge(s, parts, k);
                const std::string what = q + " k=" + std::to_string(k) + " shards=" + std::to_string(nshards);
                ASSERT_EQ(got.ids, want.ids) << what;
                ASSERT_EQ(got.scores, want.scores) << what;  // bit-identical float32
                ASSERT_EQ(got.exact_scores, want.exact_scores) << what;
                // the pruned, dense and exhaustive paths agree under global statistics too
                for (const auto& shard : s.shards) {
                    const auto a = shard->search(q, k, nullptr, &g);
                    const auto b = shard->search_exhaustive(q, k, nullptr, &g);
                    ASSERT_EQ(a.ids, b.ids) << what;
                    ASSERT_EQ(a.exact_scores, b.exact_scores) << what;
                }
            }
        }
        // batch and MaxScore (dense_max_docs = 0) paths
        for (auto& shard : s.shards) shard->set_dense_max_docs(0);
        std::vector<std::vector<BM25Results>> batches;
        for (const auto& shard : s.shards) batches.push_back(shard->search_batch(queries, 10, 2, nullptr, &g));
        for (std::size_t i = 0; i < queries.size(); ++i) {
            std::vector<BM25Results> parts;
            for (const auto& b : batches) parts.push_back(b[i]);
            const auto got = merge(s, parts, 10);
            const auto want = whole.search(queries[i], 10);
            ASSERT_EQ(got.ids, want.ids) << queries[i];
            ASSERT_EQ(got.scores, want.scores) << queries[i];
        }
    }
}

TEST(BM25Sharded, AllowListsAndDeletesUseTheLiveCorpus) {
    std::mt19937 rng(11);
    const auto docs = corpus(rng, 300);
    BM25Index whole(1.2, 0.75, plain());
    add(whole, docs);
    Sharded s = split(docs, 3);
    const std::vector<std::string> dead = {"d3", "d10", "d77", "d200"};
    whole.remove(dead);
    for (auto& shard : s.shards) {
        std::vector<std::string> here;
        for (const auto& id : dead) {
            if (shard->contains(id)) here.push_back(id);
        }
        shard->remove(here);
    }
    std::vector<std::string> allow;
    for (std::size_t i = 0; i < docs.size(); i += 3) allow.push_back(docs[i].id);
    const std::vector<std::string> queries = {"w1 w2", "w4 w8"};
    const auto g = global_stats(s, queries);
    for (const auto& q : queries) {
        std::vector<BM25Results> parts;
        for (const auto& shard : s.shards) parts.push_back(shard->search(q, 20, &allow, &g));
        const auto want = whole.search(q, 20, &allow);
        const auto got = merge(s, parts, 20);
        ASSERT_EQ(got.ids, want.ids) << q;
        ASSERT_EQ(got.scores, want.scores) << q;
    }
}

TEST(BM25Sharded, LocalAndGlobalSearchesInterleaveAndRunConcurrently) {
    std::mt19937 rng(3);
    const auto docs = corpus(rng, 400);
    BM25Index whole(1.2, 0.75, plain());
    add(whole, docs);
    const Sharded s = split(docs, 2);
    const auto g = global_stats(s, {"w1 w5"});
    const BM25Index& shard = *s.shards[0];
    const auto local = shard.search("w1 w5", 10);
    const auto global = shard.search("w1 w5", 10, nullptr, &g);
    ASSERT_FALSE(local.ids.empty());
    EXPECT_NE(local.exact_scores, global.exact_scores);  // the statistics matter
    std::vector<std::thread> threads;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            bool all = true;
            for (int i = 0; i < 200; ++i) {
                const bool use_global = (i + t) % 2 == 0;
                const auto r = shard.search("w1 w5", 10, nullptr, use_global ? &g : nullptr);
                all = all && r.exact_scores == (use_global ? global : local).exact_scores;
            }
            ok[static_cast<std::size_t>(t)] = all ? 1 : 0;
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok, std::vector<int>(4, 1));
}

TEST(BM25Sharded, ReportsStatisticsAndQueryTerms) {
    BM25Index index(1.2, 0.75, nullptr);  // the default analyzer: English stopwords, Snowball stemming
    std::vector<std::string> ids = {"a", "b", "c"};
    std::vector<std::string_view> texts = {"The cats sleep on mats", "dogs chase cats", ""};
    index.add(ids, texts);
    const auto c = index.corpus_stats();
    EXPECT_EQ(c.docs, 3u);
    EXPECT_EQ(c.total_length, 6u);  // cat sleep mat | dog chase cat | (empty)
    EXPECT_EQ(index.query_terms("the cats, the CATS and unicorns"), (std::vector<std::string>{"cat", "unicorn"}));
    EXPECT_EQ(index.doc_freqs({"cat", "unicorn", "dog"}), (std::vector<std::uint64_t>{2, 0, 1}));
    EXPECT_TRUE(index.query_terms("the and of").empty());
}

TEST(BM25Sharded, RefusesStatisticsThatCannotIncludeTheShard) {
    BM25Index index(1.2, 0.75, plain());
    std::vector<std::string> ids = {"a", "b"};
    std::vector<std::string_view> texts = {"x y", "x z z"};
    index.add(ids, texts);
    BM25CorpusStats g;
    g.docs = 10;
    g.total_length = 40;
    g.df = {{"x", 4}, {"y", 1}, {"z", 2}};
    EXPECT_NO_THROW(index.search("x y z", 5, nullptr, &g));
    auto bad = g;
    bad.docs = 1;  // fewer documents than this shard holds
    EXPECT_THROW(index.search("x", 5, nullptr, &bad), InvalidArgument);
    bad = g;
    bad.total_length = 3;  // shorter than this shard
    EXPECT_THROW(index.search("x", 5, nullptr, &bad), InvalidArgument);
    bad = g;
    bad.df.erase("y");  // a query term this shard holds has no df
    EXPECT_THROW(index.search("y", 5, nullptr, &bad), InvalidArgument);
    EXPECT_NO_THROW(index.search("x", 5, nullptr, &bad));  // ... a query without it is fine
    bad = g;
    bad.df["x"] = 1;  // below this shard's own df
    EXPECT_THROW(index.search("x", 5, nullptr, &bad), InvalidArgument);
    bad.df["x"] = 11;  // above the corpus's documents
    EXPECT_THROW(index.search("x", 5, nullptr, &bad), InvalidArgument);
    EXPECT_THROW(index.search_batch({"x"}, 5, 1, nullptr, &bad), InvalidArgument);
    // a refused search changed nothing: local and valid global searches still answer as before
    const auto local = index.search("x", 5);
    EXPECT_EQ(local.ids.size(), 2u);
    EXPECT_EQ(index.search("x", 5, nullptr, &g).ids.size(), 2u);
    // an unknown term's df is ignored; an empty shard answers nothing
    BM25Index empty(1.2, 0.75, plain());
    EXPECT_TRUE(empty.search("x", 5, nullptr, &g).ids.empty());
}

}  // namespace
