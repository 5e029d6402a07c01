#include "parallel_for.h"

#include <condition_variable>
#include <cstdint>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace funnelrank::detail {

namespace {

thread_local bool t_pool_thread = false;  // set on the pool's own threads
std::atomic<bool> g_forked_child{false};   // set in a child process by the fork handler

// Threads parked on a condition variable between jobs, one job at a time. Created on first use and never
// destroyed: a thread of the embedding program (a Python daemon thread) may still be inside a search while
// static destructors run at exit, and the parked threads must never see their mutex destroyed.
class WorkerPool {
public:
    explicit WorkerPool(std::size_t threads) {
        threads_.reserve(threads);
        for (std::size_t i = 0; i < threads; ++i) {
            try {
                threads_.emplace_back([this, i] { serve(i); });
            } catch (const std::system_error&) {
                break;  // no more threads: the pool is smaller (jobs needing more fall back to new threads)
            }
        }
    }
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    bool run(std::size_t helpers, const std::function<void(std::size_t)>& task) {
        if (helpers > threads_.size()) return false;
        std::unique_lock<std::mutex> job(submit_, std::try_to_lock);
        if (!job.owns_lock()) return false;  // another caller's job is running: it uses the cores anyway
        std::unique_lock<std::mutex> lock(mutex_);
        task_ = &task;
        active_ = helpers;
        remaining_ = helpers;
        ++generation_;
        lock.unlock();
        wake_.notify_all();
        lock.lock();
        done_.wait(lock, [this] { return remaining_ == 0; });
        task_ = nullptr;
        return true;
    }

private:
    void serve(std::size_t index) {
        t_pool_thread = true;
        std::uint64_t seen = 0;  // the generation before any job (threads start in the constructor)
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (index >= active_) continue;
            const std::function<void(std::size_t)>* task = task_;
            lock.unlock();
            (*task)(index);
            lock.lock();
            if (--remaining_ == 0) done_.notify_one();
        }
    }

    std::mutex submit_;  // held by the caller whose job runs
    std::mutex mutex_;   // guards everything below
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(std::size_t)>* task_ = nullptr;
    std::size_t active_ = 0;
    std::size_t remaining_ = 0;
    std::uint64_t generation_ = 0;
    std::vector<std::thread> threads_;
};

WorkerPool& pool() {
    // Intentionally immortal (see WorkerPool); sized for the CPUs usable when first needed.
    static WorkerPool& instance = [] () -> WorkerPool& {
#if defined(__unix__) || defined(__APPLE__)
        // A forked child has none of the pool's threads: it must never hand work to them.
        pthread_atfork(nullptr, nullptr, [] { g_forked_child.store(true); });
#endif
        return *new WorkerPool(usable_cpus());
    }();
    return instance;
}

}  // namespace

bool run_on_pool(std::size_t helpers, const std::function<void(std::size_t)>& task) {
    if (t_pool_thread || g_forked_child.load(std::memory_order_relaxed)) return false;
    return pool().run(helpers, task);
}

}  // namespace funnelrank::detail
