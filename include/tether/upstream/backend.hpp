// Backends and the immutable routing snapshot the workers read.
//
// A Backend is one configured server: its identity (name, address, weight...)
// never changes after construction; its live state (BackendState: active
// check verdict, passive failures, drain, the connections this replica holds
// to it) is atomic, because every worker reads it and health checks and the
// admin API write it. A reload keeps the state of a server with the same
// upstream, name and address (a re-weighted server gets a new Backend that
// shares the old one's state), and the drain flag of a server with the same
// name: health, drain and connection counts survive a reload.
//
// A Runtime is one immutable snapshot of the whole routing configuration
// (config + upstreams + their backends). Workers hold a shared_ptr<const
// Runtime>; a reload builds a new one and posts it to every worker.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "tether/config/config.hpp"
#include "tether/upstream/passive.hpp"

namespace tether::upstream {

/// The mutable side of a server, shared by the Backends that stand for it in
/// successive snapshots.
struct BackendState {
    std::atomic<bool> checked_up{true};  ///< the active checks' verdict (true without checks)
    std::atomic<bool> draining{false};
    std::atomic<int> active{0};
    PassiveHealth passive;
    /// Active check results by kind (HealthResult in the health module).
    std::array<std::atomic<std::uint64_t>, 4> checks{};
};

class Backend {
public:
    Backend(const config::Server& server, std::vector<boost::asio::ip::tcp::endpoint> endpoints,
            std::shared_ptr<BackendState> state = nullptr);

    const std::string& name() const { return server_.name; }
    const config::Server& server() const { return server_; }
    const std::vector<boost::asio::ip::tcp::endpoint>& endpoints() const { return endpoints_; }
    BackendState& state() const { return *state_; }
    const std::shared_ptr<BackendState>& shared_state() const { return state_; }

    /// Usable: the active checks say up and passive failures have not taken it out.
    bool up() const {
        return state_->checked_up.load(std::memory_order_relaxed) && !state_->passive.out();
    }
    bool up(Clock::time_point now) const {
        return state_->checked_up.load(std::memory_order_relaxed) && !state_->passive.out(now);
    }
    /// Sets the active checks' verdict.
    void set_up(bool up) { state_->checked_up.store(up, std::memory_order_relaxed); }
    bool draining() const { return state_->draining.load(std::memory_order_relaxed); }
    void set_draining(bool d) { state_->draining.store(d, std::memory_order_relaxed); }

    /// Passive accounting (max_fails within fail_timeout): true when this
    /// failure takes the server out.
    bool record_failure(Clock::time_point now) {
        return state_->passive.record_failure(now, server_.max_fails, server_.fail_timeout);
    }
    void record_success(Clock::time_point now) { state_->passive.record_success(now); }

    /// Connections (in-flight requests and tunnels) this process holds to it.
    int active() const { return state_->active.load(std::memory_order_relaxed); }
    void add_active(int delta) { state_->active.fetch_add(delta, std::memory_order_relaxed); }

    /// True if it may take a new client now: up, not draining, under max_conns.
    bool accepts_new() const;

private:
    const config::Server server_;
    const std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
    const std::shared_ptr<BackendState> state_;
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

/// Listener slots: a listen address keeps its slot for the life of the
/// process (slot i = listen[i] at start; addresses added by reloads get new
/// slots), so a connection accepted on a slot finds its upstream in any later
/// snapshot, and a listener a reload removed maps to kNoUpstream.
inline constexpr std::size_t kNoUpstream = static_cast<std::size_t>(-1);

struct Runtime {
    std::shared_ptr<const config::Config> config;
    std::vector<Upstream> upstreams;
    std::vector<std::size_t> listener_upstream;  ///< slot -> index in upstreams, or kNoUpstream
    std::vector<std::string> listener_address;   ///< slot -> listen address text
    std::vector<std::size_t> listener_config;    ///< slot -> index in config->listen, or kNoUpstream
    std::uint64_t generation = 0;

    const Upstream* find(const std::string& name) const;
    /// The server `server` of upstream `upstream`, or nullptr.
    Backend* find(std::string_view upstream, std::string_view server) const;
};

/// Drains (or re-enables) server `server` of upstream `upstream` in `rt`; false
/// when there is no such server. The flag lives in the server's shared state,
/// so it holds for every snapshot and survives reloads.
bool set_drain(const Runtime& rt, std::string_view upstream, std::string_view server, bool drain);

/// Builds a snapshot for `config`, resolving server addresses (blocking DNS:
/// call at start-up or reload, never on an I/O thread). Backends of `previous`
/// with the same upstream and server name are reused (health and counters
/// carry over). Throws std::runtime_error naming a server that cannot resolve.
std::shared_ptr<const Runtime> build_runtime(std::shared_ptr<const config::Config> config,
                                             const Runtime* previous, std::uint64_t generation);

}  // namespace tether::upstream
