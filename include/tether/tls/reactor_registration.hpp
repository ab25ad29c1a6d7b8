// Sockets that join Asio's reactor only when an operation would block
// (issue 9, the connection-per-request path).
//
// Asio registers a descriptor with its epoll set when it is opened or
// assigned (epoll_ctl ADD), and the kernel takes it out again when it is
// closed: a kernel object made and freed per connection. A client that sends
// its request at once and reads a small answer never needs the reactor: the
// request is there when the connection is accepted (under load it usually
// is), and the answer fits the socket's send buffer. HAProxy reads a new
// connection first and subscribes to epoll only when the read finds nothing;
// here an accepted socket is put into its tcp::socket unregistered
// (adopt_unregistered), and TimedSocket tries each read and write at once
// while it is so (receive_now / send_now); only one that would block
// registers it (register_socket) and goes through the reactor as usual.
//
// An unregistered socket is an ordinary open tcp::socket for every
// synchronous use (options, endpoints, shutdown, cancel, close, release);
// an Asio asynchronous operation started on it directly, not through
// TimedSocket, must call register_socket first (Asio would end it with
// bad_descriptor). Reaches into Asio's reactive socket implementation
// (Boost 1.81, epoll); on other back-ends adopt_unregistered registers at once.
// Threading: the socket's executor (the worker thread) only.
#pragma once

#include <sys/uio.h>

#include <cstddef>

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "tether/core/executor.hpp"

namespace tether::tls {

/// Puts `fd` (a connected TCP socket, non-blocking, close-on-exec, never
/// dup'ed: fresh from accept4) into the closed `socket`, registered with the
/// reactor when `now`, else left out of it. Asio knows the descriptor as
/// what it is: non-blocking, and closed with a plain close() (no epoll_ctl
/// DEL: the kernel drops a file from an epoll set when its last descriptor
/// closes). On an error `fd` is closed.
boost::system::error_code adopt_descriptor(TcpSocket& socket, int fd,
                                           const boost::asio::ip::tcp& protocol, bool now);

/// Open and not registered with its reactor.
bool unregistered(TcpSocket& socket);

/// Registers an unregistered socket with its reactor; nothing when it is
/// registered already or closed.
boost::system::error_code register_socket(TcpSocket& socket);

/// One non-blocking recvmsg into `v`: the bytes read, or 0 with `ec`
/// (would_block: nothing yet; eof: the peer's end of stream).
std::size_t receive_now(int fd, iovec* v, std::size_t n, boost::system::error_code& ec);

/// One non-blocking sendmsg of `v` (no SIGPIPE): the bytes written (maybe
/// fewer than offered), or 0 with `ec` (would_block: the send buffer is full).
std::size_t send_now(int fd, const iovec* v, std::size_t n, boost::system::error_code& ec);

/// Up to kMax iovecs of a buffer sequence (a longer one is taken in part: a
/// read or write of some bytes is what read_some / write_some promise).
struct IoVecs {
    static constexpr std::size_t kMax = 16;
    iovec v[kMax];
    std::size_t n = 0;
    std::size_t bytes = 0;

    template <class Buffers>
    explicit IoVecs(const Buffers& buffers) {
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != boost::asio::buffer_sequence_end(buffers) && n < kMax; ++it) {
            const auto b = *it;
            if (b.size() == 0) continue;
            v[n].iov_base = const_cast<void*>(static_cast<const void*>(b.data()));
            v[n].iov_len = b.size();
            bytes += b.size();
            ++n;
        }
    }
};

}  // namespace tether::tls
