// Client session: the request path of tether; see session.hpp. Body relay
// lives in relay.hpp so that request and response bodies share one loop;
// duplex.hpp runs the two directions of an exchange at once.
#include "tether/http/session.hpp"

#include <array>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "http/duplex.hpp"
#include "http/relay.hpp"
#include "tether/core/log.hpp"
#include "tether/http/error_response.hpp"
#include "tether/http/headers.hpp"
#include "tether/http/request_check.hpp"
#include "tether/http/strict_parser.hpp"
#include "tether/balance/engineio.hpp"
#include "tether/http/engineio_gauge.hpp"
#include "tether/tls/client_stream.hpp"
#include "tether/ws/tunnel.hpp"

namespace tether::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using asio::awaitable;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxResponseHead = 64 * 1024;
constexpr int kMaxStaleRetries = 3;
// Lingering close after a response that ended while the client was still
// sending (nginx's lingering_time and lingering_timeout defaults).
constexpr auto kLingerTime = std::chrono::seconds(30);
constexpr auto kLingerRead = std::chrono::seconds(5);

enum class Outcome { close, keep_alive, tunnel };

/// Learns the sid of an Engine.IO handshake from the server's open packet
/// and binds it to the server before the answer goes on (write-before-release):
/// in the local table, and in Redis when there is one (within redis.timeout;
/// past it the binding is written back when Redis answers again).
class SidLearner final : public StreamInspector {
public:
    SidLearner(affinity::Router& router, affinity::RedisStore* store,
               std::shared_ptr<const upstream::Runtime> rt, const upstream::Upstream& u,
               std::shared_ptr<upstream::Backend> server)
        : router_(router), store_(store), runtime_(std::move(rt)), upstream_(u),
          server_(std::move(server)) {}

    awaitable<bool> inspect(std::string_view bytes) override {
        const auto state = parser_.feed(bytes);
        if (state == balance::OpenPacketParser::State::found) {
            auto w = router_.bind_sid(upstream_, parser_.sid(), server_->name());
            if (store_ && w.op == affinity::SharedWrite::Op::claim) {
                const auto holder = co_await store_->claim(w.key, w.server, w.ttl);
                if (!holder) router_.count_redis_failure(upstream_.config->name);
            }
        }
        co_return state != balance::OpenPacketParser::State::need_more;
    }

private:
    affinity::Router& router_;
    affinity::RedisStore* store_;
    std::shared_ptr<const upstream::Runtime> runtime_;  // keeps upstream_ alive
    const upstream::Upstream& upstream_;
    std::shared_ptr<upstream::Backend> server_;
    balance::OpenPacketParser parser_;
};

/// State of one request/response exchange.
struct Exchange {
    Exchange(std::shared_ptr<const upstream::Runtime> rt,
             std::shared_ptr<const affinity::RoutingTables> tables)
        : runtime(std::move(rt)), routing(std::move(tables)) {}
    std::shared_ptr<const upstream::Runtime> runtime;  // pinned for the whole request
    std::shared_ptr<const affinity::RoutingTables> routing;  // built with `runtime`
    std::shared_ptr<std::vector<balance::Picker>> pickers;   // made with `runtime`
    const config::Config& cfg() const { return *runtime->config; }
    const upstream::Upstream* upstream = nullptr;
    std::size_t upstream_index = 0;
    StrictRequestParser<bhttp::buffer_body> request;
    std::optional<bhttp::response_parser<bhttp::buffer_body>> response;
    std::unique_ptr<UpstreamConnection> conn;
    upstream::ActiveGuard active;
    EioSessionGauge eio;  // a pending Engine.IO long-poll
    RequestVerdict verdict;
    bool close = false;            // close the client connection after this exchange
    std::size_t held_body = 0;     // body bytes sent from the client buffer, not yet parsed
    bool learn_sid = false;        // an Engine.IO handshake: bind the sid of the answer
    std::string_view set_cookie;   // Set-Cookie line(s) for the answer (in `routing`)
    int status = 0;
    std::uint64_t bytes_sent = 0;  // response body bytes to the client
    Clock::time_point start = Clock::now();
};

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

