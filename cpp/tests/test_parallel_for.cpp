#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "parallel_for.h"

#if defined(__linux__)
#include <sched.h>
#endif

using funnelrank::parallel_for;
using funnelrank::resolve_threads;

TEST(ParallelFor, ResolveThreads) {
    EXPECT_EQ(resolve_threads(3, 10), 3u);
    EXPECT_EQ(resolve_threads(8, 2), 2u);   // never more threads than work
    EXPECT_EQ(resolve_threads(4, 0), 1u);   // no work: still one
    EXPECT_GE(resolve_threads(0, 1000), 1u);  // 0 = every hardware thread
}

#if defined(__linux__)
TEST(ParallelFor, AllThreadsMeansTheCpusThisProcessMayUse) {
    // Restricted to one CPU (as by taskset or a container's cpuset), threads=0 means one thread, not
    // every CPU of the machine.
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
    EXPECT_EQ(resolve_threads(0, 1000), static_cast<std::size_t>(CPU_COUNT(&saved)));
    int first = 0;
    while (!CPU_ISSET(first, &saved)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    const std::size_t restricted = resolve_threads(0, 1000);
    ASSERT_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
    EXPECT_EQ(restricted, 1u);
}
#endif

TEST(ParallelFor, EveryIndexExactlyOnceWithValidWorkerIds) {
    for (const std::size_t threads : {1u, 2u, 3u, 8u}) {
        const std::size_t n = 1000;
        std::vector<std::atomic<int>> calls(n);
        std::vector<std::atomic<int>> by_worker(threads);
        parallel_for(n, threads, [&](std::size_t i, std::size_t worker) {
            ASSERT_LT(worker, threads);
            calls[i].fetch_add(1);
            by_worker[worker].fetch_add(1);
        });
        for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(calls[i].load(), 1) << "index " << i;
        int total = 0;
        for (auto& w : by_worker) total += w.load();
        EXPECT_EQ(total, static_cast<int>(n));
    }
}

TEST(ParallelFor, AllWorkDoneOnReturnEvenWithSlowItems) {
    // Slow items keep some workers busy past the others' last item: the caller must wait for them.
    const std::size_t n = 16;
    std::vector<int> out(n, 0);
    parallel_for(n, 4, [&](std::size_t i, std::size_t) {
        if (i % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        out[i] = static_cast<int>(i) + 1;
    });
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(out[i], static_cast<int>(i) + 1);
}

TEST(ParallelFor, NoCallAfterReturnWithMoreThreadsThanItems) {
    // Many tiny loops with more threads than items: the first worker usually does every item before the
    // others start. A worker that still called fn after parallel_for returned would write freed memory,
    // which AddressSanitizer (make test-sanitize) reports; without it the counts below still catch extra
    // calls.
    std::atomic<int> extra{0};
    for (int round = 0; round < 300; ++round) {
        const std::size_t n = 1 + static_cast<std::size_t>(round % 3);
        auto hits = std::make_unique<std::vector<int>>(n, 0);
        std::vector<int>* v = hits.get();
        parallel_for(n, 4, [v, &extra](std::size_t i, std::size_t) {
            if ((*v)[i]++ != 0) extra.fetch_add(1);
        });
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ((*hits)[i], 1);
    }
    EXPECT_EQ(extra.load(), 0);
}

TEST(ParallelFor, FirstExceptionIsRethrownAndStopsTheRest) {
    // Every other item takes at least 100 us, so the 2000 items need at least 50 ms on 4 threads: far
    // longer than throwing and catching item 5 takes, even under AddressSanitizer. (With instant items
    // the other workers could finish all of them while item 5's exception is still being thrown, as one
    // sanitizer run did.)
    const std::size_t n = 2000;
    for (const std::size_t threads : {1u, 2u, 4u}) {
        std::atomic<std::size_t> ran{0};
        EXPECT_THROW(parallel_for(n, threads,
                                  [&](std::size_t i, std::size_t) {
                                      ran.fetch_add(1);
                                      if (i == 5) throw std::runtime_error("item 5");
                                      std::this_thread::sleep_for(std::chrono::microseconds(100));
                                  }),
                     std::runtime_error);
        EXPECT_LT(ran.load(), n);  // the remaining items were skipped
    }
}
