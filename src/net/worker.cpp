// Worker thread and its tick; see worker.hpp.
#include "tether/net/worker.hpp"

#include <boost/asio/post.hpp>

#include "tether/core/log.hpp"

namespace tether::net {

namespace asio = boost::asio;

namespace {
constexpr std::chrono::milliseconds kTick{100};
constexpr unsigned kSweepEveryTicks = 10;
// tether_event_loop_lag_seconds is the worst tick lateness of the last
// completed window of this many ticks (1 s): a stall between scrapes shows.
constexpr unsigned kLagWindowTicks = 10;

// One thread runs the io_context, and other threads reach it only through
// post() (install, drain_server, begin_stop, request_snapshot, the Redis
// thread's answers, halt's stop()): the scheduler keeps its lock, and the
// reactor's registration lock (timers, descriptor state allocation) stays
// too, but the per-descriptor lock that every read, write and epoll event
// took is off (Asio's "unsafe I/O" hint; 3.9 of the 8.1 mutex lock/unlock
// pairs per keep-alive request). That lock guards a socket's reactor state
// against use from two threads at once, which tether never does: every
// socket, timer wait and descriptor of a worker is opened, used and closed
// on its thread, the listening sockets included (a reload binds them on the
// main thread as plain descriptors; listener.hpp); the health checker, the
// admin server, the Redis client and the access-log writer have io_contexts
// or threads of their own.
constexpr int kWorkerConcurrency = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO;
}  // namespace

Worker::Worker(std::size_t index, std::shared_ptr<const upstream::Runtime> runtime,
               std::shared_ptr<const affinity::RoutingTables> routing,
               const std::vector<asio::ip::tcp::endpoint>& endpoints,
               http::AccessLogWriter* log_writer, affinity::LocalTable& table,
               ProcessCounters& counters, affinity::RedisStore* store)
    : index_(index),
      io_(std::make_unique<asio::io_context>(kWorkerConcurrency)),
      ctx_(io_->get_executor(), runtime->config->limits.buffer_size, log_writer, table,
           0x7e7e7e7e ^ (index * 0x9e3779b97f4a7c15ull) ^
               static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()),
           store),
      counters_(counters),
      tick_(std::in_place, *io_) {
    ctx_.install(std::move(runtime), std::move(routing));
    ctx_.rate_limiter = counters.rate;
    ctx_.stats.connections_total.assign(endpoints.size(), 0);
    ctx_.stats.connections_active.assign(endpoints.size(), 0);
    ctx_.stats.tls_handshakes.assign(endpoints.size(), {});
    ctx_.stats.proxy_protocol_errors.assign(endpoints.size(), 0);
    for (std::size_t i = 0; i < endpoints.size(); ++i)
        listeners_.push_back(bind_listener(endpoints[i], i));
}

std::unique_ptr<Listener> Worker::bind_listener(const asio::ip::tcp::endpoint& ep,
                                                std::size_t slot) {
    return std::make_unique<Listener>(*io_, ep, slot, ctx_, counters_);
}

Worker::~Worker() {
    halt();
    ctx_.tunnels.reset();  // plain tunnels and their epoll descriptor, before the io_context
    ctx_.sends.abandon();  // the coroutines of sends never flushed, before the io_context
    listeners_.clear();
    retired_.clear();
    ctx_.pool.clear();
    tick_.reset();
    io_.reset();  // destroys suspended sessions while ctx_ (their registry) still lives
}

void Worker::start() {
    for (auto& l : listeners_) l->start();
    arm_tick();
    thread_ = std::thread([this] {
        try {
            io_->run();
        } catch (const std::exception& e) {
            log::error("worker " + std::to_string(index_) + " stopped: " + e.what());
        }
    });
}

void Worker::arm_tick() {
    tick_due_ = Clock::now() + kTick;
    tick_->expires_at(tick_due_);
    tick_->async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        on_tick();
        arm_tick();
    });
}

void Worker::on_tick() {
    const auto now = Clock::now();
    lag_window_max_ = std::max(lag_window_max_,
                               std::chrono::duration<double>(now - tick_due_).count());
    if ((ticks_ + 1) % kLagWindowTicks == 0) {
        ctx_.stats.loop_lag_seconds = lag_window_max_;
        lag_window_max_ = 0;
    }
    ctx_.registry.for_each([now](TrackedConnection& c) { c.tick(now); });
    ctx_.access_log.flush();
    if (++ticks_ % kSweepEveryTicks == 0) {
        const auto idle = ctx_.runtime->config->timeouts.idle;
        ctx_.pool.sweep(now, idle, [this](const upstream::Backend& b) {
            for (const auto& u : ctx_.runtime->upstreams)
                for (const auto& x : u.backends)
                    if (x.get() == &b) return true;
            return false;
        });
    }
    if (ctx_.stopping && ctx_.registry.size() == 0) drained_.store(true, std::memory_order_release);
}

