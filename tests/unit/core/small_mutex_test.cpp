// core::SmallMutex: one holder at a time, under contention too, and a thread
// that went to sleep waiting for it is woken by the unlock.
#include "tether/core/small_mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace tether::core {
namespace {

TEST(SmallMutex, TryLockFailsWhileHeldAndSucceedsOnceGivenBack) {
    SmallMutex m;
    ASSERT_TRUE(m.try_lock());
    EXPECT_FALSE(m.try_lock());
    m.unlock();
    EXPECT_TRUE(m.try_lock());
    m.unlock();
}

// Threads that each add to a plain counter under the lock many times: no
// increment is lost and no two threads are ever inside at once (`inside`
// counts the holders). Under TSan the plain counter also proves that a lock
// orders what its previous holder wrote before what the next one reads.
TEST(SmallMutex, OneHolderAtATimeUnderContention) {
    constexpr int kThreads = 4;
    constexpr int kRounds = 20000;
    SmallMutex m;
    long counter = 0;
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < kRounds; ++i) {
                std::lock_guard lock(m);
                if (inside.fetch_add(1, std::memory_order_relaxed) != 0)
                    overlaps.fetch_add(1, std::memory_order_relaxed);
                ++counter;
                if (i % 1000 == 0) std::this_thread::yield();  // the others spin, then sleep
                inside.fetch_sub(1, std::memory_order_relaxed);
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, long{kThreads} * kRounds);
    EXPECT_EQ(overlaps.load(), 0);
}

// A thread that finds the mutex held past its spins sleeps on it; the
// unlock wakes it (without the wake-up the join below never returns), and it
// does not get in while the mutex is held.
TEST(SmallMutex, AWaiterThatSleptIsWokenByTheUnlock) {
    SmallMutex m;
    m.lock();
    std::atomic<bool> started{false};
    std::atomic<bool> entered{false};
    std::thread waiter([&] {
        started = true;
        m.lock();
        entered = true;
        m.unlock();
    });
    while (!started) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // long past its spins
    EXPECT_FALSE(entered.load());  // still held: whatever the time, it cannot be in
    m.unlock();
    waiter.join();
    EXPECT_TRUE(entered.load());
    EXPECT_TRUE(m.try_lock());  // given back by the waiter
    m.unlock();
}

}  // namespace
}  // namespace tether::core
