#pragma once
// A reader/writer mutex that does not starve writers. glibc's std::shared_mutex prefers readers, so a
// steady stream of searches could block add()/delete() forever; here a waiting writer closes a gate
// that new readers must pass, so it gets the lock once the readers already inside leave.
// Satisfies SharedMutex: use with std::shared_lock / std::unique_lock.
#include <mutex>
#include <shared_mutex>

namespace funnelrank {

class WriterPreferringSharedMutex {
public:
    void lock() {
        std::lock_guard<std::mutex> gate(gate_);
        mutex_.lock();
    }
    bool try_lock() { return mutex_.try_lock(); }
    void unlock() { mutex_.unlock(); }
    void lock_shared() {
        { std::lock_guard<std::mutex> gate(gate_); }
        mutex_.lock_shared();
    }
    bool try_lock_shared() { return mutex_.try_lock_shared(); }
    void unlock_shared() { mutex_.unlock_shared(); }

private:
    std::mutex gate_;
    std::shared_mutex mutex_;
};

}  // namespace funnelrank
