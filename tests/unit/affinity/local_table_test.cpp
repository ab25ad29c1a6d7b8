// LocalTable: bindings, NX semantics, TTL with explicit time points, LRU bound
// per shard, bulk erase and counting, concurrent put_if_absent.
#include "tether/affinity/local_table.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using tether::Clock;
using tether::affinity::LocalTable;

const Clock::time_point t0 = Clock::time_point{} + 1000h;  // fixed, no wall clock
constexpr std::chrono::milliseconds kTtl = 100ms;
Clock::duration never() { return Clock::duration::max(); }

/// Keys that share a shard with `anchor`, found without peeking at the hash:
/// in a table bounded to one entry per shard, putting X evicts `anchor` exactly
/// when X lands in anchor's shard.
std::vector<std::string> shard_mates(const std::string& anchor, std::size_t want) {
    std::vector<std::string> out;
    for (int i = 0; out.size() < want && i < 100000; ++i) {
        LocalTable probe(1);  // ceil(1/64) = 1 entry per shard
        const std::string k = "probe:" + std::to_string(i);
        probe.put(anchor, "a", t0, kTtl);
        probe.put(k, "b", t0, kTtl);
        if (!probe.get(anchor, t0, kTtl)) out.push_back(k);
    }
    EXPECT_EQ(out.size(), want);
    return out;
}

// find() answers with the server's index in the routing snapshot's names,
// remembered per entry: right after a replacement, and right again under a
// new snapshot whose indexes differ (a reload that reordered the servers).
TEST(LocalTable, FindResolvesTheServerIndexPerSnapshot) {
    LocalTable t(1000);
    const tether::affinity::ServerIndex first{{"s1", 0}, {"s2", 1}};
    const tether::affinity::ServerIndex reordered{{"s2", 0}, {"s1", 1}, {"s3", 2}};
    const LocalTable::Names a{&first, 7};
    const LocalTable::Names b{&reordered, 8};
    const auto never = Clock::duration::max();
    EXPECT_FALSE(t.find("u:sid:x", t0, kTtl, never, a).bound);
    t.put("u:sid:x", "s2", t0, kTtl);
    auto f = t.find("u:sid:x", t0, kTtl, never, a);
    EXPECT_TRUE(f.bound);
    EXPECT_EQ(f.index, 1u);
    EXPECT_EQ(t.find("u:sid:x", t0, kTtl, never, a).index, 1u);  // remembered
    EXPECT_EQ(t.find("u:sid:x", t0, kTtl, never, b).index, 0u);  // another snapshot
    EXPECT_EQ(t.find("u:sid:x", t0, kTtl, never, a).index, 1u);
    t.put("u:sid:x", "s1", t0, kTtl);  // replaced: resolved again
    EXPECT_EQ(t.find("u:sid:x", t0, kTtl, never, a).index, 0u);
    t.put("u:sid:x", "s3", t0, kTtl);  // a server snapshot `a` does not know
    f = t.find("u:sid:x", t0, kTtl, never, a);
    EXPECT_TRUE(f.bound);
    EXPECT_EQ(f.index, LocalTable::kNoIndex);
    EXPECT_EQ(t.find("u:sid:x", t0, kTtl, never, b).index, 2u);
}

// find() refreshes the expiry as get() does and says when a shared-store
// refresh is due; an expired binding is gone.
TEST(LocalTable, FindRefreshesExpiryAndReportsSync) {
    LocalTable t(1000);
    const tether::affinity::ServerIndex names{{"s1", 0}};
    const LocalTable::Names n{&names, 1};
    t.put("k", "s1", t0, kTtl);
    EXPECT_FALSE(t.find("k", t0 + 5ms, kTtl, 10ms, n).sync_due);
    auto f = t.find("k", t0 + 90ms, kTtl, 10ms, n);  // lives until t0+190 now
    EXPECT_TRUE(f.sync_due);
    EXPECT_FALSE(t.find("k", t0 + 95ms, kTtl, 10ms, n).sync_due);
    EXPECT_TRUE(t.find("k", t0 + 180ms, kTtl, Clock::duration::max(), n).bound);
    EXPECT_FALSE(t.find("k", t0 + 281ms, kTtl, Clock::duration::max(), n).bound);
    EXPECT_FALSE(t.get("k", t0 + 281ms, kTtl));
}

