// Client session, the exchange itself: the request head and body sent
// upstream (whole from the client buffer or by the pump), the response head
// read and relayed, the Engine.IO sid learnt on the way, lingering close, and
// the switch to a WebSocket tunnel on 101.
// Threading: runs on its worker's executor only.
#include "http/client_session.hpp"

#include <unistd.h>

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>

#include "http/relay_whole.hpp"
#include "tether/http/headers.hpp"
#include "tether/ws/plain_tunnel.hpp"

namespace tether::http::detail {

namespace {

constexpr std::size_t kMaxResponseHead = 64 * 1024;
// Lingering close after a response that ended while the client was still
// sending (nginx's lingering_time and lingering_timeout defaults).
constexpr auto kLingerTime = std::chrono::seconds(30);
constexpr auto kLingerRead = std::chrono::seconds(5);

}  // namespace

Awaitable<bool> SidLearner::inspect(std::string_view bytes) {
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

// Sends the request head and body upstream: in one write when the body is
// already here whole (none, or a short one read with the head), otherwise
// from the pump, beside the response. A body here whole is written from the
// client buffer as is and parsed only once the response head came, so that a
// kept-alive connection found closed can be retried with the whole request.
// Not a coroutine (no frame per request): true when the request is on its
// way; false when the socket took `written` bytes of a whole request only,
// and send_rest() writes the rest.
bool ClientSession::send_request(Exchange& ex, Duplex& d, std::size_t& written) {
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
    if (const auto whole = whole_body_here(ex)) {
        ex.held_body = *whole;
        d.request.head_out = true;
        boost::system::error_code ec;
        if (!write_at_once(ex.conn->stream, whole_request(ex), upstream_head_.size() + ex.held_body,
                           ec, written, &ctx_.sends))
            return false;
        if (ec) d.request_status.failed_side = RelaySide::destination;
        d.request_relayed = true;
        return true;
    }
    RelayEnv env{ctx_.buffers, t.idle, t.idle, nullptr, nullptr, &ctx_.bulk};
    start_pump(d, stream_.get_executor(),
               pump_request(d, stream_, buffer_, ex.request, ex.conn->stream, upstream_head_,
                            rw.body, env, t.upstream_response));
    return true;
}

// The request head and the body held in the client buffer.
std::array<asio::const_buffer, 2> ClientSession::whole_request(const Exchange& ex) const {
    return {asio::buffer(upstream_head_), asio::buffer(buffer_.data().data(), ex.held_body)};
}

// The result of a whole request's write the send queue took (send_request
// false, the stream's send_queued()): true when it settled the request's
// write; false when `written` bytes went and send_rest() writes the rest.
bool ClientSession::request_sent(Exchange& ex, Duplex& d, boost::system::error_code ec,
                                 std::size_t& written) {
    if (!queued_settled(ec, written, upstream_head_.size() + ex.held_body)) return false;
    if (ec) d.request_status.failed_side = RelaySide::destination;
    d.request_relayed = true;
    return true;
}

// The rest of a whole request the socket did not take at once.
Awaitable<void> ClientSession::send_rest(Exchange& ex, Duplex& d, std::size_t written) {
    ex.conn->stream.expires_after(ex.cfg().timeouts.idle);
    auto [ec, n] = co_await write_rest(ex.conn->stream, whole_request(ex), written);
    if (ec) d.request_status.failed_side = RelaySide::destination;
    d.request_relayed = true;
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

// Readies the read of the backend's response head (`interim`: of the one
// after an interim 1xx): a new parser with its limits, and the deadline
// timeouts.upstream_response, counted from the end of the request (by the
// pump when there is one). proxy() reads it (not a coroutine of its own:
// one frame less per request).
void ClientSession::start_response_head(Exchange& ex, bool pumped, bool interim) {
    ex.response.emplace();
    ex.response->header_limit(kMaxResponseHead);
    ex.response->body_limit(boost::none);
    if (ex.request.get().method() == bhttp::verb::head) ex.response->skip(true);
    if (pumped) ex.conn->stream.expires_never();  // the pump keeps the deadline
    else ex.conn->stream.expires_after(ex.cfg().timeouts.upstream_response);
    // A kept-alive connection's last response came whole: if its last read
    // drained the socket, wait for the answer without a recv that finds
    // nothing (a backend that closed meanwhile answers the request with a
    // reset, which wakes the read). Plain only: a TLS stream's raw reads
    // do not follow the messages.
    if (ex.conn->reused && !ex.conn->stream.is_tls() && ex.conn->buffer.size() == 0 && !interim)
        ex.conn->stream.tcp().next_read_starts_message();
}

// Relays the response whose head proxy() read (counted as the server's
// success, or as a failure by fail_on_status). Not a coroutine: the usual
// case (no pump, a response here whole that the client's socket takes at
// once, see relay_whole.hpp) waits for nothing, and a coroutine's frame,
// made, started, resumed and freed, was ~250 instructions a request
// (callgrind). Nullopt: the outcome is in `out`; otherwise co_await the
// returned coroutine for it, which goes on from where this left off.
// A response the send queue took (`queued`, filled in with what is needed
// here) also returns nullopt: the caller awaits the write's result and
// calls respond_sent().
std::optional<Awaitable<Outcome>> ClientSession::respond(Exchange& ex, Duplex& d, Outcome& out,
                                                         QueuedResponse& queued) {
    ex.status = ex.response->get().result_int();
    // The answer is relayed either way; fail_on_status only counts it.
    const auto& uc = *ex.upstream->config;
    if (config::status_in(ex.status, uc.fail_on_status)) count_failure(*ex.conn->backend, uc.name);
    else ex.conn->backend->record_success(core::coarse_now());
    take_held_body(ex);
    if (ex.status == 101 || d.pumped || (ex.learn_sid && ex.status == 200))
        return respond_rest(ex, d, std::nullopt, WholeRelay{});
    const ResponsePlan plan = plan_response(ex);
    RelayStatus st;
    WholeRelay whole;
    if (!relay_whole_now(ex.conn->stream, ex.conn->buffer, *ex.response, stream_, head_, plan.body,
                         response_env(ex, d), d.response, whole, st))
        return respond_rest(ex, d, plan, WholeRelay{});
    if (whole.pending && stream_.send_queued()) {
        queued.whole = std::move(whole);
        queued.plan = plan;
        queued.queued = true;
        return std::nullopt;
    }
    if (whole.pending) return respond_rest(ex, d, plan, std::move(whole));
    whole.buf.release();
    // No pump: the request went whole (send_request), and its status fails
    // on the destination side only, so there is no client error to answer.
    out = responded(ex, d, st, plan);
    return std::nullopt;
}

// respond() after the result (`ec`, `n` bytes sent) of the response's write
// the send queue took: as relay_whole_now and finish_whole end it, or the
// rest of the write by respond_rest.
std::optional<Awaitable<Outcome>> ClientSession::respond_sent(Exchange& ex, Duplex& d,
                                                              Outcome& out, QueuedResponse& queued,
                                                              boost::system::error_code ec,
                                                              std::size_t n) {
    WholeRelay& w = queued.whole;
    if (!queued_settled(ec, n, asio::buffer_size(w.out))) {
        w.written = n;
        return respond_rest(ex, d, queued.plan, std::move(w));
    }
    RelayStatus st;
    if (!ec) st.body_bytes += w.body;
    if (d.stop) st.failed_side = RelaySide::stopped;
    else if (ec) st.failed_side = RelaySide::destination;
    w.buf.release();
    out = responded(ex, d, st, queued.plan);
    return std::nullopt;
}

// respond()'s steps that wait, from where it left off: all of them (no
// `plan`: a 101, a pump to join, an Engine.IO sid to learn), the body by
// relay_body (a `plan`: the head is written, relay_whole_now declined), or
// the rest of relay_whole_now's write (`whole.pending`).
Awaitable<Outcome> ClientSession::respond_rest(Exchange& ex, Duplex& d,
                                               std::optional<ResponsePlan> plan,
                                               WholeRelay whole) {
    const bool whole_tried = plan.has_value();
    if (!plan) {
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
        plan = plan_response(ex);
    }
    std::optional<SidLearner> learner;
    if (ex.learn_sid && ex.status == 200)
        learner.emplace(ctx_.router, ctx_.store, ex.runtime, *ex.upstream, ex.conn->backend);
    const RelayEnv env = response_env(ex, d);
    RelayStatus st;
    if (whole.pending) {
        st = co_await finish_whole(stream_, whole, env);
    } else if (!whole_tried && !learner &&
               relay_whole_now(ex.conn->stream, ex.conn->buffer, *ex.response, stream_, head_,
                               plan->body, env, d.response, whole, st)) {
        if (whole.pending) st = co_await finish_whole(stream_, whole, env);
    } else {
        st = co_await relay_body(ex.conn->stream, ex.conn->buffer, *ex.response, stream_, head_,
                                 plan->body, env, d.response, learner ? &*learner : nullptr);
    }
    whole.buf.release();  // borrowed while bytes are in flight only, as relay_body's
    if (d.pumped) {
        if (st.failed_side != RelaySide::none || !d.request_relayed)
            stop(d, stream_, ex.conn->stream);
        co_await join(d);
    }
    const RelayStatus& sent = d.request_status;
    if (st.failed_side != RelaySide::none && sent.failed_side == RelaySide::source &&
        sent.error != errc::ok && !d.response.head_out)
        co_await send_error(&ex, sent.error);
    co_return responded(ex, d, st, *plan);
}

// The response head for the client in head_, and how its body goes.
ResponsePlan ClientSession::plan_response(Exchange& ex) {
    const auto& res = *ex.response;
    const unsigned version = ex.request.get().version();
    ResponseRewrite rw;
    if (ex.request.get().method() == bhttp::verb::head || res.is_done()) rw.body = Framing::none;
    else if (res.content_length()) rw.body = Framing::length;
    else rw.body = version == 11 ? Framing::chunked : Framing::until_close;
    ex.close = ex.close || rw.body == Framing::until_close;
    rw.close = ex.close;
    rw.keep_alive_header = !ex.close && version == 10;
    rw.extra = ex.set_cookie;
    head_.clear();
    write_response_head(res.get(), res.fields(), version, rw, head_);
    return {rw.body, res.keep_alive() && !res.need_eof()};
}

RelayEnv ClientSession::response_env(const Exchange& ex, Duplex& d) {
    return {ctx_.buffers, ex.cfg().timeouts.upstream_response, ex.cfg().timeouts.idle, &d.stop,
            &ctx_.sends, &ctx_.bulk};
}

// The outcome of a relayed response `st` (the pump, if any, joined; any
// error answered): the backend connection kept for the next request when
// the response ended cleanly, a lingering close when the client was still
// sending.
Outcome ClientSession::responded(Exchange& ex, const Duplex& d, const RelayStatus& st,
                                 const ResponsePlan& plan) {
    ex.bytes_sent = st.body_bytes;
    if (st.failed_side != RelaySide::none) return Outcome::close;
    if (d.request_status.failed_side != RelaySide::none) {  // answered before the request was all read
        linger_ = true;
        return Outcome::close;
    }
    if (plan.upstream_reusable && ex.response->is_done())
        ctx_.pool.give_back(std::move(ex.conn), ex.upstream->config->keepalive);
    return ex.close ? Outcome::close : Outcome::keep_alive;
}

// After a response that ended while the client was still sending its body:
// end our side (FIN), then read and drop what still comes, for a bounded
// time, so that closing does not reset the connection under a response the
// client has not read yet (nginx's lingering close).
Awaitable<void> ClientSession::linger() {
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
            asio::buffer(lease.data(), lease.size()), await_tuple);
        if (rec) break;
    }
    idle_ = false;
}

// 101 from the backend: forward it, then hand both sockets and the bytes
// already read past the heads to the tunnel, after this exchange's state is
// gone (an idle tunnel must not keep a parser or a header buffer alive).
Awaitable<Outcome> ClientSession::start_tunnel(Exchange& ex) {
    ResponseRewrite rw;
    rw.upgrade = true;
    rw.extra = ex.set_cookie;
    head_.clear();
    write_response_head(ex.response->get(), ex.response->fields(), 11, rw, head_);
    stream_.expires_after(ex.cfg().timeouts.idle);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(head_), await_tuple);
    if (ec) co_return Outcome::close;
    stream_.expires_never();
    tunnel_conn_ = std::move(ex.conn);  // plain or TLS: the tunnel borrows its stream
    auto& conn = *tunnel_conn_;
    ws::TunnelSetup setup{stream_, conn.stream, beast::buffers_to_string(buffer_.data()),
                          beast::buffers_to_string(conn.buffer.data())};
    buffer_.consume(buffer_.size());
    conn.buffer.consume(conn.buffer.size());
    conn.buffer.shrink_to_fit();
    setup.server_key = conn.backend->shared_state().get();  // for drains
    if (ex.learn_sid) {
        tunnel_learner_ = std::make_unique<SidLearner>(ctx_.router, ctx_.store, ex.runtime,
                                                       *ex.upstream, conn.backend);
        setup.first_frame_inspector = tunnel_learner_.get();
    }
    tunnel_.emplace(std::move(setup));
    tunnel_guard_ = upstream::ActiveGuard(ex.active.shared());
    tunnel_upstream_.assign(ex.upstream->config->name);
    tunnel_eio_ = EioSessionGauge(
        ctx_.stats, tunnel_guard_.shared(), tunnel_upstream_,
        eio_transport(*ex.upstream->config, "GET", true, ex.eio_query));
    co_return Outcome::tunnel;
}

