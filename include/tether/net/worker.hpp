// A worker: one thread running one io_context with its own acceptors, its
// own ProxyContext (pickers, upstream pool, buffers, counters) and a 100 ms
// tick for coarse timers (tunnel idle, close schedule, access-log flush,
// pool sweep). Nothing on the request path is shared with other workers
// except the backends' atomic counters.
// Threading: constructed and controlled from the main thread; everything
// else happens on the worker's thread, reached through post().
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tether/http/proxy_context.hpp"
#include "tether/net/listener.hpp"

namespace tether::net {

class Worker {
public:
    /// Binds this worker's acceptors on `endpoints` (one per listen entry).
    Worker(std::size_t index, std::shared_ptr<const upstream::Runtime> runtime,
           std::shared_ptr<const affinity::RoutingTables> routing,
           const std::vector<boost::asio::ip::tcp::endpoint>& endpoints,
           http::AccessLogWriter* log_writer, affinity::LocalTable& table,
           ProcessCounters& counters, affinity::RedisStore* store = nullptr);
    ~Worker();

    void start();
    /// Graceful stop: close acceptors, let in-flight requests finish, close
    /// tunnels spread until `spread_end`, everything by `deadline`.
    void begin_stop(Clock::time_point spread_end, Clock::time_point deadline);
    /// Listeners a reload opens, by slot (see upstream::Runtime).
    using NewListeners = std::vector<std::pair<std::size_t, std::unique_ptr<Listener>>>;
    /// Binds an acceptor of this worker for listener slot `slot` (main thread,
    /// before install() hands it over); throws boost::system::system_error.
    std::unique_ptr<Listener> bind_listener(const boost::asio::ip::tcp::endpoint& ep,
                                            std::size_t slot);
    /// Installs a new routing snapshot for new requests, then starts `added`
    /// listeners and closes those of `removed` slots (connections they
    /// accepted go on: each finishes its request in flight, then closes).
    void install(std::shared_ptr<const upstream::Runtime> runtime,
                 std::shared_ptr<const affinity::RoutingTables> routing, NewListeners added = {},
                 std::vector<std::size_t> removed = {});
    /// The server whose state is `key` was drained (or removed by a reload with
    /// drain.close_removed): its tunnels on this worker close at random times
    /// within `spread` (nullopt: re-enabled, closes not begun are called off).
    /// `key` is held until then, so its address cannot name another server.
    void drain_server(std::shared_ptr<const void> key,
                      std::optional<std::chrono::milliseconds> spread);
    /// Installs the TLS contexts for new connections (start-up and reload;
    /// open connections keep theirs).
    void install_tls(std::shared_ptr<const tls::ServerContexts> contexts);
    /// Posts the TLS contexts of the upstreams (start-up and reload, before the runtime).
    void install_upstream_tls(std::shared_ptr<const tls::UpstreamContexts> contexts);
    /// True once stopping and no connection is left.
    bool drained() const { return drained_.load(std::memory_order_acquire); }
    /// Stops the event loop at once and joins the thread.
    void halt();
    /// Ports of the listeners it started with (main thread, before start()).
    std::vector<std::uint16_t> ports() const;

    /// What the admin thread reads: a copy made on the worker's thread.
    struct Snapshot {
        std::size_t worker = 0;  ///< the worker's index
        http::WorkerStats stats;
        std::map<std::string, affinity::RouterStats, std::less<>> routing;
        std::size_t connections = 0;
        bool stopping = false;
        std::uint64_t generation = 0;  ///< of the routing snapshot it has installed
    };
    /// Posts a copy of the worker's counters (made on its thread); the future
    /// is ready once the worker ran it, never while its loop is blocked or
    /// halted (broken if the worker dies first). See app::SnapshotCollector.
    std::future<Snapshot> request_snapshot();

private:
    void arm_tick();
    void on_tick();

    std::size_t index_;
    std::unique_ptr<boost::asio::io_context> io_;
    http::ProxyContext ctx_;
    ProcessCounters& counters_;
    std::vector<std::unique_ptr<Listener>> listeners_;  // by slot; nullptr once closed
    std::vector<std::unique_ptr<Listener>> retired_;    // closed by reloads, kept until exit
    std::optional<boost::asio::steady_timer> tick_;  // reset before io_ dies
    std::thread thread_;
    std::atomic<bool> drained_{false};
    unsigned ticks_ = 0;
    Clock::time_point tick_due_{};
    double lag_window_max_ = 0;  // seconds, over the current lag window
};

}  // namespace tether::net
