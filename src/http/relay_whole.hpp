// relay_body (relay.hpp) for a message that is here whole, without a
// coroutine: a head whose body (none, or by Content-Length) is all in the
// source's buffer already and fits one relay buffer, with no inspector and
// no stop asked. That is most keep-alive responses (a small body comes in
// the head's segment), and relay_body's frame, made, started, resumed and
// freed for them, was ~250 instructions a request (callgrind). The steps and
// results are relay_body's: the read deadline set, the body parsed into a
// borrowed buffer, head and body in one write; only a write the destination
// does not take whole at once goes on in a coroutine (finish_whole).
// Threading: the caller's executor (one worker thread).
#pragma once

#include <array>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include "http/http_read.hpp"
#include "http/relay.hpp"
#include "http/relay_io.hpp"

namespace tether::http {

/// A message relay_whole_now took: its body's buffer, and what a write the
/// destination took in part still has to send.
struct WholeRelay {
    BufferPool::Lease buf;                         ///< the body, parsed out of the source's buffer
    std::array<boost::asio::const_buffer, 2> out;  ///< the head and the body
    std::size_t body = 0;                          ///< body bytes in `out`
    std::size_t written = 0;                       ///< bytes the destination took at once
    bool pending = false;                          ///< true: finish_whole sends the rest
};

/// False: not a message here whole (see above), nothing done: co_await
/// relay_body. True: relayed as relay_body would have, its result in `st`,
/// unless `w.pending`: then co_await finish_whole for the result.
template <class Src, class Dst, class Parser>
bool relay_whole_now(Src& src, boost::beast::flat_buffer& src_buf, Parser& p, Dst& dst,
                     std::string_view head, Framing framing, const RelayEnv& env,
                     RelayProgress& progress, WholeRelay& w, RelayStatus& st) {
    namespace asio = boost::asio;
    if (head.empty() || (env.stop && *env.stop)) return false;
    if (!p.is_done()) {
        const auto left = p.content_length_remaining();
        if (framing != Framing::length || !left || *left > src_buf.size() ||
            *left > env.buffers.buffer_size())
            return false;
        w.buf = env.buffers.borrow();
        p.get().body().data = w.buf.data();
        p.get().body().size = w.buf.size();
        src.expires_after(env.read_timeout);
        boost::beast::error_code ec;
        std::size_t used = 0;
        settled_by_buffer(src_buf, p, false, ec, used);  // all of it: *left bytes fit
        w.body = w.buf.size() - p.get().body().size;
        progress.body_taken = progress.body_taken || w.body > 0;
        if (ec == boost::beast::http::error::need_buffer) ec = {};
        if (ec) {
            st.failed_side = RelaySide::source;
            st.error = source_error(ec);
            return true;
        }
    }
    progress.head_out = true;
    w.out = {asio::buffer(head), asio::buffer(w.buf.data(), w.body)};
    boost::system::error_code ec;
    if (!write_at_once(dst, w.out, head.size() + w.body, ec, w.written, env.sends)) {
        w.pending = true;
        return true;
    }
    if (ec) st.failed_side = RelaySide::destination;
    else st.body_bytes += w.body;
    return true;
}

/// The rest of relay_whole_now's write (w.pending), with the write deadline.
template <class Dst>
Awaitable<RelayStatus> finish_whole(Dst& dst, WholeRelay& w, RelayEnv env) {
    RelayStatus st;
    dst.expires_after(env.write_timeout);
    auto [ec, n] = co_await write_rest(dst, w.out, w.written);
    if (!ec) st.body_bytes += w.body;
    if (env.stop && *env.stop) st.failed_side = RelaySide::stopped;
    else if (ec) st.failed_side = RelaySide::destination;
    co_return st;
}

}  // namespace tether::http