// refind() of find()'s handle does what find() of the key does: the binding
// as it is now (a rebind, another snapshot's index), the expiry refreshed,
// the sync reported; not bound once the binding expired.
TEST(LocalTable, RefindIsFindWithoutTheKey) {
    LocalTable t(1000);
    const tether::affinity::ServerIndex first{{"s1", 0}, {"s2", 1}};
    const tether::affinity::ServerIndex reordered{{"s2", 0}, {"s1", 1}};
    const LocalTable::Names a{&first, 7};
    const LocalTable::Names b{&reordered, 8};
    LocalTable::Handle h;
    EXPECT_FALSE(t.refind(h, t0, kTtl, 10ms, a).bound) << "an empty handle";
    EXPECT_FALSE(t.find("k", t0, kTtl, 10ms, a, &h).bound);
    EXPECT_EQ(h.entry, nullptr) << "no binding, no handle";
    t.put("k", "s2", t0, kTtl);
    auto f = t.find("k", t0, kTtl, 10ms, a, &h);
    ASSERT_TRUE(f.bound);
    ASSERT_NE(h.entry, nullptr);
    f = t.refind(h, t0 + 5ms, kTtl, 10ms, a);
    EXPECT_TRUE(f.bound);
    EXPECT_EQ(f.index, 1u);
    EXPECT_FALSE(f.sync_due);
    EXPECT_TRUE(t.refind(h, t0 + 90ms, kTtl, 10ms, a).sync_due);  // lives until t0+190 now
    EXPECT_FALSE(t.refind(h, t0 + 95ms, kTtl, 10ms, a).sync_due);
    EXPECT_EQ(t.refind(h, t0 + 96ms, kTtl, 10ms, b).index, 0u) << "another snapshot";
    t.put("k", "s1", t0 + 97ms, kTtl);  // a rebind: the same entry, another server
    EXPECT_EQ(t.refind(h, t0 + 98ms, kTtl, 10ms, a).index, 0u);
    EXPECT_TRUE(t.refind(h, t0 + 190ms, kTtl, never(), a).bound);  // refreshed at +98
    EXPECT_FALSE(t.refind(h, t0 + 290ms, kTtl, never(), a).bound) << "expired";
    EXPECT_FALSE(t.find("k", t0 + 290ms, kTtl, never(), a).bound);
}

