// Client session, the client side: the TLS handshake, reading and checking
// request heads (limits, smuggling refusals, rate limits, Expect), request
// ids and client IPs, errors written to the client, and the counters and
// access log line of each exchange. The backend side is in forward.cpp and
// respond.cpp; the shared declarations in client_session.hpp.
// Threading: runs on its worker's executor only.
#include "http/client_session.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>

#include "tether/http/error_response.hpp"
#include "tether/core/log.hpp"

namespace tether::http {
namespace detail {

namespace {

bool sane_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    for (char c : id)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

errc read_error_to_errc(const beast::error_code& ec) {
    if (ec == bhttp::error::header_limit) return errc::header_too_large;
    if (ec == bhttp::error::body_limit) return errc::body_too_large;
    if (ec == bhttp::error::buffer_overflow) return errc::header_too_large;
    return errc::bad_request;
}

bool is_client_gone(const beast::error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
           ec == beast::error::timeout || ec == asio::error::bad_descriptor ||
           ec == asio::ssl::error::stream_truncated;
}

}  // namespace

Awaitable<void> ClientSession::run() {
    std::shared_ptr<tls::ServerContext> server_ctx;
    if (!start(server_ctx)) co_return;
    if (server_ctx && !co_await handshake(std::move(server_ctx))) co_return;
    for (;;) {
        const Outcome out = co_await serve_request();
        const bool listener_kept =  // a reload may have removed the listener
            ctx_.runtime->listener_upstream[listener_] != upstream::kNoUpstream;
        if (out == Outcome::keep_alive && !stopping_ && !ctx_.stopping && listener_kept)
            continue;
        if (out == Outcome::tunnel) co_await run_tunnel();
        break;
    }
    if (linger_) co_await linger();
    // No shutdown(SHUT_WR) first: the socket is closed right after this (the
    // session's end), and close() sends the FIN behind the data just the same
    // (or a reset, shutdown or not, when unread bytes are left: linger() above
    // reads them first where a response may still be in flight).
}

// The listener's TLS context into `server_ctx` (none: plain), and on a plain
// listener the bytes read past a PROXY header handed to the HTTP reader.
// False: close. Not a coroutine: a plain connection starts without a frame.
bool ClientSession::start(std::shared_ptr<tls::ServerContext>& server_ctx) {
    const auto& rt = *ctx_.runtime;
    if (listener_ >= rt.listener_config.size() || rt.listener_config[listener_] == upstream::kNoUpstream)
        return false;  // a reload removed the listener meanwhile
    const config::Listener& lc = rt.config->listen[rt.listener_config[listener_]];
    if (ctx_.tls) server_ctx = ctx_.tls->at(rt.listener_address[listener_]);
    if (lc.tls && !server_ctx) return false;  // never plain on a TLS listener
    if (!server_ctx && !preread_.empty()) {
        buffer_.commit(asio::buffer_copy(buffer_.prepare(preread_.size()), asio::buffer(preread_)));
        std::string().swap(preread_);
    }
    return true;
}

// The TLS handshake on a TLS listener (counted, failures logged), the bytes
// read past a PROXY header given to it. False: close.
Awaitable<bool> ClientSession::handshake(std::shared_ptr<tls::ServerContext> server_ctx) {
    // Held, not referred to: a reload during the handshake replaces
    // ctx_.runtime, and the worker's was the last reference to the old one.
    const auto rt = ctx_.runtime;
    idle_ = true;  // a stop closes a connection still in its handshake
    std::string reason;
    const auto r = co_await stream_.handshake(std::move(server_ctx),
                                              rt->config->timeouts.client_header, preread_, reason);
    idle_ = false;
    std::string().swap(preread_);
    if (listener_ < ctx_.stats.tls_handshakes.size())
        ++ctx_.stats.tls_handshakes[listener_][static_cast<std::size_t>(r)];
    if (r == tls::Handshake::ok) co_return !stopping_ && !ctx_.stopping;
    if (r == tls::Handshake::plain_http || r == tls::Handshake::failed ||
        r == tls::Handshake::not_tls)
        log::info("tls handshake with " + peer_ip_ + " failed on " +
                  rt->listener_address[listener_] + ": " + reason);
    co_return false;
}

// Readies the wait, without a parser, for the next request's first bytes
// (serve_request reads them: a coroutine of its own was a frame per request):
// timeouts.idle between keep-alive requests, client_header before the first.
void ClientSession::start_idle_wait(std::size_t buffer_size, config::Duration deadline) {
    if (buffer_.capacity() > 2 * buffer_size) buffer_.shrink_to_fit();
    idle_ = true;
    stream_.expires_after(deadline);
    if (!first_ && !stream_.is_tls()) {
        // The last request came whole: if its last read drained the socket,
        // wait for the next one without a recv that finds nothing (~0.7 per
        // keep-alive request: the client sends it only after the answer).
        // An end of stream that came with that request raises no new event:
        // tick() looks for it once (probe_eof).
        stream_.tcp().next_read_starts_message();
        eof_probe_ = true;
    }
}

// A client that closed its side with its last request (a half-close, as
// `nc -N` does) sent the end of the stream with it, which raises no event
// while the session waits for the next request without trying a read: one
// non-blocking peek at the worker's next tick finds it, and the wait ends.
void ClientSession::probe_eof() {
    eof_probe_ = false;
    char byte;
    const ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        stream_.cancel();
}

Awaitable<Outcome> ClientSession::serve_request() {
    if (buffer_.size() == 0) {  // wait for the next request's first bytes
        {
            // No copy of the shared_ptr to pin the Runtime (an atomic increment
            // and decrement): a reload during the wait may free it, and nothing
            // of it is used after.
            const config::Config& c = *ctx_.runtime->config;
            start_idle_wait(c.limits.buffer_size,
                            first_ ? c.timeouts.client_header : c.timeouts.idle);
        }
        auto [rec, got] = co_await stream_.async_read_some(buffer_.prepare(4096), await_tuple);
        idle_ = false;
        eof_probe_ = false;
        if (rec) co_return Outcome::close;
        buffer_.commit(got);
    }
    // Made once the request began (an idle connection holds none), on the
    // heap rather than in this coroutine's frame: ~700 bytes there would push
    // the frame past the 1 KiB Asio recycles frames up to, so each request
    // would malloc it and evict another cached frame (those of proxy and
    // forward) on the way.
    const auto held = std::make_unique<Exchange>(ctx_.runtime, ctx_.routing, ctx_.pickers);
    Exchange& ex = *held;
    const auto& cfg = ex.cfg();
    first_ = false;
    ex.request.header_limit(static_cast<std::uint32_t>(cfg.limits.max_header_size));
    ex.request.body_limit(cfg.limits.max_body_size);
    stream_.expires_after(cfg.timeouts.client_header);
    beast::error_code ec;
    std::size_t n = 0;
    if (!settled_by_buffer(buffer_, ex.request, true, ec, n))
        std::tie(ec, n) = co_await read_header(stream_, buffer_, ex.request, n);
    const RequestHead& req = ex.request.get();
    assign_request_id(req, cfg.headers.request_id);
    set_client_ip(req);
    if (ec) {
        if (is_client_gone(ec) && n == 0) co_return Outcome::close;
        if (ec == beast::error::timeout) co_return Outcome::close;
        co_await send_error(&ex, read_error_to_errc(ec));
        co_return Outcome::close;
    }
    ++ctx_.stats.requests;
    ex.verdict = check_request(req, cfg.limits.max_body_size);
    if (ex.verdict.error == errc::ok && ex.request.chunked() && buffer_.size() > 0) {
        const std::string_view here(static_cast<const char*>(buffer_.data().data()),
                                    buffer_.size());  // refused before anything goes upstream
        ex.verdict.error = check_chunked_prefix(here, cfg.limits.max_body_size);
    }
    if (ex.verdict.error != errc::ok) {
        co_await send_error(&ex, ex.verdict.error);
        co_return Outcome::close;
    }
    ex.close = !ex.request.keep_alive() || stopping_ || ctx_.stopping;
    if (cfg.limits.rate && ctx_.rate_limiter) {  // before any byte of a body is invited
        auto& limiter = *ctx_.rate_limiter;
        const auto& rate = *cfg.limits.rate;
        const auto d = limiter.may_use_redis(rate) ? co_await limiter.take(client_ip_, rate)
                                                   : limiter.take_local(client_ip_, rate, core::coarse_now());
        if (d.redis_failed) ++ctx_.stats.rate_redis_fallbacks;
        if (!d.allowed) {
            ++ctx_.stats.rate_limited;
            retry_after_s_ = static_cast<int>((d.retry_after.count() + 999) / 1000);
            co_await send_error(&ex, errc::rate_limited);
            co_return Outcome::close;
        }
    }
    if (auto e = req.find(bhttp::field::expect); e != req.end()) {
        if (!beast::iequals(e->value(), "100-continue")) {
            co_await send_error(&ex, errc::bad_request);
            co_return Outcome::close;
        }
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        stream_.expires_after(cfg.timeouts.idle);
        co_await asio::async_write(stream_, asio::buffer(kContinue), await_tuple);
    }
    const Outcome out = co_await proxy(ex);
    record(ex);
    co_return out;
}

void ClientSession::assign_request_id(const RequestHead& req, bool from_headers) {
    request_id_.clear();
    if (from_headers) {
        if (auto f = req.find("X-Request-Id"); f != req.end() && sane_request_id(f->value())) {
            request_id_.assign(f->value());
            return;
        }
    }
    // Two hex digits per random byte from a table (a byte at a time, not a
    // nibble); written in place: no capacity check per character.
    static constexpr auto kHexPairs = [] {
        constexpr char kHex[] = "0123456789abcdef";
        std::array<char, 512> t{};
        for (std::size_t i = 0; i < 256; ++i) {
            t[2 * i] = kHex[i >> 4];
            t[2 * i + 1] = kHex[i & 15];
        }
        return t;
    }();
    request_id_.resize(32);
    char* out = request_id_.data();
    for (int part = 0; part < 2; ++part) {
        std::uint64_t r = ctx_.rng.next();
        for (int i = 0; i < 8; ++i, r >>= 8, out += 2) std::memcpy(out, &kHexPairs[2 * (r & 255)], 2);
    }
}

// The client IP of this request: the peer, or, from a trusted proxy, the
// right-most untrusted X-Forwarded-For hop (client_ip.hpp).
void ClientSession::set_client_ip(const RequestHead& req) {
    if (ctx_.trusted.empty()) return;  // client_ip_ stays peer_ip_
    std::array<std::string_view, 8> lines;
    std::size_t n = 0;
    for (const auto& f : req)
        if (n < lines.size() && beast::iequals(f.name_string(), "x-forwarded-for"))
            lines[n++] = f.value();
    client_ip_ = ctx_.trusted.client_ip(peer_ip_, std::span<const std::string_view>(lines.data(), n));
}

Awaitable<void> ClientSession::send_error(Exchange* ex, errc e) {
    ++ctx_.stats.errors;
    if (ex) {
        ex->status = to_http_status(e);
        ex->close = true;
    }
    head_.clear();
    write_error_response(e, request_id_, true, head_, retry_after_s_);
    stream_.expires_after(ctx_.runtime->config->timeouts.idle);
    co_await asio::async_write(stream_, asio::buffer(head_), await_tuple);
}

Awaitable<void> ClientSession::send_unknown_sid(Exchange& ex) {
    ex.status = 400;
    ex.close = true;
    std::string_view origin;
    const RequestHead& req = ex.request.get();
    if (auto o = req.find(bhttp::field::origin); o != req.end()) origin = o->value();
    head_.clear();
    write_engineio_unknown_sid(request_id_, origin, head_);
    stream_.expires_after(ex.cfg().timeouts.idle);
    co_await asio::async_write(stream_, asio::buffer(head_), await_tuple);
}

// Counters and the access log line for a finished exchange.
void ClientSession::record(const Exchange& ex) {
    const double seconds = std::chrono::duration<double>(core::coarse_now() - ex.start).count();
    if (ex.upstream) {
        const std::string_view uname = ex.upstream->config->name;
        ctx_.stats.upstream(uname).observe(seconds);
        const auto& backend = ex.active.get() ? ex.active.shared() : tunnel_guard_.shared();
        if (backend) {
            auto& sc = ctx_.stats.server(backend, uname, last_server_);
            ++sc.responses[ex.status];
            if (ex.verdict.websocket_upgrade) ++(ex.status == 101 ? sc.upgrades_ok : sc.upgrades_failed);
        } else {
            ++ctx_.stats.upstream(uname).local_responses[ex.status];
        }
    }
    if (!ctx_.access_log.enabled()) return;
    const RequestHead& req = ex.request.get();
    AccessEntry e;
    e.client_ip = client_ip_;
    e.method = req.method_string();
    e.target = req.target();
    e.version = req.version();
    e.status = ex.status;
    e.bytes_sent = ex.bytes_sent;
    if (auto f = req.find(bhttp::field::referer); f != req.end()) e.referer = f->value();
    if (auto f = req.find(bhttp::field::user_agent); f != req.end()) e.user_agent = f->value();
    if (ex.upstream) e.upstream = ex.upstream->config->name;
    if (ex.active.get()) e.server = ex.active.get()->name();
    else if (tunnel_guard_.get()) e.server = tunnel_guard_.get()->name();
    e.request_id = request_id_;
    e.duration_s = seconds;
    ctx_.access_log.record(e);
}

}  // namespace detail

Awaitable<void> serve_client(TcpSocket socket, ProxyContext& ctx, std::size_t listener,
                             ClientOrigin origin) {
    detail::ClientSession session(std::move(socket), ctx, listener, std::move(origin));
    co_await session.run();
}

}  // namespace tether::http
