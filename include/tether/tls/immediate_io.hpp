// TimedSocket's (timed_socket.hpp) reads and writes done at once, without
// Asio's reactor: one non-blocking recvmsg or sendmsg (receive_now /
// send_now, reactor_registration.hpp) on a socket not registered yet, and
// write_now's try on any socket. An operation so done completes through the
// executor's queue, as after Asio's own speculative read or write; one that
// would block registers the socket and goes through Asio as usual.
// Threading: the socket's executor (one worker thread) only.
#pragma once

#include <boost/asio/append.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "tether/tls/reactor_registration.hpp"
#include "tether/tls/timed_completion.hpp"
#include "tether/tls/timed_socket_state.hpp"

namespace tether::tls {

/// Writes what the socket of `s` takes at once of `buffers` (one
/// non-blocking sendmsg): the bytes written, or 0 with `ec` (would_block:
/// none taken, or a write is pending).
template <class ConstBuffers>
inline std::size_t write_now(TimedSocketState& s, const ConstBuffers& buffers,
                             boost::system::error_code& ec) {
    IoVecs io(buffers);
    if (s.dir[TimedSocketState::kWrite].pending || s.send_slot != 0 || s.send_done) {
        ec = boost::asio::error::would_block;
        return 0;
    }
    ec = {};
    return io.bytes > 0 ? send_now(s.socket.native_handle(), io.v, io.n, ec) : 0;
}

/// Completes `handler` with (ec, n) from the executor's queue, as an
/// operation of no direction (nothing begun, nothing to end).
template <class Handler>
inline void complete_now(const TimedSocketRef& s, Handler&& handler, boost::system::error_code ec,
                         std::size_t n) {
    boost::asio::post(
        s->socket.get_executor(),
        boost::asio::append(TimedCompletion<std::decay_t<Handler>>(
                                s, TimedSocketState::kNoDirection, std::forward<Handler>(handler)),
                            ec, n));
}

/// One non-blocking try of the operation (receive_now / send_now) without
/// the reactor: true when it completed `handler` (bytes, an error, or the
/// failure to join the reactor); false when it would block and the socket
/// is now registered, so the caller goes through Asio as usual.
template <class Buffers, class Io, class Handler>
inline bool done_now(const TimedSocketRef& s, const Buffers& b, Io io_now, Handler& handler) {
    IoVecs io(b);
    boost::system::error_code ec;
    std::size_t n = 0;
    if (io.bytes > 0) n = io_now(s->socket.native_handle(), io.v, io.n, ec);
    if (ec != boost::asio::error::would_block) {
        complete_now(s, std::move(handler), ec, n);
        return true;
    }
    if ((ec = s->join_reactor())) {
        complete_now(s, std::move(handler), ec, 0);
        return true;
    }
    return false;
}

}  // namespace tether::tls
