// Per-worker pool of kept-alive backend connections (upstream `keepalive`:
// idle connections kept per worker and server). A connection taken from the
// pool is checked with a non-blocking peek first, so one the backend already
// closed is dropped instead of failing a request, unless it was idle for
// less than kUncheckedIdle and the request can be sent again whole (then a
// connection the backend closed in that moment fails without a response
// byte and the request is retried on a fresh one, forward.cpp): a backend
// rarely closes a connection that soon after answering on it, and the peek
// was one syscall per request (HAProxy and nginx do not peek either; they
// watch idle connections with epoll). Idle ones past timeouts.idle are
// closed by sweep().
//
// `keepalive` is what the pool keeps for timeouts.idle. After a burst it may
// hold more, up to kSurplusFactor x keepalive: those beyond `keepalive` are
// closed by sweep() once idle for kSurplusGrace (oldest first), not when they
// are given back. A load whose concurrency swings around `keepalive` would
// otherwise close a connection and open a new one for a large share of its
// requests (with 64 clients and keepalive 32: ~0.3 connect + close per
// request, a third of the proxy's CPU); HAProxy likewise purges surplus
// idle connections gradually (pool-purge-delay) rather than at once.
//
// A connection may be TLS (upstream `tls`: the handshake is part of
// connect(), within timeouts.connect) and may start with a PROXY protocol
// header (`send_proxy_protocol`). A kept-alive connection is reused only for
// a request that would open the same one: the same TLS context (a reload
// that changes or renews it leaves the old connections unused until swept)
// and the same PROXY header bytes, i.e. the same client address and port
// (HAProxy 2.4+ keys its idle connections the same way).
// Threading: owned by one worker; used only on its thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tether/core/connection_registry.hpp"
#include "tether/core/executor.hpp"
#include "tether/tls/client_stream.hpp"
#include "tether/tls/upstream_context.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::http {

struct UpstreamConnection {
    explicit UpstreamConnection(const Executor& ex) : stream(ex) {}
    tls::ClientStream stream;  ///< plain or TLS
    boost::beast::flat_buffer buffer;  ///< bytes read past the last response (normally none)
    std::shared_ptr<upstream::Backend> backend;
    const tls::UpstreamContext* tls = nullptr;  ///< the context it was made with (reuse key)
    std::string proxy_header;                   ///< sent first (reuse key); "" = none
    bool reused = false;
    Clock::time_point idle_since;
    int keepalive = 0;  ///< its upstream's `keepalive` when it was given back
};

/// How to open (and which idle connection may serve) a connection.
struct ConnectSpec {
    std::shared_ptr<tls::UpstreamContext> tls;  ///< null: plain TCP
    std::string proxy_header;                   ///< "" = no PROXY header
};

/// What connect() gives.
struct ConnectResult {
    boost::system::error_code ec;
    std::unique_ptr<UpstreamConnection> conn;
    bool tls_failed = false;  ///< the TLS handshake failed (after the TCP connect)
    std::string reason;       ///< why the TLS handshake failed
};

class UpstreamPool {
public:
    /// Idle connections beyond `keepalive` are kept at most this long...
    static constexpr std::chrono::seconds kSurplusGrace{1};
    /// ...and never more than this many times `keepalive` in all.
    static constexpr int kSurplusFactor = 4;

    explicit UpstreamPool(Executor ex) : ex_(std::move(ex)) {}

    /// Idle connections younger than this are not peeked at for a request
    /// that can be sent again whole.
    static constexpr std::chrono::milliseconds kUncheckedIdle{200};

    /// A live idle connection to `b` made as `spec` says, or nullptr.
    /// `replayable`: the request can be retried on a fresh connection if
    /// this one turns out closed (the caller holds all of it).
    std::unique_ptr<UpstreamConnection> take_idle(const upstream::Backend& b,
                                                  const ConnectSpec& spec, bool replayable,
                                                  Clock::time_point now);

    /// Opens a new connection to `b` within `timeout`: TCP, the PROXY header,
    /// the TLS handshake.
    Awaitable<ConnectResult> connect(std::shared_ptr<upstream::Backend> b,
                                     std::chrono::milliseconds timeout,
                                     ConnectSpec spec);

    /// Keeps `c` for reuse (`keepalive` > 0), dropping the oldest idle one
    /// when the backend's pool holds kSurplusFactor x keepalive already.
    void give_back(std::unique_ptr<UpstreamConnection> c, int keepalive);

    /// Closes connections idle for longer than `idle`, those beyond
    /// `keepalive` idle for kSurplusGrace (oldest first), and all of backends
    /// no longer in use (`alive(backend)` false).
    template <class Alive>
    void sweep(Clock::time_point now, std::chrono::milliseconds idle, Alive&& alive) {
        for (auto it = idle_.begin(); it != idle_.end();) {
            auto& v = it->second;  // oldest first: given back at the end, taken from the end
            const bool keep_backend = !v.empty() && alive(*v.front()->backend);
            std::erase_if(v, [&](const auto& c) { return !keep_backend || now - c->idle_since > idle; });
            if (!v.empty()) {
                const auto keep = static_cast<std::size_t>(std::max(0, v.back()->keepalive));
                std::size_t surplus = 0;
                while (surplus + keep < v.size() && now - v[surplus]->idle_since >= kSurplusGrace)
                    ++surplus;
                v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(surplus));
            }
            it = v.empty() ? idle_.erase(it) : std::next(it);
        }
    }

    std::size_t idle_count() const;
    void clear() { idle_.clear(); }

private:
    Executor ex_;
    std::unordered_map<const upstream::Backend*, std::vector<std::unique_ptr<UpstreamConnection>>>
        idle_;
};

}  // namespace tether::http