/// Passive health: a connect, send or response-head failure of `b` (a 5xx is not one).
void count_failure(upstream::Backend& b, std::string_view upstream) {
    if (b.record_failure(Clock::now()))
        log::warn("upstream '" + std::string(upstream) + "' server '" + b.name() +
                  "': out for fail_timeout after max_fails failures");
}

bool is_client_gone(const beast::error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
           ec == beast::error::timeout || ec == asio::error::bad_descriptor ||
           ec == asio::ssl::error::stream_truncated;
}

class ClientSession final : public TrackedConnection {
public:
    ClientSession(tcp::socket socket, ProxyContext& ctx, std::size_t listener,
                  ClientOrigin origin)
        : ctx_(ctx), stream_(std::move(socket)), listener_(listener), entry_(ctx.registry, this),
          peer_ip_(std::move(origin.address)), preread_(std::move(origin.preread)) {
        beast::error_code ec;
        if (peer_ip_.empty()) {
            auto peer = stream_.socket().remote_endpoint(ec);
            if (!ec) peer_ip_ = peer.address().to_string();
        }
        client_ip_ = peer_ip_;
        stream_.socket().set_option(tcp::no_delay(true), ec);
    }

    awaitable<void> run() {
        if (!co_await start()) co_return;
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
        beast::error_code ec;
        if (stream_.socket().is_open()) stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }

    void begin_stop(Clock::time_point) override {
        stopping_ = true;
        if (idle_) stream_.cancel();
    }
    void tick(Clock::time_point) override {}
    void listener_closed(std::size_t slot) override {
        if (slot == listener_) begin_stop(Clock::now());
    }

private:
    awaitable<bool> start();
    awaitable<Outcome> serve_request();
    awaitable<bool> wait_for_bytes(const config::Config& cfg);
    awaitable<Outcome> proxy(Exchange& ex);
    awaitable<std::optional<Outcome>> forward(Exchange& ex, Duplex& d, bool may_retry);
    awaitable<errc> open_upstream(Exchange& ex, bool fresh_only);
    awaitable<void> fetch_shared(Exchange& ex, affinity::RouteInput& in);
    awaitable<void> share_decision(Exchange& ex, affinity::RouteDecision& d,
                                   std::span<const upstream::Backend* const> exclude);
    awaitable<std::tuple<beast::error_code, std::size_t>> read_response_head(Exchange& ex,
                                                                             bool pumped);
    awaitable<void> send_request(Exchange& ex, Duplex& d);
    std::optional<std::size_t> whole_body_here(Exchange& ex) const;
    void take_held_body(Exchange& ex);
    awaitable<Outcome> respond(Exchange& ex, Duplex& d);
    awaitable<void> linger();
    awaitable<Outcome> start_tunnel(Exchange& ex);
    awaitable<void> run_tunnel();
    awaitable<void> send_error(Exchange* ex, errc e);
    awaitable<void> send_unknown_sid(Exchange& ex);
    void assign_request_id(const RequestHead& req, bool from_headers);
    void set_client_ip(const RequestHead& req);
    void record(const Exchange& ex);

    ProxyContext& ctx_;
    tls::ClientStream stream_;
    beast::flat_buffer buffer_;
    std::size_t listener_;
    RegistryEntry entry_;
    std::string peer_ip_;    // the socket peer or the PROXY header's source
    std::string preread_;    // read past a PROXY header, not consumed yet
    std::string client_ip_;  // of the current request: peer_ip_, or from X-Forwarded-For
    std::string head_;           // scratch for heads written to the client
    std::string upstream_head_;  // the request head, written by the request relay
    std::string request_id_;
    int retry_after_s_ = 0;  // Retry-After of a 429
    bool first_ = true;
    bool idle_ = false;
    bool stopping_ = false;
    bool linger_ = false;  // a response ended while the client was still sending
    std::optional<ws::TunnelSetup> tunnel_;
    upstream::ActiveGuard tunnel_guard_;
    EioSessionGauge tunnel_eio_;  // an Engine.IO session over this tunnel
    std::optional<SidLearner> tunnel_learner_;  // a websocket-only handshake's sid
    std::string tunnel_upstream_;
};

