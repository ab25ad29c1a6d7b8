// Client session, the way to a backend: routing (with the shared affinity
// table in Redis when there is one), a kept-alive or new upstream connection,
// retries on another server, and the tries of an exchange (proxy: the request
// sent, the response head read, the answer relayed by respond.cpp).
// Threading: runs on its worker's executor only.
#include "http/client_session.hpp"

#include "tether/core/log.hpp"
#include "tether/http/proxy_header.hpp"

namespace tether::http::detail {

namespace {

constexpr int kMaxStaleRetries = 3;

}  // namespace

/// Passive health: a connect, send or response-head failure of `b`, or an
/// answer with a status in the upstream's fail_on_status.
void count_failure(upstream::Backend& b, std::string_view upstream) {
    if (b.record_failure(core::coarse_now()))
        log::warn("upstream '" + std::string(upstream) + "' server '" + b.name() +
                  "': out for fail_timeout after max_fails failures");
}

// Routes the request and relays it with its response; a kept-alive
// connection that turns out closed before any request body byte was taken
// from the client is tried again (on a fresh one after the first stale ones).
// The request's one coroutine: the steps that wait for nothing in the usual
// case are plain functions (open_upstream, send_request, respond) and the
// response head is read here, since a coroutine of its own is a frame made,
// started, resumed and freed on every request (~250 instructions, callgrind).
Awaitable<Outcome> ClientSession::proxy(Exchange& ex) {
    bool fresh_only = false;
    for (int stale = 0;; ++stale) {
        errc e = errc::ok;
        if (auto rest = open_upstream(ex, fresh_only, e)) e = co_await std::move(*rest);
        if (e != errc::ok) {
            if (e == errc::session_unknown) co_await send_unknown_sid(ex);
            else co_await send_error(&ex, e);
            co_return Outcome::close;
        }
        Duplex d;
        std::optional<Outcome> out;
        std::exception_ptr escaped;
        try {  // one try on this connection: the request, then its body and the response at once
            if (std::size_t written = 0; !send_request(ex, d, written)) {
                bool sent = false;
                if (ex.conn->stream.send_queued()) {  // awaited here: no frame of send_rest's
                    auto [qec, qn] = co_await ex.conn->stream.async_queued_send(await_tuple);
                    written = qn;
                    sent = request_sent(ex, d, qec, written);
                }
                if (!sent) co_await send_rest(ex, d, written);
            }
            beast::error_code ec = asio::error::broken_pipe;
            std::size_t n = 0;
            if (d.pumped || d.request_status.failed_side == RelaySide::none) {
                // The response head, past interim 1xx responses (other than 101), which
                // the client does not expect: tether answered any Expect: 100-continue itself.
                for (bool interim = false;; interim = true) {
                    start_response_head(ex, d.pumped, interim);
                    ec = {};
                    n = 0;
                    while (!settled_by_buffer(ex.conn->buffer, *ex.response, true, ec, n)) {
                        const auto room = read_room(ex.conn->buffer, ec);  // read_header's steps
                        if (ec) break;
                        auto [rec, got] = co_await ex.conn->stream.async_read_some(room, await_tuple);
                        if (after_read(ex.conn->buffer, *ex.response, rec, got, ec)) break;
                    }
                    const unsigned status = ex.response->get().result_int();
                    if (ec || status < 100 || status > 199 || status == 101) break;
                }
            }
            head_read_ended(d);
            if (!ec && !d.stop) {
                Outcome o = Outcome::close;
                QueuedResponse queued;
                auto rest = respond(ex, d, o, queued);
                if (!rest && queued.queued) {  // awaited here: no frame of respond_rest's
                    auto [qec, qn] = co_await stream_.async_queued_send(await_tuple);
                    rest = respond_sent(ex, d, o, queued, qec, qn);
                }
                if (rest) o = co_await std::move(*rest);
                out = o;
            } else {
                out = co_await no_response(ex, d, ec, n,
                                           ex.conn->reused && stale < kMaxStaleRetries);
            }
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

// No response head from the backend (read error `ec` after `n` bytes of it,
// a timeout, or a stop): the pump ended, the client answered. Nullopt: the
// kept-alive connection turned out closed before any request body byte was
// taken from the client (`may_retry`); try again.
Awaitable<std::optional<Outcome>> ClientSession::no_response(Exchange& ex, Duplex& d,
                                                             beast::error_code ec, std::size_t n,
                                                             bool may_retry) {
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
    if (ex.conn->stream.is_tls())  // e.g. TLS 1.3: our client certificate refused after the handshake
        log::warn("upstream '" + ex.upstream->config->name + "' server '" +
                  ex.conn->backend->name() + "': no response over TLS: " +
                  (timed_out ? std::string("timed out") : ec.message()));
    co_await send_error(&ex, timed_out ? errc::upstream_timeout : errc::upstream_broken);
    co_return Outcome::close;
}

// Picks a backend and gets a connection to it: a kept-alive one, or a new one
// within timeouts.connect. A failed connect tries another server, `retries`
// times at most, never the same server twice. Not a coroutine: the usual
// case (routed on local state, a pooled connection ready) has nothing to wait
// for, and a coroutine's frame, made, started, resumed and freed, was ~250
// instructions a request (callgrind). Nullopt: the result is in `result`;
// otherwise co_await the returned coroutine for it (a Redis lookup or write,
// or a connect), which goes on from where this left off.
std::optional<Awaitable<errc>> ClientSession::open_upstream(Exchange& ex, bool fresh_only,
                                                            errc& result) {
    ex.conn.reset();
    ex.active.reset();
    if (ex.runtime != ctx_.runtime) {  // a reload landed since the request began
        ex.runtime = ctx_.runtime;
        ex.routing = ctx_.routing;
        ex.pickers = ctx_.pickers;
    }
    ex.upstream_index = ex.runtime->listener_upstream[listener_];
    if (ex.upstream_index == upstream::kNoUpstream) {  // its listener was removed by a reload
        ex.upstream = nullptr;
        result = errc::no_server;
        return std::nullopt;
    }
    ex.upstream = &ex.runtime->upstreams[ex.upstream_index];
    const RequestHead& req = ex.request.get();
    UpstreamSearch s;
    s.in = affinity::RouteInput{req.target(), {}, client_ip_};
    if (auto c = req.find(bhttp::field::cookie); c != req.end()) s.in.cookie_header = c->value();
    const auto& uc = *ex.upstream->config;
    if (uc.affinity == config::Affinity::sid) {  // read once, for the router and the gauge
        ex.eio_query = balance::eio_query(req.target(), uc.sid.path, uc.sid.param);
        s.in.eio = &ex.eio_query;
        s.in.memo = &sid_memo_;
    }
    s.in.may_fetch = ctx_.store != nullptr;
    s.fresh_only = fresh_only;
    s.attempts = std::min<int>(1 + std::max(0, uc.retries), static_cast<int>(s.tried.size()));
    ex.spec = ConnectSpec{};  // in the Exchange: keeps open_upstream's frame small
    if (!connect_spec(ex, ex.spec)) {
        result = errc::upstream_connect;
        return std::nullopt;
    }
    auto d = route(ex, s);
    if (d.write.op == affinity::SharedWrite::Op::fetch || (ctx_.store && !share_now(d.write)))
        return open_upstream_rest(ex, std::move(s), std::move(d));
    s.in.fetched = false;  // a retry finds the binding in the local table
    if (auto e = take_decision(ex, s, d)) {
        result = *e;
        return std::nullopt;
    }
    return open_upstream_rest(ex, std::move(s), std::move(d));
}

// open_upstream's steps that wait, from where it left off: `d` routed and
// not yet taken (ex.active empty: its Redis fetch or write comes first), or
// taken without a kept-alive connection (ex.active holds its server: connect).
Awaitable<errc> ClientSession::open_upstream_rest(Exchange& ex, UpstreamSearch s,
                                                  affinity::RouteDecision d) {
    for (;;) {
        if (!ex.active.get()) {
            if (d.write.op == affinity::SharedWrite::Op::fetch) {  // a local miss: ask Redis first
                co_await fetch_shared(ex, s.in, d.write.key);
                d = route(ex, s);
            }
            if (ctx_.store && !share_now(d.write)) co_await share_decision(ex, d, s.exclude());
            s.in.fetched = false;  // a retry finds the binding in the local table
            if (auto e = take_decision(ex, s, d)) co_return *e;
        }
        const upstream::Backend* const backend = ex.active.get();
        const errc e = co_await connect_new(ex, ex.active.shared());  // ex.active reset on failure
        if (e == errc::ok) co_return errc::ok;
        s.last = e;
        if (s.tried_count < s.tried.size()) s.tried[s.tried_count++] = backend;
        if (++s.attempt >= s.attempts) co_return s.last;
        d = route(ex, s);
    }
}

// The router's decision for this request, past the servers tried already.
affinity::RouteDecision ClientSession::route(Exchange& ex, const UpstreamSearch& s) {
    return ctx_.router.route(*ex.runtime, ex.upstream_index, *ex.routing,
                             (*ex.pickers)[ex.upstream_index], s.in, s.exclude());
}

// Takes decision `d` (its shared-table step done): the answer for an unknown
// sid or no server, or its server in ex.active and a kept-alive connection to
// it in ex.conn (errc::ok). Nullopt: none kept alive, connect a new one.
std::optional<errc> ClientSession::take_decision(Exchange& ex, const UpstreamSearch& s,
                                                 affinity::RouteDecision& d) {
    if (d.unknown_sid) return errc::session_unknown;
    if (!d.backend) return s.last;
    ex.learn_sid = d.learn_sid;
    ex.set_cookie = d.set_cookie;
    // The decision's reference moves into the guard: no copy of the
    // shared_ptr (each an atomic increment and decrement).
    ex.active = upstream::ActiveGuard(std::move(d.backend));
    const auto& uc = *ex.upstream->config;
    const EioTransport t = eio_transport(uc, ex.request.get().method_string(), false, ex.eio_query);
    ex.eio = EioSessionGauge(
        t == EioTransport::none ? nullptr : &ctx_.stats.server(ex.active.shared(), uc.name, last_server_),
        t);
    if (!s.fresh_only)
        ex.conn = ctx_.pool.take_idle(*ex.active.get(), ex.spec, whole_body_here(ex).has_value(),
                                      core::coarse_now());
    if (!ex.conn) return std::nullopt;
    ++ctx_.stats.upstream_reuses;
    return errc::ok;
}

// A new connection to `backend` (its own coroutine, so that what a connect
// needs is not in open_upstream's frame on the kept-alive path): counted,
// and on failure logged and counted as a failure of the server.
Awaitable<errc> ClientSession::connect_new(Exchange& ex, std::shared_ptr<upstream::Backend> backend) {
    auto r = co_await ctx_.pool.connect(backend, ex.cfg().timeouts.connect, ex.spec);
    ++ctx_.stats.upstream_connects;
    if (ex.spec.tls && (!r.ec || r.tls_failed)) {
        auto& counts = ctx_.stats.upstream(ex.upstream->config->name).tls_handshakes;
        ++counts[r.tls_failed ? 2 : r.conn->stream.tls_resumed() ? 1 : 0];
    }
    if (!r.ec) {
        ex.conn = std::move(r.conn);
        co_return errc::ok;
    }
    ex.active.reset();
    count_failure(*backend, ex.upstream->config->name);
    log::warn("upstream '" + ex.upstream->config->name + "' server '" + backend->name() +
              (r.tls_failed ? "': TLS handshake failed: " + r.reason
                            : "': connect failed: " + r.ec.message()));
    co_return r.ec == beast::error::timeout ? errc::upstream_timeout : errc::upstream_connect;
}

// How a connection for this request is made: TLS (the upstream's context,
// from the worker's set: installed before the runtime that names it) and
// the PROXY header of this client. False: no TLS context (a reload removed
// the upstream's `tls` while this request held the old runtime).
bool ClientSession::connect_spec(const Exchange& ex, ConnectSpec& spec) {
    const auto& uc = *ex.upstream->config;
    if (uc.tls) {
        spec.tls = ctx_.upstream_tls ? ctx_.upstream_tls->at(uc.name) : nullptr;
        if (!spec.tls) {
            log::warn("upstream '" + uc.name + "': no TLS context (changed by a reload)");
            return false;
        }
    }
    if (uc.send_proxy_protocol != config::SendProxy::off)
        spec.proxy_header = proxy_header(uc.send_proxy_protocol);
    return true;
}

// The PROXY header for this client: the address tether believes (its port
// when it is the connection's peer, else 0) to the address it connected to.
std::string ClientSession::proxy_header(config::SendProxy version) {
    beast::error_code ec;
    auto src = asio::ip::make_address(client_ip_, ec);
    if (ec) src = asio::ip::address_v4::any();
    const auto local = stream_.socket().local_endpoint(ec);
    const auto dst = ec ? asio::ip::address(asio::ip::address_v4::any()) : local.address();
    const std::uint16_t src_port = client_ip_ == peer_ip_ ? peer_port_ : 0;
    return make_proxy_header(version == config::SendProxy::v1 ? 1 : 2, src, src_port, dst,
                             ec ? 0 : local.port());
}

// On a local miss of the key this request is routed by (the router's
// Op::fetch), asks Redis (within redis.timeout) and puts what it knows into
// the local table; the request is then routed again, and never fetches twice.
Awaitable<void> ClientSession::fetch_shared(Exchange& ex, affinity::RouteInput& in,
                                            const std::string& key) {
    in.may_fetch = false;
    const auto& uc = *ex.upstream->config;  // ex.runtime keeps it alive
    const auto found = co_await ctx_.store->fetch(key);
    if (found.failed) {
        ctx_.router.count_redis_failure(uc.name);
    } else if (found.server) {
        ctx_.router.table().put(key, *found.server, core::coarse_now(), uc.affinity_ttl);
        in.fetched = true;
    }
}

// The shared-table steps of a decision that need no answer (none, refresh,
// remove: sent without waiting), done here. False: a claim or replace, whose
// answer share_decision() waits for.
bool ClientSession::share_now(const affinity::SharedWrite& w) {
    using Op = affinity::SharedWrite::Op;
    switch (w.op) {
        case Op::none:
        case Op::fetch: return true;  // fetch is no write (handled before share_decision)
        case Op::refresh: ctx_.store->refresh(w.key, w.server, w.ttl); return true;
        case Op::remove: ctx_.store->remove(w.key, w.previous); return true;
        case Op::claim:
        case Op::replace: return false;
    }
    return true;
}

// Makes the decision's binding shared before the request goes on (a claim or
// a replace: share_now() did the others). A binding another replica made
// first (claim) or replaced first (replace) is adopted when its server can
// take this client.
Awaitable<void> ClientSession::share_decision(Exchange& ex, affinity::RouteDecision& d,
                                              std::span<const upstream::Backend* const> exclude) {
    using Op = affinity::SharedWrite::Op;
    auto& w = d.write;
    const auto& uc = *ex.upstream->config;
    std::optional<std::string> holder;
    if (w.op == Op::claim) holder = co_await ctx_.store->claim(w.key, w.server, w.ttl);
    else if (w.op == Op::replace)
        holder = co_await ctx_.store->replace(w.key, w.previous, w.server, w.ttl);
    else co_return;
    if (!holder) {
        ctx_.router.count_redis_failure(uc.name);
        co_return;
    }
    if (*holder == w.server) co_return;
    const auto other = ctx_.router.bound_backend(*ex.upstream, ex.routing->upstreams[ex.upstream_index],
                                                 *holder, exclude);
    if (!other) co_return;  // it cannot take this client here: keep our placement
    ctx_.router.table().put(w.key, *holder, core::coarse_now(), w.ttl);
    d.backend = other;
    if (!d.set_cookie.empty())
        d.set_cookie = ex.routing->upstreams[ex.upstream_index].set_cookie[
            ex.routing->upstreams[ex.upstream_index].by_name.at(other->name())];
}

}  // namespace tether::http::detail
