#pragma once
// A small parallel loop in hnswlib's ParallelFor style: `threads` new threads pull indices from a shared
// atomic counter while the caller sleeps in join(); the first exception thrown by any call stops the
// remaining work and is rethrown.
//
// Why this shape, measured on the 2-core dev VM with HNSWIndex.search_batch (5183 x 384, 100 queries per
// call) and with a synthetic loop:
// - The caller working alongside one new helper: after an idle pause (how a service calls it) Linux
//   queued the helper on the caller's own core and the two shared it for the whole call (100 x 75 us
//   items: 7.5 ms on 2 threads, no faster than serial). With the caller asleep: 4.0 ms.
// - The caller asleep on a condition variable that the last worker signals (detached helpers): 1953
//   context switches and 241 CPU migrations per 600 calls, and 19% more CPU than hnswlib for the same
//   searches. Joining the threads, as here: 1034 and 17, and 8% more.
// - A persistent pool (threads parked on a condition variable, the caller asleep until they finish): 6%
//   faster than this on 100 items of 8 us over 2 threads, 3% on 100 of 75 us. Not worth what a
//   process-wide pool needs (fork handling, threads that must outlive static destruction).
// If no thread can be started, the caller does the work.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace funnelrank {

// CPUs this process may run on: its affinity mask on Linux (taskset, a container's cpuset), as Python's
// os.sched_getaffinity; elsewhere (or if that fails) every hardware thread. At least 1.
inline std::size_t usable_cpus() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return static_cast<std::size_t>(n);
    }
#endif
    return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}

// Number of worker threads to use for `requested` (0 = every usable CPU), never more than `work`.
inline std::size_t resolve_threads(std::size_t requested, std::size_t work) {
    const std::size_t n = requested == 0 ? usable_cpus() : requested;
    return std::max<std::size_t>(1, std::min(n, work));
}

namespace detail {

// Loop state shared by the workers of one parallel_for call (which outlives them all).
struct ParallelLoop {
    explicit ParallelLoop(std::size_t count) : n(count) {}
    const std::size_t n;
    std::atomic<std::size_t> next{0};  // next index to claim
    std::atomic<bool> failed{false};
    std::mutex mutex;  // guards error
    std::exception_ptr error;

    // Claims and runs indices until none are left (after a failure, the rest are claimed and skipped).
    template <typename Fn>
    void work(Fn& fn, std::size_t worker) {
        for (;;) {
            const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
            if (i >= n) return;
            if (failed.load(std::memory_order_relaxed)) continue;
            try {
                fn(i, worker);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex);
                if (!error) error = std::current_exception();
                failed.store(true);
            }
        }
    }
};

}  // namespace detail

// Calls fn(i, worker) for every i in [0, n), where worker in [0, threads) identifies the calling thread.
// Returns once every call has returned; rethrows the first exception. One thread: runs on the caller.
template <typename Fn>
void parallel_for(std::size_t n, std::size_t threads, Fn&& fn) {
    threads = resolve_threads(threads, n);
    if (threads == 1) {
        for (std::size_t i = 0; i < n; ++i) fn(i, std::size_t{0});
        return;
    }
    detail::ParallelLoop loop(n);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (std::size_t w = 0; w < threads; ++w) {
        try {
            pool.emplace_back([&loop, &fn, w] { loop.work(fn, w); });
        } catch (...) {
            break;  // cannot start another thread: the ones running (and the caller) do the work
        }
    }
    if (pool.size() < threads) loop.work(fn, pool.size());
    for (std::thread& t : pool) t.join();
    if (loop.error) std::rethrow_exception(loop.error);
}

}  // namespace funnelrank
