// Sockets that join the reactor only when an operation would block
// (tls/reactor_registration.hpp) and TimedSocket over them: what is in the
// io_context's epoll set is read from /proc/self/fdinfo (the kernel's own
// list of the descriptors an epoll instance watches). Real sockets on
// 127.0.0.1, bounded waits.
#include "tether/tls/reactor_registration.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "tether/core/coarse_clock.hpp"
#include "tether/tls/timed_socket.hpp"

namespace tether::tls {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Whether `fd` is watched by an epoll instance of this process.
bool in_an_epoll_set(int fd) {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return false;
    bool found = false;
    while (dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        char target[64] = {};
        const std::string link = "/proc/self/fd/" + name;
        if (::readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
        if (std::string(target) != "anon_inode:[eventpoll]") continue;
        std::ifstream info("/proc/self/fdinfo/" + name);
        std::string word;
        while (info >> word)
            if (word == "tfd:") {
                int watched = -1;
                info >> watched;
                if (watched == fd) found = true;
            }
    }
    ::closedir(dir);
    return found;
}

struct Accepted {
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    tcp::socket client{io};
    int fd = -1;

    Accepted() {
        client.connect(acceptor.local_endpoint());
        fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        EXPECT_GE(fd, 0);
    }
    template <class Done>
    void run_until(Done done) {
        const auto until = Clock::now() + 5s;
        io.restart();
        while (!done() && Clock::now() < until) io.run_one_for(50ms);
    }
};

TEST(ReactorRegistration, AdoptedNowIsInTheEpollSetDeferredIsNot) {
    Accepted a;
    TcpSocket now(a.io);
    ASSERT_FALSE(adopt_descriptor(now, a.fd, tcp::v4(), true));
    EXPECT_TRUE(now.is_open());
    EXPECT_FALSE(unregistered(now));
    EXPECT_TRUE(in_an_epoll_set(a.fd));

    Accepted b;
    TcpSocket later(b.io);
    ASSERT_FALSE(adopt_descriptor(later, b.fd, tcp::v4(), false));
    EXPECT_TRUE(later.is_open());
    EXPECT_TRUE(unregistered(later));
    EXPECT_FALSE(in_an_epoll_set(b.fd));
    // Synchronous use needs no reactor.
    EXPECT_EQ(later.remote_endpoint().port(), b.client.local_endpoint().port());
    EXPECT_TRUE(later.native_non_blocking());
    ASSERT_FALSE(register_socket(later));
    EXPECT_FALSE(unregistered(later));
    EXPECT_TRUE(in_an_epoll_set(b.fd));
    ASSERT_FALSE(register_socket(later));  // once is enough
}

// A request that is there and an answer that fits: TimedSocket reads and
// writes without the reactor, and the socket never joins the epoll set.
TEST(ReactorRegistration, ReadyReadAndWriteNeverRegister) {
    Accepted a;
    TcpSocket s(a.io);
    ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
    TimedSocket timed(std::move(s));
    asio::write(a.client, asio::buffer(std::string("request")));
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> read_ec, write_ec;
    std::size_t got = 0;
    timed.expires_after(1s);
    timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
        read_ec = ec;
        got = n;
    });
    a.run_until([&] { return read_ec.has_value(); });
    ASSERT_TRUE(read_ec);
    EXPECT_FALSE(*read_ec);
    EXPECT_EQ(std::string(buf.data(), got), "request");
    asio::async_write(timed, asio::buffer(std::string_view("answer")),
                      [&](auto ec, std::size_t) { write_ec = ec; });
    a.run_until([&] { return write_ec.has_value(); });
    ASSERT_TRUE(write_ec);
    EXPECT_FALSE(*write_ec);
    std::string back(6, '\0');
    asio::read(a.client, asio::buffer(back));
    EXPECT_EQ(back, "answer");
    EXPECT_TRUE(unregistered(timed.socket()));
    EXPECT_FALSE(in_an_epoll_set(a.fd));
    // The end of the stream, read at once.
    a.client.shutdown(tcp::socket::shutdown_send);
    std::optional<boost::system::error_code> eof;
    timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { eof = ec; });
    a.run_until([&] { return eof.has_value(); });
    ASSERT_TRUE(eof);
    EXPECT_EQ(*eof, asio::error::eof);
}

// Every completion TimedSocket delivers runs in a core::ClockScope, the one
// done at once (unregistered socket) as the one through the reactor: the
// code it resumes reads the clock once, and a deadline it sets counts from
// that read (coarse_clock.hpp).
TEST(ReactorRegistration, CompletionsReadTheClockOnce) {
    Accepted a;
    TcpSocket s(a.io);
    ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
    TimedSocket timed(std::move(s));
    std::array<char, 16> buf{};
    // At once (the bytes are there) and through the reactor (they come later).
    for (const bool at_once : {true, false}) {
        if (at_once) asio::write(a.client, asio::buffer(std::string("x")));
        std::optional<boost::system::error_code> read_ec;
        Clock::time_point first, second, outside;
        timed.expires_after(1s);
        timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) {
            read_ec = ec;
            first = core::coarse_now();
            std::this_thread::sleep_for(2ms);
            second = core::coarse_now();
            timed.expires_after(1s);  // from `first`
        });
        if (!at_once) {  // nothing yet: the read joined the reactor and waits there
            EXPECT_FALSE(unregistered(timed.socket()));
            asio::write(a.client, asio::buffer(std::string("y")));
        }
        a.run_until([&] { return read_ec.has_value(); });
        outside = core::coarse_now();
        ASSERT_TRUE(read_ec);
        EXPECT_FALSE(*read_ec);
        EXPECT_EQ(first, second) << (at_once ? "at once" : "through the reactor");
        EXPECT_GE(outside - first, 2ms);  // no scope left open
    }
}