namespace {

// What a plain tunnel keeps of its session: the connection's counts, the
// server's active count, the Engine.IO gauge, the sid learner; the counters
// get the tunnel's figures when it ends.
class SessionTunnelOwner final : public ws::TunnelOwner {
public:
    SessionTunnelOwner(ProxyContext& ctx, ConnectionHold hold, upstream::ActiveGuard guard,
                       EioSessionGauge eio, std::unique_ptr<SidLearner> learner,
                       std::string upstream)
        : ctx_(ctx), hold_(std::move(hold)), guard_(std::move(guard)), eio_(std::move(eio)),
          learner_(std::move(learner)), upstream_(std::move(upstream)) {
        ++ctx_.stats.server(guard_.shared(), upstream_).tunnels_active;
    }

    void finished(const ws::TunnelStats& st) override {
        --ctx_.stats.server(guard_.shared(), upstream_).tunnels_active;
        ctx_.stats.frames_to_server += st.frames_to_server;
        ctx_.stats.frames_to_client += st.frames_to_client;
    }

private:
    ProxyContext& ctx_;
    ConnectionHold hold_;
    upstream::ActiveGuard guard_;
    EioSessionGauge eio_;
    std::unique_ptr<SidLearner> learner_;
    std::string upstream_;
};

}  // namespace

