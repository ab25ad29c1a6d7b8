// The I/O steps of a body relay (relay.hpp), apart from its loop: read room
// for a long body in the source's flat_buffer (SourceRoom), a write that
// settles without suspending when the socket takes it all (write_at_once,
// then write_rest with the caller's deadline), and the errc a source's read
// error answers with (source_error). Also used by respond.cpp for the
// request head it writes itself.
// Threading: the caller's executor (one worker thread); nothing here is
// shared.
#pragma once

#include <cstddef>
#include <tuple>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include "tether/core/errors.hpp"
#include "tether/core/executor.hpp"
#include "tether/tls/send_queue.hpp"

namespace tether::http {

/// Room for the rest of a body that one read did not bring. Beast reads into
/// the source's flat_buffer only as much as its spare capacity (at least 512
/// bytes, at most 64 KiB), which is what reading the head left: a 1 MB body
/// would take one read(2) per ~512 bytes. For such a body the flat_buffer
/// gets kBulkReadRoom (or one relay buffer, if larger) of room, freed again
/// when the relay ends with nothing left in it, so an idle connection keeps
/// holding no more than before. One 64 KiB read then feeds four 16 KiB
/// pieces (parsed out of the flat_buffer without a read in between): a
/// quarter of the reads, and of the waits for the socket, per MiB.
inline constexpr std::size_t kBulkReadRoom = 64 * 1024;

class SourceRoom {
public:
    explicit SourceRoom(boost::beast::flat_buffer& b) : b_(b) {}
    SourceRoom(const SourceRoom&) = delete;
    SourceRoom& operator=(const SourceRoom&) = delete;
    ~SourceRoom() {
        if (grown_ && b_.size() == 0) b_.shrink_to_fit();
    }
    void grow(std::size_t n) {
        if (grown_ || b_.capacity() - b_.size() >= n) return;
        b_.reserve(b_.size() + n);
        grown_ = true;
    }

private:
    boost::beast::flat_buffer& b_;
    bool grown_ = false;
};

/// The start of asio::async_write without suspending the coroutine: what a
/// plain socket takes at once (tls::ClientStream::write_now, one sendmsg).
/// For a small message, the usual case, that is all of it, and the write
/// costs no completion posted and run through the scheduler. True when this
/// settled the write: `bytes` (all of `b`) written, or an error in `ec`.
/// False: `n` bytes went; write_rest() sends the rest (with a deadline).
/// With a send queue `q` (send_queue.hpp), a plain socket's write is queued
/// there instead (false, n 0): write_rest() waits for its result first, or
/// the caller does (queued_settled()).
template <class Stream, class Buffers>
bool write_at_once(Stream& s, const Buffers& b, std::size_t bytes, boost::system::error_code& ec,
                   std::size_t& n, tls::SendQueue* q = nullptr) {
    if constexpr (requires { s.queue_write(*q, b); }) {
        if (q && s.queue_write(*q, b)) {
            ec = {};
            n = 0;
            return false;
        }
    }
    n = s.write_now(b, ec);
    if (ec == boost::asio::error::would_block) {
        ec = {};
        return false;
    }
    return ec || n >= bytes;
}

/// The result of a write the send queue took (write_at_once with a queue):
/// true when it settled the write (all `bytes` went, or an error in `ec`);
/// false: `n` bytes went (none: the socket was full), write_rest() sends
/// the rest.
inline bool queued_settled(boost::system::error_code& ec, std::size_t& n, std::size_t bytes) {
    if (ec == boost::asio::error::would_block) {
        ec = {};
        n = 0;
        return false;
    }
    return ec || n >= bytes;
}

/// asio::async_write of `b` less its first `n` bytes (the count returned
/// includes them); after the result of a write queued, if one is.
template <class Stream, class Buffers>
Awaitable<std::tuple<boost::system::error_code, std::size_t>> write_rest(Stream& s,
                                                                         const Buffers& b,
                                                                         std::size_t n) {
    if constexpr (requires { s.send_queued(); }) {
        if (s.send_queued()) {
            auto [ec, m] = co_await s.async_queued_send(await_tuple);
            if (queued_settled(ec, m, boost::asio::buffer_size(b) - n)) co_return std::tuple(ec, n + m);
            n += m;
        }
    }
    boost::beast::buffers_suffix<Buffers> rest(b);
    rest.consume(n);
    auto [ec, m] = co_await boost::asio::async_write(s, rest, await_tuple);
    co_return std::tuple(ec, n + m);
}

inline errc source_error(const boost::beast::error_code& ec) {
    namespace bhttp = boost::beast::http;
    if (ec == bhttp::error::body_limit) return errc::body_too_large;
    if (ec == boost::beast::error::timeout) return errc::client_timeout;
    if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream ||
        ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
        ec == boost::asio::ssl::error::stream_truncated ||
        ec == boost::asio::error::operation_aborted)
        return errc::ok;
    return errc::bad_request;
}

}  // namespace tether::http
