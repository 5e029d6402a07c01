#include <gtest/gtest.h>

#include <algorithm>
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <set>
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

TEST(ParallelFor, NestedLoopsRunEveryInnerIndex) {
    // An inner loop inside an outer loop's item must not wait for the pool that runs the outer loop.
    const std::size_t outer = 8, inner = 50;
    std::vector<std::atomic<int>> calls(outer * inner);
    parallel_for(outer, 2, [&](std::size_t i, std::size_t) {
        parallel_for(inner, 2, [&](std::size_t j, std::size_t) { calls[i * inner + j].fetch_add(1); });
    });
    for (std::size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].load(), 1) << "index " << i;
}

TEST(ParallelFor, ConcurrentCallersEachGetAllTheirWork) {
    // Callers on several threads at once: one gets the pool, the others start threads of their own; no
    // call may lose, repeat or mix up items.
    std::atomic<int> wrong{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&wrong, c] {
            for (int round = 0; round < 50; ++round) {
                const std::size_t n = 100 + static_cast<std::size_t>(c);
                std::vector<int> out(n, 0);
                parallel_for(n, 2, [&](std::size_t i, std::size_t) { out[i] += static_cast<int>(i) + c; });
                for (std::size_t i = 0; i < n; ++i)
                    if (out[i] != static_cast<int>(i) + c) wrong.fetch_add(1);
            }
        });
    }
    for (std::thread& t : callers) t.join();
    EXPECT_EQ(wrong.load(), 0);
}

#if defined(__linux__)
namespace {
long thread_tid() { return static_cast<long>(syscall(SYS_gettid)); }

// The kernel thread ids that ran the items of one 2-thread loop (items slow enough that both workers get some).
std::set<long> loop_tids() {
    std::mutex m;
    std::set<long> tids;
    parallel_for(64, 2, [&](std::size_t, std::size_t) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        std::lock_guard<std::mutex> lock(m);
        tids.insert(thread_tid());
    });
    return tids;
}
}  // namespace

TEST(ParallelFor, LoopsReuseThePoolThreads) {
    if (funnelrank::usable_cpus() < 2) GTEST_SKIP() << "the pool has one thread on one usable CPU";
    // Kernel thread ids are not reused right away, so threads started per loop would show new ids in every
    // loop. A 2-thread loop runs on the caller and on whichever pool thread wakes first: collect the ids
    // (a pool thread slow to wake may miss a loop), then no loop may add one.
    std::set<long> workers;
    for (int round = 0; round < 50 && workers.size() < 3; ++round) {
        const std::set<long> tids = loop_tids();
        workers.insert(tids.begin(), tids.end());
    }
    ASSERT_GE(workers.size(), 2u);
    ASSERT_LE(workers.size(), 1u + funnelrank::usable_cpus());  // the caller and the pool's threads
    EXPECT_EQ(workers.count(thread_tid()), 1u);  // the caller works too
    for (int round = 0; round < 5; ++round)
        for (const long tid : loop_tids()) EXPECT_EQ(workers.count(tid), 1u) << "a new thread ran items";
    EXPECT_TRUE(funnelrank::detail::run_on_pool(2, [](std::size_t) {}));
}

TEST(ParallelFor, ThePoolRunsTheCallerAndTheThreadsThatJoinEachOnceWithTheirOwnSlot) {
    if (funnelrank::usable_cpus() < 2) GTEST_SKIP() << "the pool has one thread on one usable CPU";
    for (int round = 0; round < 200; ++round) {
        std::mutex m;
        std::vector<std::size_t> slots;
        const long caller = thread_tid();
        long caller_slot = -1;
        ASSERT_TRUE(funnelrank::detail::run_on_pool(1, [&](std::size_t w) {
            std::lock_guard<std::mutex> lock(m);
            slots.push_back(w);
            if (thread_tid() == caller) caller_slot = static_cast<long>(w);
        }));
        // Every call that ran has returned by now; a pool thread that woke late ran nothing.
        std::sort(slots.begin(), slots.end());
        ASSERT_FALSE(slots.empty());
        EXPECT_EQ(caller_slot, 1);  // the caller's slot is `helpers`
        EXPECT_EQ(std::adjacent_find(slots.begin(), slots.end()), slots.end()) << "a slot ran twice";
        EXPECT_LE(slots.size(), 2u);
    }
}

TEST(ParallelFor, ForkedChildRunsLoopsOnItsOwnThreads) {
    if (funnelrank::usable_cpus() < 2) GTEST_SKIP() << "the pool has one thread on one usable CPU";
    loop_tids();  // the pool exists before the fork
    const pid_t child = fork();
    ASSERT_NE(child, -1);
    if (child == 0) {
        // The child has none of the parent's pool threads: handing them work would hang forever.
        int status = funnelrank::detail::run_on_pool(2, [](std::size_t) {}) ? 3 : 0;
        std::vector<int> out(500, 0);
        parallel_for(out.size(), 2, [&](std::size_t i, std::size_t) { out[i] = 1; });
        for (int v : out)
            if (v != 1) status = 4;
        _exit(status);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3: the child used the pool; 4: items missing";
}
#endif