// A handle does not outlive its entry: once an entry of its shard was erased
// (by erase, erase_server, expiry found by a lookup, eviction, put_if_absent
// over an expired binding), refind() says "not bound" and find() by key
// decides, also when the key was bound again since (a new entry). An insert
// without eviction, or a rebind, leaves the handle valid.
TEST(LocalTable, RefindIsNotBoundOnceAnEntryOfItsShardWasErased) {
    const tether::affinity::ServerIndex names{{"s1", 0}, {"s2", 1}};
    const LocalTable::Names n{&names, 1};
    const std::string a = "u:sid:anchor";
    const auto mates = shard_mates(a, 1);
    ASSERT_EQ(mates.size(), 1u);
    const std::vector<std::pair<std::string, std::function<void(LocalTable&)>>> erasers = {
        {"erase", [&](LocalTable& t) { t.erase(a); }},
        {"erase and bind again", [&](LocalTable& t) { t.erase(a); t.put(a, "s2", t0, kTtl); }},
        {"erase a shard mate", [&](LocalTable& t) { t.erase(mates[0]); }},
        {"erase_server", [&](LocalTable& t) { t.erase_server("u:", "s1"); }},
        {"expired, found by a lookup", [&](LocalTable& t) { t.get(a, t0 + 2 * kTtl, kTtl); }},
        {"put_if_absent over an expired binding",
         [&](LocalTable& t) { t.put_if_absent(a, "s2", t0 + 2 * kTtl, kTtl); }},
    };
    for (const auto& [what, erase] : erasers) {
        LocalTable t(1000);
        t.put(a, "s1", t0, kTtl);
        t.put(mates[0], "s1", t0, kTtl);
        LocalTable::Handle h;
        ASSERT_TRUE(t.find(a, t0, kTtl, never(), n, &h).bound) << what;
        erase(t);
        EXPECT_FALSE(t.refind(h, t0 + 1ms, kTtl, never(), n).bound) << what;
    }
    // Eviction: one entry per shard, the mate's put evicts the anchor.
    LocalTable one(1);
    one.put(a, "s1", t0, kTtl);
    LocalTable::Handle h;
    ASSERT_TRUE(one.find(a, t0, kTtl, never(), n, &h).bound);
    one.put(mates[0], "s2", t0, kTtl);
    EXPECT_FALSE(one.refind(h, t0, kTtl, never(), n).bound) << "evicted";
    // What does not free an entry leaves the handle as it was.
    LocalTable t(1000);
    t.put(a, "s1", t0, kTtl);
    ASSERT_TRUE(t.find(a, t0, kTtl, never(), n, &h).bound);
    for (int i = 0; i < 500; ++i) t.put("other:" + std::to_string(i), "s1", t0, kTtl);
    t.put(a, "s2", t0, kTtl);
    const auto f = t.refind(h, t0 + 1ms, kTtl, never(), n);
    EXPECT_TRUE(f.bound);
    EXPECT_EQ(f.index, 1u);
}

TEST(LocalTable, GetPutAndReplace) {
    LocalTable t(1000);
    EXPECT_EQ(t.get("u:sid:a", t0, kTtl), std::nullopt);
    t.put("u:sid:a", "s1", t0, kTtl);
    EXPECT_EQ(t.get("u:sid:a", t0, kTtl), "s1");
    t.put("u:sid:a", "s2", t0, kTtl);  // put replaces
    EXPECT_EQ(t.get("u:sid:a", t0, kTtl), "s2");
    EXPECT_EQ(t.get("u:sid:b", t0, kTtl), std::nullopt);
    EXPECT_EQ(t.size(), 1u);
}

TEST(LocalTable, PutIfAbsentReturnsTheExistingHolder) {
    LocalTable t(1000);
    EXPECT_EQ(t.put_if_absent("k", "s1", t0, kTtl), "s1");
    EXPECT_EQ(t.put_if_absent("k", "s2", t0, kTtl), "s1");  // the first binding stays
    EXPECT_EQ(t.get("k", t0, kTtl), "s1");
    EXPECT_EQ(t.size(), 1u);
}

TEST(LocalTable, PutIfAbsentReplacesAnExpiredBinding) {
    LocalTable t(1000);
    t.put("k", "s1", t0, kTtl);
    EXPECT_EQ(t.put_if_absent("k", "s2", t0 + kTtl, kTtl), "s2");  // expires at t0+ttl exactly
    EXPECT_EQ(t.get("k", t0 + kTtl, kTtl), "s2");
    EXPECT_EQ(t.size(), 1u);
}

TEST(LocalTable, EntriesExpireTtlAfterLastUse) {
    LocalTable t(1000);
    t.put("k", "s1", t0, kTtl);
    EXPECT_EQ(t.get("k", t0 + kTtl - 1ms, 0ms), "s1");  // a zero-ttl get expires it at once
    EXPECT_EQ(t.get("k", t0 + kTtl - 1ms, kTtl), std::nullopt);
    t.put("k2", "s1", t0, kTtl);
    EXPECT_EQ(t.get("k2", t0 + kTtl, kTtl), std::nullopt);  // expiry instant is exclusive
    EXPECT_EQ(t.size(), 0u) << "an expired entry found by get is removed";
}

