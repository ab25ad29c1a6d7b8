// The worker's pool of session scratch (http/session_scratch.hpp): what a session gives
// back comes to the next one emptied but with its memory; too large a part is freed;
// the pool keeps at most kMaxFree sets.
#include <gtest/gtest.h>

#include <string>

#include "tether/http/session_scratch.hpp"

namespace tether::http {
namespace {

struct Session {
    boost::beast::flat_buffer buffer;
    std::string head, upstream_head, request_id;
    SessionScratchPool::Parts parts() { return {buffer, head, upstream_head, request_id}; }
    void use(std::size_t buffer_bytes, std::size_t head_bytes) {
        buffer.commit(buffer.prepare(buffer_bytes).size());
        head.assign(head_bytes, 'h');
        upstream_head.assign(head_bytes, 'u');
        request_id.assign(32, 'r');
    }
};

TEST(SessionScratch, NothingKeptLeavesTheSessionAsItIs) {
    SessionScratchPool pool;
    Session s;
    pool.take(s.parts());
    EXPECT_EQ(s.buffer.capacity(), 0u);
    EXPECT_TRUE(s.head.empty());
}

TEST(SessionScratch, TheNextSessionGetsTheMemoryEmptied) {
    SessionScratchPool pool;
    Session first;
    first.use(4096, 300);
    const char* head_memory = first.upstream_head.data();
    pool.give_back(first.parts());
    EXPECT_EQ(pool.free_count(), 1u);
    Session next;
    pool.take(next.parts());
    EXPECT_EQ(pool.free_count(), 0u);
    EXPECT_EQ(next.buffer.size(), 0u);
    EXPECT_GE(next.buffer.capacity(), 4096u);
    EXPECT_TRUE(next.head.empty());
    EXPECT_GE(next.head.capacity(), 300u);
    EXPECT_TRUE(next.upstream_head.empty());
    EXPECT_EQ(next.upstream_head.data(), head_memory);
    EXPECT_TRUE(next.request_id.empty());
    EXPECT_GE(next.request_id.capacity(), 32u);
}

TEST(SessionScratch, LargePartsAreFreedAndEmptySessionsNotKept) {
    SessionScratchPool pool;
    Session big;
    big.use(SessionScratchPool::kMaxBuffer + 1, 100);
    big.head.assign(SessionScratchPool::kMaxString + 1, 'h');
    pool.give_back(big.parts());
    Session next;
    pool.take(next.parts());
    EXPECT_EQ(next.buffer.capacity(), 0u);
    EXPECT_LE(next.head.capacity(), SessionScratchPool::kMaxString);
    EXPECT_GE(next.upstream_head.capacity(), 100u);  // small: kept
    EXPECT_GE(next.request_id.capacity(), 32u);
    Session empty;
    pool.give_back(empty.parts());  // a session that never read (a tunnel's, shrunk)
    EXPECT_EQ(pool.free_count(), 0u);
}

TEST(SessionScratch, AtMostKMaxFreeSetsKept) {
    SessionScratchPool pool;
    for (std::size_t i = 0; i < SessionScratchPool::kMaxFree + 10; ++i) {
        Session s;
        s.use(1024, 100);
        pool.give_back(s.parts());
    }
    EXPECT_EQ(pool.free_count(), SessionScratchPool::kMaxFree);
}

}  // namespace
}  // namespace tether::http
