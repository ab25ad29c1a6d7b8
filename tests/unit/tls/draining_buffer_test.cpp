// DrainingBuffer through TimedSocket: a read that got fewer bytes than it
// asked for marks the socket drained, so the next read waits for the next
// edge without a recv(2) that returns EAGAIN; a read that filled its buffer
// does not, and the bytes left behind are read at once.
// Real sockets on 127.0.0.1 (a connected pair per test), bounded waits. The
// receives on the socket are counted by socket_call_counter.hpp's
// pass-through definitions: every call still goes to the kernel, only
// counted.
#include "tether/tls/timed_socket.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "socket_call_counter.hpp"
#include "timed_pair.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Pair : test::TimedPair {
    Pair() {
        timed->socket().non_blocking(true);  // as every socket tether reads asynchronously
        g_watched_fd = timed->socket().native_handle();
        g_recv_calls = g_recv_would_block = 0;
    }
    ~Pair() { g_watched_fd = -1; }

    template <class Done>
    void run_until(Done done) {
        const auto until = Clock::now() + 5s;
        io.restart();
        while (!done() && Clock::now() < until) io.run_one_for(50ms);
    }
    // One read of up to `room` bytes started before the peer sends `data`;
    // what it got.
    std::string read_after_send(std::size_t room, const std::string& data) {
        std::string buf(room, '\0');
        std::optional<std::size_t> got;
        timed->expires_after(5s);
        timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
            EXPECT_FALSE(ec) << ec.message();
            got = n;
        });
        io.restart();
        io.poll();  // the read is pending in the reactor
        if (!data.empty()) asio::write(peer, asio::buffer(data));
        run_until([&] { return got.has_value(); });
        EXPECT_TRUE(got);
        buf.resize(got.value_or(0));
        return buf;
    }
};

TEST(DrainingBuffer, MessageStartAfterAShortReadWaitsWithoutARecvThatFindsNothing) {
    if (!kDrainingReads) GTEST_SKIP() << "not this Asio version (draining_buffer.hpp)";
    Pair p;
    EXPECT_EQ(p.read_after_send(64, "HTTP/1.1 200 OK\r\n\r\n"), "HTTP/1.1 200 OK\r\n\r\n");
    // Like a kept-alive backend connection: the next answer comes after the read began.
    for (int i = 0; i < 3; ++i) {
        g_recv_calls = g_recv_would_block = 0;
        p.timed->next_read_starts_message();
        EXPECT_EQ(p.read_after_send(64, "next"), "next");
        EXPECT_EQ(g_recv_would_block, 0);  // before: 1 (the read tried at once)
        EXPECT_EQ(g_recv_calls, 1);
    }
}

TEST(DrainingBuffer, ReadWithinAMessageStillTriesAtOnce) {
    Pair p;
    EXPECT_EQ(p.read_after_send(64, "HTTP/1.1 200 OK\r\n"), "HTTP/1.1 200 OK\r\n");
    g_recv_calls = g_recv_would_block = 0;
    EXPECT_EQ(p.read_after_send(64, "\r\n"), "\r\n");
    EXPECT_EQ(g_recv_would_block, 1);  // as Asio does: the read is tried when it begins
    EXPECT_EQ(g_recv_calls, 2);
}

// The end of the stream that came with the last bytes raises no new event:
// a read within a message must still see it at once (a close-delimited body).
TEST(DrainingBuffer, EndOfStreamThatCameWithTheLastBytesIsSeenAtOnce) {
    Pair p;
    std::array<char, 64> buf{};
    std::optional<std::size_t> first;
    asio::write(p.peer, asio::buffer(std::string("last bytes")));
    p.peer.shutdown(tcp::socket::shutdown_send);
    asio::steady_timer settle(p.io, 50ms);  // both are queued before the first read
    bool settled = false;
    settle.async_wait([&](auto) { settled = true; });
    p.run_until([&] { return settled; });
    p.timed->expires_after(5s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
        EXPECT_FALSE(ec);
        first = n;
    });
    p.run_until([&] { return first.has_value(); });
    ASSERT_TRUE(first);
    EXPECT_EQ(std::string(buf.data(), *first), "last bytes");
    std::optional<boost::system::error_code> second;
    const auto start = Clock::now();
    p.timed->expires_after(5s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { second = ec; });
    p.run_until([&] { return second.has_value(); });
    ASSERT_TRUE(second);
    EXPECT_EQ(*second, asio::error::eof);
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST(DrainingBuffer, ReadThatFilledItsBufferLeavesTheRestReadableAtOnce) {
    Pair p;
    asio::write(p.peer, asio::buffer(std::string("0123456789abcdef0123")));
    EXPECT_EQ(p.read_after_send(16, ""), "0123456789abcdef");
    g_recv_calls = g_recv_would_block = 0;
    EXPECT_EQ(p.read_after_send(16, ""), "0123");  // no new byte, no new edge: read at once
    EXPECT_EQ(g_recv_would_block, 0);
}

