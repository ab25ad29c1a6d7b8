// Accepting with accept4 and handing the socket to Asio; see accepted_socket.hpp.
#include "tether/net/accepted_socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/ip/address_v6.hpp>

#include "tether/tls/reactor_registration.hpp"

namespace tether::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

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

boost::system::error_code adopt_accepted(TcpSocket& socket, const AcceptedConnection& c,
                                         bool register_now) {
    const tcp protocol = c.peer.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
    return tls::adopt_descriptor(socket, c.fd, protocol, register_now);
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

boost::system::error_code set_listener_no_delay(int listen_fd) {
    boost::system::error_code ec;
    const int one = 1;
    if (::setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        ec.assign(errno, boost::system::system_category());
    return ec;
}

}  // namespace tether::net
