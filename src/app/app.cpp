// Process wiring, signals and reload; see app.hpp.
#include "tether/app/app.hpp"

#include <openssl/rand.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tether/admin/admin_server.hpp"
#include "tether/affinity/redis_store.hpp"
#include "tether/app/admin_views.hpp"
#include "tether/app/snapshot_collector.hpp"
#include "tether/limits/rate_limiter.hpp"
#include "tether/redis/client.hpp"
#include "tether/config/loader.hpp"
#include "tether/core/log.hpp"
#include "tether/health/checker.hpp"
#include "tether/http/access_log.hpp"
#include "tether/net/worker.hpp"
#include "tether/tls/server_context.hpp"
#include "tether/tls/upstream_context.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::app {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::chrono::milliseconds kStopPoll{20};
constexpr std::chrono::milliseconds kSnapshotTimeout{1000};

// The key of cookies when cookie.secret is empty: random per process.
std::string random_secret() {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("RAND_bytes failed");
    return std::string(reinterpret_cast<const char*>(raw), sizeof raw);
}

void print_diagnostics(const config::LoadResult& r) {
    for (const auto& w : r.warnings) std::cerr << w.text(true) << '\n';
    for (const auto& e : r.errors) std::cerr << e.text() << '\n';
}

bool redis_changed(const std::optional<config::Redis>& a, const std::optional<config::Redis>& b) {
    if (a.has_value() != b.has_value()) return true;
    if (!a) return false;
    return a->address.text() != b->address.text() || a->password != b->password ||
           a->db != b->db || a->key_prefix != b->key_prefix || a->timeout != b->timeout;
}

