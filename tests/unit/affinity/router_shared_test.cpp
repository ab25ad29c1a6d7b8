// What the Router asks the shared (Redis) table to learn, per decision: the
// writes the session performs before the request goes on (SharedWrite).
#include <gtest/gtest.h>

#include "router_fixture.hpp"

namespace {

using namespace tether;
using affinity::RouteInput;
using affinity::Router;
using affinity::SharedWrite;
using Op = SharedWrite::Op;
using affinity_test::Fixture;

// A local miss of a table key, when the caller may ask Redis, is answered by
// "fetch this key first" (no placement, no miss counted yet); a hit is not.
TEST(RouterShared, LocalMissAsksForAFetchOnlyForTableModes) {
    auto fetch_of = [](Fixture& f, std::string_view target) {
        RouteInput in{target, {}, "192.0.2.7"};
        in.may_fetch = true;
        const auto d = f.router.route(f.rt, 0, *f.tables, f.picker, in, {});
        if (d.write.op != Op::fetch) return std::string("(no fetch)");
        EXPECT_FALSE(d.backend);
        return d.write.key;
    };
    Fixture ip(config::Affinity::ip_hash);
    EXPECT_EQ(fetch_of(ip, "/"), "chat:ip_hash:192.0.2.7");
    EXPECT_EQ(ip.router.stats("chat").misses, 0u);
    Fixture sid(config::Affinity::sid);
    EXPECT_EQ(fetch_of(sid, "/socket.io/?EIO=4&sid=Ab1"), "chat:sid:Ab1");
    EXPECT_EQ(fetch_of(sid, "/socket.io/?EIO=4&sid=A%62%31"), "chat:sid:Ab1");
    EXPECT_EQ(fetch_of(sid, "/socket.io/?EIO=4"), "(no fetch)");      // a handshake
    EXPECT_EQ(fetch_of(sid, "/other?sid=Ab1"), "(no fetch)");         // outside sid.path
    Fixture cookie(config::Affinity::cookie);
    EXPECT_EQ(fetch_of(cookie, "/"), "(no fetch)");
    // Once bound locally, the same request is a hit: no fetch, no Redis.
    sid.table.put("chat:sid:Ab1", "s2", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(fetch_of(sid, "/socket.io/?EIO=4&sid=Ab1"), "(no fetch)");
    EXPECT_EQ(sid.router.stats("chat").local_hits, 1u);
    // The session routes again after the fetch (fetched, or may_fetch cleared):
    // then a miss is placed as without Redis.
    RouteInput again{"/", {}, "192.0.2.7"};
    const auto d = ip.router.route(ip.rt, 0, *ip.tables, ip.picker, again, {});
    ASSERT_TRUE(d.backend);
    EXPECT_EQ(d.write.op, Op::claim);
    EXPECT_EQ(ip.router.stats("chat").misses, 1u);
}

TEST(RouterShared, NewIpHashBindingIsClaimed) {
    Fixture f(config::Affinity::ip_hash);
    const auto d = f.route("/");
    ASSERT_TRUE(d.backend);
    EXPECT_EQ(d.write.op, Op::claim);
    EXPECT_EQ(d.write.key, "chat:ip_hash:192.0.2.7");
    EXPECT_EQ(d.write.server, d.backend->name());
    EXPECT_EQ(d.write.ttl, f.cfg->upstreams.at("chat").affinity_ttl);
    // The next request is a local hit and writes nothing (refresh not due).
    const auto again = f.route("/");
    EXPECT_EQ(again.backend, d.backend);
    EXPECT_EQ(again.write.op, Op::none);
}

TEST(RouterShared, DeadBoundServerIsReplacedInTheSharedTable) {
    Fixture f(config::Affinity::ip_hash);
    const auto first = f.route("/");
    f.backend(first.backend->name()).set_up(false);
    const auto d = f.route("/");
    ASSERT_TRUE(d.backend);
    EXPECT_NE(d.backend->name(), first.backend->name());
    EXPECT_EQ(d.write.op, Op::replace);
    EXPECT_EQ(d.write.previous, first.backend->name());
    EXPECT_EQ(d.write.server, d.backend->name());
}

TEST(RouterShared, BindingToAServerThisReplicaDoesNotKnowIsLeftAlone) {
    Fixture f(config::Affinity::ip_hash);
    f.table.put("chat:ip_hash:192.0.2.7", "s9", Clock::now(), std::chrono::hours(1));
    const auto d = f.route("/", "192.0.2.7", true);
    ASSERT_TRUE(d.backend);
    EXPECT_EQ(d.write.op, Op::none);
}

TEST(RouterShared, FetchedBindingCountsAsRedisHit) {
    Fixture f(config::Affinity::ip_hash);
    f.table.put("chat:ip_hash:192.0.2.7", "s2", Clock::now(), std::chrono::hours(1));
    const auto d = f.route("/", "192.0.2.7", true);
    ASSERT_TRUE(d.backend);
    EXPECT_EQ(d.backend->name(), "s2");
    EXPECT_EQ(d.write.op, Op::none);
    EXPECT_EQ(f.router.stats("chat").redis_hits, 1u);
    EXPECT_EQ(f.router.stats("chat").local_hits, 0u);
}

TEST(RouterShared, SidBoundToADeadServerIsRemoved) {
    Fixture f(config::Affinity::sid);
    const auto w = f.router.bind_sid(f.rt.upstreams[0], "Zz9", "s3");
    EXPECT_EQ(w.op, Op::claim);
    EXPECT_EQ(w.key, "chat:sid:Zz9");
    EXPECT_EQ(w.server, "s3");
    f.backend("s3").set_up(false);
    const auto d = f.route("/socket.io/?EIO=4&transport=polling&sid=Zz9");
    EXPECT_TRUE(d.unknown_sid);
    EXPECT_EQ(d.write.op, Op::remove);
    EXPECT_EQ(d.write.previous, "s3");
}

TEST(RouterShared, RefreshIsDueAtMostOncePerTenthOfTtl) {
    Fixture f(config::Affinity::sid);
    const auto ttl = f.cfg->upstreams.at("chat").affinity_ttl;
    // A binding last synced more than ttl/10 ago.
    f.table.put("chat:sid:Old", "s1", Clock::now() - ttl / 5, ttl);
    const auto d = f.route("/socket.io/?EIO=4&transport=polling&sid=Old");
    EXPECT_EQ(d.write.op, Op::refresh);
    EXPECT_EQ(d.write.server, "s1");
    const auto again = f.route("/socket.io/?EIO=4&transport=polling&sid=Old");
    EXPECT_EQ(again.write.op, Op::none);
}

TEST(RouterShared, WithoutASharedTableNothingIsWritten) {
    Fixture f(config::Affinity::ip_hash);
    Router local_only(f.table, false);
    RouteInput in{"/", {}, "198.51.100.1"};
    const auto d = local_only.route(f.rt, 0, *f.tables, f.picker, in, {});
    ASSERT_TRUE(d.backend);
    EXPECT_EQ(d.write.op, Op::none);
}

}  // namespace