// A plain tunnel (ws:// client, plain upstream) leaves the session: both
// descriptors, the counts and guards go to the worker's tunnel reactor, and
// the session ends, so an idle tunnel keeps no session, coroutine or buffer.
void ClientSession::hand_off_tunnel(const ws::TunnelContext& tctx) {
    ws::PlainTunnelSetup setup;
    setup.to_server = std::move(tunnel_->to_server);
    setup.to_client = std::move(tunnel_->to_client);
    setup.first_frame_inspector = tunnel_->first_frame_inspector;
    setup.server_key = tunnel_->server_key;
    beast::error_code ec;
    setup.server_fd = tunnel_->server.socket().release(ec);
    if (ec) setup.server_fd = -1;
    setup.client_fd = stream_.socket().release(ec);
    if (ec) setup.client_fd = -1;
    tunnel_.reset();
    tunnel_conn_.reset();  // its socket is released: only the object goes
    auto owner = std::make_unique<SessionTunnelOwner>(
        ctx_, std::move(hold_), std::move(tunnel_guard_), std::move(tunnel_eio_),
        std::move(tunnel_learner_), std::move(tunnel_upstream_));
    if (setup.client_fd < 0 || setup.server_fd < 0) {
        if (setup.client_fd >= 0) ::close(setup.client_fd);
        if (setup.server_fd >= 0) ::close(setup.server_fd);
        owner->finished({});
        return;
    }
    ws::start_plain_tunnel(ctx_.tunnel_reactor(), std::move(setup), tctx, std::move(owner));
}

