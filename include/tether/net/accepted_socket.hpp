// Taking client connections off a listening socket for as few system calls as
// the kernel allows (issue 9, the connection-per-request path):
// - accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC gives the socket non-blocking and
//   the peer's address with it: no ioctl(FIONBIO) before the first read, no
//   getpeername;
// - the socket is handed to Asio marked as what it is, non-blocking and never
//   duplicated, so closing it is a plain close(): the kernel drops a file from
//   an epoll set when its last descriptor closes, and Asio otherwise issues an
//   epoll_ctl(DEL) first for a socket it did not open itself (it must assume a
//   dup() could keep the file alive);
// - on a plain listener it is not registered with the reactor (no epoll_ctl
//   ADD) until a read or write would block (tls/reactor_registration.hpp): a
//   request that is there at once, answered at once, never costs one;
// - TCP_NODELAY is set once on the listening socket: Linux copies it into every
//   socket accepted from it (tested in tests/unit/net/accepted_socket_test.cpp).
// Linux only, as the rest of tether (epoll, SO_REUSEPORT).
// Threading: plain functions; a socket is adopted on the thread that runs its
// executor.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "tether/core/executor.hpp"

namespace tether::net {

/// One connection taken by accept4: its descriptor and its peer.
struct AcceptedConnection {
    int fd = -1;
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(sockaddr_storage);
};

/// accept4(listen_fd) non-blocking and close-on-exec. False with `errno` set
/// when there is none (EAGAIN) or on an error.
bool accept_connection(int listen_fd, AcceptedConnection& out);

/// Wraps `c.fd` in `socket`, registered with the executor's reactor when
/// `register_now`, else when an operation through tls::TimedSocket first
/// would block (a socket used with Asio directly must be registered now).
/// Afterwards `socket` owns the descriptor; on an error it is closed.
boost::system::error_code adopt_accepted(TcpSocket& socket, const AcceptedConnection& c,
                                         bool register_now);

/// The peer's address as text ("203.0.113.7", or as Asio writes an IPv6
/// address) and its port. IPv4 is formatted here without printf.
void peer_text(const sockaddr_storage& peer, std::string& address, std::uint16_t& port);

/// Sets TCP_NODELAY on a listening socket, for the sockets accepted from it.
boost::system::error_code set_listener_no_delay(int listen_fd);
inline boost::system::error_code set_listener_no_delay(boost::asio::ip::tcp::acceptor& acceptor) {
    return set_listener_no_delay(acceptor.native_handle());
}

}  // namespace tether::net
