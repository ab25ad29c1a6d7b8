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