TEST(DrainingBuffer, EndOfStreamAfterAShortReadIsSeen) {
    Pair p;
    EXPECT_EQ(p.read_after_send(64, "abc"), "abc");
    std::array<char, 64> buf{};
    std::optional<boost::system::error_code> got;
    p.timed->expires_after(5s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { got = ec; });
    p.io.restart();
    p.io.poll();
    p.peer.shutdown(tcp::socket::shutdown_send);
    p.run_until([&] { return got.has_value(); });
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, asio::error::eof);
}

TEST(DrainingBuffer, BytesThatCameWhileNoReadWasPendingAreRead) {
    Pair p;
    EXPECT_EQ(p.read_after_send(64, "first"), "first");
    asio::write(p.peer, asio::buffer(std::string("second")));  // its edge comes with no read pending
    std::array<char, 64> buf{};
    std::optional<std::size_t> got;
    p.io.restart();
    p.io.poll();  // the reactor sees the edge first
    p.timed->expires_after(5s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
        EXPECT_FALSE(ec);
        got = n;
    });
    p.run_until([&] { return got.has_value(); });
    ASSERT_TRUE(got);
    EXPECT_EQ(std::string(buf.data(), *got), "second");
}

// An accepted socket out of the reactor (reactor_registration.hpp) whose
// first read finds nothing: TimedSocket's own recv said so and the socket
// joined the reactor; the read then waits for the edge without Asio trying
// a second recv first, and still gets the bytes, whether they come later or
// came between that recv and the registration (epoll_ctl ADD reports a
// socket that is readable already).
TEST(DrainingBuffer, FirstReadOfAnUnregisteredSocketTriesOnce) {
    if (!kDrainingReads) GTEST_SKIP() << "not this Asio version (draining_buffer.hpp)";
    static tcp::socket* client_of_test = nullptr;
    for (const bool before_add : {false, true}) {
        asio::io_context io;
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        tcp::socket client(io);
        client.connect(acceptor.local_endpoint());
        const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        ASSERT_GE(fd, 0);
        TcpSocket s(io);
        ASSERT_FALSE(adopt_descriptor(s, fd, tcp::v4(), false));
        TimedSocket timed(std::move(s));
        g_watched_fd = fd;
        g_recv_calls = g_recv_would_block = 0;
        client_of_test = &client;
        if (before_add)  // the request comes right after TimedSocket's recv found nothing
            g_after_would_block = [] {
                asio::write(*client_of_test, asio::buffer(std::string_view("request")));
            };
        std::array<char, 64> buf{};
        std::optional<std::size_t> got;
        timed.expires_after(5s);
        timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
            EXPECT_FALSE(ec) << ec.message();
            got = n;
        });
        EXPECT_FALSE(unregistered(timed.socket()));
        EXPECT_EQ(g_recv_calls, 1);  // before: 2 (TimedSocket's, then Asio's as the read began)
        EXPECT_EQ(g_recv_would_block, 1);
        if (!before_add) {
            io.poll();
            EXPECT_FALSE(got);
            asio::write(client, asio::buffer(std::string_view("request")));
        }
        const auto until = Clock::now() + 5s;
        while (!got && Clock::now() < until) io.run_one_for(50ms);
        ASSERT_TRUE(got) << (before_add ? "bytes before the registration" : "bytes after it");
        EXPECT_EQ(std::string(buf.data(), *got), "request");
        EXPECT_EQ(g_recv_calls, 2);
        EXPECT_EQ(g_recv_would_block, 1);
        g_watched_fd = -1;
        client_of_test = nullptr;
    }
}

}  // namespace
}  // namespace tether::tls