// Nothing to read yet: the read registers the socket and completes through
// the reactor when the bytes come; its deadline still applies afterwards.
TEST(ReactorRegistration, ReadThatWouldBlockRegistersAndWaits) {
    Accepted a;
    TcpSocket s(a.io);
    ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
    TimedSocket timed(std::move(s));
    std::array<char, 16> buf{};
    std::optional<boost::system::error_code> first;
    std::size_t got = 0;
    timed.expires_after(5s);
    timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t n) {
        first = ec;
        got = n;
    });
    asio::steady_timer later(a.io, 100ms);
    later.async_wait([&](auto) { asio::write(a.client, asio::buffer(std::string("late"))); });
    a.run_until([&] { return first.has_value(); });
    ASSERT_TRUE(first);
    EXPECT_FALSE(*first);
    EXPECT_EQ(std::string(buf.data(), got), "late");
    EXPECT_FALSE(unregistered(timed.socket()));
    EXPECT_TRUE(in_an_epoll_set(a.fd));
    std::optional<boost::system::error_code> second;
    timed.expires_after(100ms);
    timed.async_read_some(asio::buffer(buf), [&](auto ec, std::size_t) { second = ec; });
    a.run_until([&] { return second.has_value(); });
    ASSERT_TRUE(second);
    EXPECT_EQ(*second, boost::beast::error::timeout);
}

// A write larger than the socket's buffers: the part that fits goes at once,
// the rest through the reactor once the peer reads.
TEST(ReactorRegistration, WriteThatWouldBlockRegistersAndFinishes) {
    Accepted a;
    TcpSocket s(a.io);
    ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
    TimedSocket timed(std::move(s));
    const std::string big(16 << 20, 'x');
    std::optional<boost::system::error_code> wrote;
    std::size_t sent = 0;
    timed.expires_after(5s);
    asio::async_write(timed, asio::buffer(big), [&](auto ec, std::size_t n) {
        wrote = ec;
        sent = n;
    });
    a.run_until([&] { return !unregistered(timed.socket()); });
    EXPECT_TRUE(in_an_epoll_set(a.fd));
    std::string back(big.size(), '\0');
    std::size_t read = 0;
    std::array<char, 65536> chunk{};
    const auto until = Clock::now() + 10s;
    while (read < big.size() && Clock::now() < until) {
        a.io.poll();
        boost::system::error_code ec;
        a.client.non_blocking(true);
        const std::size_t n = a.client.read_some(asio::buffer(chunk), ec);
        if (!ec) read += n;
    }
    a.run_until([&] { return wrote.has_value(); });
    EXPECT_EQ(read, big.size());
    ASSERT_TRUE(wrote);
    EXPECT_FALSE(*wrote);
    EXPECT_EQ(sent, big.size());
}

// The coroutine tunnel and anything else that starts Asio's operations on
// the socket itself registers it first; an Asio operation then works.
TEST(ReactorRegistration, JoinReactorBeforeAsioOperations) {
    Accepted a;
    TcpSocket s(a.io);
    ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
    TimedSocket timed(std::move(s));
    ASSERT_FALSE(timed.join_reactor());
    EXPECT_TRUE(in_an_epoll_set(a.fd));
    std::optional<boost::system::error_code> waited;
    timed.socket().async_wait(tcp::socket::wait_read, [&](auto ec) { waited = ec; });
    asio::write(a.client, asio::buffer(std::string("x")));
    a.run_until([&] { return waited.has_value(); });
    ASSERT_TRUE(waited);
    EXPECT_FALSE(*waited);
}

// Closing an unregistered socket is a plain close: the same descriptor
// number, accepted again, registers fine (nothing stale in the epoll set).
TEST(ReactorRegistration, CloseOfAnUnregisteredSocketAndReuseOfItsNumber) {
    Accepted a;
    const int first = a.fd;
    tcp::socket c2(a.io);  // its descriptor taken before `first` is free again
    c2.connect(a.acceptor.local_endpoint());
    {
        TcpSocket s(a.io);
        ASSERT_FALSE(adopt_descriptor(s, a.fd, tcp::v4(), false));
        s.close();
    }
    char byte;
    boost::system::error_code ec;
    a.client.read_some(asio::buffer(&byte, 1), ec);
    EXPECT_EQ(ec, asio::error::eof);
    const int fd = ::accept4(a.acceptor.native_handle(), nullptr, nullptr,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_EQ(fd, first);
    TcpSocket again(a.io);
    ASSERT_FALSE(adopt_descriptor(again, fd, tcp::v4(), false));
    ASSERT_FALSE(register_socket(again));
    EXPECT_TRUE(in_an_epoll_set(fd));
}

}  // namespace
}  // namespace tether::tls
