// Reading HTTP messages into a parser (Beast's, or ResponseParser, which has
// the same put/put_eof interface) from a tls::ClientStream: what
// http::async_read_header and http::async_read_some do, as plain coroutines.
// Beast's versions are composed operations (async_compose with executor work
// guards, type-erased executor copies, and a post through the scheduler when
// the buffer already held what was needed, which for a keep-alive request is
// the usual case): per request that was a sizeable share of the proxy's
// instructions and of its handler allocations. Same results and error codes
// as Beast's (end_of_stream for a clean end before any byte, put_eof's
// verdict after some, buffer_overflow when the buffer cannot grow).
// Threading: the caller's coroutine (one worker thread).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include "tether/core/executor.hpp"

namespace tether::http {

/// Parses the bytes `b` holds into `p`. False when the parser needs more
/// (ec cleared): read, then parse again.
template <class Parser>
bool parse_buffered(boost::beast::flat_buffer& b, Parser& p,
                    boost::beast::error_code& ec, std::size_t& used) {
    if (b.size() == 0) return false;
    const std::size_t n = p.put(b.data(), ec);
    used += n;
    b.consume(n);
    if (ec != boost::beast::http::error::need_more) return true;
    ec = {};
    return false;
}

/// Room for the next read (Beast's read_size, at most 64 KiB); ec =
/// buffer_overflow when the buffer is at its limit.
inline boost::asio::mutable_buffer read_room(boost::beast::flat_buffer& b,
                                             boost::beast::error_code& ec) {
    const std::size_t size = boost::beast::read_size(b, 65536);
    if (size == 0) {
        ec = boost::beast::http::error::buffer_overflow;
        return {};
    }
    try {
        return b.prepare(size);
    } catch (const std::length_error&) {
        ec = boost::beast::http::error::buffer_overflow;
        return {};
    }
}

/// After a read of `n` bytes that ended with `rec`: commits them; the end of
/// the stream goes to the parser as Beast does (end_of_stream before any
/// byte, else put_eof's verdict). True when the read settled the message.
template <class Parser>
bool after_read(boost::beast::flat_buffer& b, Parser& p,
                const boost::beast::error_code& rec, std::size_t n, boost::beast::error_code& ec) {
    b.commit(n);
    if (rec == boost::asio::error::eof) {
        ec = {};
        if (p.got_some()) p.put_eof(ec);
        else ec = boost::beast::http::error::end_of_stream;
        return true;
    }
    ec = rec;
    return static_cast<bool>(ec);
}

/// What read_header (`header`) or read_some does before its first read,
/// without a coroutine: parses what `b` holds. True when that settled the
/// call, its result in `ec` and `used`; false: co_await the coroutine,
/// passing `used` on (it parses again first, finds the parser still short of
/// bytes, and reads). A keep-alive request's head is usually all in the
/// buffer when its read begins (wait_for_bytes read it), and a small body
/// came with its head: then no coroutine frame is made, started, resumed and
/// freed for them (~200 instructions each, callgrind).
template <class Parser>
bool settled_by_buffer(boost::beast::flat_buffer& b, Parser& p,
                       bool header, boost::beast::error_code& ec, std::size_t& used) {
    if (!header) return parse_buffered(b, p, ec, used);
    while (!p.is_header_done()) {
        if (!parse_buffered(b, p, ec, used)) return false;
        if (ec) return true;
    }
    return true;
}

/// http::async_read_header: reads until `p` has the whole head. The bytes
/// parsed are returned (0 with an error: nothing of a message came), counting
/// `used` already parsed by settled_by_buffer.
template <class Stream, class Parser>
Awaitable<std::tuple<boost::beast::error_code, std::size_t>> read_header(
    Stream& s, boost::beast::flat_buffer& b, Parser& p,
    std::size_t used = 0) {
    namespace asio = boost::asio;
    boost::beast::error_code ec;
    while (!p.is_header_done()) {
        if (parse_buffered(b, p, ec, used)) {
            if (ec) break;
            continue;
        }
        const auto room = read_room(b, ec);
        if (ec) break;
        auto [rec, n] = co_await s.async_read_some(room, await_tuple);
        if (after_read(b, p, rec, n, ec)) break;
    }
    co_return std::tuple(ec, used);
}

/// http::async_read_some: parses what is buffered, reading (once or more)
/// only while the parser needs more to make progress (`used`: as read_header).
template <class Stream, class Parser>
Awaitable<std::tuple<boost::beast::error_code, std::size_t>> read_some(
    Stream& s, boost::beast::flat_buffer& b, Parser& p,
    std::size_t used = 0) {
    namespace asio = boost::asio;
    boost::beast::error_code ec;
    for (;;) {
        if (parse_buffered(b, p, ec, used)) break;
        const auto room = read_room(b, ec);
        if (ec) break;
        auto [rec, n] = co_await s.async_read_some(room, await_tuple);
        if (after_read(b, p, rec, n, ec)) break;
    }
    co_return std::tuple(ec, used);
}

}  // namespace tether::http
