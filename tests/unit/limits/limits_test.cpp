// Token buckets per IP (local side of limits.rate) and connections per IP.
#include <gtest/gtest.h>

#include "tether/limits/ip_connections.hpp"
#include "tether/limits/rate_limiter.hpp"

namespace {

using namespace tether;
using namespace std::chrono_literals;
using limits::IpConnections;
using limits::RateLimiter;

config::RateLimit rate(double rps, double burst) {
    config::RateLimit r;
    r.requests_per_second = rps;
    r.burst = burst;
    r.shared = false;
    return r;
}

TEST(RateLimiter, BurstThenRefusedWithTimeToNextToken) {
    RateLimiter rl(1000, nullptr, "");
    const auto r = rate(10, 5);
    const auto t0 = Clock::now();
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(rl.take_local("1.2.3.4", r, t0).allowed) << i;
    const auto d = rl.take_local("1.2.3.4", r, t0);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after, 100ms);  // one token at 10/s
    EXPECT_FALSE(d.shared);
}

TEST(RateLimiter, RefillsAtTheRateUpToTheBurst) {
    RateLimiter rl(1000, nullptr, "");
    const auto r = rate(10, 5);
    const auto t0 = Clock::now();
    for (int i = 0; i < 5; ++i) rl.take_local("ip", r, t0);
    EXPECT_FALSE(rl.take_local("ip", r, t0 + 50ms).allowed);
    EXPECT_TRUE(rl.take_local("ip", r, t0 + 160ms).allowed);   // 1.6 tokens back
    EXPECT_FALSE(rl.take_local("ip", r, t0 + 170ms).allowed);  // 0.7 left
    // A long pause refills to the burst, not beyond.
    int allowed = 0;
    for (int i = 0; i < 20; ++i) allowed += rl.take_local("ip", r, t0 + 60s).allowed;
    EXPECT_EQ(allowed, 5);
}

TEST(RateLimiter, EachIpHasItsOwnBucket) {
    RateLimiter rl(1000, nullptr, "");
    const auto r = rate(1, 1);
    const auto t0 = Clock::now();
    EXPECT_TRUE(rl.take_local("a", r, t0).allowed);
    EXPECT_FALSE(rl.take_local("a", r, t0).allowed);
    EXPECT_TRUE(rl.take_local("b", r, t0).allowed);
}

TEST(RateLimiter, BoundedNumberOfBuckets) {
    RateLimiter rl(RateLimiter::kShards * 4, nullptr, "");
    const auto r = rate(100, 10);
    const auto t0 = Clock::now();
    for (int i = 0; i < 10000; ++i) rl.take_local("10.0." + std::to_string(i), r, t0);
    EXPECT_LE(rl.size(), RateLimiter::kShards * 4);
}

TEST(RateLimiter, TakeWithoutRedisIsLocal) {
    RateLimiter rl(1000, nullptr, "");
    auto r = rate(1, 1);
    r.shared = true;  // asked for, but no Redis configured: local limits
    const auto t0 = Clock::now();
    EXPECT_TRUE(rl.take_local("x", r, t0).allowed);
    EXPECT_FALSE(rl.take_local("x", r, t0).allowed);
}

TEST(IpConnections, CountsUpToTheLimitAndForgetsEmptyAddresses) {
    IpConnections c;
    EXPECT_TRUE(c.try_add("10.0.0.1", 2));
    EXPECT_TRUE(c.try_add("10.0.0.1", 2));
    EXPECT_FALSE(c.try_add("10.0.0.1", 2));
    EXPECT_TRUE(c.try_add("10.0.0.2", 2));
    EXPECT_EQ(c.count("10.0.0.1"), 2);
    c.remove("10.0.0.1");
    EXPECT_TRUE(c.try_add("10.0.0.1", 2));
    c.remove("10.0.0.1");
    c.remove("10.0.0.1");
    EXPECT_EQ(c.count("10.0.0.1"), 0);
    c.remove("10.0.0.9");  // unknown: no effect
    EXPECT_EQ(c.count("10.0.0.9"), 0);
}

}  // namespace
