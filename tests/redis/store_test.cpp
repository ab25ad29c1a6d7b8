// RedisStore against a real redis-server, with two "replicas" (two stores,
// two local tables, two clients) sharing it. Label: redis.
#include "tether/affinity/redis_store.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "redis_fixture.hpp"

namespace tether::affinity {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using testing::RedisServer;
using testing::wait_until;

/// One replica's side: a local table, a store and its client.
struct Replica {
    explicit Replica(int port, std::string prefix = "t:")
        : table(1000), store(table, prefix) {
        config::Redis c;
        c.address = {"127.0.0.1", static_cast<std::uint16_t>(port)};
        c.key_prefix = prefix;
        client = std::make_unique<redis::Client>(
            c, store.channel(), [this](std::string_view p) { store.on_event(p); },
            [this](bool first) {
                store.on_ready(first);
                ++readies;
            });
        store.attach(*client);
        store.set_drain_handler([this](std::string_view u, std::string_view s, bool d) {
            std::lock_guard lock(m);
            drains.push_back(std::string(u) + "/" + std::string(s) + (d ? "=1" : "=0"));
        });
        client->start();
    }
    ~Replica() { client->stop(); }

    template <class T>
    T run(Awaitable<T> a) {
        asio::io_context io;
        auto f = asio::co_spawn(io, std::move(a), asio::use_future);
        io.run();
        return f.get();
    }
    bool ready() const { return client->up() && readies > 0; }

    LocalTable table;
    RedisStore store;
    std::unique_ptr<redis::Client> client;
    std::atomic<int> readies{0};
    std::mutex m;
    std::vector<std::string> drains;
};

TEST(RedisStore, ClaimWritesOnceAndTheSecondReplicaAdoptsTheFirst) {
    RedisServer server;
    Replica a(server.port()), b(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready() && b.ready(); }));
    const std::string key = "u:ip_hash:10.0.0.1";
    auto ha = a.run(a.store.claim(key, "s1", 60s));
    auto hb = b.run(b.store.claim(key, "s2", 60s));
    ASSERT_TRUE(ha && hb);
    EXPECT_EQ(*ha, "s1");
    EXPECT_EQ(*hb, "s1");  // b adopts a's binding
    EXPECT_EQ(server.command({"GET", "t:" + key}), "s1");
    const auto pttl = std::stoll(server.command({"PTTL", "t:" + key}));
    EXPECT_GT(pttl, 50000);
    EXPECT_LE(pttl, 60000);
    auto fetched = b.run(b.store.fetch(key));
    EXPECT_FALSE(fetched.failed);
    EXPECT_EQ(fetched.server.value_or(""), "s1");
    auto none = b.run(b.store.fetch("u:ip_hash:10.9.9.9"));
    EXPECT_FALSE(none.failed);
    EXPECT_FALSE(none.server);
}

TEST(RedisStore, ReplaceOverwritesOnlyTheDeadBinding) {
    RedisServer server;
    Replica a(server.port()), b(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready() && b.ready(); }));
    const std::string key = "u:ip_hash:10.0.0.2";
    ASSERT_EQ(a.run(a.store.claim(key, "s1", 60s)).value_or(""), "s1");
    // s1 died: a replaces it by s2; b, a moment later, would pick s3: it
    // must adopt s2 rather than overwrite it.
    EXPECT_EQ(a.run(a.store.replace(key, "s1", "s2", 60s)).value_or(""), "s2");
    EXPECT_EQ(b.run(b.store.replace(key, "s1", "s3", 60s)).value_or(""), "s2");
    EXPECT_EQ(server.command({"GET", "t:" + key}), "s2");
}

TEST(RedisStore, EventsDropAndReplaceOtherReplicasLocalEntries) {
    RedisServer server;
    Replica a(server.port()), b(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready() && b.ready(); }));
    const auto now = Clock::now();
    const std::string k1 = "u:sid:abc", k2 = "u:ip_hash:10.0.0.3";
    b.table.put(k1, "s1", now, 60s);
    b.table.put(k2, "s1", now, 60s);
    a.table.put(k1, "s1", now, 60s);
    ASSERT_EQ(a.run(a.store.claim(k2, "s1", 60s)).value_or(""), "s1");
    std::this_thread::sleep_for(200ms);  // both subscriptions are in place
    a.store.remove(k1, "s1");
    EXPECT_EQ(a.run(a.store.replace(k2, "s1", "s2", 60s)).value_or(""), "s2");
    ASSERT_TRUE(wait_until([&] { return !b.table.contains(k1, Clock::now()); }));
    ASSERT_TRUE(wait_until([&] { return b.table.get(k2, Clock::now(), 60s).value_or("") == "s2"; }));
    EXPECT_TRUE(a.table.contains(k1, Clock::now()));  // a's own message is ignored
}