int worker_count(const config::Config& cfg) {
    if (cfg.workers > 0) return cfg.workers;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

tcp::endpoint listen_endpoint(const config::Listener& l) {
    asio::io_context io;
    tcp::resolver resolver(io);
    return resolver.resolve(l.address.host, std::to_string(l.address.port), tcp::resolver::passive)
        .begin()
        ->endpoint();
}

std::vector<tcp::endpoint> listen_endpoints(const config::Config& cfg) {
    std::vector<tcp::endpoint> out;
    for (const auto& l : cfg.listen) out.push_back(listen_endpoint(l));
    return out;
}

// Each connection needs a descriptor on each side; raise the soft limit to the
// hard one so max_connections is reachable without a wrapper script.
void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

class Process {
public:
    explicit Process(std::string path)
        : path_(std::move(path)), signals_(io_, SIGTERM, SIGINT, SIGHUP) {}

    int run() {
        auto loaded = config::load_config(path_);
        print_diagnostics(loaded);
        if (!loaded.config) return 1;
        config_ = std::make_shared<const config::Config>(std::move(*loaded.config));
        raise_fd_limit();
        try {
            runtime_ = upstream::build_runtime(config_, nullptr, 1);
            process_secret_ = random_secret();
            routing_ = affinity::build_routing(*runtime_, process_secret_);
            table_ = std::make_unique<affinity::LocalTable>(config_->limits.affinity_entries);
            start_redis();
            // Always there (a reload may add limits.rate); Redis for `shared: true`.
            rate_limiter_ = std::make_unique<limits::RateLimiter>(
                config_->limits.affinity_entries, redis_.get(),
                config_->redis ? config_->redis->key_prefix : std::string());
            counters_.rate = rate_limiter_.get();
            ticket_keys_ = std::make_shared<tls::TicketKeys>();
            tls_ = tls::build_server_contexts(*config_, ticket_keys_);
            log_writer_ = std::make_unique<http::AccessLogWriter>(config_->access_log);
            counters_.max_connections = config_->limits.max_connections;
            const auto endpoints = listen_endpoints(*config_);
            const int n = worker_count(*config_);
            for (int i = 0; i < n; ++i)
                workers_.push_back(std::make_unique<net::Worker>(
                    static_cast<std::size_t>(i), runtime_, routing_, endpoints, log_writer_.get(),
                    *table_, counters_, store_.get()));
            for (auto& w : workers_) w->install_tls(tls_);
            const auto upstream_tls = tls::build_upstream_contexts(*config_);
            for (auto& w : workers_) w->install_upstream_tls(upstream_tls);
            health_ = std::make_unique<health::HealthChecker>(
                static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()));
            health_->update(runtime_);
            start_admin();
        } catch (const std::exception& e) {
            log::error(std::string("cannot start: ") + e.what());
            return 1;
        }
        for (auto& w : workers_) w->start();
        health_->start();
        announce();
        wait_signal();
        io_.run();
        if (admin_) admin_->stop();
        health_->stop();
        for (auto& w : workers_) w->halt();
        if (redis_) redis_->stop();  // its pending completions go to halted workers
        workers_.clear();
        log_writer_.reset();
        log::info("stopped");
        return 0;
    }

private:
    std::shared_ptr<const upstream::Runtime> current_runtime() {
        std::lock_guard lock(runtime_mutex_);
        return runtime_;
    }

    void start_admin() {
        if (!config_->admin.enabled) return;
        admin::Handlers h;
        h.metrics = [this] {
            auto rt = current_runtime();
            const auto snaps = snapshots_.collect(workers_);
            return render_metrics(AdminView{*rt, snaps.workers, snaps.states, *table_,
                                         stopping_.load(), redis_.get()});
        };
        h.status = [this] {
            auto rt = current_runtime();
            const auto snaps = snapshots_.collect(workers_);
            return render_status(AdminView{*rt, snaps.workers, snaps.states, *table_,
                                         stopping_.load(), redis_.get()});
        };
        h.ready = [this] { return is_ready(*current_runtime(), stopping_.load()); };
        h.set_drain = [this](std::string_view u, std::string_view s, bool drain) {
            if (!set_drain(u, s, drain)) return false;
            if (store_) store_->publish_drain(u, s, drain);  // every replica, through Redis
            return true;
        };
        asio::io_context io;
        tcp::resolver resolver(io);
        const auto& a = config_->admin.address;
        auto ep = resolver.resolve(a.host, std::to_string(a.port)).begin()->endpoint();
        admin_ = std::make_unique<admin::AdminServer>(ep, std::move(h));
        admin_->start();
    }

public:
    /// The one entry point of a drain or enable on this replica (admin API, and
    /// whatever relays drains between replicas): sets the server's shared flag,
    /// which every worker reads on its next pick and which survives reloads, and
    /// has every worker close the server's tunnels, 1001 at random times spread
    /// over the upstream's drain.close_spread (SPEC), so their clients reconnect
    /// elsewhere without arriving all at once; an enable calls off closes not
    /// begun. False when upstream `u` has no server `s`. Thread-safe.
    bool set_drain(std::string_view u, std::string_view s, bool drain) {
        auto rt = current_runtime();
        if (!upstream::set_drain(*rt, u, s, drain)) return false;
        const upstream::Backend* b = rt->find(u, s);
        const auto spread = rt->find(std::string(u))->config->drain.close_spread;
        for (auto& w : workers_)
            w->drain_server(b->shared_state(),
                            drain ? std::optional<std::chrono::milliseconds>(spread) : std::nullopt);
        log::info(std::string(drain ? "draining" : "enabled") + " server '" + std::string(s) +
                  "' of upstream '" + std::string(u) + "'");
        return true;
    }

private:
    // The shared affinity table: a Redis client on its own thread and the
    // store the workers use; drains heard from other replicas apply here.
    void start_redis() {
        if (!config_->redis) return;
        store_ = std::make_unique<affinity::RedisStore>(*table_, config_->redis->key_prefix);
        redis_ = std::make_unique<redis::Client>(
            *config_->redis, store_->channel(),
            [this](std::string_view payload) { store_->on_event(payload); },
            [this](bool first) { store_->on_ready(first); });
        store_->attach(*redis_);
        store_->set_drain_handler([this](std::string_view u, std::string_view s, bool drain) {
            set_drain(u, s, drain);  // heard from another replica
        });
        redis_->start();
    }

    void announce() {
        std::string ports;
        for (auto p : workers_.front()->ports()) ports += " " + std::to_string(p);
        log::info("tether " + std::string(TETHER_VERSION_STRING) + " started: " +
                  std::to_string(workers_.size()) + " worker(s), listening on port(s)" + ports);
    }

    void wait_signal() {
        signals_.async_wait([this](boost::system::error_code ec, int sig) {
            if (ec) return;
            if (sig != SIGHUP) return graceful_stop();
            reload();
            wait_signal();
        });
    }

    void reload() {
        auto loaded = config::load_config(path_);
        print_diagnostics(loaded);
        if (!loaded.config) {
            log::error("reload refused: the running configuration stays");
            return;
        }
        auto next = std::make_shared<const config::Config>(std::move(*loaded.config));
        std::shared_ptr<const tls::ServerContexts> contexts;
        std::shared_ptr<const tls::UpstreamContexts> upstream_tls;
        try {  // certificates first: a bad one refuses the whole reload
            contexts = tls::build_server_contexts(*next, ticket_keys_);
            upstream_tls = tls::build_upstream_contexts(*next);
        } catch (const std::exception& e) {
            log::error(std::string("reload refused, the running certificates stay: ") + e.what());
            return;
        }
        std::shared_ptr<const upstream::Runtime> rt;
        const std::shared_ptr<const upstream::Runtime> before = runtime_;
        ListenerChanges changes;
        try {
            rt = upstream::build_runtime(next, runtime_.get(), runtime_->generation + 1);
            changes = bind_new_listeners(*runtime_, *rt);
        } catch (const std::exception& e) {
            log::error(std::string("reload refused: ") + e.what());
            return;
        }
        {
            std::lock_guard lock(runtime_mutex_);
            runtime_ = std::move(rt);
        }
        if (worker_count(*next) != static_cast<int>(workers_.size()))
            log::warn("reload: changing 'workers' needs a restart; " +
                      std::to_string(workers_.size()) + " worker(s) stay");
        if (redis_changed(config_->redis, next->redis))
            log::warn("reload: changing 'redis' needs a restart; the running Redis settings stay");
        config_ = next;
        routing_ = affinity::build_routing(*runtime_, process_secret_);
        tls_ = std::move(contexts);  // before the runtime: a new TLS listener finds its context
        ticket_keys_->rotate();      // tickets of the previous key still resume, once
        for (auto& w : workers_) w->install_tls(tls_);
        for (auto& w : workers_) w->install_upstream_tls(upstream_tls);
        for (std::size_t slot : changes.removed)
            log::info("reload: stopped listening on " + runtime_->listener_address[slot]);
        for (const auto& [slot, l] : changes.added.front())
            log::info("reload: listening on " + runtime_->listener_address[slot]);
        for (std::size_t i = 0; i < workers_.size(); ++i)
            workers_[i]->install(runtime_, routing_, std::move(changes.added[i]), changes.removed);
        health_->update(runtime_);
        close_removed_tunnels(*before, *runtime_);
        log::info("reloaded " + path_ + " (generation " + std::to_string(runtime_->generation) +
                  ")");
    }

    // drain.close_removed: the tunnels to servers that `before` had and `rt`
    // no longer has (by state: a server kept by name and address is kept; a
    // re-addressed one is removed) get 1001 spread over the new config's
    // drain.close_spread, as a drain does. Without it they run until they end.
    void close_removed_tunnels(const upstream::Runtime& before, const upstream::Runtime& rt) {
        for (const auto& u : rt.upstreams) {
            const auto& drain = u.config->drain;
            const upstream::Upstream* old = drain.close_removed ? before.find(u.config->name)
                                                                : nullptr;
            if (!old) continue;
            for (const auto& b : old->backends) {
                const auto& state = b->shared_state();
                if (std::any_of(u.backends.begin(), u.backends.end(),
                                [&](const auto& n) { return n->shared_state() == state; }))
                    continue;
                for (auto& w : workers_) w->drain_server(state, drain.close_spread);
                log::info("reload: closing the tunnels to removed server '" + b->name() +
                          "' of upstream '" + u.config->name + "' over drain.close_spread");
            }
        }
    }

    struct ListenerChanges {
        std::vector<net::Worker::NewListeners> added;  // by worker
        std::vector<std::size_t> removed;              // slots
    };

    // Listeners a reload adds are bound here, on every worker, before anything
    // changes: a bind that fails (address in use...) refuses the whole reload.
    ListenerChanges bind_new_listeners(const upstream::Runtime& old, const upstream::Runtime& rt) {
        ListenerChanges c;
        c.added.resize(workers_.size());
        for (std::size_t slot = 0; slot < rt.listener_upstream.size(); ++slot) {
            const bool was_open =
                slot < old.listener_upstream.size() && old.listener_upstream[slot] != upstream::kNoUpstream;
            const bool is_open = rt.listener_upstream[slot] != upstream::kNoUpstream;
            if (was_open && !is_open) c.removed.push_back(slot);
            if (was_open || !is_open) continue;
            const auto& l = rt.config->listen[rt.listener_config[slot]];
            try {
                const auto ep = listen_endpoint(l);
                for (std::size_t w = 0; w < workers_.size(); ++w)
                    c.added[w].emplace_back(slot, workers_[w]->bind_listener(ep, slot));
            } catch (const std::exception& e) {
                throw std::runtime_error("cannot listen on " + l.address.text() + ": " + e.what());
            }
        }
        return c;
    }

    void graceful_stop() {
        const auto now = Clock::now();
        const auto shutdown = config_->timeouts.shutdown;
        auto spread = std::chrono::milliseconds::max();
        for (const auto& [name, u] : config_->upstreams)
            spread = std::min(spread, u.drain.close_spread);
        spread = std::min(spread, shutdown * 8 / 10);
        deadline_ = now + shutdown;
        stopping_ = true;
        log::info("stopping: closing listeners, finishing requests, closing tunnels");
        for (auto& w : workers_) w->begin_stop(now + spread, deadline_);
        poll_stop();
    }

    void poll_stop() {
        bool all = true;
        for (auto& w : workers_) all = all && w->drained();
        if (all || Clock::now() >= deadline_) {
            if (!all) log::warn("shutdown timeout reached: closing what is left");
            for (auto& w : workers_) w->halt();
            signals_.cancel();
            return;
        }
        poll_timer_.expires_after(kStopPoll);
        poll_timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) poll_stop();
        });
    }

    std::string path_;
    asio::io_context io_;
    asio::signal_set signals_;
    asio::steady_timer poll_timer_{io_};
    std::shared_ptr<const config::Config> config_;
    std::shared_ptr<const upstream::Runtime> runtime_;  // written on main, read by admin
    std::mutex runtime_mutex_;
    std::atomic<bool> stopping_{false};
    std::unique_ptr<admin::AdminServer> admin_;
    std::shared_ptr<const affinity::RoutingTables> routing_;
    std::string process_secret_;
    std::unique_ptr<affinity::LocalTable> table_;
    std::unique_ptr<affinity::RedisStore> store_;  // both null without `redis:`
    std::unique_ptr<redis::Client> redis_;
    std::unique_ptr<limits::RateLimiter> rate_limiter_;
    std::unique_ptr<http::AccessLogWriter> log_writer_;
    std::shared_ptr<const tls::ServerContexts> tls_;  // by listener, new on each reload
    std::shared_ptr<tls::TicketKeys> ticket_keys_;    // shared by all contexts, rotated on reload
    net::ProcessCounters counters_;
    std::vector<std::unique_ptr<net::Worker>> workers_;
    SnapshotCollector snapshots_{kSnapshotTimeout};  // admin thread; after workers_: dies first
    std::unique_ptr<health::HealthChecker> health_;
    Clock::time_point deadline_;
};

}  // namespace

int check_config(const std::string& path) {
    auto loaded = config::load_config(path);
    print_diagnostics(loaded);
    if (!loaded.config) return 1;
    try {  // the certificates and keys it names load and match
        tls::build_server_contexts(*loaded.config, std::make_shared<tls::TicketKeys>());
        tls::build_upstream_contexts(*loaded.config);
    } catch (const std::exception& e) {
        std::cerr << path << ": " << e.what() << '\n';
        return 1;
    }
    std::cerr << path << ": configuration is valid\n";
    return 0;
}

int run(const std::string& path) {
    Process p(path);
    return p.run();
}

}  // namespace tether::app
