// UpstreamPool's bounds: `keepalive` idle connections kept, a surplus after a
// burst kept for UpstreamPool::kSurplusGrace only, never more than
// kSurplusFactor x keepalive. Connections are unopened streams: the pool's
// bookkeeping is what is tested, with explicit times given to sweep().
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "tether/http/upstream_pool.hpp"

namespace {

using namespace tether;
using http::UpstreamPool;

struct PoolFixture : ::testing::Test {
    boost::asio::io_context io;
    UpstreamPool pool{io.get_executor()};
    std::shared_ptr<upstream::Backend> backend = std::make_shared<upstream::Backend>(
        config::Server{}, std::vector<boost::asio::ip::tcp::endpoint>{});
    static constexpr std::chrono::milliseconds kIdle{60'000};

    void give_back(int n, int keepalive) {
        for (int i = 0; i < n; ++i) {
            auto c = std::make_unique<http::UpstreamConnection>(io.get_executor());
            c->backend = backend;
            pool.give_back(std::move(c), keepalive);
        }
    }
    void sweep(Clock::time_point at) {
        pool.sweep(at, kIdle, [](const upstream::Backend&) { return true; });
    }
};

TEST_F(PoolFixture, SurplusBeyondKeepaliveKeptUntilGraceThenSwept) {
    give_back(6, 2);
    EXPECT_EQ(pool.idle_count(), 6u);  // not closed when given back
    const auto now = Clock::now();
    sweep(now);
    EXPECT_EQ(pool.idle_count(), 6u);  // younger than the grace
    sweep(now + UpstreamPool::kSurplusGrace + std::chrono::milliseconds(1));
    EXPECT_EQ(pool.idle_count(), 2u);  // back to keepalive
    sweep(now + std::chrono::seconds(30));
    EXPECT_EQ(pool.idle_count(), 2u);  // keepalive ones stay for timeouts.idle
    sweep(now + kIdle + std::chrono::seconds(2));
    EXPECT_EQ(pool.idle_count(), 0u);
}

TEST_F(PoolFixture, NeverMoreThanSurplusFactorTimesKeepalive) {
    give_back(3 * UpstreamPool::kSurplusFactor, 2);
    EXPECT_EQ(pool.idle_count(), static_cast<std::size_t>(2 * UpstreamPool::kSurplusFactor));
}

TEST_F(PoolFixture, KeepaliveZeroKeepsNothing) {
    give_back(3, 0);
    EXPECT_EQ(pool.idle_count(), 0u);
}

}  // namespace

// take_idle's check: a connection the backend closed is peeked at and dropped,
// except when it was idle for less than kUncheckedIdle and the request can be
// sent again whole (the stale retry in forward.cpp covers that case).
namespace {

struct ClosedPeer : PoolFixture {
    std::unique_ptr<http::UpstreamConnection> closed_by_backend() {
        using tcp = boost::asio::ip::tcp;
        tcp::acceptor acc(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
        auto c = std::make_unique<http::UpstreamConnection>(io.get_executor());
        c->stream.socket().connect(acc.local_endpoint());
        tcp::socket peer(io);
        acc.accept(peer);
        peer.close();  // the backend closes; its FIN is there before take_idle
        c->backend = backend;
        return c;
    }
};

TEST_F(ClosedPeer, ClosedConnectionIsDroppedWhenTheRequestCannotBeReplayed) {
    pool.give_back(closed_by_backend(), 4);
    EXPECT_EQ(pool.take_idle(*backend, {}, false, Clock::now()), nullptr);
    EXPECT_EQ(pool.idle_count(), 0u);
}

TEST_F(ClosedPeer, ClosedConnectionIsDroppedOnceIdleLongerThanUnchecked) {
    pool.give_back(closed_by_backend(), 4);
    const auto later = Clock::now() + UpstreamPool::kUncheckedIdle + std::chrono::milliseconds(1);
    EXPECT_EQ(pool.take_idle(*backend, {}, true, later), nullptr);
}

TEST_F(ClosedPeer, RecentConnectionForAReplayableRequestIsTakenUnchecked) {
    pool.give_back(closed_by_backend(), 4);
    auto c = pool.take_idle(*backend, {}, true, Clock::now());
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->reused);
}

}  // namespace
