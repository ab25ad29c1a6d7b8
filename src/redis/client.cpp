// The Redis client: connections, commands with deadlines, health; see
// client.hpp. The hiredis-to-Asio glue is hiredis_asio.cpp.
// Threading: Client::State runs on the Redis thread only; the Client
// methods are called from any thread and post to it.
#include "tether/redis/client.hpp"

#include <algorithm>
#include <deque>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tether/core/log.hpp"
#include "redis/hiredis_asio.hpp"

namespace tether::redis {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kBackoffMin{100};
constexpr std::chrono::milliseconds kBackoffMax{5000};
constexpr std::chrono::milliseconds kPingEvery{1000};
constexpr std::chrono::milliseconds kPingWhileSlow{100};
constexpr int kInfoEveryPings = 5;

}  // namespace

struct Client::State {
    struct Pending {
        SteadyClock::time_point start;
        std::optional<asio::any_io_executor> ex;
        asio::any_completion_handler<void(Result)> handler;  // empty: fire and forget
    };
    enum class Role { command, subscriber };

    explicit State(Client& c) : owner(c), rng(std::random_device{}()) {}

    Client& owner;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::thread thread;
    std::string channel;
    MessageHandler on_message;
    ReadyHandler on_ready;

    redisAsyncContext* cmd = nullptr;
    redisAsyncContext* sub = nullptr;
    bool cmd_ready = false;
    bool ever_ready = false;
    bool stopping = false;
    bool reconnect_pending = false;
    int failures = 0;  // consecutive failed connection attempts
    int pings = 0;
    std::uint64_t next_id = 1;
    std::unordered_map<std::uint64_t, Pending> pending;
    std::deque<std::pair<SteadyClock::time_point, std::uint64_t>> deadlines;  // in id order
    asio::steady_timer deadline_timer{io};
    bool deadline_armed = false;
    asio::steady_timer reconnect_timer{io};
    asio::steady_timer connect_timer{io};
    asio::steady_timer ping_timer{io};
    std::mt19937_64 rng;

    std::atomic<bool> connected{false};
    std::atomic<std::uint64_t> commands{0}, timeouts{0}, unavailable{0}, errors{0}, reconnects{0};
    std::atomic<std::int64_t> used_memory{-1};
    std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> buckets{};
    std::atomic<std::uint64_t> latency_sum_ns{0};

    static State* of(const redisAsyncContext* ac) { return static_cast<State*>(ac->data); }

    // --- connections ----------------------------------------------------------

    void connect() {
        if (stopping) return;
        const auto& cfg = owner.cfg_;
        cmd = open(Role::command);
        if (!cmd) return schedule_reconnect("cannot create a connection");
        if (!cfg.password.empty()) raw_command(cmd, {"AUTH", cfg.password}, 0);
        if (cfg.db != 0) raw_command(cmd, {"SELECT", std::to_string(cfg.db)}, 0);
        // The PING after AUTH and SELECT says the connection is usable.
        raw_command(cmd, {"PING"}, kReadyId);
        if (!channel.empty() && !sub) {
            sub = open(Role::subscriber);
            if (sub) {
                if (!cfg.password.empty()) raw_command(sub, {"AUTH", cfg.password}, 0);
                raw_command(sub, {"SUBSCRIBE", channel}, kSubscribeId);
            }
        }
        connect_timer.expires_after(std::max<std::chrono::milliseconds>(cfg.timeout * 10,
                                                                        std::chrono::seconds(1)));
        connect_timer.async_wait([this](boost::system::error_code ec) {
            if (ec || cmd_ready || stopping) return;
            log::warn("redis: connecting to " + owner.cfg_.address.host + ":" +
                      std::to_string(owner.cfg_.address.port) + " timed out");
            drop_connections();
        });
    }

    redisAsyncContext* open(Role role) {
        const auto& a = owner.cfg_.address;
        redisAsyncContext* ac = redisAsyncConnect(a.host.c_str(), a.port);
        if (!ac) return nullptr;
        if (ac->err) {
            log::warn(std::string("redis: ") + ac->errstr);
            redisAsyncFree(ac);
            return nullptr;
        }
        ac->data = this;
        attach(io, ac);
        redisAsyncSetConnectCallback(ac, &State::on_connect);
        redisAsyncSetDisconnectCallback(ac, role == Role::command ? &State::on_cmd_disconnect
                                                                  : &State::on_sub_disconnect);
        return ac;
    }

