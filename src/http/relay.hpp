// Relay of one message body, shared by the request (client -> backend) and
// the response (backend -> client) direction: a pending head, then the body
// in pieces of one borrowed buffer, re-framed for the destination
// (Content-Length as is, or chunked). A piece goes on as soon as it is
// parsed. The head is sent together with the first piece when that piece is
// already buffered (one write for small messages); otherwise first, so a
// slow body never holds the head back. Bounded: one buffer (and, for a body
// longer than one read, 64 KiB of read room in the source's flat_buffer, see
// SourceRoom in relay_io.hpp), a read deadline per piece, a write deadline per piece.
// The two directions of one exchange run at once (duplex.hpp), each with its
// own buffer; `RelayEnv::stop`, set by the other direction, makes a relay
// give up at its next step.
// Threading: the caller's executor (one worker thread), which is why the
// flags shared with the other direction are plain bools.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include "tether/core/buffer_pool.hpp"
#include "tether/core/errors.hpp"
#include "tether/core/executor.hpp"
#include "tether/core/stream_inspector.hpp"
#include "http/http_read.hpp"
#include "http/relay_io.hpp"
#include "tether/http/headers.hpp"

namespace tether::http {

/// Which side failed; `stopped` when the other direction asked to stop.
enum class RelaySide { none, source, destination, stopped };

struct RelayStatus {
    RelaySide failed_side = RelaySide::none;
    errc error = errc::ok;  ///< what to answer when the source failed (ok = just close)
    std::uint64_t body_bytes = 0;
};

/// What a relay did so far, readable by the other direction while it runs.
struct RelayProgress {
    bool head_out = false;    ///< a write carrying the head began
    bool body_taken = false;  ///< body bytes left the source's parser (sent or not)
};

struct RelayEnv {
    BufferPool& buffers;
    std::chrono::milliseconds read_timeout;   ///< between two reads from the source
    std::chrono::milliseconds write_timeout;  ///< for one write to the destination
    const bool* stop = nullptr;               ///< true: give up at the next step
    /// The worker's send queue for a whole message's write (relay_whole_now);
    /// null: written at once.
    tls::SendQueue* sends = nullptr;
    /// A body of known length larger than one of `buffers` is relayed
    /// through one of these (ProxyContext::bulk), in fewer, larger pieces;
    /// null, or a body of unknown length (a stream, held for as long as it
    /// lasts): `buffers`.
    BufferPool* bulk = nullptr;
};

/// Writes `head` and the body `p` reads from src into dst, keeping
/// `progress` up to date. `inspector`, if any, sees each piece before it is
/// written, until it says it is done. Src and Dst: tls::ClientStream (the
/// client or the backend, each plain or TLS).
template <class Src, class Dst, class Parser>
Awaitable<RelayStatus> relay_body(Src& src,
                                  boost::beast::flat_buffer& src_buf, Parser& p,
                                  Dst& dst,
                                  std::string_view head, Framing framing,
                                  RelayEnv env, RelayProgress& progress,
                                  StreamInspector* inspector = nullptr) {
    namespace asio = boost::asio;
    namespace bhttp = boost::beast::http;
        static constexpr std::string_view kCrlf = "\r\n";
    static constexpr std::string_view kLastChunk = "0\r\n\r\n";
    static constexpr std::string_view kCrlfLastChunk = "\r\n0\r\n\r\n";
    RelayStatus st;
    const auto stopped = [&] {
        if (env.stop && *env.stop) st.failed_side = RelaySide::stopped;
        return st.failed_side == RelaySide::stopped;
    };
    if (stopped()) co_return st;
    if (!head.empty() && (p.is_done() || src_buf.size() == 0)) {
        progress.head_out = true;
        boost::system::error_code ec;
        std::size_t n = 0;
        if (!write_at_once(dst, asio::buffer(head), head.size(), ec, n)) {
            dst.expires_after(env.write_timeout);
            std::tie(ec, n) = co_await write_rest(dst, asio::buffer(head), n);
        }
        if (stopped()) co_return st;
        if (ec) st.failed_side = RelaySide::destination;
        head = {};
        if (ec || p.is_done()) co_return st;
    }
    const auto length = p.content_length();
    BufferPool::Lease buf = env.bulk && length && *length > env.buffers.buffer_size()
                                ? env.bulk->borrow()
                                : env.buffers.borrow();
    SourceRoom room(src_buf);
    bool first_read = true;
    char chunk_header[24];
    while (!p.is_done()) {
        if (!first_read) room.grow(std::max(buf.size(), kBulkReadRoom));
        first_read = false;
        p.get().body().data = buf.data();
        p.get().body().size = buf.size();
        src.expires_after(env.read_timeout);
        // read_some, not read: a piece goes on as soon as it is parsed, so a
        // stream of small chunks (events, an interactive echo) is not held
        // until a whole buffer is full.
        boost::beast::error_code ec;
        std::size_t n = 0;
        if (!settled_by_buffer(src_buf, p, false, ec, n))
            std::tie(ec, n) = co_await read_some(src, src_buf, p, n);
        const std::size_t got = buf.size() - p.get().body().size;
        progress.body_taken = progress.body_taken || got > 0;
        if (stopped()) co_return st;
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec) {
            st.failed_side = RelaySide::source;
            st.error = source_error(ec);
            co_return st;
        }
        if (inspector && got > 0 && co_await inspector->inspect(std::string_view(buf.data(), got)))
            inspector = nullptr;
        if (stopped()) co_return st;
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
        progress.head_out = true;
        const std::span<const asio::const_buffer> pieces(out.data(), count);
        boost::system::error_code wec;
        std::size_t wn = 0;
        if (!write_at_once(dst, pieces, asio::buffer_size(pieces), wec, wn)) {
            dst.expires_after(env.write_timeout);
            std::tie(wec, wn) = co_await write_rest(dst, pieces, wn);
        }
        if (!wec) st.body_bytes += got;
        if (stopped()) co_return st;
        if (wec) {
            st.failed_side = RelaySide::destination;
            co_return st;
        }
        head = {};
    }
    co_return st;
}

}  // namespace tether::http