// The TLS handshake on a TLS listener (counted, failures logged), and the
// bytes read past a PROXY header handed to the HTTP reader. False: close.
awaitable<bool> ClientSession::start() {
    const auto& rt = *ctx_.runtime;
    if (listener_ >= rt.listener_config.size() || rt.listener_config[listener_] == upstream::kNoUpstream)
        co_return false;  // a reload removed the listener meanwhile
    const config::Listener& lc = rt.config->listen[rt.listener_config[listener_]];
    const auto server_ctx = ctx_.tls ? ctx_.tls->at(rt.listener_address[listener_]) : nullptr;
    if (lc.tls && !server_ctx) co_return false;  // never plain on a TLS listener
    if (!server_ctx) {
        if (!preread_.empty())
            buffer_.commit(asio::buffer_copy(buffer_.prepare(preread_.size()),
                                             asio::buffer(preread_)));
        std::string().swap(preread_);
        co_return true;
    }
    idle_ = true;  // a stop closes a connection still in its handshake
    std::string reason;
    const auto r = co_await stream_.handshake(server_ctx, ctx_.runtime->config->timeouts.client_header,
                                              preread_, reason);
    idle_ = false;
    std::string().swap(preread_);
    if (listener_ < ctx_.stats.tls_handshakes.size())
        ++ctx_.stats.tls_handshakes[listener_][static_cast<std::size_t>(r)];
    if (r == tls::Handshake::ok) co_return !stopping_ && !ctx_.stopping;
    if (r == tls::Handshake::plain_http || r == tls::Handshake::failed ||
        r == tls::Handshake::not_tls)
        log::info("tls handshake with " + peer_ip_ + " failed on " +
                  rt.listener_address[listener_] + ": " + reason);
    co_return false;
}

// Waits, without a parser, until the next request's first bytes are there:
// timeouts.idle between keep-alive requests, client_header before the first.
awaitable<bool> ClientSession::wait_for_bytes(const config::Config& cfg) {
    if (buffer_.size() > 0) co_return true;
    if (buffer_.capacity() > 2 * cfg.limits.buffer_size) buffer_.shrink_to_fit();
    idle_ = true;
    stream_.expires_after(first_ ? cfg.timeouts.client_header : cfg.timeouts.idle);
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(4096), use_tuple);
    idle_ = false;
    if (ec) co_return false;
    buffer_.commit(n);
    co_return true;
}

