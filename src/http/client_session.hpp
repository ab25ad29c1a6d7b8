// The client session's private parts, shared by its three sources:
// session.cpp (the client side: heads, errors, records), forward.cpp (picking
// a backend and getting a connection to it, retries, shared affinity) and
// respond.cpp (request body and response relay, the switch to a tunnel).
// Not a public header: include/tether/http/session.hpp is the interface.
// Threading: a ClientSession runs on its worker's executor only.
#pragma once

#include <array>
#include <optional>
#include <span>

#include <boost/asio/as_tuple.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "http/duplex.hpp"
#include "http/relay.hpp"
#include "http/relay_whole.hpp"
#include "tether/balance/engineio.hpp"
#include "tether/core/coarse_clock.hpp"
#include "tether/core/executor.hpp"
#include "tether/http/engineio_gauge.hpp"
#include "tether/http/request_check.hpp"
#include "tether/http/response_parser.hpp"
#include "tether/http/session.hpp"
#include "tether/http/strict_parser.hpp"
#include "tether/tls/client_stream.hpp"
#include "tether/ws/tunnel.hpp"

namespace tether::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

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

    Awaitable<bool> inspect(std::string_view bytes) override;

private:
    affinity::Router& router_;
    affinity::RedisStore* store_;
    std::shared_ptr<const upstream::Runtime> runtime_;  // keeps upstream_ alive
    const upstream::Upstream& upstream_;
    std::shared_ptr<upstream::Backend> server_;
    balance::OpenPacketParser parser_;
};

/// State of one request/response exchange. Made on the heap once a request
/// began (serve_request), its memory recycled by the thread's RecyclingPool.
struct Exchange {
    Exchange(std::shared_ptr<const upstream::Runtime> rt,
             std::shared_ptr<const affinity::RoutingTables> tables,
             std::shared_ptr<std::vector<balance::Picker>> pick)
        : runtime(std::move(rt)), routing(std::move(tables)), pickers(std::move(pick)) {}
    static void* operator new(std::size_t n) { return RecyclingPool::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { RecyclingPool::deallocate(p, n); }
    std::shared_ptr<const upstream::Runtime> runtime;  // pinned for the whole request
    std::shared_ptr<const affinity::RoutingTables> routing;  // built with `runtime`
    std::shared_ptr<std::vector<balance::Picker>> pickers;   // made with `runtime`
    const config::Config& cfg() const { return *runtime->config; }
    const upstream::Upstream* upstream = nullptr;
    std::size_t upstream_index = 0;
    StrictRequestParser<bhttp::buffer_body> request;
    std::optional<ResponseParser> response;
    std::unique_ptr<UpstreamConnection> conn;
    ConnectSpec spec;  ///< how conn is (to be) made: TLS context, PROXY header
    upstream::ActiveGuard active;
    EioSessionGauge eio;  // a pending Engine.IO long-poll
    balance::EioQuery eio_query;  // sid and transport of the target (affinity sid), scanned once
    RequestVerdict verdict;
    bool close = false;            // close the client connection after this exchange
    std::size_t held_body = 0;     // body bytes sent from the client buffer, not yet parsed
    bool learn_sid = false;        // an Engine.IO handshake: bind the sid of the answer
    std::string_view set_cookie;   // Set-Cookie line(s) for the answer (in `routing`)
    int status = 0;
    std::uint64_t bytes_sent = 0;  // response body bytes to the client
    Clock::time_point start = core::coarse_now();
};

static_assert(sizeof(Exchange) <= RecyclingPool::kMaxBlock, "past the pool's classes: malloc per request");

/// open_upstream's search for a server, from one attempt to the next: the
/// routing input, the servers tried (never twice), the last failure.
struct UpstreamSearch {
    affinity::RouteInput in;
    std::array<const upstream::Backend*, 16> tried{};
    std::size_t tried_count = 0;
    int attempt = 0;
    int attempts = 1;  ///< 1 + the upstream's retries, at most tried.size()
    errc last = errc::no_server;
    bool fresh_only = false;  ///< no kept-alive connection (after stale ones)
    std::span<const upstream::Backend* const> exclude() const { return {tried.data(), tried_count}; }
};

/// How respond() relays a response: its framing to the client (the head is
/// written), and whether the backend connection may serve another request.
struct ResponsePlan {
    Framing body = Framing::none;
    bool upstream_reusable = false;
};

/// A whole response whose write the send queue took (respond()): the
/// caller awaits the result itself, in its own frame, then respond_sent().
struct QueuedResponse {
    WholeRelay whole;
    ResponsePlan plan;
    bool queued = false;
};

/// Passive health: a connect, send or response-head failure of `b`, or an
/// answer with a status in the upstream's fail_on_status (not by default).
void count_failure(upstream::Backend& b, std::string_view upstream);

class ClientSession final : public TrackedConnection {
public:
    ClientSession(TcpSocket&& socket, ProxyContext& ctx, std::size_t listener,
                  ClientOrigin&& origin)
        : ctx_(ctx), stream_(std::move(socket)), listener_(listener), entry_(ctx.registry, this),
          peer_ip_(std::move(origin.address)), peer_port_(origin.port),
          preread_(std::move(origin.preread)), hold_(std::move(origin.hold)) {
        beast::error_code ec;
        if (peer_ip_.empty()) {
            auto peer = stream_.socket().remote_endpoint(ec);
            if (!ec) {
                peer_ip_ = peer.address().to_string();
                peer_port_ = peer.port();
            }
        }
        client_ip_ = peer_ip_;
        // TCP_NODELAY: inherited from the listening socket (net/accepted_socket.hpp).
        ctx_.scratch.take({buffer_, head_, upstream_head_, request_id_});
    }
    ~ClientSession() override { ctx_.scratch.give_back({buffer_, head_, upstream_head_, request_id_}); }

