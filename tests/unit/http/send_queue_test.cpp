// The worker's send queue (tls/send_queue.hpp) as the HTTP path uses it:
// write_at_once with the queue, then write_rest (relay_io.hpp), on real TCP
// sockets on 127.0.0.1. Writes of several connections queued in one batch go
// out in one io_uring_enter, each with its own result; a send the socket
// takes in part (or not at all) goes on with the asynchronous write; a socket
// closed or destroyed while its send is queued sends nothing (its number
// given to another socket gets none of the bytes); without io_uring, or when
// the kernel refuses the submission, the bytes are the same.
#include "tether/tls/send_queue.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>

#include "../../../src/http/relay_io.hpp"
#include "tether/tls/timed_socket.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct Conn {
    std::optional<TimedSocket> timed;
    tcp::socket peer;
    explicit Conn(asio::io_context& io) : peer(io) {}
};

struct Fixture {
    asio::io_context io;
    tcp::acceptor acc{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    std::vector<std::unique_ptr<Conn>> conns;

    Conn& connect() {
        auto c = std::make_unique<Conn>(io);
        TcpSocket client(io);
        client.connect(acc.local_endpoint());
        acc.accept(c->peer);
        c->timed.emplace(std::move(client));
        conns.push_back(std::move(c));
        return *conns.back();
    }
    template <class Done>
    void run_until(Done done) {
        const auto until = std::chrono::steady_clock::now() + 10s;
        io.restart();
        while (!done() && std::chrono::steady_clock::now() < until) io.run_one_for(50ms);
    }
};

struct Result {
    bool done = false;
    bool queued = false;
    boost::system::error_code ec;
    std::size_t n = 0;
    std::optional<boost::system::error_code> first_ec;  // of the queued send (write_in_steps)
    std::size_t first = 0;
};

// A whole message's write as respond.cpp makes it (head and body).
Awaitable<void> write_whole(TimedSocket& s, std::array<asio::const_buffer, 2> b, SendQueue* q,
                            Result& r) {
    const std::size_t bytes = asio::buffer_size(b);
    if (!http::write_at_once(s, b, bytes, r.ec, r.n, q)) {
        r.queued = s.send_queued();
        std::tie(r.ec, r.n) = co_await http::write_rest(s, b, r.n);
    }
    r.done = true;
}

// The same in forward.cpp's steps: the queued send's result awaited in the
// caller's frame (kept in r.first_ec / r.first), then write_rest for the rest.
Awaitable<void> write_in_steps(TimedSocket& s, std::array<asio::const_buffer, 2> b, SendQueue& q,
                               Result& r) {
    const std::size_t bytes = asio::buffer_size(b);
    EXPECT_FALSE(http::write_at_once(s, b, bytes, r.ec, r.n, &q));
    r.queued = s.send_queued();
    if (r.queued) {
        std::tie(r.ec, r.n) = co_await s.async_queued_send(await_tuple);
        r.first_ec = r.ec;
        r.first = r.n;
        if (!http::queued_settled(r.ec, r.n, bytes))
            std::tie(r.ec, r.n) = co_await http::write_rest(s, b, r.n);
    }
    r.done = true;
}

std::string read_exactly(tcp::socket& peer, std::size_t n) {
    std::string got(n, '\0');
    asio::read(peer, asio::buffer(got));
    return got;
}

// Nothing there to read (the socket is non-blocking for this).
bool nothing_to_read(tcp::socket& peer) {
    char c;
    return ::recv(peer.native_handle(), &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

TEST(SendQueue, WritesOfSeveralConnectionsInOneBatchGoOutInOneSubmission) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    constexpr int kConns = 8;
    std::vector<std::string> heads, bodies;
    std::vector<Result> results(kConns);
    for (int i = 0; i < kConns; ++i) {
        f.connect();
        heads.push_back("HTTP/1.1 200 OK\r\nX-Conn: " + std::to_string(i) + "\r\n\r\n");
        bodies.push_back(std::string(100 + i, static_cast<char>('a' + i)));
    }
    for (int i = 0; i < kConns; ++i)
        asio::co_spawn(f.io,
                       write_whole(*f.conns[i]->timed, {asio::buffer(heads[i]), asio::buffer(bodies[i])},
                                   &q, results[i]),
                       asio::detached);
    f.run_until([&] {
        for (const auto& r : results)
            if (!r.done) return false;
        return true;
    });
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    EXPECT_EQ(q.ring()->enters(), 1u);
    EXPECT_EQ(q.sends_queued(), static_cast<std::uint64_t>(kConns));
    for (int i = 0; i < kConns; ++i) {
        EXPECT_TRUE(results[i].done);
        EXPECT_TRUE(results[i].queued);
        EXPECT_FALSE(results[i].ec) << results[i].ec.message();
        EXPECT_EQ(results[i].n, heads[i].size() + bodies[i].size());
        EXPECT_EQ(read_exactly(f.conns[i]->peer, results[i].n), heads[i] + bodies[i]);
        EXPECT_TRUE(nothing_to_read(f.conns[i]->peer));  // once, not twice
    }
}

// A send the socket takes in part: the rest goes by the asynchronous write
// while the peer reads, and every byte arrives once, in order.
TEST(SendQueue, AShortSendGoesOnWithTheAsynchronousWrite) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    Conn& c = f.connect();
    // More than a socket's largest send buffer (net.ipv4.tcp_wmem's 4 MiB):
    // tiny buffers would make loopback TCP crawl (a delayed ACK per segment).
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n";
    std::string body(8 * 1024 * 1024, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('A' + i % 53);
    Result r;
    asio::co_spawn(f.io, write_in_steps(*c.timed, {asio::buffer(head), asio::buffer(body)}, q, r),
                   asio::detached);
    std::string got(head.size() + body.size(), '\0');
    bool read_done = false;
    asio::async_read(c.peer, asio::buffer(got), [&](auto ec, std::size_t) {
        EXPECT_FALSE(ec);
        read_done = true;
    });
    f.run_until([&] { return r.done && read_done; });
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    ASSERT_TRUE(r.queued);
    ASSERT_TRUE(r.first_ec);
    EXPECT_FALSE(*r.first_ec) << r.first_ec->message();
    EXPECT_GT(r.first, 0u);
    EXPECT_LT(r.first, head.size() + body.size());  // in part
    EXPECT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.n, head.size() + body.size());
    ASSERT_TRUE(read_done);
    EXPECT_TRUE(got == head + body);
}

// A socket already full: the queued send answers would_block with nothing
// sent, and the whole message goes by the asynchronous write.
TEST(SendQueue, ASendToAFullSocketIsNotWaitedForAndGoesOnAsynchronously) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    Conn& c = f.connect();
    c.timed->socket().set_option(asio::socket_base::send_buffer_size(4096));
    c.peer.set_option(asio::socket_base::receive_buffer_size(4096));
    std::string filler(64 * 1024, 'f');
    std::size_t filled = 0;
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = c.timed->write_now(asio::buffer(filler), ec);
        if (ec) {
            ASSERT_EQ(ec, asio::error::would_block);
            break;
        }
        filled += n;
    }
    const std::string head = "head|", body = "body";
    Result r;
    asio::co_spawn(f.io, write_in_steps(*c.timed, {asio::buffer(head), asio::buffer(body)}, q, r),
                   asio::detached);
    f.run_until([&] { return r.first_ec.has_value() || r.done; });
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    ASSERT_TRUE(r.first_ec);
    EXPECT_EQ(*r.first_ec, asio::error::would_block);
    EXPECT_EQ(r.first, 0u);
    EXPECT_FALSE(r.done);  // waiting for room
    std::string got(filled + head.size() + body.size(), '\0');
    bool read_done = false;
    asio::async_read(c.peer, asio::buffer(got), [&](auto, std::size_t) { read_done = true; });
    f.run_until([&] { return r.done && read_done; });
    EXPECT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.n, head.size() + body.size());
    EXPECT_EQ(got.substr(filled), head + body);
}