awaitable<Outcome> ClientSession::serve_request() {
    Exchange ex(ctx_.runtime, ctx_.routing);
    const auto& cfg = ex.cfg();
    if (!co_await wait_for_bytes(cfg)) co_return Outcome::close;
    first_ = false;
    ex.start = Clock::now();
    ex.request.header_limit(static_cast<std::uint32_t>(cfg.limits.max_header_size));
    ex.request.body_limit(cfg.limits.max_body_size);
    stream_.expires_after(cfg.timeouts.client_header);
    auto [ec, n] = co_await bhttp::async_read_header(stream_, buffer_, ex.request, use_tuple);
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
        const auto d = co_await ctx_.rate_limiter->take(client_ip_, *cfg.limits.rate);
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
        co_await asio::async_write(stream_, asio::buffer(kContinue), use_tuple);
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
    static constexpr char kHex[] = "0123456789abcdef";
    for (int part = 0; part < 2; ++part) {
        std::uint64_t r = ctx_.rng.next();
        for (int i = 0; i < 16; ++i, r >>= 4) request_id_.push_back(kHex[r & 15]);
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

awaitable<Outcome> ClientSession::proxy(Exchange& ex) {
    bool fresh_only = false;
    for (int stale = 0;; ++stale) {
        const errc e = co_await open_upstream(ex, fresh_only);
        if (e == errc::session_unknown) {
            co_await send_unknown_sid(ex);
            co_return Outcome::close;
        }
        if (e != errc::ok) {
            co_await send_error(&ex, e);
            co_return Outcome::close;
        }
        Duplex d(stream_.get_executor());
        std::optional<Outcome> out;
        std::exception_ptr escaped;
        try {
            out = co_await forward(ex, d, ex.conn->reused && stale < kMaxStaleRetries);
        } catch (...) {
            escaped = std::current_exception();
        }
        if (escaped) {  // the pump borrows this exchange: it ends first
            if (ex.conn) stop(d, stream_, ex.conn->stream);
            co_await join(d);
            std::rethrow_exception(escaped);
        }
        if (out) co_return *out;
        fresh_only = stale + 1 >= kMaxStaleRetries - 1;  // a kept-alive connection gone stale
    }
}

// One try on one upstream connection: the request head, then the request body
// and the response at once. nullopt: the kept-alive connection turned out
// closed before any request body byte was taken from the client; try again.
awaitable<std::optional<Outcome>> ClientSession::forward(Exchange& ex, Duplex& d,
                                                         bool may_retry) {
    co_await send_request(ex, d);
    beast::error_code ec = asio::error::broken_pipe;
    std::size_t n = 0;
    if (d.pumped || d.request_status.failed_side == RelaySide::none)
        std::tie(ec, n) = co_await read_response_head(ex, d.pumped);
    head_read_ended(d);
    if (!ec && !d.stop) {
        ex.conn->backend->record_success(Clock::now());
        take_held_body(ex);
        co_return co_await respond(ex, d);
    }
    if (d.pumped) {
        stop(d, stream_, ex.conn->stream);
        co_await join(d);
    }
    const RelayStatus& sent = d.request_status;
    if (sent.failed_side == RelaySide::source) {  // the client broke off or lied
        if (sent.error != errc::ok) co_await send_error(&ex, sent.error);
        co_return Outcome::close;
    }
    const bool timed_out = ec == beast::error::timeout || d.head_timed_out;
    if (!timed_out && n == 0 && may_retry && !d.request.body_taken) co_return std::nullopt;
    count_failure(*ex.conn->backend, ex.upstream->config->name);
    co_await send_error(&ex, timed_out ? errc::upstream_timeout : errc::upstream_broken);
    co_return Outcome::close;
}

// Reads the backend's response head within timeouts.upstream_response
// (counted from the end of the request: by the pump when there is one),
// skipping interim 1xx responses (other than 101), which the client does not
// expect: tether answered any Expect: 100-continue itself.
awaitable<std::tuple<beast::error_code, std::size_t>> ClientSession::read_response_head(
    Exchange& ex, bool pumped) {
    for (;;) {
        ex.response.emplace();
        ex.response->header_limit(kMaxResponseHead);
        ex.response->body_limit(boost::none);
        if (ex.request.get().method() == bhttp::verb::head) ex.response->skip(true);
        if (pumped) ex.conn->stream.expires_never();  // the pump keeps the deadline
        else ex.conn->stream.expires_after(ex.cfg().timeouts.upstream_response);
        auto [ec, n] = co_await bhttp::async_read_header(ex.conn->stream, ex.conn->buffer,
                                                         *ex.response, use_tuple);
        const int status = ex.response->get().result_int();
        if (ec || status < 100 || status > 199 || status == 101) co_return std::tuple(ec, n);
    }
}

// Picks a backend and gets a connection to it: a kept-alive one, or a new one
// within timeouts.connect. A failed connect tries another server, `retries`
// times at most, never the same server twice.
awaitable<errc> ClientSession::open_upstream(Exchange& ex, bool fresh_only) {
    ex.conn.reset();
    ex.active.reset();
    if (ex.runtime != ctx_.runtime || !ex.pickers) {  // first try, or a reload landed
        ex.runtime = ctx_.runtime;
        ex.routing = ctx_.routing;
        ex.pickers = ctx_.pickers;
    }
    ex.upstream_index = ex.runtime->listener_upstream[listener_];
    if (ex.upstream_index == upstream::kNoUpstream) {  // its listener was removed by a reload
        ex.upstream = nullptr;
        co_return errc::no_server;
    }
    ex.upstream = &ex.runtime->upstreams[ex.upstream_index];
    const RequestHead& req = ex.request.get();
    affinity::RouteInput in{req.target(), {}, client_ip_};
    if (auto c = req.find(bhttp::field::cookie); c != req.end()) in.cookie_header = c->value();
    if (ctx_.store) co_await fetch_shared(ex, in);
    std::array<const upstream::Backend*, 16> tried{};
    std::size_t tried_count = 0;
    errc last = errc::no_server;
    const int attempts = std::min<int>(1 + std::max(0, ex.upstream->config->retries),
                                       static_cast<int>(tried.size()));
    for (int attempt = 0; attempt < attempts; ++attempt) {
        const std::span<const upstream::Backend* const> exclude(tried.data(), tried_count);
        auto d = ctx_.router.route(*ex.runtime, ex.upstream_index, *ex.routing,
                                   (*ex.pickers)[ex.upstream_index], in, exclude);
        if (ctx_.store && d.write.op != affinity::SharedWrite::Op::none)
            co_await share_decision(ex, d, exclude);
        in.fetched = false;  // a retry finds the binding in the local table
        if (d.unknown_sid) co_return errc::session_unknown;
        if (!d.backend) co_return last;
        std::shared_ptr<upstream::Backend> backend = d.backend;
        ex.learn_sid = d.learn_sid;
        ex.set_cookie = d.set_cookie;
        ex.active = upstream::ActiveGuard(backend);
        ex.eio = EioSessionGauge(ctx_.stats, backend, ex.upstream->config->name,
                                 eio_transport(*ex.upstream->config, req.method_string(),
                                               req.target(), false));
        if (!fresh_only) ex.conn = ctx_.pool.take_idle(*backend);
        if (ex.conn) {
            ++ctx_.stats.upstream_reuses;
            co_return errc::ok;
        }
        auto [ec, conn] = co_await ctx_.pool.connect(backend, ex.cfg().timeouts.connect);
        ++ctx_.stats.upstream_connects;
        if (!ec) {
            ex.conn = std::move(conn);
            co_return errc::ok;
        }
        ex.active.reset();
        count_failure(*backend, ex.upstream->config->name);
        last = ec == beast::error::timeout ? errc::upstream_timeout : errc::upstream_connect;
        if (tried_count < tried.size()) tried[tried_count++] = backend.get();
        log::warn("upstream '" + ex.upstream->config->name + "' server '" + backend->name() +
                  "': connect failed: " + ec.message());
    }
    co_return last;
}

// On a local miss of the key this request is routed by, asks Redis (within
// redis.timeout) and puts what it knows into the local table.
awaitable<void> ClientSession::fetch_shared(Exchange& ex, affinity::RouteInput& in) {
    const std::string key = ctx_.router.table_key(*ex.runtime, ex.upstream_index, in);
    if (key.empty() || ctx_.router.table().contains(key, Clock::now())) co_return;
    const auto& uc = *ex.upstream->config;  // ex.runtime keeps it alive
    const auto found = co_await ctx_.store->fetch(key);
    if (found.failed) {
        ctx_.router.count_redis_failure(uc.name);
    } else if (found.server) {
        ctx_.router.table().put(key, *found.server, Clock::now(), uc.affinity_ttl);
        in.fetched = true;
    }
}

// Makes the decision's binding shared before the request goes on. A binding
// another replica made first (claim) or replaced first (replace) is adopted
// when its server can take this client.
awaitable<void> ClientSession::share_decision(Exchange& ex, affinity::RouteDecision& d,
                                              std::span<const upstream::Backend* const> exclude) {
    using Op = affinity::SharedWrite::Op;
    auto& w = d.write;
    const auto& uc = *ex.upstream->config;
    std::optional<std::string> holder;
    switch (w.op) {
        case Op::none: co_return;
        case Op::refresh: ctx_.store->refresh(w.key, w.server, w.ttl); co_return;
        case Op::remove: ctx_.store->remove(w.key, w.previous); co_return;
        case Op::claim: holder = co_await ctx_.store->claim(w.key, w.server, w.ttl); break;
        case Op::replace:
            holder = co_await ctx_.store->replace(w.key, w.previous, w.server, w.ttl);
            break;
    }
    if (!holder) {
        ctx_.router.count_redis_failure(uc.name);
        co_return;
    }
    if (*holder == w.server) co_return;
    const auto other = ctx_.router.bound_backend(*ex.upstream, ex.routing->upstreams[ex.upstream_index],
                                                 *holder, exclude);
    if (!other) co_return;  // it cannot take this client here: keep our placement
    ctx_.router.table().put(w.key, *holder, Clock::now(), w.ttl);
    d.backend = other;
    if (!d.set_cookie.empty())
        d.set_cookie = ex.routing->upstreams[ex.upstream_index].set_cookie[
            ex.routing->upstreams[ex.upstream_index].by_name.at(other->name())];
}

// Sends the request head and body upstream: in one write when the body is
// already here whole (none, or a short one read with the head), otherwise
// from the pump, beside the response. A body here whole is written from the
// client buffer as is and parsed only once the response head came, so that a
// kept-alive connection found closed can be retried with the whole request.
awaitable<void> ClientSession::send_request(Exchange& ex, Duplex& d) {
    const RequestHead& req = ex.request.get();
    RequestRewrite rw;
    rw.client_ip = client_ip_;
    rw.peer_ip = peer_ip_;
    rw.proto = stream_.is_tls() ? "https" : "http";
    rw.request_id = ex.cfg().headers.request_id ? std::string_view(request_id_) : "";
    rw.forwarded = ex.cfg().headers.forwarded;
    rw.upgrade = ex.verdict.websocket_upgrade;
    if (ex.request.chunked()) rw.body = Framing::chunked;
    else if (ex.request.content_length()) rw.body = Framing::length;
    upstream_head_.clear();
    write_request_head(req, rw, upstream_head_);
    const auto& t = ex.cfg().timeouts;
    RelayEnv env{ctx_.buffers, t.idle, t.idle};
    if (const auto whole = whole_body_here(ex)) {
        ex.held_body = *whole;
        const std::array<asio::const_buffer, 2> out{
            asio::buffer(upstream_head_), asio::buffer(buffer_.data().data(), ex.held_body)};
        ex.conn->stream.expires_after(t.idle);
        d.request.head_out = true;
        auto [ec, n] = co_await asio::async_write(ex.conn->stream, out, use_tuple);
        if (ec) d.request_status.failed_side = RelaySide::destination;
        d.request_relayed = true;
        co_return;
    }
    start_pump(d, stream_.get_executor(),
               pump_request(d, stream_, buffer_, ex.request, ex.conn->stream, upstream_head_,
                            rw.body, env, t.upstream_response));
}

// The body's size when all of it is in the client buffer (none, or a
// Content-Length body of at most one relay buffer); nullopt when it has yet to come.
std::optional<std::size_t> ClientSession::whole_body_here(Exchange& ex) const {
    if (ex.request.is_done()) return 0;
    if (ex.request.chunked()) return std::nullopt;
    const auto left = ex.request.content_length_remaining();
    if (!left || *left > buffer_.size() || *left > ctx_.buffers.buffer_size()) return std::nullopt;
    return static_cast<std::size_t>(*left);
}

// Parses the body that went upstream straight from the client buffer, so the
// buffer holds the next request only.
void ClientSession::take_held_body(Exchange& ex) {
    if (ex.held_body == 0) return;
    BufferPool::Lease lease = ctx_.buffers.borrow();
    beast::error_code ec;
    while (ex.held_body > 0 && !ec) {
        ex.request.get().body().data = lease.data();
        ex.request.get().body().size = lease.size();
        const std::size_t used =
            ex.request.put(asio::buffer(buffer_.data().data(), ex.held_body), ec);
        if (ec == bhttp::error::need_buffer) ec = {};
        buffer_.consume(used);
        ex.held_body -= std::min(used, ex.held_body);
        if (used == 0) break;
    }
    ex.held_body = 0;
    if (!ex.request.is_done()) ex.close = true;  // never parse the rest as a request
}

awaitable<Outcome> ClientSession::respond(Exchange& ex, Duplex& d) {
    auto& res = *ex.response;
    const ResponseHead& head = res.get();
    const unsigned version = ex.request.get().version();
    ex.status = head.result_int();
    if (ex.status == 101 && ex.verdict.websocket_upgrade && !d.pumped)
        co_return co_await start_tunnel(ex);
    if (ex.status == 101) {
        if (d.pumped) {
            stop(d, stream_, ex.conn->stream);
            co_await join(d);
        }
        co_await send_error(&ex, errc::upstream_broken);
        co_return Outcome::close;
    }
    ResponseRewrite rw;
    if (ex.request.get().method() == bhttp::verb::head || res.is_done()) rw.body = Framing::none;
    else if (res.content_length()) rw.body = Framing::length;
    else rw.body = version == 11 ? Framing::chunked : Framing::until_close;
    ex.close = ex.close || rw.body == Framing::until_close;
    rw.close = ex.close;
    rw.keep_alive_header = !ex.close && version == 10;
    rw.extra = ex.set_cookie;
    head_.clear();
    write_response_head(head, version, rw, head_);
    std::optional<SidLearner> learner;
    if (ex.learn_sid && ex.status == 200)
        learner.emplace(ctx_.router, ctx_.store, ex.runtime, *ex.upstream, ex.conn->backend);
    const bool upstream_reusable = res.keep_alive() && !res.need_eof();
    RelayEnv env{ctx_.buffers, ex.cfg().timeouts.upstream_response, ex.cfg().timeouts.idle,
                 &d.stop};
    const RelayStatus st = co_await relay_body(ex.conn->stream, ex.conn->buffer, res, stream_,
                                               head_, rw.body, env, d.response,
                                               learner ? &*learner : nullptr);
    ex.bytes_sent = st.body_bytes;
    const bool response_done = st.failed_side == RelaySide::none;
    if (d.pumped) {
        if (!response_done || !d.request_relayed) stop(d, stream_, ex.conn->stream);
        co_await join(d);
    }
    const RelayStatus& sent = d.request_status;
    if (!response_done) {
        if (sent.failed_side == RelaySide::source && sent.error != errc::ok &&
            !d.response.head_out)
            co_await send_error(&ex, sent.error);
        co_return Outcome::close;
    }
    if (sent.failed_side != RelaySide::none) {  // answered before the request was all read
        linger_ = true;
        co_return Outcome::close;
    }
    if (upstream_reusable && res.is_done()) {
        ctx_.pool.give_back(std::move(ex.conn), ex.upstream->config->keepalive);
    }
    co_return ex.close ? Outcome::close : Outcome::keep_alive;
}

// After a response that ended while the client was still sending its body:
// end our side (FIN), then read and drop what still comes, for a bounded
// time, so that closing does not reset the connection under a response the
// client has not read yet (nginx's lingering close).
awaitable<void> ClientSession::linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    buffer_.consume(buffer_.size());
    BufferPool::Lease lease = ctx_.buffers.borrow();
    const auto until = Clock::now() + kLingerTime;
    idle_ = true;
    while (!stopping_ && !ctx_.stopping) {
        const auto left = until - Clock::now();
        if (left <= Clock::duration::zero()) break;
        stream_.expires_after(std::min<Clock::duration>(left, kLingerRead));
        auto [rec, n] = co_await stream_.async_read_some(
            asio::buffer(lease.data(), lease.size()), use_tuple);
        if (rec) break;
    }
    idle_ = false;
}

// 101 from the backend: forward it, then hand both sockets and the bytes
// already read past the heads to the tunnel, after this exchange's state is
// gone (an idle tunnel must not keep a parser or a header buffer alive).
awaitable<Outcome> ClientSession::start_tunnel(Exchange& ex) {
    ResponseRewrite rw;
    rw.upgrade = true;
    rw.extra = ex.set_cookie;
    head_.clear();
    write_response_head(ex.response->get(), 11, rw, head_);
    stream_.expires_after(ex.cfg().timeouts.idle);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(head_), use_tuple);
    if (ec) co_return Outcome::close;
    stream_.expires_never();
    ws::TunnelSetup setup{stream_, ex.conn->stream.release_socket(),
                          beast::buffers_to_string(buffer_.data()),
                          beast::buffers_to_string(ex.conn->buffer.data())};
    buffer_.consume(buffer_.size());
    setup.server_key = ex.conn->backend->shared_state().get();  // for drains
    if (ex.learn_sid) {
        tunnel_learner_.emplace(ctx_.router, ctx_.store, ex.runtime, *ex.upstream,
                                ex.conn->backend);
        setup.first_frame_inspector = &*tunnel_learner_;
    }
    tunnel_.emplace(std::move(setup));
    tunnel_guard_ = upstream::ActiveGuard(ex.active.shared());
    tunnel_upstream_.assign(ex.upstream->config->name);
    tunnel_eio_ = EioSessionGauge(
        ctx_.stats, tunnel_guard_.shared(), tunnel_upstream_,
        eio_transport(*ex.upstream->config, "GET", ex.request.get().target(), true));
    co_return Outcome::tunnel;
}

