// DrainingBuffer: one buffer to read a TCP socket into, whose read tells
// Asio's epoll reactor that the socket is drained when it returns fewer
// bytes than the buffer holds, so the next read waits for the next edge
// instead of first trying a recv(2) that returns EAGAIN.
//
// Asio registers each socket once, edge-triggered, and keeps per direction a
// "try speculatively" flag: an operation started while it is set first tries
// the syscall at once; the flag is cleared when an operation reports the
// socket exhausted and set again by every epoll event on it. Asio 1.26 marks
// a send that wrote less than asked as exhausted, but a receive only when it
// got 0 bytes. For a stream socket a read that got fewer bytes than asked
// has emptied the receive queue (tcp_recvmsg returns early only when the
// queue is empty), and any byte that comes later raises a new edge, which
// sets the flag again. So a proxied keep-alive exchange's two reads that find
// nothing (the client's next request, the backend's response) wait for their
// edge without a recv: ~0.95 recvfrom per request less (docs/benchmarks.md).
//
// Asio has no hook for it: the receive operation of this buffer type is an
// explicit specialization of Asio's reactive_socket_recv_op_base (the same
// members; only do_perform adds the short-read case). That class is Asio's
// detail, so the specialization is made only for the version it was written
// against (kDrainingReads); with another Asio the buffer is read as a plain
// mutable_buffer. Its recv is core::sys_recv (socket_calls.hpp), as
// TimedSocket's own reads and writes.
// Threading: none of its own (the socket's executor).
#pragma once

#include <cerrno>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/version.hpp>

#if BOOST_ASIO_VERSION == 102600  // Boost 1.81 (Debian 12)
#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>

#include "tether/core/socket_calls.hpp"
#define TETHER_DRAINING_READS 1
#else
#define TETHER_DRAINING_READS 0
#endif

namespace tether::tls {

/// True when reads into a DrainingBuffer mark a short read as draining.
inline constexpr bool kDrainingReads = TETHER_DRAINING_READS != 0;

/// A single mutable buffer (a MutableBufferSequence of one) read with the
/// short-read rule above.
///
/// `found_empty`: the caller has just tried a recv on the socket that found
/// nothing, and the socket has just joined the reactor (an accepted socket
/// that TimedSocket read at once, reactor_registration.hpp). Asio would try
/// the read once more as it begins (a new registration is marked "try at
/// once"); that try is skipped, and the read waits for the socket's edge.
/// No byte can be missed: epoll_ctl(ADD) reports a socket that became
/// readable before it as ready at once. Only for a socket whose io_context
/// one thread runs (every worker's): between the registration and the start
/// of this read no other thread may take an event of the socket from epoll.
class DrainingBuffer : public boost::asio::mutable_buffer {
public:
    explicit DrainingBuffer(boost::asio::mutable_buffer b, bool found_empty = false) noexcept
        : mutable_buffer(b), skip_try_(found_empty) {}
    /// True once: the try to skip (see above).
    bool take_skip() noexcept { return std::exchange(skip_try_, false); }

private:
    bool skip_try_;
};

}  // namespace tether::tls

#if TETHER_DRAINING_READS
namespace boost::asio::detail {

template <>
class reactive_socket_recv_op_base<tether::tls::DrainingBuffer> : public reactor_op {
public:
    reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                                 socket_ops::state_type state,
                                 const tether::tls::DrainingBuffer& buffers,
                                 socket_base::message_flags flags, func_type complete_func)
        : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
          socket_(socket), state_(state), buffers_(buffers), flags_(flags) {}

    static status do_perform(reactor_op* base) {
        auto* o = static_cast<reactive_socket_recv_op_base*>(base);
        if (o->buffers_.take_skip()) return not_done;  // the caller's recv found nothing
        const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
        if (!recv_once(o->socket_, o->buffers_.data(), o->buffers_.size(), o->flags_, stream,
                       o->ec_, o->bytes_transferred_))
            return not_done;  // EAGAIN: wait for the socket's edge
        // Asio's rule (0 bytes: the end or an error) and the short read.
        if (stream && (o->bytes_transferred_ == 0 ||
                       (!o->ec_ && o->bytes_transferred_ < o->buffers_.size())))
            return done_and_exhausted;
        return done;
    }

private:
    // socket_ops::non_blocking_recv1 with the recv made by
    // core::sys_recv (socket_calls.hpp: no cancellation-point wrapper):
    // false on EAGAIN; true with the bytes, eof (0 bytes on a stream) or
    // the error.
    static bool recv_once(socket_type s, void* data, std::size_t size, int flags, bool stream,
                          boost::system::error_code& ec, std::size_t& bytes) {
        for (;;) {
            const ssize_t n = tether::core::sys_recv(s, data, size, flags);
            if (n > 0 || (n == 0 && !stream)) {
                ec = boost::system::error_code();
                bytes = static_cast<std::size_t>(n);
                return true;
            }
            if (n == 0) {
                ec = boost::asio::error::eof;
                return true;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
            ec.assign(errno, boost::asio::error::get_system_category());
            bytes = 0;
            return true;
        }
    }

    socket_type socket_;
    socket_ops::state_type state_;
    tether::tls::DrainingBuffer buffers_;
    socket_base::message_flags flags_;
};

}  // namespace boost::asio::detail
#endif
