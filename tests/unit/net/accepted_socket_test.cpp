// Accepting with accept4 and adopting the socket into Asio (net/accepted_socket.hpp): the
// kernel behaviour it relies on (TCP_NODELAY inherited from the listening socket), the
// adopted socket working with Asio's reactor, its descriptor leaving the epoll set on a
// plain close (the same descriptor number adopted again), and the peer's address text.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "tether/net/accepted_socket.hpp"

namespace tether::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Listening {
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    Listening() { acceptor.native_non_blocking(true); }
    tcp::socket connect_client() {
        tcp::socket s(io);
        s.connect(acceptor.local_endpoint());
        return s;
    }
    AcceptedConnection take() {
        AcceptedConnection c;
        EXPECT_TRUE(accept_connection(acceptor.native_handle(), c)) << std::strerror(errno);
        return c;
    }
};

int no_delay(int fd) {
    int v = -1;
    socklen_t len = sizeof v;
    EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
    return v;
}

TEST(AcceptedSocket, NoDelayIsInheritedFromTheListeningSocket) {
    Listening l;
    auto c1 = l.connect_client();
    const auto before = l.take();
    EXPECT_EQ(no_delay(before.fd), 0);
    ASSERT_FALSE(set_listener_no_delay(l.acceptor));
    auto c2 = l.connect_client();
    const auto after = l.take();
    EXPECT_NE(no_delay(after.fd), 0);
    ::close(before.fd);
    ::close(after.fd);
}

TEST(AcceptedSocket, AcceptIsNonBlockingCloseOnExecAndGivesThePeer) {
    Listening l;
    AcceptedConnection none;
    EXPECT_FALSE(accept_connection(l.acceptor.native_handle(), none));
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
    auto client = l.connect_client();
    const auto c = l.take();
    EXPECT_NE(::fcntl(c.fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(c.fd, F_GETFD) & FD_CLOEXEC, 0);
    std::string address;
    std::uint16_t port = 0;
    peer_text(c.peer, address, port);
    EXPECT_EQ(address, "127.0.0.1");
    EXPECT_EQ(port, client.local_endpoint().port());
    ::close(c.fd);
}

// Echoes one message through the adopted socket with Asio's asynchronous operations,
// closes it, and adopts the next connection, which the kernel gives the same descriptor
// number: registering it again with the reactor (epoll_ctl ADD) succeeds only if the
// plain close took the first one out of the epoll set.
TEST(AcceptedSocket, AdoptedSocketWorksAndItsCloseLeavesTheEpollSet) {
    Listening l;
    int first_fd = -1;
    for (int round = 0; round < 3; ++round) {
        auto client = l.connect_client();
        const auto c = l.take();
        if (round == 0) first_fd = c.fd;
        EXPECT_EQ(c.fd, first_fd);
        TcpSocket server(l.io);
        ASSERT_FALSE(adopt_accepted(server, c, true));
        EXPECT_TRUE(server.native_non_blocking());
        EXPECT_EQ(server.remote_endpoint().port(), client.local_endpoint().port());
        std::string got(5, '\0');
        bool echoed = false;
        asio::async_read(server, asio::buffer(got), [&](boost::system::error_code ec, std::size_t) {
            ASSERT_FALSE(ec);
            asio::async_write(server, asio::buffer(got),
                              [&](boost::system::error_code wec, std::size_t) {
                                  EXPECT_FALSE(wec);
                                  echoed = true;
                              });
        });
        asio::write(client, asio::buffer(std::string("hello")));
        l.io.restart();
        l.io.run_for(std::chrono::seconds(5));
        ASSERT_TRUE(echoed);
        std::string back(5, '\0');
        asio::read(client, asio::buffer(back));
        EXPECT_EQ(back, "hello");
        server.close();
        // The client sees the end of the stream.
        char byte;
        boost::system::error_code ec;
        client.read_some(asio::buffer(&byte, 1), ec);
        EXPECT_EQ(ec, asio::error::eof);
    }
}

TEST(AcceptedSocket, PeerTextOfIpv4AndIpv6) {
    const char* v4[] = {"0.0.0.0", "9.10.99.100", "203.0.113.7", "255.255.255.255", "10.0.0.1"};
    for (const char* text : v4) {
        sockaddr_storage ss{};
        auto& in = reinterpret_cast<sockaddr_in&>(ss);
        in.sin_family = AF_INET;
        in.sin_port = htons(40000);
        ASSERT_EQ(::inet_pton(AF_INET, text, &in.sin_addr), 1);
        std::string address;
        std::uint16_t port = 0;
        peer_text(ss, address, port);
        EXPECT_EQ(address, text);
        EXPECT_EQ(port, 40000);
    }
    const char* v6[] = {"::1", "2001:db8::7", "::ffff:192.0.2.1", "fe80::1:2:3:4"};
    for (const char* text : v6) {
        sockaddr_storage ss{};
        auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(8443);
        ASSERT_EQ(::inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
        std::string address;
        std::uint16_t port = 0;
        peer_text(ss, address, port);
        EXPECT_EQ(address, asio::ip::make_address_v6(text).to_string());
        EXPECT_EQ(port, 8443);
    }
}

}  // namespace
}  // namespace tether::net