awaitable<void> ClientSession::run_tunnel() {
    buffer_.shrink_to_fit();
    std::string().swap(head_);
    std::string().swap(upstream_head_);
    const auto& cfg = *ctx_.runtime->config;
    ws::TunnelContext tctx{ctx_.buffers, ctx_.registry, cfg.timeouts.tunnel,
                           cfg.timeouts.shutdown / 10, ctx_.stopping};
    ++ctx_.stats.tunnels_opened;
    const std::string upstream = tunnel_upstream_;
    auto backend = tunnel_guard_.shared();
    ++ctx_.stats.server(backend, upstream).tunnels_active;
    auto& uc = ctx_.stats.upstream(upstream);  // map node: stable while the tunnel runs
    tctx.frames_to_server_total = &uc.frames_to_server;
    tctx.frames_to_client_total = &uc.frames_to_client;
    const ws::TunnelStats st = co_await ws::run_tunnel(std::move(*tunnel_), tctx);
    --ctx_.stats.server(backend, upstream).tunnels_active;
    tunnel_.reset();
    tunnel_guard_.reset();
    tunnel_learner_.reset();
    tunnel_eio_.reset();
    ctx_.stats.frames_to_server += st.frames_to_server;
    ctx_.stats.frames_to_client += st.frames_to_client;
}