    // A context that never connected is freed by hiredis without its
    // disconnect callback: forget it here.
    static void on_connect(const redisAsyncContext* ac, int status) {
        if (status == REDIS_OK) return;
        State* s = of(ac);
        s->log_once(std::string("redis: connect failed: ") + ac->errstr);
        if (ac == s->sub) {
            s->sub = nullptr;
            if (s->cmd && !s->stopping) redisAsyncDisconnect(s->cmd);
            return;
        }
        s->cmd = nullptr;
        s->lost_command_connection();
    }
    static void on_cmd_disconnect(const redisAsyncContext* ac, int) {
        State* s = of(ac);
        s->cmd = nullptr;
        s->lost_command_connection();
    }
    static void on_sub_disconnect(const redisAsyncContext* ac, int) {
        State* s = of(ac);
        s->sub = nullptr;
        // The command connection notices the same outage; if it does not
        // (only this one broke), drop it too so that both come back together.
        if (s->cmd && !s->stopping) redisAsyncDisconnect(s->cmd);
    }

    void log_once(const std::string& text) {
        if (failures == 0) log::warn(text);
    }

    void lost_command_connection() {
        const bool was_ready = cmd_ready;
        cmd_ready = false;
        connected = false;
        owner.up_ = false;
        fail_all(Outcome::failed);
        if (sub && !stopping) {
            redisAsyncContext* old = sub;
            sub = nullptr;
            redisAsyncFree(old);
        }
        if (was_ready) log::warn("redis: connection lost; routing on local state until it returns");
        if (!stopping) schedule_reconnect(nullptr);
    }

    /// Frees both connections now (connect timeout, stop); reconnects unless stopping.
    void drop_connections() {
        redisAsyncContext* c = cmd;
        redisAsyncContext* b = sub;
        cmd = nullptr;
        sub = nullptr;
        if (b) redisAsyncFree(b);
        if (c) redisAsyncFree(c);  // a connected one calls on_cmd_disconnect
        if (cmd_ready || connected) lost_command_connection();
        else if (!stopping) schedule_reconnect(nullptr);
    }

    void schedule_reconnect(const char* why) {
        if (why) log_once(std::string("redis: ") + why);
        if (reconnect_pending || stopping) return;
        reconnect_pending = true;
        connect_timer.cancel();
        ++failures;
        const auto base = std::min<long long>(kBackoffMax.count(),
                                              kBackoffMin.count() << std::min(failures - 1, 6));
        std::uniform_int_distribution<long long> jitter(base / 2, base);
        reconnect_timer.expires_after(std::chrono::milliseconds(jitter(rng)));
        reconnect_timer.async_wait([this](boost::system::error_code ec) {
            reconnect_pending = false;
            if (ec || stopping || cmd) return;
            ++reconnects;
            connect();
        });
    }

    void became_ready() {
        connect_timer.cancel();
        const bool first = !ever_ready;
        cmd_ready = true;
        ever_ready = true;
        failures = 0;
        connected = true;
        owner.up_ = true;
        log::info(std::string("redis: connected to ") + owner.cfg_.address.host + ":" +
                  std::to_string(owner.cfg_.address.port) + (first ? "" : " again"));
        pings = 0;
        arm_ping(std::chrono::milliseconds(0));
        if (on_ready) on_ready(first);
    }

    // --- commands ---------------------------------------------------------------

    static constexpr std::uintptr_t kReadyId = ~std::uintptr_t{0};
    static constexpr std::uintptr_t kSubscribeId = ~std::uintptr_t{0} - 1;