TEST(RedisStore, RemoveKeepsABindingThatNamesAnotherServer) {
    RedisServer server;
    Replica a(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready(); }));
    const std::string key = "u:sid:xyz";
    ASSERT_TRUE(a.run(a.store.claim(key, "s2", 60s)));
    a.store.remove(key, "s1");  // stale: the binding is s2 now
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(server.command({"GET", "t:" + key}), "s2");
    a.store.remove(key, "s2");
    ASSERT_TRUE(wait_until([&] { return server.command({"EXISTS", "t:" + key}) == "0"; }));
}

TEST(RedisStore, RefreshExtendsTtlAndRecreatesALostKey) {
    RedisServer server;
    Replica a(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready(); }));
    const std::string key = "u:sid:refresh";
    ASSERT_TRUE(a.run(a.store.claim(key, "s1", 2s)));
    a.store.refresh(key, "s1", 60s);
    ASSERT_TRUE(wait_until([&] { return std::stoll(server.command({"PTTL", "t:" + key})) > 10000; }));
    server.command({"DEL", "t:" + key});
    a.store.refresh(key, "s1", 60s);
    ASSERT_TRUE(wait_until([&] { return server.command({"GET", "t:" + key}) == "s1"; }));
}

TEST(RedisStore, OutageBindingsAreWrittenBackWhenRedisReturnsEmpty) {
    auto server = std::make_unique<RedisServer>();
    const int port = server->port();
    Replica a(port);
    ASSERT_TRUE(wait_until([&] { return a.ready(); }));
    ASSERT_TRUE(a.run(a.store.claim("u:sid:before", "s1", 60s)));
    a.table.put("u:sid:before", "s1", Clock::now(), 60s);
    server->kill_now();
    ASSERT_TRUE(wait_until([&] { return !a.client->up(); }));
    // Made during the outage: only local.
    EXPECT_FALSE(a.run(a.store.claim("u:sid:during", "s2", 60s)));
    a.table.put("u:sid:during", "s2", Clock::now(), 60s);
    EXPECT_TRUE(a.run(a.store.fetch("u:sid:during")).failed);
    server = std::make_unique<RedisServer>(port);  // back, and empty
    ASSERT_TRUE(wait_until([&] { return server->command({"GET", "t:u:sid:during"}) == "s2"; }, 15s));
    EXPECT_EQ(server->command({"GET", "t:u:sid:before"}), "s1");
    EXPECT_GT(std::stoll(server->command({"PTTL", "t:u:sid:during"})), 50000);
}

TEST(RedisStore, DrainsReachOtherReplicasAndLateComers) {
    RedisServer server;
    Replica a(server.port()), b(server.port());
    ASSERT_TRUE(wait_until([&] { return a.ready() && b.ready(); }));
    std::this_thread::sleep_for(200ms);  // subscriptions in place
    a.store.publish_drain("u", "s2", true);
    ASSERT_TRUE(wait_until([&] {
        std::lock_guard lock(b.m);
        return b.drains == std::vector<std::string>{"u/s2=1"};
    }));
    {
        std::lock_guard lock(a.m);
        EXPECT_TRUE(a.drains.empty());  // not echoed to the sender
    }
    Replica c(server.port());  // starts after the drain: reads it from Redis
    ASSERT_TRUE(wait_until([&] {
        std::lock_guard lock(c.m);
        return c.drains == std::vector<std::string>{"u/s2=1"};
    }));
    a.store.publish_drain("u", "s2", false);
    ASSERT_TRUE(wait_until([&] {
        std::lock_guard lock(b.m);
        return b.drains.size() == 2 && b.drains[1] == "u/s2=0";
    }));
    EXPECT_EQ(server.command({"HLEN", "t:drains"}), "0");
}

}  // namespace
}  // namespace tether::affinity
