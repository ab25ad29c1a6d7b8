// A Redis client for the proxy's side paths: hiredis' async API driven by an
// io_context on a thread of its own (the "Redis thread").
//
// Threading: every hiredis call, every connection and the table of pending
// commands live on the Redis thread. Workers call async_command() from their
// own threads: the command is posted to the Redis thread and its Result is
// posted back to the caller's executor. No call ever blocks an I/O thread.
// Safety: hiredis callbacks carry an integer request id as privdata, looked
// up in the pending table; a command that timed out is gone from the table,
// so its late reply is dropped. The only pointers handed to hiredis are the
// Client itself (ac->data; the Client frees every context before it dies) and
// a socket watcher that hiredis releases through its cleanup hook.
// Deadlines: every command fails with Outcome::timeout after redis.timeout;
// while disconnected, commands fail at once (Outcome::unavailable) and the
// client reconnects with exponential backoff and jitter (100 ms .. 5 s).
// One connection carries pipelined commands (AUTH and SELECT first); a
// second one is subscribed to the events channel when one is given.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tether/config/config.hpp"

namespace tether::redis {

struct Reply {
    enum class Kind { nil, string, integer, status, error, array };
    Kind kind = Kind::nil;
    std::string str;
    long long integer = 0;
    std::vector<Reply> elements;
};

enum class Outcome { ok, timeout, unavailable, failed };

struct Result {
    Outcome outcome = Outcome::unavailable;
    Reply reply;
    /// A reply came and it is not a Redis error.
    bool ok() const { return outcome == Outcome::ok && reply.kind != Reply::Kind::error; }
};

/// Command latency buckets (upper bounds, seconds): 50 us .. 1 s.
inline constexpr std::array<double, 12> kLatencyBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0};

/// A copy of the client's counters, for /metrics and /status.
struct Stats {
    bool up = false;           ///< connected, and the last health PING answered in time
    bool connected = false;
    std::uint64_t commands = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t unavailable = 0;  ///< refused at once while disconnected
    std::uint64_t errors = 0;       ///< Redis error replies and commands lost with a connection
    std::uint64_t reconnects = 0;
    std::int64_t used_memory = -1;  ///< INFO memory used_memory; -1 = not known yet
    std::array<std::uint64_t, kLatencyBuckets.size() + 1> latency_buckets{};  ///< last = +Inf
    double latency_sum = 0;
};

class Client {
public:
    /// Runs on the Redis thread for each message of the subscribed channel.
    using MessageHandler = std::function<void(std::string_view payload)>;
    /// Runs on the Redis thread each time the command connection is ready
    /// (after AUTH and SELECT), and when Redis answers the health PING in
    /// time again after being too slow; `first` is true on the very first time.
    using ReadyHandler = std::function<void(bool first)>;

    Client(config::Redis cfg, std::string channel, MessageHandler on_message,
           ReadyHandler on_ready);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Starts the Redis thread and the first connection attempt.
    void start();
    /// Fails what is pending, closes the connections and joins the thread.
    void stop();

    /// Sends one command; the handler gets a Result on its associated executor.
    template <class Token = const boost::asio::use_awaitable_t<>&>
    auto async_command(std::vector<std::string> args, Token&& token = boost::asio::use_awaitable) {
        return boost::asio::async_initiate<Token, void(Result)>(
            [this](auto handler, std::vector<std::string> a) {
                // Tracked: the caller's event loop stays alive until the answer.
                auto ex = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                              boost::asio::execution::outstanding_work.tracked);
                submit(std::move(a), boost::asio::any_io_executor(std::move(ex)),
                       boost::asio::any_completion_handler<void(Result)>(std::move(handler)));
            },
            token, std::move(args));
    }

    /// Sends one command whose answer nobody waits for (it still has a deadline).
    void send(std::vector<std::string> args);
    /// Runs `fn` on the Redis thread.
    void post(std::function<void()> fn);
    /// The Redis thread's executor (for completions that must run there).
    boost::asio::any_io_executor executor() const;

    /// Connected and answering in time (cheap: an atomic load).
    bool up() const { return up_.load(std::memory_order_relaxed); }
    Stats stats() const;
    const config::Redis& config() const { return cfg_; }

private:
    struct State;
    void submit(std::vector<std::string> args, boost::asio::any_io_executor ex,
                boost::asio::any_completion_handler<void(Result)> handler);

    const config::Redis cfg_;
    std::unique_ptr<State> state_;
    std::atomic<bool> up_{false};
};

/// A short text for a Result, for logs.
std::string describe(const Result& r);

}  // namespace tether::redis
