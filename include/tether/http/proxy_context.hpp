// Everything a client session needs from the worker that runs it. One per
// worker, owned by net::Worker, touched only on that worker's thread (so
// nothing here is locked). `runtime` and `pickers` are replaced together when
// a reload is posted to the worker; a session copies the runtime, routing and
// pickers pointers at the start of a request (so a Picker it uses stays the
// one of its snapshot across a co_await, e.g. a Redis lookup).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <memory>
#include <string>
#include <vector>

#include "tether/affinity/redis_store.hpp"
#include "tether/affinity/router.hpp"
#include "tether/limits/rate_limiter.hpp"
#include "tether/balance/picker.hpp"
#include "tether/core/buffer_pool.hpp"
#include "tether/core/connection_registry.hpp"
#include "tether/core/executor.hpp"
#include "tether/core/hash.hpp"
#include "tether/http/access_log.hpp"
#include "tether/http/client_ip.hpp"
#include "tether/http/session_scratch.hpp"
#include "tether/http/upstream_pool.hpp"
#include "tether/tls/send_queue.hpp"
#include "tether/tls/server_context.hpp"
#include "tether/tls/upstream_context.hpp"
#include "tether/upstream/backend.hpp"
#include "tether/ws/tunnel_reactor.hpp"

namespace tether::http {

/// Request durations: buckets from 100 us to 30 s (upper bounds, seconds).
inline constexpr std::array<double, 17> kDurationBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};

struct UpstreamCounters {
    std::array<std::uint64_t, kDurationBuckets.size() + 1> duration_buckets{};  // last = +Inf
    double duration_sum = 0;
    std::uint64_t frames_to_server = 0;
    std::uint64_t frames_to_client = 0;
    std::map<int, std::uint64_t> local_responses;  // answered by tether itself (no server)
    /// TLS handshakes to the servers (upstream `tls`): full, resumed, failed.
    std::array<std::uint64_t, 3> tls_handshakes{};
    void observe(double seconds) {
        std::size_t i = 0;
        while (i < kDurationBuckets.size() && seconds > kDurationBuckets[i]) ++i;
        ++duration_buckets[i];
        duration_sum += seconds;
    }
};

struct ServerCounters {
    std::shared_ptr<upstream::Backend> backend;  // keeps the key alive across reloads
    std::string upstream;
    std::map<int, std::uint64_t> responses;  // status code -> count
    std::uint64_t upgrades_ok = 0;
    std::uint64_t upgrades_failed = 0;
    std::int64_t tunnels_active = 0;
    std::int64_t eio_polling = 0;    // Engine.IO sessions (see engineio_gauge.hpp)
    std::int64_t eio_websocket = 0;
};

/// Per-worker counters. Written only on the worker's thread; the scrape
/// copies them by posting to the worker (no atomics, no lock).
struct WorkerStats {
    std::map<std::string, UpstreamCounters, std::less<>> upstreams;
    std::unordered_map<const upstream::Backend*, ServerCounters> servers;
    std::vector<std::uint64_t> connections_total;  // by listener index
    std::vector<std::int64_t> connections_active;  // by listener index
    /// TLS handshakes by listener index, then tls::Handshake result.
    std::vector<std::array<std::uint64_t, tls::kHandshakeResults>> tls_handshakes;
    std::vector<std::uint64_t> proxy_protocol_errors;  // by listener index
    double loop_lag_seconds = 0;
    ServerCounters& server(const std::shared_ptr<upstream::Backend>& b, std::string_view u) {
        auto& s = servers[b.get()];
        if (!s.backend) {
            s.backend = b;
            s.upstream.assign(u);
        }
        return s;
    }
    /// server() through `last`, a caller's memo of its last answer (a
    /// connection's: mostly the same server request after request), with no
    /// lookup while the server stays the one in it. Entries are never erased
    /// and keep their backend, so the memo stays valid for the life of these
    /// stats.
    ServerCounters& server(const std::shared_ptr<upstream::Backend>& b, std::string_view u,
                           ServerCounters*& last) {
        if (last && last->backend.get() == b.get()) return *last;
        last = &server(b, u);
        return *last;
    }
    UpstreamCounters& upstream(std::string_view name) {
        auto it = upstreams.find(name);
        if (it == upstreams.end()) it = upstreams.emplace(std::string(name), UpstreamCounters{}).first;
        return it->second;
    }
    std::uint64_t requests = 0;
    std::uint64_t upstream_connects = 0;
    std::uint64_t upstream_reuses = 0;
    std::uint64_t tunnels_opened = 0;
    std::uint64_t frames_to_server = 0;
    std::uint64_t frames_to_client = 0;
    std::uint64_t refused_connections = 0;  // over limits.max_connections
    std::uint64_t refused_per_ip = 0;       // over limits.max_connections_per_ip
    std::uint64_t rate_limited = 0;         // answered 429 (limits.rate)
    std::uint64_t rate_redis_fallbacks = 0; // shared rate limit decided locally (Redis failed)
    std::uint64_t errors = 0;
};

