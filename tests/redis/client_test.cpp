// redis::Client against a real redis-server: commands, deadlines, outage and
// reconnection, AUTH + SELECT, pub/sub. Label: redis.
#include "tether/redis/client.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "redis_fixture.hpp"

namespace tether::redis {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using testing::RedisServer;
using testing::wait_until;

config::Redis settings(int port, std::chrono::milliseconds timeout = 100ms) {
    config::Redis c;
    c.address = {"127.0.0.1", static_cast<std::uint16_t>(port)};
    c.timeout = timeout;
    return c;
}

/// Runs one command from a coroutine on a caller-side io_context (as a
/// worker does) and returns its Result.
Result run(Client& client, std::vector<std::string> args) {
    asio::io_context io;
    auto f = asio::co_spawn(
        io, [&]() -> asio::awaitable<Result> { co_return co_await client.async_command(args); },
        asio::use_future);
    io.run();
    return f.get();
}

TEST(RedisClient, CommandsRoundTripOnTheCallersExecutor) {
    RedisServer server;
    Client client(settings(server.port()), "", nullptr, nullptr);
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up(); }));
    auto set = run(client, {"SET", "k", "v"});
    ASSERT_TRUE(set.ok()) << describe(set);
    auto get = run(client, {"GET", "k"});
    ASSERT_TRUE(get.ok());
    EXPECT_EQ(get.reply.kind, Reply::Kind::string);
    EXPECT_EQ(get.reply.str, "v");
    auto missing = run(client, {"GET", "nothing"});
    EXPECT_TRUE(missing.ok());
    EXPECT_EQ(missing.reply.kind, Reply::Kind::nil);
    auto bad = run(client, {"NOSUCHCOMMAND"});
    EXPECT_EQ(bad.outcome, Outcome::ok);
    EXPECT_EQ(bad.reply.kind, Reply::Kind::error);
    EXPECT_FALSE(bad.ok());
    const Stats st = client.stats();
    EXPECT_GE(st.commands, 4u);
    EXPECT_GE(st.errors, 1u);
}

TEST(RedisClient, PipelinedCommandsKeepTheirOrder) {
    RedisServer server;
    Client client(settings(server.port()), "", nullptr, nullptr);
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up(); }));
    asio::io_context io;
    std::vector<std::string> got(200);
    for (int i = 0; i < 200; ++i) {
        asio::co_spawn(io, [&, i]() -> asio::awaitable<void> {
            std::vector<std::string> args{"ECHO", "m" + std::to_string(i)};
            auto r = co_await client.async_command(std::move(args));
            got[static_cast<std::size_t>(i)] = r.reply.str;
        }, asio::detached);
    }
    io.run();
    for (int i = 0; i < 200; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], "m" + std::to_string(i));
}

TEST(RedisClient, SlowRedisTimesOutAtTheDeadline) {
    RedisServer server;
    Client client(settings(server.port(), 100ms), "", nullptr, nullptr);
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up(); }));
    auto sleeper = std::async(std::launch::async, [&] { return server.command({"DEBUG", "SLEEP", "1"}); });
    std::this_thread::sleep_for(100ms);  // the sleep has begun
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run(client, {"GET", "k"});
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.outcome, Outcome::timeout);
    EXPECT_LT(waited, 900ms);  // the deadline, not the end of the sleep
    sleeper.get();
    EXPECT_GE(client.stats().timeouts, 1u);
    // The late reply is dropped and the connection stays usable.
    ASSERT_TRUE(wait_until([&] { return run(client, {"PING"}).ok(); }));
}

TEST(RedisClient, DownRedisFailsAtOnceAndReconnectsWhenBack) {
    auto server = std::make_unique<RedisServer>();
    const int port = server->port();
    Client client(settings(port), "", nullptr, nullptr);
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up(); }));
    server->kill_now();
    ASSERT_TRUE(wait_until([&] { return !client.up(); }));
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run(client, {"GET", "k"});
    EXPECT_NE(r.outcome, Outcome::ok);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 50ms);  // no waiting while down
    server = std::make_unique<RedisServer>(port);
    ASSERT_TRUE(wait_until([&] { return client.up(); }, 15s));
    EXPECT_TRUE(run(client, {"SET", "k", "again"}).ok());
    EXPECT_EQ(server->command({"GET", "k"}), "again");
    EXPECT_GE(client.stats().reconnects, 1u);
}

TEST(RedisClient, NeverReachableRedisKeepsTryingWithoutBlocking) {
    const int port = testing::free_port();  // nothing listens there
    Client client(settings(port), "", nullptr, nullptr);
    client.start();
    auto r = run(client, {"PING"});
    EXPECT_EQ(r.outcome, Outcome::unavailable);
    EXPECT_FALSE(client.up());
    RedisServer server(port);
    ASSERT_TRUE(wait_until([&] { return client.up(); }, 15s));
    EXPECT_TRUE(run(client, {"PING"}).ok());
}

TEST(RedisClient, AuthAndSelectComeFirst) {
    RedisServer server(testing::free_port(), "s3cret");
    auto cfg = settings(server.port());
    cfg.password = "s3cret";
    cfg.db = 3;
    Client client(cfg, "", nullptr, nullptr);
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up(); }));
    ASSERT_TRUE(run(client, {"SET", "where", "db3"}).ok());
    EXPECT_EQ(server.command({"GET", "where"}, 3), "db3");
    EXPECT_EQ(server.command({"GET", "where"}, 0), "");
}

TEST(RedisClient, WrongPasswordIsNotUp) {
    RedisServer server(testing::free_port(), "right");
    auto cfg = settings(server.port());
    cfg.password = "wrong";
    Client client(cfg, "", nullptr, nullptr);
    client.start();
    std::this_thread::sleep_for(500ms);
    EXPECT_FALSE(client.up());
    EXPECT_EQ(run(client, {"PING"}).outcome, Outcome::unavailable);
}

TEST(RedisClient, SubscriberReceivesChannelMessages) {
    RedisServer server;
    std::mutex m;
    std::vector<std::string> messages;
    std::atomic<int> readies{0};
    Client client(settings(server.port()), "chan",
                  [&](std::string_view p) {
                      std::lock_guard lock(m);
                      messages.emplace_back(p);
                  },
                  [&](bool) { ++readies; });
    client.start();
    ASSERT_TRUE(wait_until([&] { return client.up() && readies > 0; }));
    // The subscription may lag the command connection by a moment.
    ASSERT_TRUE(wait_until([&] {
        server.command({"PUBLISH", "chan", "hello"});
        std::lock_guard lock(m);
        return !messages.empty();
    }));
    std::lock_guard lock(m);
    EXPECT_EQ(messages.front(), "hello");
}

TEST(RedisClient, StopFailsPendingCommands) {
    RedisServer server;
    auto client = std::make_unique<Client>(settings(server.port(), 5000ms), "", nullptr, nullptr);
    client->start();
    ASSERT_TRUE(wait_until([&] { return client->up(); }));
    auto sleeper = std::async(std::launch::async, [&] { return server.command({"DEBUG", "SLEEP", "1"}); });
    std::this_thread::sleep_for(100ms);
    asio::io_context io;
    auto f = asio::co_spawn(io, [&]() -> asio::awaitable<Result> {
        std::vector<std::string> args{"GET", "k"};
        co_return co_await client->async_command(std::move(args));
    }, asio::use_future);
    std::thread t([&] { io.run(); });
    std::this_thread::sleep_for(100ms);
    client->stop();
    t.join();
    EXPECT_NE(f.get().outcome, Outcome::ok);
    sleeper.get();
}

}  // namespace
}  // namespace tether::redis