// A socket closed while its send is queued, its descriptor number then given
// to a new connection: the send fails with bad_descriptor at the flush, and
// the new connection gets none of its bytes.
TEST(SendQueue, ASocketClosedWhileItsSendIsQueuedSendsNothing) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    Conn& a = f.connect();
    const std::string msg = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_TRUE(a.timed->queue_write(q, asio::buffer(msg)) || !q.ring());
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    const int fd = a.timed->socket().native_handle();
    a.timed->socket().close();  // e.g. its deadline passed: TimedSocket closes it
    Conn& b = f.connect();      // the lowest free number: a's
    ASSERT_EQ(b.timed->socket().native_handle(), fd);
    std::optional<boost::system::error_code> got;
    auto waiter = [&]() -> Awaitable<void> {
        auto [ec, n] = co_await a.timed->async_queued_send(await_tuple);
        EXPECT_EQ(n, 0u);
        got = ec;
    };
    asio::co_spawn(f.io, waiter(), asio::detached);
    f.run_until([&] { return got.has_value(); });
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, asio::error::bad_descriptor);
    EXPECT_TRUE(nothing_to_read(b.peer));
    EXPECT_FALSE(a.timed->send_queued());
}

// The owner gone while its send is queued (its TimedSocket destroyed, the
// socket closed): the queue's reference keeps the state alive until the
// flush, which sends nothing.
TEST(SendQueue, ASocketDestroyedWhileItsSendIsQueuedSendsNothing) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    Conn& a = f.connect();
    const std::string msg = "bytes nobody should get";
    ASSERT_TRUE(a.timed->queue_write(q, asio::buffer(msg)) || !q.ring());
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    a.timed.reset();
    Conn& b = f.connect();
    f.run_until([&] { return q.queued() == 0; });
    EXPECT_EQ(q.queued(), 0u);
    EXPECT_TRUE(nothing_to_read(b.peer));
    char c;  // a's peer sees the end of the stream, none of the bytes
    boost::system::error_code ec;
    a.peer.read_some(asio::buffer(&c, 1), ec);
    EXPECT_EQ(ec, asio::error::eof);
}

