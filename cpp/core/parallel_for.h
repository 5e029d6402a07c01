#pragma once
// A small parallel loop in hnswlib's ParallelFor style: `threads` threads, the caller among them, pull indices
// from a shared atomic counter; the first exception thrown by any call stops the remaining work and is
// rethrown. The other threads come from the process's worker pool (parallel_for.cpp: one per usable CPU,
// started on first use, parked on a condition variable between loops); when the pool cannot take a loop
// (more threads asked than it has, another caller's loop running, a nested loop, a forked child) the loop
// starts its own threads and joins them, as hnswlib does on every call.
//
// Why this shape (measured with HNSWIndex.search_batch; figures in docs/guides/dense.md, "Against every peer"):
// - The caller works beside the pool threads that wake while the loop is open and waits only for those that
//   joined: a caller asleep until its helpers finish pays two wake-ups per call, theirs and its own.
// - Every parked pool thread is woken, not just the ones the loop needs: after an idle pause a thread woken
//   alone often could not run beside the caller.
// - A pool rather than new threads per call: starting and joining threads costs a few percent of a
//   100-query call, and a new helper started beside a working caller after an idle pause was queued on the
//   caller's own core.
// If no thread can be started at all, the caller does the work.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
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

// Runs task(helpers) on the caller and task(w), w in [0, helpers), on the threads of the process's worker
// pool that join in time (a pool thread that wakes after the caller's own call has returned runs nothing,
// so task must return only when no work is left for anyone: a loop over a shared counter), and returns when
// every call that ran has returned. Returns false, having run nothing, when the pool cannot take the job
// right now: more helpers than pool threads, the pool busy with another caller's job, the caller itself a
// pool thread (a nested loop), or a child forked after the pool started (it has none of the pool's
// threads). `task` must not throw.
bool run_on_pool(std::size_t helpers, const std::function<void(std::size_t)>& task);

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
    if (detail::run_on_pool(threads - 1, [&loop, &fn](std::size_t w) { loop.work(fn, w); })) {
        if (loop.error) std::rethrow_exception(loop.error);
        return;
    }
    std::vector<std::thread> started;
    started.reserve(threads);
    for (std::size_t w = 0; w < threads; ++w) {
        try {
            started.emplace_back([&loop, &fn, w] { loop.work(fn, w); });
        } catch (...) {
            break;  // cannot start another thread: the ones running (and the caller) do the work
        }
    }
    if (started.size() < threads) loop.work(fn, started.size());
    for (std::thread& t : started) t.join();
    if (loop.error) std::rethrow_exception(loop.error);
}

}  // namespace funnelrank