Awaitable<void> ClientSession::run_tunnel() {
    buffer_.shrink_to_fit();
    std::string().swap(head_);
    std::string().swap(upstream_head_);
    const auto& cfg = *ctx_.runtime->config;
    ws::TunnelContext tctx{ctx_.buffers, ctx_.registry, cfg.timeouts.tunnel,
                           cfg.timeouts.shutdown / 10, ctx_.stopping};
    ++ctx_.stats.tunnels_opened;
    auto& uc = ctx_.stats.upstream(tunnel_upstream_);  // map node: stable while the tunnel runs
    tctx.frames_to_server_total = &uc.frames_to_server;
    tctx.frames_to_client_total = &uc.frames_to_client;
    // Both sides plain: the reactor's tunnel. A TLS side (wss from the client,
    // or an upstream with `tls`) keeps the coroutine tunnel, whose reads go
    // through the TLS stream.
    if (!stream_.is_tls() && !tunnel_->server.is_tls()) {
        hand_off_tunnel(tctx);
        co_return;
    }
    const std::string upstream = tunnel_upstream_;
    auto backend = tunnel_guard_.shared();
    ++ctx_.stats.server(backend, upstream).tunnels_active;
    const ws::TunnelStats st = co_await ws::run_tunnel(std::move(*tunnel_), tctx);
    --ctx_.stats.server(backend, upstream).tunnels_active;
    tunnel_.reset();
    tunnel_conn_.reset();
    tunnel_guard_.reset();
    tunnel_learner_.reset();
    tunnel_eio_.reset();
    ctx_.stats.frames_to_server += st.frames_to_server;
    ctx_.stats.frames_to_client += st.frames_to_client;
}

}  // namespace tether::http::detail
