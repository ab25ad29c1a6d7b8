// Backends and the immutable routing snapshot the workers read.
//
// A Backend is one configured server: its identity (name, address, weight...)
// never changes after construction; its live state (health, drain, the
// connections this replica holds to it) is atomic, because every worker reads
// it and health checks and the admin API write it. Backends are shared between
// snapshots by name, so a reload keeps their counters and health.
//
// A Runtime is one immutable snapshot of the whole routing configuration
// (config + upstreams + their backends). Workers hold a shared_ptr<const
// Runtime>; a reload builds a new one and posts it to every worker.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "tether/config/config.hpp"

namespace tether::upstream {

class Backend {
public:
    Backend(const config::Server& server, std::vector<boost::asio::ip::tcp::endpoint> endpoints);

    const std::string& name() const { return server_.name; }
    const config::Server& server() const { return server_; }
    const std::vector<boost::asio::ip::tcp::endpoint>& endpoints() const { return endpoints_; }

    bool up() const { return up_.load(std::memory_order_relaxed); }
    void set_up(bool up) { up_.store(up, std::memory_order_relaxed); }
    bool draining() const { return draining_.load(std::memory_order_relaxed); }
    void set_draining(bool d) { draining_.store(d, std::memory_order_relaxed); }

    /// Connections (in-flight requests and tunnels) this process holds to it.
    int active() const { return active_.load(std::memory_order_relaxed); }
    void add_active(int delta) { active_.fetch_add(delta, std::memory_order_relaxed); }

    /// True if it may take a new client now: up, not draining, under max_conns.
    bool accepts_new() const;

private:
    const config::Server server_;
    const std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
    std::atomic<bool> up_{true};
    std::atomic<bool> draining_{false};
    std::atomic<int> active_{0};
};

/// Holds one unit of Backend::active for as long as it lives.
class ActiveGuard {
public:
    ActiveGuard() = default;
    explicit ActiveGuard(std::shared_ptr<Backend> b) : backend_(std::move(b)) {
        if (backend_) backend_->add_active(1);
    }
    ActiveGuard(ActiveGuard&& o) noexcept = default;
    ActiveGuard& operator=(ActiveGuard&& o) noexcept {
        reset();
        backend_ = std::move(o.backend_);
        return *this;
    }
    ~ActiveGuard() { reset(); }
    void reset() {
        if (backend_) backend_->add_active(-1);
        backend_.reset();
    }
    Backend* get() const { return backend_.get(); }
    const std::shared_ptr<Backend>& shared() const { return backend_; }

private:
    std::shared_ptr<Backend> backend_;
};

struct Upstream {
    const config::Upstream* config = nullptr;  ///< points into Runtime::config
    std::vector<std::shared_ptr<Backend>> backends;  ///< in configured order
};

struct Runtime {
    std::shared_ptr<const config::Config> config;
    std::vector<Upstream> upstreams;
    std::vector<std::size_t> listener_upstream;  ///< listen[i] -> index in upstreams
    std::uint64_t generation = 0;

    const Upstream* find(const std::string& name) const;
};

/// Builds a snapshot for `config`, resolving server addresses (blocking DNS:
/// call at start-up or reload, never on an I/O thread). Backends of `previous`
/// with the same upstream and server name are reused (health and counters
/// carry over). Throws std::runtime_error naming a server that cannot resolve.
std::shared_ptr<const Runtime> build_runtime(std::shared_ptr<const config::Config> config,
                                             const Runtime* previous, std::uint64_t generation);

}  // namespace tether::upstream
