// The connection's sid memo (affinity::SidMemo): a repeated sid is routed
// through it exactly as through the table. Each test here would route
// somewhere the table does not say if the memo missed one invalidation: a
// binding erased, expired, rebound (by Redis, another worker), a server down
// or excluded, a reload, another upstream; and a hit must keep the binding's
// expiry and the Redis TTL refresh as a lookup does.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "router_fixture.hpp"
#include "tether/core/coarse_clock.hpp"

namespace {

using namespace tether;
using affinity::SidMemo;
using affinity::SharedWrite;
using affinity_test::Fixture;
using Op = SharedWrite::Op;

constexpr char kTarget[] = "/socket.io/?EIO=4&transport=polling&sid=abc";
constexpr char kKey[] = "chat:sid:abc";

std::string name(const affinity::RouteDecision& d) { return d.backend ? d.backend->name() : ""; }

std::chrono::milliseconds ttl_of(const Fixture& f) { return f.cfg->upstreams.begin()->second.affinity_ttl; }

/// Runs fn() as inside a socket completion whose clock read was `t`
/// (core::coarse_now() == t, the time the router takes).
template <class Fn>
auto at(Clock::time_point t, Fn&& fn) {
    const core::ClockScope scope;
    core::detail::coarse_clock_state.now = t;
    core::detail::coarse_clock_state.read = true;
    return fn();
}

TEST(RouterSidMemo, ARepeatedSidIsRoutedThroughTheMemoAsByTheTable) {
    Fixture f(config::Affinity::sid, false);
    SidMemo memo;
    f.table.put(kKey, "s2", Clock::now(), std::chrono::hours(1));
    f.table.put("chat:sid:xyz", "s3", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    EXPECT_EQ(memo.generation, f.tables->upstreams[0].generation) << "filled by the hit";
    EXPECT_EQ(std::string(memo.sid.data(), memo.sid_size), "abc");
    for (int i = 0; i < 5; ++i) EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    // Other sids on the same connection: their own bindings, whatever the memo holds.
    EXPECT_EQ(name(f.route("/socket.io/?EIO=4&transport=polling&sid=xyz", memo)), "s3");
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    EXPECT_EQ(name(f.route("/socket.io/?EIO=4&sid=%61bc", memo)), "s2") << "the same sid, encoded";
    EXPECT_EQ(name(f.route("/socket.io/?EIO=4&sid=ab", memo)), "s1") << "unbound: round robin";
    EXPECT_EQ(name(f.route("/socket.io/?EIO=4&sid=abcd", memo)), "s2") << "unbound: round robin";
    EXPECT_EQ(f.router.stats("chat").local_hits, 9u);
    EXPECT_EQ(f.router.stats("chat").misses, 2u);
    // A sid too long for the memo is routed by the table every time.
    const std::string held(memo.sid.data(), memo.sid_size);
    const std::string long_sid(SidMemo::kMaxSid + 1, 'L');
    f.table.put("chat:sid:" + long_sid, "s3", Clock::now(), std::chrono::hours(1));
    for (int i = 0; i < 2; ++i)
        EXPECT_EQ(name(f.route("/socket.io/?EIO=4&sid=" + long_sid, memo)), "s3");
    EXPECT_EQ(std::string(memo.sid.data(), memo.sid_size), held);
}

// A binding replaced in the table (by the Redis thread's pub/sub, by another
// worker's router, by a fallback cookie) routes to its new server at once.
TEST(RouterSidMemo, ARebindIsSeen) {
    Fixture f(config::Affinity::sid, false);
    SidMemo memo;
    f.table.put(kKey, "s2", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    f.table.put(kKey, "s3", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    f.table.put(kKey, "s9", Clock::now(), std::chrono::hours(1));  // a server this replica lacks
    const auto d = f.route(kTarget, memo);
    EXPECT_TRUE(d.unknown_sid);
    EXPECT_EQ(d.backend, nullptr);
}

// A binding erased from the table (Redis said it is gone, its server was
// removed) is not routed by the memo: the memo's entry no longer exists.
TEST(RouterSidMemo, AnErasedBindingIsNotRoutedByTheMemo) {
    Fixture f(config::Affinity::sid, false);
    SidMemo memo;
    f.table.put(kKey, "s2", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    f.table.erase(kKey);
    const auto d = f.route(kTarget, memo);
    EXPECT_EQ(name(d), "s1") << "a miss: placed by balance";
    EXPECT_FALSE(d.unknown_sid);
    EXPECT_EQ(f.router.stats("chat").misses, 1u);
    f.table.put(kKey, "s3", Clock::now(), std::chrono::hours(1));  // bound again, a new entry
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    EXPECT_EQ(f.router.stats("chat").local_hits, 3u);
}

TEST(RouterSidMemo, ADownOrExcludedServerIsNotRoutedByTheMemo) {
    Fixture f(config::Affinity::sid, false);
    SidMemo memo;
    f.table.put(kKey, "s2", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2");
    f.backend("s2").set_draining(true);
    EXPECT_EQ(name(f.route(kTarget, memo)), "s2") << "a draining server keeps its sessions";
    const upstream::Backend* tried[] = {&f.backend("s2")};
    EXPECT_TRUE(f.route(kTarget, memo, tried).unknown_sid) << "s2 failed for this request";
    EXPECT_EQ(f.table.get(kKey, Clock::now(), std::chrono::hours(1)), std::nullopt);
    f.table.put(kKey, "s3", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    f.backend("s3").set_up(false);
    const auto d = f.route(kTarget, memo);
    EXPECT_TRUE(d.unknown_sid);
    EXPECT_EQ(d.backend, nullptr);
    EXPECT_EQ(f.router.stats("chat").unknown_sids, 2u);
    EXPECT_EQ(f.table.get(kKey, Clock::now(), std::chrono::hours(1)), std::nullopt)
        << "the dead binding is dropped";
}

// A hit through the memo refreshes the binding's expiry as a lookup does, and
// a binding that expired is not routed by it.
TEST(RouterSidMemo, AHitKeepsTheBindingAliveAndAnExpiredOneIsNotRouted) {
    Fixture f(config::Affinity::sid, false);
    const auto ttl = ttl_of(f);
    const auto t0 = Clock::now();
    SidMemo memo;
    f.table.put(kKey, "s2", t0, ttl);  // lives until t0 + ttl
    EXPECT_EQ(name(at(t0 + ttl * 9 / 10, [&] { return f.route(kTarget, memo); })), "s2");
    ASSERT_NE(memo.generation, 0u);
    // Each hit is within ttl of the one before it, not of the first.
    EXPECT_EQ(name(at(t0 + ttl * 18 / 10, [&] { return f.route(kTarget, memo); })), "s2");
    EXPECT_EQ(name(at(t0 + ttl * 27 / 10, [&] { return f.route(kTarget, memo); })), "s2");
    EXPECT_EQ(f.router.stats("chat").local_hits, 3u);
    // More than ttl after the last hit: gone, placed by balance.
    const auto d = at(t0 + ttl * 38 / 10, [&] { return f.route(kTarget, memo); });
    EXPECT_EQ(name(d), "s1");
    EXPECT_EQ(f.router.stats("chat").misses, 1u);
    EXPECT_EQ(f.table.size(), 0u) << "the expired binding is erased, as by a lookup";
}

// With Redis: a refresh of the binding's TTL there is due at the same
// requests whether the memo finds the binding or the key does, and it names
// the binding's key.
TEST(RouterSidMemo, TheSharedTableIsRefreshedAtTheSameRequestsAsWithoutTheMemo) {
    const auto t0 = Clock::now();
    std::vector<std::string> with, without;
    for (const bool use_memo : {true, false}) {
        Fixture f(config::Affinity::sid, true);
        const auto ttl = ttl_of(f);
        SidMemo memo;
        f.table.put(kKey, "s2", t0, ttl);
        auto& log = use_memo ? with : without;
        for (int i = 1; i <= 60; ++i) {
            const auto d = at(t0 + ttl * i / 23, [&] {
                return use_memo ? f.route(kTarget, memo) : f.route(kTarget);
            });
            EXPECT_EQ(name(d), "s2");
            if (d.write.op == Op::none) continue;
            EXPECT_EQ(d.write.op, Op::refresh);
            EXPECT_EQ(d.write.key, kKey);
            EXPECT_EQ(d.write.server, "s2");
            EXPECT_EQ(d.write.ttl, ttl);
            log.push_back(std::to_string(i));
        }
        if (use_memo) {
            EXPECT_NE(memo.generation, 0u);
        }
    }
    EXPECT_GE(with.size(), 15u);
    EXPECT_EQ(with, without);
}

// A reload gives the upstream new routing tables (other server indexes): the
// memo of the old ones is not used, the sid goes to its server by name.
TEST(RouterSidMemo, AReloadIsSeen) {
    Fixture f(config::Affinity::sid, false);
    SidMemo memo;
    f.table.put(kKey, "s3", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    const auto before = memo.generation;
    f.reload_reversed();
    ASSERT_EQ(f.rt.upstreams[0].backends[0]->name(), "s3");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
    EXPECT_NE(memo.generation, before);
}

// The same sid in another upstream of the same process (the connection's
// listener now leads elsewhere) is that upstream's binding.
TEST(RouterSidMemo, AnotherUpstreamsSidIsItsOwn) {
    Fixture chat(config::Affinity::sid, false);
    Fixture other(config::Affinity::sid, false, &chat.table, "other");
    SidMemo memo;
    chat.table.put(kKey, "s2", Clock::now(), std::chrono::hours(1));
    chat.table.put("other:sid:abc", "s1", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(chat.route(kTarget, memo)), "s2");
    EXPECT_EQ(name(other.route(kTarget, memo)), "s1");
    EXPECT_EQ(name(chat.route(kTarget, memo)), "s2");
}

// Another thread rebinds and erases the binding while this worker routes the
// sid through its memo: every request goes where the table said at that
// moment (s1, s3, or a placement when it was absent), never elsewhere, and
// the last binding wins at the end. (Run under ASan / TSan by the sanitizer
// builds: a memo that outlived its entry reads freed memory.)
TEST(RouterSidMemo, ConcurrentRebindsAndErasesAreSeen) {
    Fixture f(config::Affinity::sid, false);
    f.backend("s2").set_up(false);  // placements go to s1 or s3 only
    SidMemo memo;
    f.table.put(kKey, "s1", Clock::now(), std::chrono::hours(1));
    std::atomic<bool> done{false};
    std::thread writer([&] {
        for (int i = 0; !done.load(); ++i) {
            if (i % 3 == 0) f.table.erase(kKey);
            else f.table.put(kKey, i % 3 == 1 ? "s1" : "s3", Clock::now(), std::chrono::hours(1));
            if (i % 64 == 0) std::this_thread::yield();
        }
    });
    int routed = 0;
    for (int i = 0; i < 20000; ++i) {
        const auto d = f.route(kTarget, memo);
        const std::string n = name(d);
        EXPECT_TRUE(n == "s1" || n == "s3") << n << " unknown " << d.unknown_sid;
        routed += !n.empty();
    }
    done = true;
    writer.join();
    EXPECT_EQ(routed, 20000);
    f.table.put(kKey, "s3", Clock::now(), std::chrono::hours(1));
    EXPECT_EQ(name(f.route(kTarget, memo)), "s3");
}

}  // namespace
