// The socket calls of TimedSocket's hot paths go to the kernel through
// core::sys_* (socket_calls.hpp), never through glibc's recv / recvmsg /
// sendmsg wrappers (cancellation points: two atomic operations each) in
// normal builds; in sanitizer builds every one of them through glibc's, which
// ASan and TSan intercept. In this binary socket_call_counter.cpp's own
// recv / send / ... take the place of the sanitizers' interceptors, so what
// those see is proven in unit_core (socket_calls_test.cpp there).
// Counted by socket_call_counter.hpp's pass-through definitions on a real
// connected pair on 127.0.0.1, bounded waits.
#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "socket_call_counter.hpp"
#include "tether/core/socket_calls.hpp"
#include "timed_pair.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Watched : test::TimedPair {
    Watched() {
        timed->socket().non_blocking(true);
        g_watched_fd = timed->socket().native_handle();
        g_recv_calls = g_recv_would_block = g_send_calls = g_libc_socket_calls = 0;
    }
    ~Watched() { g_watched_fd = -1; }
};

TEST(SocketCalls, WritesAndReadsOfTimedSocketBypassGlibcWrappers) {
    Watched p;
    // write_now: one sendmsg.
    boost::system::error_code ec;
    const std::string hello = "hello";
    EXPECT_EQ(p.timed->write_now(asio::buffer(hello), ec), hello.size());
    EXPECT_FALSE(ec) << ec.message();
    std::array<char, 5> got{};
    asio::read(p.peer, asio::buffer(got));
    EXPECT_EQ(std::string(got.data(), got.size()), hello);

    // A read through the reactor (DrainingBuffer's recv): started before the
    // bytes come, so it tries once, waits, and reads them at the edge.
    std::array<char, 64> buf{};
    std::optional<std::size_t> n;
    p.timed->expires_after(5s);
    p.timed->async_read_some(asio::buffer(buf), [&](auto rec, std::size_t k) {
        EXPECT_FALSE(rec) << rec.message();
        n = k;
    });
    p.io.restart();
    p.io.poll();
    asio::write(p.peer, asio::buffer(std::string("abc")));
    p.run_until([&] { return n.has_value(); });
    ASSERT_EQ(n, 3u);

    // A read after that short read is tried at once (receive_now's recvmsg).
    asio::write(p.peer, asio::buffer(std::string("de")));
    n.reset();
    p.timed->async_read_some(asio::buffer(buf), [&](auto rec, std::size_t k) {
        EXPECT_FALSE(rec) << rec.message();
        n = k;
    });
    p.run_until([&] { return n.has_value(); });
    ASSERT_EQ(n, 2u);

    EXPECT_GE(g_send_calls, 1);
    EXPECT_GE(g_recv_calls, 3);
    if (core::kSocketCallsThroughLibc)  // ASan / TSan build: the interceptors see each call
        EXPECT_EQ(g_libc_socket_calls, g_send_calls + g_recv_calls);
    else
        EXPECT_EQ(g_libc_socket_calls, 0);  // before socket_calls.hpp: every one of them
}

}  // namespace
}  // namespace tether::tls