TEST(LocalTable, GetRefreshesExpiry) {
    LocalTable t(1000);
    t.put("k", "s1", t0, kTtl);
    EXPECT_EQ(t.get("k", t0 + 90ms, kTtl), "s1");   // now lives until t0+190
    EXPECT_EQ(t.get("k", t0 + 180ms, kTtl), "s1");  // past the first expiry; until t0+280
    EXPECT_EQ(t.get("k", t0 + 279ms, kTtl), "s1");
    EXPECT_EQ(t.get("k", t0 + 379ms + 1ms, kTtl), std::nullopt);
}

TEST(LocalTable, PutRefreshesExpiry) {
    LocalTable t(1000);
    t.put("k", "s1", t0, kTtl);
    t.put("k", "s1", t0 + 90ms, kTtl);
    EXPECT_EQ(t.get("k", t0 + 150ms, kTtl), "s1");
}

TEST(LocalTable, TotalSizeIsBoundedByShardsTimesPerShardBound) {
    LocalTable t(128);  // ceil(128/64) = 2 per shard
    for (int i = 0; i < 10000; ++i) t.put("k" + std::to_string(i), "s1", t0, kTtl);
    EXPECT_LE(t.size(), 128u);
    EXPECT_GE(t.size(), 100u) << "keys spread over the shards";
    LocalTable one(1);  // ceil(1/64) = 1 per shard: at most 64
    for (int i = 0; i < 10000; ++i) one.put("k" + std::to_string(i), "s1", t0, kTtl);
    EXPECT_LE(one.size(), LocalTable::kShards);
}

TEST(LocalTable, FullShardEvictsLeastRecentlyUsed) {
    const std::string a = "u:sid:anchor";
    const auto mates = shard_mates(a, 2);
    ASSERT_EQ(mates.size(), 2u);
    const std::string& b = mates[0];
    const std::string& c = mates[1];

    LocalTable t(LocalTable::kShards * 2);  // 2 entries per shard
    t.put(a, "s1", t0, kTtl);
    t.put(b, "s2", t0 + 1ms, kTtl);
    ASSERT_EQ(t.get(a, t0 + 2ms, kTtl), "s1");  // a is now the most recently used
    t.put(c, "s3", t0 + 3ms, kTtl);             // shard full: b (LRU) goes
    EXPECT_EQ(t.get(b, t0 + 4ms, kTtl), std::nullopt);
    EXPECT_EQ(t.get(a, t0 + 4ms, kTtl), "s1");
    EXPECT_EQ(t.get(c, t0 + 4ms, kTtl), "s3");

    // Without the refresh, the oldest goes.
    LocalTable u(LocalTable::kShards * 2);
    u.put(a, "s1", t0, kTtl);
    u.put(b, "s2", t0, kTtl);
    u.put_if_absent(c, "s3", t0, kTtl);
    EXPECT_EQ(u.get(a, t0, kTtl), std::nullopt);
    EXPECT_EQ(u.get(b, t0, kTtl), "s2");
    EXPECT_EQ(u.get(c, t0, kTtl), "s3");
}

TEST(LocalTable, Erase) {
    LocalTable t(1000);
    t.put("k", "s1", t0, kTtl);
    t.put("j", "s1", t0, kTtl);
    t.erase("k");
    t.erase("absent");
    EXPECT_EQ(t.get("k", t0, kTtl), std::nullopt);
    EXPECT_EQ(t.get("j", t0, kTtl), "s1");
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.put_if_absent("k", "s2", t0, kTtl), "s2");
}

