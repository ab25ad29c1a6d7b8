// TimedSocket's memory comes from the thread's RecyclingPool: its state (one
// per connection) and Asio's operation of each read or write (and of a
// completion posted at once), instead of malloc and Asio's per-thread cache
// of 8 blocks of any size, which tens of sessions with an operation pending
// each overran (connection per request: ~1.6 calls of malloc per connection).
// Counted as the blocks the pool holds on the test's thread: a block taken
// from it while the object lives comes back when it ends.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

#include "tether/core/recycling_pool.hpp"
#include "tether/tls/timed_socket.hpp"
#include "timed_pair.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;

// Blocks cached by this thread's pool, all classes.
std::size_t pooled() {
    std::size_t n = 0;
    for (std::size_t b = RecyclingPool::kGranule; b <= RecyclingPool::kMaxBlock;
         b += RecyclingPool::kGranule)
        n += RecyclingPool::cached(b);
    return n;
}

TEST(TimedSocketMemory, StateComesFromThePool) {
    asio::io_context io;
    { TimedSocket warm{TcpSocket(io)}; }  // leaves a block of the state's class in the pool
    const std::size_t before = pooled();
    {
        TimedSocket t{TcpSocket(io)};
        EXPECT_EQ(pooled(), before - 1);
    }
    EXPECT_EQ(pooled(), before);
}

// More reads pending at once than Asio's own cache has blocks: each one's
// operation is a block of the pool while it waits, given back when it ends.
TEST(TimedSocketMemory, PendingReadsTakeTheirOperationFromThePool) {
    constexpr std::size_t kPending = 16;
    std::vector<std::unique_ptr<test::TimedPair>> pairs;
    for (std::size_t i = 0; i < kPending; ++i) pairs.push_back(std::make_unique<test::TimedPair>());
    std::vector<std::array<char, 16>> bufs(kPending);
    std::vector<std::optional<boost::system::error_code>> got(kPending);
    // Starts a read on every pair, then completes them one by one: the
    // pool's blocks while they were pending, and after.
    auto round = [&] {
        const std::size_t before = pooled();
        for (std::size_t i = 0; i < kPending; ++i) {
            got[i].reset();
            pairs[i]->timed->async_read_some(asio::buffer(bufs[i]),
                                             [&got, i](auto ec, std::size_t) { got[i] = ec; });
        }
        const std::size_t pending = pooled();
        for (std::size_t i = 0; i < kPending; ++i) {
            asio::write(pairs[i]->peer, asio::buffer("x", 1));
            pairs[i]->run_until([&] { return got[i].has_value(); });
            EXPECT_TRUE(got[i] && !*got[i]);
        }
        return std::array<std::size_t, 3>{before, pending, pooled()};
    };
    round();  // the first fills the pool's class of the operation
    const auto [before, pending, after] = round();
    EXPECT_EQ(pending + kPending, before);
    EXPECT_EQ(after, before);
}

}  // namespace
}  // namespace tether::tls
