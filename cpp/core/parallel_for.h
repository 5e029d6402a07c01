#pragma once
// A small parallel loop in hnswlib's ParallelFor style: workers pull indices from a shared atomic
// counter; the first exception thrown by any call stops the remaining work and is rethrown.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace funnelrank {

// Number of worker threads to use for `requested` (0 = all hardware threads), never more than `work`.
inline std::size_t resolve_threads(std::size_t requested, std::size_t work) {
    std::size_t n = requested;
    if (n == 0) n = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    return std::max<std::size_t>(1, std::min(n, work));
}

// Calls fn(i, worker) for every i in [0, n), where worker in [0, threads) identifies the calling thread.
template <typename Fn>
void parallel_for(std::size_t n, std::size_t threads, Fn&& fn) {
    threads = resolve_threads(threads, n);
    if (threads == 1) {
        for (std::size_t i = 0; i < n; ++i) fn(i, std::size_t{0});
        return;
    }
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&](std::size_t w) {
        while (!failed.load(std::memory_order_relaxed)) {
            const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
            if (i >= n) break;
            try {
                fn(i, w);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                failed.store(true);
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (std::size_t w = 1; w < threads; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace funnelrank
