// Active health checks; see checker.hpp.
#include "tether/health/checker.hpp"

#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tether/core/log.hpp"
#include "tether/health/http_probe.hpp"

namespace tether::health {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool same_check(const config::HealthCheck& a, const config::HealthCheck& b) {
    if (a.expect_status.size() != b.expect_status.size()) return false;
    for (std::size_t i = 0; i < a.expect_status.size(); ++i)
        if (a.expect_status[i].lo != b.expect_status[i].lo ||
            a.expect_status[i].hi != b.expect_status[i].hi)
            return false;
    return a.path == b.path && a.interval == b.interval && a.timeout == b.timeout &&
           a.rise == b.rise && a.fall == b.fall;
}

}  // namespace

class HealthChecker::Prober : public std::enable_shared_from_this<Prober> {
public:
    Prober(asio::io_context& io, std::string upstream, std::shared_ptr<upstream::Backend> backend,
           const config::HealthCheck& check)
        : io_(io),
          upstream_(std::move(upstream)),
          backend_(std::move(backend)),
          check_(check),
          request_(probe_request(check.path, backend_->server().address.text())),
          verdict_(backend_->state().checked_up.load(), check.rise, check.fall),
          timer_(io) {}

    const config::HealthCheck& check() const { return check_; }
    /// A new Backend object for the same server (re-weighted): same state.
    void rebind(std::shared_ptr<upstream::Backend> b) { backend_ = std::move(b); }

    void start(Clock::duration first_delay) {
        asio::co_spawn(io_, run(shared_from_this(), first_delay), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                log::error(std::string("health prober ended: ") + x.what());
            }
        });
    }

    void stop() {
        stopped_ = true;
        timer_.cancel();
        if (stream_) {
            beast::error_code ignored;
            stream_->socket().close(ignored);
        }
    }

private:
    static asio::awaitable<void> run(std::shared_ptr<Prober> self, Clock::duration first_delay) {
        self->timer_.expires_after(first_delay);
        co_await self->timer_.async_wait(use_tuple);
        while (!self->stopped_) {
            const auto started = Clock::now();
            self->stream_.emplace(self->io_.get_executor());
            const ProbeOutcome out =
                co_await http_probe(*self->stream_, self->backend_->endpoints(), self->request_,
                                    self->check_);
            self->stream_.reset();
            if (self->stopped_) co_return;
            self->apply(out);
            self->timer_.expires_at(std::max(started + self->check_.interval, Clock::now()));
            co_await self->timer_.async_wait(use_tuple);
        }
    }

    void apply(const ProbeOutcome& out) {
        auto& state = backend_->state();
        state.checks[static_cast<std::size_t>(out.result)].fetch_add(1, std::memory_order_relaxed);
        if (!verdict_.record(out.result == HealthResult::ok)) return;
        const bool up = verdict_.up();
        if (up) state.passive.clear();
        backend_->set_up(up);
        const std::string what = "server '" + backend_->name() + "' of upstream '" + upstream_ + "'";
        if (up) log::info(what + " is up (active check: " + std::to_string(check_.rise) + " good)");
        else log::warn(what + " is down (active check: " + out.detail + ")");
    }

    asio::io_context& io_;
    std::string upstream_;
    std::shared_ptr<upstream::Backend> backend_;
    config::HealthCheck check_;
    std::string request_;
    RiseFall verdict_;
    asio::steady_timer timer_;
    std::optional<beast::tcp_stream> stream_;
    bool stopped_ = false;
};

HealthChecker::HealthChecker(std::uint64_t seed) : work_(io_.get_executor()), rng_(seed) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
    thread_ = std::thread([this] {
        try {
            io_.run();
        } catch (const std::exception& e) {
            log::error(std::string("health checker stopped: ") + e.what());
        }
    });
}

void HealthChecker::update(std::shared_ptr<const upstream::Runtime> rt) {
    asio::post(io_, [this, rt = std::move(rt)] { reconcile(*rt); });
}

void HealthChecker::reconcile(const upstream::Runtime& rt) {
    std::map<const upstream::BackendState*, std::shared_ptr<Prober>> next;
    for (const auto& u : rt.upstreams) {
        if (!u.config->health_check) continue;
        const auto& check = *u.config->health_check;
        for (const auto& b : u.backends) {
            auto it = probers_.find(b->shared_state().get());
            if (it != probers_.end() && same_check(it->second->check(), check)) {
                it->second->rebind(b);
                next.emplace(it->first, std::move(it->second));
                probers_.erase(it);
                continue;
            }
            auto p = std::make_shared<Prober>(io_, u.config->name, b, check);
            const auto interval = std::max<std::int64_t>(1, check.interval.count());
            p->start(std::chrono::milliseconds(rng_.below(static_cast<std::uint64_t>(interval))));
            next.emplace(b->shared_state().get(), std::move(p));
        }
    }
    for (auto& [state, p] : probers_) p->stop();  // removed, or settings changed
    probers_ = std::move(next);
}

void HealthChecker::stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
        for (auto& [state, p] : probers_) p->stop();
        probers_.clear();
    });
    work_.reset();
    thread_.join();
}

}  // namespace tether::health