/// The size of a bulk relay buffer (ProxyContext::bulk), or limits.buffer_size
/// if that is larger.
inline constexpr std::size_t kBulkBufferSize = 64 * 1024;

struct ProxyContext {
    ProxyContext(Executor ex, std::size_t buffer_size, AccessLogWriter* log_writer,
                 affinity::LocalTable& table, std::uint64_t seed,
                 affinity::RedisStore* shared_store = nullptr)
                 : executor(ex),
                 buffers(buffer_size, 256),
                 bulk(std::max(buffer_size, kBulkBufferSize), 16),
                 pool(ex),
                 sends(ex),
                 router(table, shared_store != nullptr),
                 store(shared_store),
                 access_log(log_writer),
                 rng(seed) {}
                 
                 /// Installs a new routing snapshot (start-up and reload).
                 void install(std::shared_ptr<const upstream::Runtime> rt,
                 std::shared_ptr<const affinity::RoutingTables> tables) {
        runtime = std::move(rt);
        routing = std::move(tables);
        trusted = TrustedProxies(runtime->config->trusted_proxies);
        auto next = std::make_shared<std::vector<balance::Picker>>();
        for (const auto& u : runtime->upstreams) next->emplace_back(u.config->balance, rng.next());
        pickers = std::move(next);
    }

    /// The worker's plain WebSocket tunnels (made on first use). Must go
    /// before the io_context does: Worker::~Worker resets `tunnels` first.
    ws::TunnelReactor& tunnel_reactor() {
        if (!tunnels) tunnels = std::make_unique<ws::TunnelReactor>(executor);
        return *tunnels;
    }

    Executor executor;
    std::shared_ptr<const upstream::Runtime> runtime;
    std::shared_ptr<const affinity::RoutingTables> routing;  ///< built with runtime
    std::shared_ptr<std::vector<balance::Picker>> pickers;  ///< by upstream index in runtime
    TrustedProxies trusted;  ///< from runtime->config->trusted_proxies
    std::shared_ptr<const tls::ServerContexts> tls;  ///< by listener; replaced on reload
    /// TLS to the servers, by upstream name; replaced on reload (before the runtime).
    std::shared_ptr<const tls::UpstreamContexts> upstream_tls;
    BufferPool buffers;
    /// Buffers of at least kBulkBufferSize for a body of known length larger
    /// than one of `buffers` (RelayEnv::bulk): a 1 MiB download goes out in
    /// 64 KiB sends, not 16 KiB ones. Borrowed only while such a body is
    /// relayed; at most 16 kept for reuse (1 MiB).
    BufferPool bulk;
    SessionScratchPool scratch;  ///< sessions' read buffers and head strings, reused
    UpstreamPool pool;
    /// Small writes of a batch in one io_uring submission (send_queue.hpp).
    /// Must go before the io_context does: Worker::~Worker abandons it first.
    tls::SendQueue sends;
    affinity::Router router;
    affinity::RedisStore* store;  ///< the shared table in Redis; null without `redis:`
    limits::RateLimiter* rate_limiter = nullptr;  ///< process-wide; null: no limits.rate
    ConnectionRegistry registry;
    AccessLogBuffer access_log;
    Rng rng;
    WorkerStats stats;
    std::unique_ptr<ws::TunnelReactor> tunnels;  ///< see tunnel_reactor()
    bool stopping = false;
    Clock::time_point stop_deadline{};  ///< when stopping: everything closed by then
};

}  // namespace tether::http