awaitable<void> ClientSession::send_error(Exchange* ex, errc e) {
    ++ctx_.stats.errors;
    if (ex) {
        ex->status = to_http_status(e);
        ex->close = true;
    }
    head_.clear();
    write_error_response(e, request_id_, true, head_, retry_after_s_);
    stream_.expires_after(ctx_.runtime->config->timeouts.idle);
    co_await asio::async_write(stream_, asio::buffer(head_), use_tuple);
}

awaitable<void> ClientSession::send_unknown_sid(Exchange& ex) {
    ex.status = 400;
    ex.close = true;
    std::string_view origin;
    const RequestHead& req = ex.request.get();
    if (auto o = req.find(bhttp::field::origin); o != req.end()) origin = o->value();
    head_.clear();
    write_engineio_unknown_sid(request_id_, origin, head_);
    stream_.expires_after(ex.cfg().timeouts.idle);
    co_await asio::async_write(stream_, asio::buffer(head_), use_tuple);
}

// Counters and the access log line for a finished exchange.
void ClientSession::record(const Exchange& ex) {
    const double seconds = std::chrono::duration<double>(Clock::now() - ex.start).count();
    if (ex.upstream) {
        const std::string_view uname = ex.upstream->config->name;
        ctx_.stats.upstream(uname).observe(seconds);
        const auto& backend = ex.active.get() ? ex.active.shared() : tunnel_guard_.shared();
        if (backend) {
            auto& sc = ctx_.stats.server(backend, uname);
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

}  // namespace

awaitable<void> serve_client(tcp::socket socket, ProxyContext& ctx, std::size_t listener,
                             ClientOrigin origin) {
    ClientSession session(std::move(socket), ctx, listener, std::move(origin));
    co_await session.run();
}

}  // namespace tether::http
