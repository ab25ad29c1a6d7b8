// The relay buffer pool: borrowed buffers come back for reuse; the scratch
// buffer is one per pool, apart from them.
#include <gtest/gtest.h>

#include "tether/core/buffer_pool.hpp"

namespace {

using tether::BufferPool;

TEST(BufferPool, ReturnedBuffersAreReusedUpToMaxFree) {
    BufferPool pool(1024, 1);
    char* first = nullptr;
    {
        BufferPool::Lease a = pool.borrow();
        BufferPool::Lease b = pool.borrow();
        ASSERT_TRUE(a && b);
        EXPECT_EQ(a.size(), 1024u);
        EXPECT_NE(a.data(), b.data());
        first = b.data();
    }  // b goes back first and is kept; a finds the free list full
    EXPECT_EQ(pool.free_count(), 1u);
    BufferPool::Lease c = pool.borrow();
    EXPECT_EQ(c.data(), first);
    EXPECT_EQ(pool.free_count(), 0u);
}

TEST(BufferPool, ScratchIsOneBufferApartFromTheBorrowedOnes) {
    BufferPool pool(4096, 4);
    char* s = pool.scratch();
    ASSERT_NE(s, nullptr);
    s[0] = 'x';
    s[4095] = 'y';  // buffer_size() bytes
    EXPECT_EQ(pool.scratch(), s);
    EXPECT_EQ(pool.free_count(), 0u);  // not taken from, nor given to, the free list
    BufferPool::Lease l = pool.borrow();
    EXPECT_NE(l.data(), s);
    l.release();
    EXPECT_EQ(pool.free_count(), 1u);
    EXPECT_EQ(pool.scratch(), s);
    EXPECT_EQ(s[0], 'x');
}

}  // namespace