    void raw_command(redisAsyncContext* ac, const std::vector<std::string>& args,
                     std::uintptr_t id) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        argv.reserve(args.size());
        lens.reserve(args.size());
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        redisAsyncCommandArgv(ac, &State::on_reply, reinterpret_cast<void*>(id),
                              static_cast<int>(args.size()), argv.data(), lens.data());
    }

    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
        State* s = of(ac);
        const auto id = reinterpret_cast<std::uintptr_t>(privdata);
        const auto* r = static_cast<const redisReply*>(reply);
        if (id == kReadyId) {
            if (r && r->type != REDIS_REPLY_ERROR && !s->stopping) s->became_ready();
            else if (r) {
                log::warn(std::string("redis: ") + std::string(r->str, r->len));
                redisAsyncDisconnect(ac);
            }
            return;
        }
        if (id == kSubscribeId) return s->on_subscription(r);
        if (id == 0) {  // AUTH / SELECT
            if (r && r->type == REDIS_REPLY_ERROR)
                s->log_once(std::string("redis: ") + std::string(r->str, r->len));
            return;
        }
        s->complete(id, r ? Outcome::ok : Outcome::failed, convert(r));
    }

    void on_subscription(const redisReply* r) {
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
        const redisReply* kind = r->element[0];
        const redisReply* payload = r->element[2];
        if (kind->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING) return;
        if (std::string_view(kind->str, kind->len) != "message") return;
        if (on_message) on_message(std::string_view(payload->str, payload->len));
    }

    void enqueue(std::vector<std::string> args, std::optional<asio::any_io_executor> ex,
                 asio::any_completion_handler<void(Result)> handler) {
        ++commands;
        if (!cmd || !cmd_ready || stopping) {
            ++unavailable;
            return finish(Pending{SteadyClock::now(), std::move(ex), std::move(handler)},
                          Outcome::unavailable, {});
        }
        const std::uint64_t id = next_id++;
        const auto now = SteadyClock::now();
        pending.emplace(id, Pending{now, std::move(ex), std::move(handler)});
        deadlines.emplace_back(now + owner.cfg_.timeout, id);
        raw_command(cmd, args, static_cast<std::uintptr_t>(id));
        arm_deadline();
    }

    void complete(std::uint64_t id, Outcome outcome, Reply reply) {
        auto it = pending.find(id);
        if (it == pending.end()) return;  // timed out already: the late reply is dropped
        Pending p = std::move(it->second);
        pending.erase(it);
        if (outcome == Outcome::ok) observe(SteadyClock::now() - p.start);
        if (outcome != Outcome::ok || reply.kind == Reply::Kind::error) ++errors;
        finish(std::move(p), outcome, std::move(reply));
    }

    static void finish(Pending p, Outcome outcome, Reply reply) {
        if (!p.handler) return;
        Result r{outcome, std::move(reply)};
        asio::post(*p.ex, [h = std::move(p.handler), r = std::move(r)]() mutable {
            std::move(h)(std::move(r));
        });
    }

    void fail_all(Outcome outcome) {
        auto all = std::move(pending);
        pending.clear();
        deadlines.clear();
        for (auto& [id, p] : all) {
            ++errors;
            finish(std::move(p), outcome, {});
        }
    }

    void observe(SteadyClock::duration d) {
        const double s = std::chrono::duration<double>(d).count();
        std::size_t i = 0;
        while (i < kLatencyBuckets.size() && s > kLatencyBuckets[i]) ++i;
        buckets[i].fetch_add(1, std::memory_order_relaxed);
        latency_sum_ns.fetch_add(
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()),
            std::memory_order_relaxed);
    }

    void arm_deadline() {
        while (!deadlines.empty() && !pending.contains(deadlines.front().second))
            deadlines.pop_front();
        if (deadline_armed || deadlines.empty()) return;
        deadline_armed = true;
        deadline_timer.expires_at(deadlines.front().first);
        deadline_timer.async_wait([this](boost::system::error_code ec) {
            deadline_armed = false;
            if (ec) return;
            const auto now = SteadyClock::now();
            while (!deadlines.empty() && deadlines.front().first <= now) {
                const auto id = deadlines.front().second;
                deadlines.pop_front();
                auto it = pending.find(id);
                if (it == pending.end()) continue;
                Pending p = std::move(it->second);
                pending.erase(it);
                ++timeouts;
                finish(std::move(p), Outcome::timeout, {});
            }
            arm_deadline();
        });
    }

    // --- health ---------------------------------------------------------------

    void arm_ping(std::chrono::milliseconds after) {
        ping_timer.expires_after(after);
        ping_timer.async_wait([this](boost::system::error_code ec) {
            if (ec || stopping || !cmd_ready) return;
            const bool info = pings++ % kInfoEveryPings == 0;
            auto done = [this, info](Result r) {
                // A PING past the deadline means Redis is too slow to help
                // routing: report it down until it answers in time again.
                // Back in time on the same connection: nothing that was
                // bound meanwhile reached Redis, so it is "ready" again.
                if (cmd_ready) {
                    const bool was_up = owner.up_.load(std::memory_order_relaxed);
                    owner.up_ = r.ok();
                    if (!was_up && r.ok() && on_ready) on_ready(false);
                }
                if (info && r.ok()) parse_info(r.reply.str);
                // While marked slow, look again soon: routing skips Redis
                // until a PING is answered in time.
                arm_ping(r.ok() ? kPingEvery : kPingWhileSlow);
            };
            if (info)
                enqueue({"INFO", "memory"}, io.get_executor(),
                        asio::any_completion_handler<void(Result)>(std::move(done)));
            else
                enqueue({"PING"}, io.get_executor(),
                        asio::any_completion_handler<void(Result)>(std::move(done)));
        });
    }

    void parse_info(std::string_view text) {
        constexpr std::string_view kKey = "used_memory:";
        const auto at = text.find(kKey);
        if (at == std::string_view::npos) return;
        used_memory = std::strtoll(text.data() + at + kKey.size(), nullptr, 10);
    }

    // --- stop -------------------------------------------------------------------

    void shutdown() {
        stopping = true;
        reconnect_timer.cancel();
        connect_timer.cancel();
        ping_timer.cancel();
        deadline_timer.cancel();
        fail_all(Outcome::unavailable);
        drop_connections();
        owner.up_ = false;
        connected = false;
        work.reset();
    }
};

