// A mutex for critical sections of a few dozen instructions (the shards of
// the affinity table, taken on every sticky request): one compare-exchange
// takes it and one exchange gives it back while nobody waits, where a
// std::mutex is a call into pthread each way (~55 instructions a lock and
// unlock, callgrind). A thread that finds it taken spins a little (its holder
// is about to let go), then sleeps on the word (std::atomic::wait: a futex on
// Linux) until the holder, seeing that someone may wait, wakes one waiter.
// States: 0 free, 1 held, 2 held and maybe waited for (mutex 3 of U. Drepper,
// "Futexes Are Tricky", 2011). Not recursive; Lockable (std::lock_guard).
// Threading: safe from any thread.
#pragma once

#include <atomic>

namespace tether::core {

class SmallMutex {
public:
    SmallMutex() = default;
    SmallMutex(const SmallMutex&) = delete;
    SmallMutex& operator=(const SmallMutex&) = delete;

    void lock() noexcept {
        if (!try_lock()) lock_contended();
    }
    bool try_lock() noexcept {
        int expected = 0;
        return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                              std::memory_order_relaxed);
    }
    void unlock() noexcept {
        if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
    }

private:
    static constexpr int kSpins = 64;

    [[gnu::noinline]] void lock_contended() noexcept {
        for (int i = 0; i < kSpins; ++i) {
            if (state_.load(std::memory_order_relaxed) == 0 && try_lock()) return;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        // From here the word says 2 while this thread holds it or waits, so
        // the unlock that lets it in wakes a waiter (maybe needlessly, never
        // too few): taken when the exchange finds it free.
        while (state_.exchange(2, std::memory_order_acquire) != 0)
            state_.wait(2, std::memory_order_relaxed);
    }

    std::atomic<int> state_{0};
};

}  // namespace tether::core