void Worker::begin_stop(Clock::time_point spread_end, Clock::time_point deadline) {
    asio::post(*io_, [this, spread_end, deadline] {
        ctx_.stopping = true;
        ctx_.stop_deadline = deadline;
        for (auto& l : listeners_)
            if (l) l->close();
        ctx_.pool.clear();
        const auto now = Clock::now();
        const auto spread = std::max<Clock::duration>(spread_end - now, Clock::duration::zero());
        ctx_.registry.for_each([&](TrackedConnection& c) {
            const auto offset = spread.count() > 0
                ? Clock::duration(static_cast<Clock::rep>(
                      ctx_.rng.below(static_cast<std::uint64_t>(spread.count()))))
                : Clock::duration::zero();
            c.begin_stop(now + offset);
        });
        if (ctx_.registry.size() == 0) drained_.store(true, std::memory_order_release);
    });
}

void Worker::install(std::shared_ptr<const upstream::Runtime> runtime,
                     std::shared_ptr<const affinity::RoutingTables> routing, NewListeners added,
                     std::vector<std::size_t> removed) {
    asio::post(*io_, [this, rt = std::move(runtime), r = std::move(routing),
                      added = std::move(added), removed = std::move(removed)]() mutable {
        const std::size_t slots = rt->listener_upstream.size();
        ctx_.install(std::move(rt), std::move(r));
        if (ctx_.stats.connections_total.size() < slots) {
            ctx_.stats.connections_total.resize(slots, 0);
            ctx_.stats.connections_active.resize(slots, 0);
            ctx_.stats.tls_handshakes.resize(slots, {});
            ctx_.stats.proxy_protocol_errors.resize(slots, 0);
        }
        if (listeners_.size() < slots) listeners_.resize(slots);
        for (std::size_t slot : removed) {
            if (slot >= listeners_.size() || !listeners_[slot]) continue;
            listeners_[slot]->close();  // its accept loop ends; the object outlives it
            retired_.push_back(std::move(listeners_[slot]));
            ctx_.registry.for_each([slot](TrackedConnection& c) { c.listener_closed(slot); });
        }
        for (auto& [slot, l] : added) {
            if (ctx_.stopping) break;  // a stop began meanwhile: close, do not start
            if (listeners_[slot]) retired_.push_back(std::move(listeners_[slot]));
            listeners_[slot] = std::move(l);
            listeners_[slot]->start();
        }
    });
}

void Worker::drain_server(std::shared_ptr<const void> key,
                          std::optional<std::chrono::milliseconds> spread) {
    asio::post(*io_, [this, key = std::move(key), spread] {
        const auto now = Clock::now();
        ctx_.registry.for_each([&](TrackedConnection& c) {
            if (c.server_key() != key.get()) return;
            if (!spread) return c.drain(std::nullopt);
            const auto span = std::chrono::duration_cast<Clock::duration>(*spread).count();
            c.drain(now + Clock::duration(static_cast<Clock::rep>(
                              span > 0 ? ctx_.rng.below(static_cast<std::uint64_t>(span)) : 0)));
        });
    });
}

void Worker::install_tls(std::shared_ptr<const tls::ServerContexts> contexts) {
    asio::post(*io_, [this, c = std::move(contexts)]() mutable { ctx_.tls = std::move(c); });
}

void Worker::install_upstream_tls(std::shared_ptr<const tls::UpstreamContexts> contexts) {
    asio::post(*io_, [this, c = std::move(contexts)]() mutable { ctx_.upstream_tls = std::move(c); });
}

void Worker::halt() {
    if (!thread_.joinable()) return;
    io_->stop();
    thread_.join();
    ctx_.access_log.flush();
}

std::future<Worker::Snapshot> Worker::request_snapshot() {
    auto promise = std::make_shared<std::promise<Snapshot>>();
    auto future = promise->get_future();
    asio::post(*io_, [this, promise] {
        promise->set_value(Snapshot{index_, ctx_.stats, ctx_.router.stats(), ctx_.registry.size(),
                                    ctx_.stopping, ctx_.runtime->generation});
    });
    return future;
}

std::vector<std::uint16_t> Worker::ports() const {
    std::vector<std::uint16_t> out;
    for (const auto& l : listeners_)
        if (l) out.push_back(l->port());
    return out;
}

}  // namespace tether::net
