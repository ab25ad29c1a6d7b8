// RecyclingPool: blocks come back from the thread's lists by size class,
// bounded per class, per thread; RecyclingAllocator over it.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "tether/core/recycling_pool.hpp"

namespace {

using tether::RecyclingAllocator;
using tether::RecyclingPool;

TEST(RecyclingPool, BlockOfAClassComesBack) {
    void* a = RecyclingPool::allocate(100);
    const std::size_t before = RecyclingPool::cached(100);
    RecyclingPool::deallocate(a, 100);
    EXPECT_EQ(RecyclingPool::cached(100), before + 1);
    void* b = RecyclingPool::allocate(97);  // 97 and 100: the same class (97..128)
    EXPECT_EQ(b, a);
    EXPECT_EQ(RecyclingPool::cached(100), before);
    RecyclingPool::deallocate(b, 97);
}

TEST(RecyclingPool, ClassesAreApart) {
    void* small = RecyclingPool::allocate(40);
    RecyclingPool::deallocate(small, 40);
    void* big = RecyclingPool::allocate(600);
    EXPECT_NE(big, small);
    EXPECT_EQ(RecyclingPool::class_bytes(40), 64u);
    EXPECT_EQ(RecyclingPool::class_bytes(600), 608u);
    EXPECT_EQ(RecyclingPool::class_bytes(1), RecyclingPool::kGranule);
    RecyclingPool::deallocate(big, 600);
    EXPECT_EQ(RecyclingPool::allocate(40), small);
    RecyclingPool::deallocate(small, 40);
}

TEST(RecyclingPool, KeepsAtMostItsBoundPerClass) {
    constexpr std::size_t size = 256;
    constexpr std::size_t bound = RecyclingPool::kMaxCachedBytes / size;
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < bound + 10 + RecyclingPool::cached(size); ++i)
        blocks.push_back(RecyclingPool::allocate(size));
    EXPECT_EQ(RecyclingPool::cached(size), 0u);
    for (void* p : blocks) RecyclingPool::deallocate(p, size);
    EXPECT_EQ(RecyclingPool::cached(size), bound);
}

TEST(RecyclingPool, LargeBlocksAreNotKept) {
    void* p = RecyclingPool::allocate(RecyclingPool::kMaxBlock + 1);
    RecyclingPool::deallocate(p, RecyclingPool::kMaxBlock + 1);
    EXPECT_EQ(RecyclingPool::cached(RecyclingPool::kMaxBlock + 1), 0u);
}

TEST(RecyclingPool, EachThreadHasItsOwnLists) {
    const std::size_t here = RecyclingPool::cached(200);
    std::size_t there = 0;
    std::thread t([&] {
        RecyclingPool::deallocate(RecyclingPool::allocate(200), 200);
        there = RecyclingPool::cached(200);
    });
    t.join();  // the thread's block went back to operator delete at its exit
    EXPECT_EQ(there, 1u);
    EXPECT_EQ(RecyclingPool::cached(200), here);
}

// A thread_local that frees a pooled block in its destructor. Made before
// the thread's pool lists are opened (its first cached block), it is
// destroyed after them (thread_local objects are destroyed in the reverse
// order of their construction): what it sees of the pool then is recorded.
struct FreesAtExit {
    static constexpr std::size_t kSize = 300;
    static inline std::size_t cached_before = 99;  // read after the thread is joined
    static inline std::size_t cached_after = 99;
    void* block = nullptr;

    FreesAtExit() noexcept {}  // user-provided: made when control first passes it
    ~FreesAtExit() {
        cached_before = RecyclingPool::cached(kSize);
        RecyclingPool::deallocate(block, kSize);
        cached_after = RecyclingPool::cached(kSize);
    }
};

// The lists were freed and closed before the holder's destructor ran: they
// read as empty, and the block goes to operator delete, not into a list that
// nothing would free again (LeakSanitizer reports that in the ASan build).
TEST(RecyclingPool, BlockFreedAfterTheThreadsListsAreGone) {
    std::size_t while_running = 0;
    std::thread t([&] {
        thread_local FreesAtExit holder;  // before the lists are opened
        holder.block = RecyclingPool::allocate(FreesAtExit::kSize);  // no list opened by this
        RecyclingPool::deallocate(RecyclingPool::allocate(FreesAtExit::kSize),
                                  FreesAtExit::kSize);  // opens the lists
        while_running = RecyclingPool::cached(FreesAtExit::kSize);
    });
    t.join();
    EXPECT_EQ(while_running, 1u);
    EXPECT_EQ(FreesAtExit::cached_before, 0u);
    EXPECT_EQ(FreesAtExit::cached_after, 0u);
}

// A thread whose first free comes from a thread_local's destructor at its
// exit opens its lists then: the block is cached, and given back (by the
// destructor that registers as the lists open; LeakSanitizer in the ASan
// build reports it if it is not).
TEST(RecyclingPool, ListsOpenedDuringThreadExitAreGivenBack) {
    std::thread t([] {
        thread_local FreesAtExit holder;
        holder.block = RecyclingPool::allocate(FreesAtExit::kSize);
    });
    t.join();
    EXPECT_EQ(FreesAtExit::cached_before, 0u);
    EXPECT_EQ(FreesAtExit::cached_after, 1u);
}

TEST(RecyclingAllocator, VectorReusesItsBlocks) {
    const int* first = nullptr;
    {
        std::vector<int, RecyclingAllocator<int>> v;
        v.reserve(50);  // 200 bytes
        first = v.data();
    }
    std::vector<int, RecyclingAllocator<int>> w;
    w.reserve(55);  // 220 bytes: the same class (193..224)
    EXPECT_EQ(w.data(), first);
    EXPECT_TRUE(RecyclingAllocator<int>() == RecyclingAllocator<char>());
}

}  // namespace