TEST(LocalTable, EraseServerRemovesOnlyThatServerUnderThePrefix) {
    LocalTable t(10000);
    for (int i = 0; i < 30; ++i) {
        const std::string server = "s" + std::to_string(i % 3 + 1);
        t.put("chat:sid:" + std::to_string(i), server, t0, kTtl);
        t.put("news:sid:" + std::to_string(i), server, t0, kTtl);
    }
    EXPECT_EQ(t.erase_server("chat:", "s2"), 10u);
    EXPECT_EQ(t.erase_server("chat:", "s2"), 0u);
    EXPECT_EQ(t.erase_server("chat:", "s9"), 0u);
    EXPECT_EQ(t.size(), 50u);
    for (int i = 0; i < 30; ++i) {
        const auto chat = t.get("chat:sid:" + std::to_string(i), t0, kTtl);
        if (i % 3 == 1) {
            EXPECT_EQ(chat, std::nullopt) << i;
        } else {
            EXPECT_TRUE(chat.has_value()) << i;
        }
        EXPECT_TRUE(t.get("news:sid:" + std::to_string(i), t0, kTtl).has_value()) << i;
    }
    // The name must match exactly: "s1" does not remove "s10".
    t.put("chat:sid:x", "s10", t0, kTtl);
    EXPECT_EQ(t.erase_server("chat:", "s1"), 10u);
    EXPECT_EQ(t.get("chat:sid:x", t0, kTtl), "s10");
}

TEST(LocalTable, CountPrefix) {
    LocalTable t(10000);
    for (int i = 0; i < 7; ++i) t.put("chat:sid:" + std::to_string(i), "s1", t0, kTtl);
    for (int i = 0; i < 4; ++i) t.put("chat2:sid:" + std::to_string(i), "s1", t0, kTtl);
    t.put("news:ip_hash:10.0.0.1", "s2", t0, kTtl);
    EXPECT_EQ(t.count_prefix("chat:"), 7u);
    EXPECT_EQ(t.count_prefix("chat2:"), 4u);
    EXPECT_EQ(t.count_prefix("chat"), 11u);
    EXPECT_EQ(t.count_prefix("news:"), 1u);
    EXPECT_EQ(t.count_prefix("absent:"), 0u);
    EXPECT_EQ(t.count_prefix(""), 12u);
}

TEST(LocalTable, ConcurrentPutIfAbsentAgreesOnOneHolderPerKey) {
    constexpr int kThreads = 4;
    constexpr int kKeys = 1000;
    LocalTable t(100000);
    std::vector<std::vector<std::string>> holders(kThreads, std::vector<std::string>(kKeys));
    std::vector<std::thread> threads;
    for (int th = 0; th < kThreads; ++th) {
        threads.emplace_back([&, th] {
            const std::string mine = "s" + std::to_string(th);
            auto& own = holders[static_cast<std::size_t>(th)];
            for (int round = 0; round < 3; ++round) {
                for (int k = 0; k < kKeys; ++k) {
                    const int key = (k * 7 + th * 251) % kKeys;  // different orders per thread
                    const std::string got =
                        t.put_if_absent("u:sid:" + std::to_string(key), mine, t0, 1h);
                    auto& held = own[static_cast<std::size_t>(key)];
                    if (round == 0) {
                        held = got;
                    } else {
                        EXPECT_EQ(got, held) << "a binding never changes hands";
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(t.size(), static_cast<std::size_t>(kKeys));
    std::vector<int> wins(kThreads, 0);
    for (int k = 0; k < kKeys; ++k) {
        const auto final_value = t.get("u:sid:" + std::to_string(k), t0, 1h);
        ASSERT_TRUE(final_value.has_value()) << k;
        for (int th = 0; th < kThreads; ++th)
            EXPECT_EQ(holders[static_cast<std::size_t>(th)][static_cast<std::size_t>(k)],
                      *final_value)
                << "key " << k << " thread " << th;
        ++wins[static_cast<std::size_t>(final_value->at(1) - '0')];
    }
    int total = 0;
    for (int w : wins) total += w;
    EXPECT_EQ(total, kKeys);
}

}  // namespace