    Awaitable<void> run();

    void begin_stop(Clock::time_point) override {
        stopping_ = true;
        if (idle_) stream_.cancel();
    }
    void tick(Clock::time_point) override {
        if (eof_probe_ && idle_) probe_eof();
    }
    void listener_closed(std::size_t slot) override {
        if (slot == listener_) begin_stop(Clock::now());
    }

private:
    bool start(std::shared_ptr<tls::ServerContext>& server_ctx);
    Awaitable<bool> handshake(std::shared_ptr<tls::ServerContext> server_ctx);
    Awaitable<Outcome> serve_request();
    void start_idle_wait(std::size_t buffer_size, config::Duration deadline);
    void probe_eof();
    Awaitable<Outcome> proxy(Exchange& ex);
    Awaitable<std::optional<Outcome>> no_response(Exchange& ex, Duplex& d, beast::error_code ec,
                                                   std::size_t n, bool may_retry);
    std::optional<Awaitable<errc>> open_upstream(Exchange& ex, bool fresh_only, errc& result);
    Awaitable<errc> open_upstream_rest(Exchange& ex, UpstreamSearch s, affinity::RouteDecision d);
    affinity::RouteDecision route(Exchange& ex, const UpstreamSearch& s);
    std::optional<errc> take_decision(Exchange& ex, const UpstreamSearch& s,
                                      affinity::RouteDecision& d);
    bool share_now(const affinity::SharedWrite& w);
    bool connect_spec(const Exchange& ex, ConnectSpec& spec);
    Awaitable<errc> connect_new(Exchange& ex, std::shared_ptr<upstream::Backend> backend);
    std::string proxy_header(config::SendProxy version);
    Awaitable<void> fetch_shared(Exchange& ex, affinity::RouteInput& in, const std::string& key);
    Awaitable<void> share_decision(Exchange& ex, affinity::RouteDecision& d,
                                   std::span<const upstream::Backend* const> exclude);
    void start_response_head(Exchange& ex, bool pumped, bool interim);
    bool send_request(Exchange& ex, Duplex& d, std::size_t& written);
    std::array<asio::const_buffer, 2> whole_request(const Exchange& ex) const;
    bool request_sent(Exchange& ex, Duplex& d, boost::system::error_code ec, std::size_t& written);
    Awaitable<void> send_rest(Exchange& ex, Duplex& d, std::size_t written);
    std::optional<std::size_t> whole_body_here(Exchange& ex) const;
    void take_held_body(Exchange& ex);
    std::optional<Awaitable<Outcome>> respond(Exchange& ex, Duplex& d, Outcome& out,
                                              QueuedResponse& queued);
    std::optional<Awaitable<Outcome>> respond_sent(Exchange& ex, Duplex& d, Outcome& out,
                                                   QueuedResponse& queued,
                                                   boost::system::error_code ec, std::size_t n);
    Awaitable<Outcome> respond_rest(Exchange& ex, Duplex& d, std::optional<ResponsePlan> plan,
                                    WholeRelay whole);
    ResponsePlan plan_response(Exchange& ex);
    RelayEnv response_env(const Exchange& ex, Duplex& d);
    Outcome responded(Exchange& ex, const Duplex& d, const RelayStatus& st,
                      const ResponsePlan& plan);
    Awaitable<void> linger();
    Awaitable<Outcome> start_tunnel(Exchange& ex);
    Awaitable<void> run_tunnel();
    void hand_off_tunnel(const ws::TunnelContext& tctx);
    Awaitable<void> send_error(Exchange* ex, errc e);
    Awaitable<void> send_unknown_sid(Exchange& ex);
    void assign_request_id(const RequestHead& req, bool from_headers);
    void set_client_ip(const RequestHead& req);
    void record(const Exchange& ex);

    ProxyContext& ctx_;
    tls::ClientStream stream_;
    beast::flat_buffer buffer_;
    std::size_t listener_;
    RegistryEntry entry_;
    std::string peer_ip_;    // the socket peer or the PROXY header's source
    std::uint16_t peer_port_ = 0;
    std::string preread_;    // read past a PROXY header, not consumed yet
    ConnectionHold hold_;    // the listener's counts (a plain tunnel takes them over)
    std::string client_ip_;  // of the current request: peer_ip_, or from X-Forwarded-For
    std::string head_;           // scratch for heads written to the client
    std::string upstream_head_;  // the request head, written by the request relay
    std::string request_id_;
    int retry_after_s_ = 0;  // Retry-After of a 429
    bool first_ = true;
    bool idle_ = false;
    bool eof_probe_ = false;  // waiting for a request without having tried a read
    bool stopping_ = false;
    bool linger_ = false;  // a response ended while the client was still sending
    std::unique_ptr<UpstreamConnection> tunnel_conn_;  // the server side of the tunnel
    std::optional<ws::TunnelSetup> tunnel_;
    upstream::ActiveGuard tunnel_guard_;
    EioSessionGauge tunnel_eio_;  // an Engine.IO session over this tunnel
    std::unique_ptr<SidLearner> tunnel_learner_;  // a websocket-only handshake's sid
    std::string tunnel_upstream_;
    affinity::SidMemo sid_memo_;  // this connection's last sid (affinity sid)
    ServerCounters* last_server_ = nullptr;  // ctx_.stats' counters of its last server
};

}  // namespace tether::http::detail
