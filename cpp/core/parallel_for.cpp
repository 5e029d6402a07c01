#include "parallel_for.h"

#include <chrono>
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

// Threads parked on a condition variable between jobs, one job at a time, each run alongside its caller.
// Created on first use and never destroyed: a thread of the embedding program (a Python daemon thread) may
// still be inside a search while static destructors run at exit, and the parked threads must never see their
// mutex destroyed.
class WorkerPool {
public:
    explicit WorkerPool(std::size_t threads) {
        threads_.reserve(threads);
        for (std::size_t i = 0; i < threads; ++i) {
            try {
                threads_.emplace_back([this] { serve(); });
            } catch (const std::system_error&) {
                break;  // no more threads: the pool is smaller (jobs needing more fall back to new threads)
            }
        }
    }
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Runs task(helpers) on the caller and task(w), w in [0, helpers), on up to `helpers` pool threads. Every
    // parked thread is woken and the first `helpers` to wake join the job while it is open; the caller, its own
    // call returned, closes the job and waits only for the threads that joined (spinning first for kSpin,
    // since what is left is at most their last item). A thread that wakes after the close leaves the job
    // alone, so the caller never waits on a wake-up: tens of microseconds on a virtual machine.
    bool run(std::size_t helpers, const std::function<void(std::size_t)>& task) {
        if (helpers > threads_.size()) return false;
        std::unique_lock<std::mutex> job(submit_, std::try_to_lock);
        if (!job.owns_lock()) return false;  // another caller's job is running: it uses the cores anyway
        {
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = &task;
            wanted_ = helpers;
            joined_ = 0;
            open_ = true;
            ++generation_;
        }
        wake_.notify_all();
        task(helpers);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            open_ = false;
        }
        const auto give_up = std::chrono::steady_clock::now() + kSpin;
        while (running_.load() != 0 && std::chrono::steady_clock::now() < give_up) cpu_relax();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return running_.load() == 0; });
        task_ = nullptr;
        return true;
    }

private:
    static constexpr std::chrono::microseconds kSpin{200};

    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        std::this_thread::yield();
#endif
    }

    void serve() {
        t_pool_thread = true;
        std::uint64_t seen = 0;  // the generation before any job (threads start in the constructor)
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (!open_ || joined_ >= wanted_) continue;
            const std::size_t slot = joined_++;
            running_.fetch_add(1);
            const std::function<void(std::size_t)>* task = task_;
            lock.unlock();
            (*task)(slot);
            lock.lock();
            if (running_.fetch_sub(1) == 1) done_.notify_one();
        }
    }

    std::mutex submit_;  // held by the caller whose job runs
    std::mutex mutex_;   // guards everything below
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(std::size_t)>* task_ = nullptr;
    std::size_t wanted_ = 0;  // pool threads the job can use
    std::size_t joined_ = 0;  // pool threads that joined it
    bool open_ = false;       // whether a thread waking now may join
    std::atomic<std::size_t> running_{0};  // joined threads still in the task (changed under mutex_)
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