Client::Client(config::Redis cfg, std::string channel, MessageHandler on_message,
               ReadyHandler on_ready)
    : cfg_(std::move(cfg)), state_(std::make_unique<State>(*this)) {
    state_->channel = std::move(channel);
    state_->on_message = std::move(on_message);
    state_->on_ready = std::move(on_ready);
}

Client::~Client() { stop(); }

void Client::start() {
    asio::post(state_->io, [s = state_.get()] { s->connect(); });
    state_->thread = std::thread([s = state_.get()] { s->io.run(); });
}

void Client::stop() {
    if (!state_->thread.joinable()) return;
    asio::post(state_->io, [s = state_.get()] { s->shutdown(); });
    // hiredis frees a context after its pending replies: let the loop run
    // until every context is gone, then stop it.
    state_->thread.join();
}

void Client::submit(std::vector<std::string> args, asio::any_io_executor ex,
                    asio::any_completion_handler<void(Result)> handler) {
    asio::post(state_->io, [s = state_.get(), a = std::move(args), ex = std::move(ex),
                            h = std::move(handler)]() mutable {
        s->enqueue(std::move(a), std::move(ex), std::move(h));
    });
}

void Client::send(std::vector<std::string> args) {
    asio::post(state_->io, [s = state_.get(), a = std::move(args)]() mutable {
        s->enqueue(std::move(a), std::nullopt, {});
    });
}

void Client::post(std::function<void()> fn) { asio::post(state_->io, std::move(fn)); }

asio::any_io_executor Client::executor() const { return state_->io.get_executor(); }

Stats Client::stats() const {
    Stats out;
    const State& s = *state_;
    out.up = up();
    out.connected = s.connected.load(std::memory_order_relaxed);
    out.commands = s.commands.load(std::memory_order_relaxed);
    out.timeouts = s.timeouts.load(std::memory_order_relaxed);
    out.unavailable = s.unavailable.load(std::memory_order_relaxed);
    out.errors = s.errors.load(std::memory_order_relaxed);
    out.reconnects = s.reconnects.load(std::memory_order_relaxed);
    out.used_memory = s.used_memory.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < out.latency_buckets.size(); ++i)
        out.latency_buckets[i] = s.buckets[i].load(std::memory_order_relaxed);
    out.latency_sum = static_cast<double>(s.latency_sum_ns.load(std::memory_order_relaxed)) / 1e9;
    return out;
}

std::string describe(const Result& r) {
    switch (r.outcome) {
        case Outcome::timeout: return "timeout";
        case Outcome::unavailable: return "unavailable";
        case Outcome::failed: return "connection lost";
        case Outcome::ok: break;
    }
    if (r.reply.kind == Reply::Kind::error) return "error: " + r.reply.str;
    return "ok";
}

}  // namespace tether::redis
