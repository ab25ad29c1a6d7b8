// TimedSocket: tcp_stream's deadline contract with a lazily armed timer.
// Real sockets on 127.0.0.1 (a connected pair per test), bounded waits.
#include "tether/tls/timed_socket.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "timed_pair.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using Pair = test::TimedPair;

TEST(TimedSocket, ReadPastItsDeadlineTimesOutAtTheDeadline) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> got;
    const auto start = Clock::now();
    p.timed->expires_after(100ms);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { got = ec; });
    p.run_until([&] { return got.has_value(); });
    const auto took = Clock::now() - start;
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, boost::beast::error::timeout);
    EXPECT_GE(took, 100ms);
    EXPECT_LT(took, 1s);
    EXPECT_FALSE(p.timed->socket().is_open());  // closed, as tcp_stream does
}

TEST(TimedSocket, ReadInTimeThenIdleBeyondTheOldDeadlineIsNotTimedOut) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> first, second;
    p.timed->expires_after(100ms);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { first = ec; });
    asio::write(p.peer, asio::buffer("x", 1));
    p.run_until([&] { return first.has_value(); });
    ASSERT_TRUE(first);
    EXPECT_FALSE(*first);
    // No operation pending while the old deadline passes: nothing happens.
    asio::steady_timer wait(p.io, 250ms);
    bool waited = false;
    wait.async_wait([&](auto) { waited = true; });
    p.run_until([&] { return waited; });
    EXPECT_TRUE(p.timed->socket().is_open());
    // The next read with a later deadline gets its data.
    p.timed->expires_after(1s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { second = ec; });
    asio::write(p.peer, asio::buffer("y", 1));
    p.run_until([&] { return second.has_value(); });
    ASSERT_TRUE(second);
    EXPECT_FALSE(*second);
}

TEST(TimedSocket, EarlierDeadlineAfterALaterOneStillFiresOnTime) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> first, second;
    p.timed->expires_after(10s);  // arms the timer for 10 s
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { first = ec; });
    asio::write(p.peer, asio::buffer("x", 1));
    p.run_until([&] { return first.has_value(); });
    ASSERT_TRUE(first);
    const auto start = Clock::now();
    p.timed->expires_after(100ms);  // earlier than the armed wait: re-armed
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { second = ec; });
    p.run_until([&] { return second.has_value(); });
    ASSERT_TRUE(second);
    EXPECT_EQ(*second, boost::beast::error::timeout);
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST(TimedSocket, LaterDeadlineIsHonouredAfterTheTimerFiresEarly) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> first, second;
    p.timed->expires_after(100ms);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { first = ec; });
    asio::write(p.peer, asio::buffer("x", 1));
    p.run_until([&] { return first.has_value(); });
    // The timer still waits for the first deadline (100 ms); this read may take 400 ms.
    const auto start = Clock::now();
    p.timed->expires_after(400ms);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { second = ec; });
    p.run_until([&] { return second.has_value(); });
    ASSERT_TRUE(second);
    EXPECT_EQ(*second, boost::beast::error::timeout);
    EXPECT_GE(Clock::now() - start, 400ms);
}

TEST(TimedSocket, ExpiresNeverReadWaitsForData) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> got;
    p.timed->expires_after(50ms);
    p.timed->expires_never();
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { got = ec; });
    asio::steady_timer later(p.io, 200ms);
    later.async_wait([&](auto) { asio::write(p.peer, asio::buffer("x", 1)); });
    p.run_until([&] { return got.has_value(); });
    ASSERT_TRUE(got);
    EXPECT_FALSE(*got);
}

TEST(TimedSocket, PendingReadKeepsItsDeadlineWhenAWriteSetsAnother) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> read, wrote;
    const auto start = Clock::now();
    p.timed->expires_after(150ms);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { read = ec; });
    p.timed->expires_after(10s);  // for the write only: the read is pending
    asio::async_write(*p.timed, asio::buffer("abc", 3), [&](auto ec, std::size_t) { wrote = ec; });
    p.run_until([&] { return read.has_value() && wrote.has_value(); });
    ASSERT_TRUE(read);
    ASSERT_TRUE(wrote);
    EXPECT_FALSE(*wrote);
    EXPECT_EQ(*read, boost::beast::error::timeout);
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST(TimedSocket, WaitReadableEndsWhenDataComesOrTimesOut) {
    Pair p;
    std::optional<boost::system::error_code> ready, timed_out;
    p.timed->expires_after(1s);
    p.timed->async_wait_readable([&](auto ec) { ready = ec; });
    asio::write(p.peer, asio::buffer("x", 1));
    p.run_until([&] { return ready.has_value(); });
    ASSERT_TRUE(ready);
    EXPECT_FALSE(*ready);
    std::array<char, 16> buf{};
    p.timed->socket().read_some(asio::buffer(buf));
    p.timed->expires_after(100ms);
    p.timed->async_wait_readable([&](auto ec) { timed_out = ec; });
    p.run_until([&] { return timed_out.has_value(); });
    ASSERT_TRUE(timed_out);
    EXPECT_EQ(*timed_out, boost::beast::error::timeout);
}

TEST(TimedSocket, DestroyedWithATimerArmedLeavesNothingBehind) {
    Pair p;
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> got;
    p.timed->expires_after(10s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { got = ec; });
    asio::write(p.peer, asio::buffer("x", 1));
    p.run_until([&] { return got.has_value(); });
    p.timed.reset();  // the timer's wait is cancelled; its handler frees the state
    p.io.restart();
    p.io.run_for(100ms);
    EXPECT_TRUE(p.io.stopped());  // no wait left behind
}

// write_now: what the socket takes at once, without waiting; would_block once
// the peer's receive buffer and the send buffer are full, and while an
// asynchronous write is pending; the peer gets the bytes in order.
TEST(TimedSocket, WriteNowTakesWhatFitsThenWouldBlock) {
    Pair p;
    boost::system::error_code ec;
    const std::array<asio::const_buffer, 2> two{asio::buffer("ab", 2), asio::buffer("cd", 2)};
    EXPECT_EQ(p.timed->write_now(two, ec), 4u);
    EXPECT_FALSE(ec);
    std::array<char, 4> got{};
    asio::read(p.peer, asio::buffer(got));
    EXPECT_EQ(std::string(got.data(), 4), "abcd");
    const std::string chunk(64 * 1024, 'x');
    std::size_t total = 0;
    for (int i = 0; i < 10000 && !ec; ++i) total += p.timed->write_now(asio::buffer(chunk), ec);
    EXPECT_EQ(ec, asio::error::would_block);  // nobody reads: the buffers filled up
    EXPECT_GT(total, 0u);
    std::optional<boost::system::error_code> wrote;
    p.timed->expires_after(5s);
    p.timed->async_write_some(asio::buffer(chunk), [&](auto e, std::size_t) { wrote = e; });
    EXPECT_EQ(p.timed->write_now(asio::buffer("y", 1), ec), 0u);  // a write is pending
    EXPECT_EQ(ec, asio::error::would_block);
    std::vector<char> sink(total + chunk.size());
    std::size_t drained = 0;
    while (!wrote && drained < sink.size()) {
        drained += p.peer.read_some(asio::buffer(sink.data() + drained, sink.size() - drained));
        p.io.restart();
        p.io.poll();
    }
    p.run_until([&] { return wrote.has_value(); });
    ASSERT_TRUE(wrote);
    EXPECT_FALSE(*wrote);
}

}  // namespace
}  // namespace tether::tls