// Queued sends never flushed (the worker's shutdown): abandon() frees their
// waiting coroutines and sends nothing.
TEST(SendQueue, AbandonFreesTheWaitingCoroutines) {
    Fixture f;
    SendQueue q(f.io.get_executor());
    Conn& a = f.connect();
    const std::string head = "h", body = "b";
    auto frame_gone = std::make_shared<bool>(false);
    struct Guard {
        std::shared_ptr<bool> flag;
        ~Guard() { *flag = true; }
    };
    Result r;
    auto writer = [&](std::shared_ptr<bool> flag) -> Awaitable<void> {
        Guard g{std::move(flag)};
        co_await write_whole(*a.timed, {asio::buffer(head), asio::buffer(body)}, &q, r);
    };
    asio::co_spawn(f.io, writer(frame_gone), asio::detached);
    f.io.restart();
    while (q.queued() == 0 && f.io.run_one_for(50ms) > 0) {}
    if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
    ASSERT_EQ(q.queued(), 1u);
    EXPECT_FALSE(*frame_gone);
    q.abandon();  // Asio unwinds the coroutine's frames through the executor
    f.run_until([&] { return *frame_gone; });
    EXPECT_TRUE(*frame_gone);
    EXPECT_FALSE(r.done);
    EXPECT_EQ(q.queued(), 0u);
    EXPECT_TRUE(nothing_to_read(a.peer));  // the posted flush found nothing to send
}

// Without io_uring (the queue off), or with the submission refused by the
// kernel (each send then made with sendmsg): the same bytes and results.
class SendQueueFallback : public ::testing::TestWithParam<bool> {};

TEST_P(SendQueueFallback, RelaysTheSame) {
    const bool refused = GetParam();
    Fixture f;
    SendQueue q(f.io.get_executor(), /*enabled=*/refused);
    constexpr int kConns = 4;
    std::vector<std::string> heads, bodies;
    std::vector<Result> results(kConns);
    for (int i = 0; i < kConns; ++i) {
        f.connect();
        heads.push_back("POST /" + std::to_string(i) + " HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        bodies.push_back("body" + std::to_string(i));
    }
    for (int i = 0; i < kConns; ++i)
        asio::co_spawn(f.io,
                       write_whole(*f.conns[i]->timed, {asio::buffer(heads[i]), asio::buffer(bodies[i])},
                                   &q, results[i]),
                       asio::detached);
    f.io.restart();
    while (q.queued() < kConns && !results[0].done && f.io.run_one_for(50ms) > 0) {}
    if (refused) {
        if (!q.ring()) GTEST_SKIP() << "io_uring not available here";
        ASSERT_EQ(q.queued(), static_cast<std::size_t>(kConns));
        q.ring()->fail_next_enter(EBUSY);
    }
    f.run_until([&] {
        for (const auto& r : results)
            if (!r.done) return false;
        return true;
    });
    if (refused) EXPECT_EQ(q.ring()->enters(), 0u);
    else EXPECT_EQ(q.ring(), nullptr);
    for (int i = 0; i < kConns; ++i) {
        EXPECT_TRUE(results[i].done);
        EXPECT_EQ(results[i].queued, refused);
        EXPECT_FALSE(results[i].ec);
        EXPECT_EQ(results[i].n, heads[i].size() + bodies[i].size());
        EXPECT_EQ(read_exactly(f.conns[i]->peer, results[i].n), heads[i] + bodies[i]);
        EXPECT_TRUE(nothing_to_read(f.conns[i]->peer));
    }
}

INSTANTIATE_TEST_SUITE_P(OffOrRefused, SendQueueFallback, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Refused" : "Off"; });

}  // namespace
}  // namespace tether::tls
