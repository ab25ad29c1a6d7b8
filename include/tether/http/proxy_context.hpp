// Everything a client session needs from the worker that runs it. One per
// worker, owned by net::Worker, touched only on that worker's thread (so
// nothing here is locked). `runtime` and `pickers` are replaced together when
// a reload is posted to the worker; a session copies the runtime pointer at
// the start of a request and never keeps a Picker across a co_await.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "tether/affinity/router.hpp"
#include "tether/balance/picker.hpp"
#include "tether/core/buffer_pool.hpp"
#include "tether/core/connection_registry.hpp"
#include "tether/core/hash.hpp"
#include "tether/http/access_log.hpp"
#include "tether/http/upstream_pool.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::http {

/// Per-worker counters (summed by the scrape in a later module).
struct WorkerStats {
    std::uint64_t requests = 0;
    std::uint64_t upstream_connects = 0;
    std::uint64_t upstream_reuses = 0;
    std::uint64_t tunnels_opened = 0;
    std::uint64_t frames_to_server = 0;
    std::uint64_t frames_to_client = 0;
    std::uint64_t refused_connections = 0;
    std::uint64_t errors = 0;
};

struct ProxyContext {
    ProxyContext(boost::asio::any_io_executor ex, std::size_t buffer_size,
                 AccessLogWriter* log_writer, affinity::LocalTable& table, std::uint64_t seed)
        : executor(ex),
          buffers(buffer_size, 256),
          pool(ex),
          router(table),
          access_log(log_writer),
          rng(seed) {}

    /// Installs a new routing snapshot (start-up and reload).
    void install(std::shared_ptr<const upstream::Runtime> rt,
                 std::shared_ptr<const affinity::RoutingTables> tables) {
        runtime = std::move(rt);
        routing = std::move(tables);
        pickers.clear();
        for (const auto& u : runtime->upstreams)
            pickers.emplace_back(u.config->balance, rng.next());
    }

    boost::asio::any_io_executor executor;
    std::shared_ptr<const upstream::Runtime> runtime;
    std::shared_ptr<const affinity::RoutingTables> routing;  ///< built with runtime
    std::vector<balance::Picker> pickers;  ///< by upstream index in runtime
    BufferPool buffers;
    UpstreamPool pool;
    affinity::Router router;
    ConnectionRegistry registry;
    AccessLogBuffer access_log;
    Rng rng;
    WorkerStats stats;
    bool stopping = false;
    Clock::time_point stop_deadline{};  ///< when stopping: everything closed by then
};

}  // namespace tether::http
