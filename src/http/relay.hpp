// Relay of one message body, shared by the request (client -> backend) and
// the response (backend -> client) direction: a pending head, then the body
// in pieces of one borrowed buffer, re-framed for the destination
// (Content-Length as is, or chunked). The head is sent together with the
// first piece when that piece is already buffered (one write for small
// messages); otherwise first, so a slow body never holds the head back.
// Bounded: one buffer, a read deadline per piece, a write deadline per piece.
#pragma once

#include <array>
#include <charconv>
#include <string>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>

#include "tether/core/buffer_pool.hpp"
#include "tether/core/errors.hpp"
#include "tether/core/stream_inspector.hpp"
#include "tether/http/headers.hpp"

namespace tether::http {

enum class RelaySide { none, source, destination };

struct RelayStatus {
    RelaySide failed_side = RelaySide::none;
    errc error = errc::ok;  ///< what to answer when the source failed (ok = just close)
    std::uint64_t body_bytes = 0;
};

struct RelayEnv {
    BufferPool& buffers;
    std::chrono::milliseconds read_timeout;   ///< between two reads from the source
    std::chrono::milliseconds write_timeout;  ///< for one write to the destination
};

inline errc source_error(const boost::beast::error_code& ec) {
    namespace bhttp = boost::beast::http;
    if (ec == bhttp::error::body_limit) return errc::body_too_large;
    if (ec == boost::beast::error::timeout) return errc::client_timeout;
    if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream ||
        ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
        ec == boost::asio::error::operation_aborted)
        return errc::ok;
    return errc::bad_request;
}

/// Writes `head` and the body `p` reads from src into dst. `body_started`
/// becomes true once a body byte was written. `inspector`, if any, sees
/// each piece before it is written, until it says it is done.
template <class Parser>
boost::asio::awaitable<RelayStatus> relay_body(boost::beast::tcp_stream& src,
                                               boost::beast::flat_buffer& src_buf, Parser& p,
                                               boost::beast::tcp_stream& dst,
                                               std::string_view head, Framing framing,
                                               RelayEnv env, bool& body_started,
                                               StreamInspector* inspector = nullptr) {
    namespace asio = boost::asio;
    namespace bhttp = boost::beast::http;
    constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
    static constexpr std::string_view kCrlf = "\r\n";
    static constexpr std::string_view kLastChunk = "0\r\n\r\n";
    static constexpr std::string_view kCrlfLastChunk = "\r\n0\r\n\r\n";
    RelayStatus st;
    if (!head.empty() && (p.is_done() || src_buf.size() == 0)) {
        dst.expires_after(env.write_timeout);
        auto [ec, n] = co_await asio::async_write(dst, asio::buffer(head), use_tuple);
        if (ec) st.failed_side = RelaySide::destination;
        head = {};
        if (ec || p.is_done()) co_return st;
    }
    BufferPool::Lease buf = env.buffers.borrow();
    char chunk_header[24];
    while (!p.is_done()) {
        p.get().body().data = buf.data();
        p.get().body().size = buf.size();
        src.expires_after(env.read_timeout);
        auto [ec, n] = co_await bhttp::async_read(src, src_buf, p, use_tuple);
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec) {
            st.failed_side = RelaySide::source;
            st.error = source_error(ec);
            co_return st;
        }
        const std::size_t got = buf.size() - p.get().body().size;
        if (inspector && got > 0 && co_await inspector->inspect(std::string_view(buf.data(), got)))
            inspector = nullptr;
        std::array<asio::const_buffer, 4> out{asio::buffer(head)};
        std::size_t count = 1;
        if (framing == Framing::chunked && got > 0) {
            auto [end, cec] = std::to_chars(chunk_header, chunk_header + 20, got, 16);
            *end++ = '\r';
            *end++ = '\n';
            out[count++] = asio::buffer(chunk_header, static_cast<std::size_t>(end - chunk_header));
            out[count++] = asio::buffer(buf.data(), got);
            out[count++] = asio::buffer(p.is_done() ? kCrlfLastChunk : kCrlf);
        } else if (framing == Framing::chunked && p.is_done()) {
            out[count++] = asio::buffer(kLastChunk);
        } else if (got > 0) {
            out[count++] = asio::buffer(buf.data(), got);
        }
        if (count == 1 && head.empty()) continue;
        dst.expires_after(env.write_timeout);
        auto [wec, wn] = co_await asio::async_write(
            dst, std::span<const asio::const_buffer>(out.data(), count), use_tuple);
        if (wec) {
            st.failed_side = RelaySide::destination;
            co_return st;
        }
        head = {};
        body_started = body_started || got > 0;
        st.body_bytes += got;
    }
    co_return st;
}

}  // namespace tether::http
