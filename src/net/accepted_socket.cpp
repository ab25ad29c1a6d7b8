// Accepting with accept4 and handing the socket to Asio; see accepted_socket.hpp.
#include "tether/net/accepted_socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/ip/address_v6.hpp>

namespace tether::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

#if defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) || defined(BOOST_ASIO_HAS_IOCP) || \
    defined(BOOST_ASIO_WINDOWS_RUNTIME)
#define TETHER_ASIO_REACTIVE_SOCKETS 0
#else
#define TETHER_ASIO_REACTIVE_SOCKETS 1
#endif

#if TETHER_ASIO_REACTIVE_SOCKETS
// Asio keeps, per socket, flags of what it knows about the descriptor
// (socket_ops::state_type). assign() sets `possible_dup` (close deregisters
// with epoll_ctl DEL first) and not `internal_non_blocking` (the first
// asynchronous operation makes it non-blocking with an ioctl). For a socket
// fresh from accept4(SOCK_NONBLOCK) both are known: it is non-blocking, and no
// other descriptor refers to its file (close-on-exec, never dup'ed). The flags
// live in the protected implementation of basic_socket, reached through a
// pointer to member formed in a derived class (the standard's way to name a
// protected member from outside). Written for Asio's reactive (epoll) sockets,
// Boost 1.81; other back-ends keep Asio's defaults (the #if above).
struct SocketFlags : tcp::socket {
    static asio::detail::socket_ops::state_type& of(tcp::socket& s) {
        return (s.*(&SocketFlags::impl_)).get_implementation().state_;
    }
};
#endif

// "a.b.c.d" without printf (glibc's inet_ntop formats IPv4 with sprintf).
void ipv4_text(const in_addr& a, std::string& out) {
    unsigned char b[4];
    std::memcpy(b, &a.s_addr, 4);  // network order: b[0] is the first number
    char text[16];
    char* p = text;
    for (int i = 0; i < 4; ++i) {
        unsigned v = b[i];
        if (v >= 100) {
            *p++ = static_cast<char>('0' + v / 100);
            v %= 100;
            *p++ = static_cast<char>('0' + v / 10);
        } else if (v >= 10) {
            *p++ = static_cast<char>('0' + v / 10);
        }
        *p++ = static_cast<char>('0' + v % 10);
        if (i < 3) *p++ = '.';
    }
    out.assign(text, static_cast<std::size_t>(p - text));
}

}  // namespace

bool accept_connection(int listen_fd, AcceptedConnection& out) {
    out.peer_len = sizeof out.peer;
    out.fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&out.peer), &out.peer_len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    return out.fd >= 0;
}

boost::system::error_code adopt_accepted(tcp::socket& socket, const AcceptedConnection& c) {
    boost::system::error_code ec;
    const tcp protocol = c.peer.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
    socket.assign(protocol, c.fd, ec);
    if (ec) {
        ::close(c.fd);
        return ec;
    }
#if TETHER_ASIO_REACTIVE_SOCKETS
    namespace ops = asio::detail::socket_ops;
    auto& flags = SocketFlags::of(socket);
    flags = static_cast<ops::state_type>((flags | ops::internal_non_blocking) & ~ops::possible_dup);
#endif
    return ec;
}

void peer_text(const sockaddr_storage& peer, std::string& address, std::uint16_t& port) {
    if (peer.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
        ipv4_text(in.sin_addr, address);
        port = ntohs(in.sin_port);
    } else if (peer.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(peer);
        asio::ip::address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), in6.sin6_addr.s6_addr, bytes.size());
        address = asio::ip::address_v6(bytes, in6.sin6_scope_id).to_string();
        port = ntohs(in6.sin6_port);
    } else {
        address.clear();
        port = 0;
    }
}

boost::system::error_code set_listener_no_delay(tcp::acceptor& acceptor) {
    boost::system::error_code ec;
    const int one = 1;
    if (::setsockopt(acceptor.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        ec.assign(errno, boost::system::system_category());
    return ec;
}

}  // namespace tether::net
