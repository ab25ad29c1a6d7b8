// Passive health of one server, as nginx's max_fails/fail_timeout: failures
// (connect refused or timed out, a reset or timeout before the response head)
// are counted in a window of fail_timeout that opens with the first failure;
// max_fails of them take the server out for fail_timeout. When it comes back
// it is on probation, as in nginx: its first failure takes it out again at
// once, its first success clears the count. max_fails = 0 turns this off.
// An answer is not a failure (nginx's default proxy_next_upstream) unless its
// status is in the upstream's fail_on_status (the http module decides).
//
// Threading: shared by every worker. The request path reads `out(now)`,
// which is one relaxed atomic load unless the server is out; failures (rare)
// take a mutex for a few instructions; a success is one atomic load unless a
// count is pending. Time is passed in, so tests drive it with a fake clock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "tether/core/connection_registry.hpp"  // tether::Clock

namespace tether::upstream {

class PassiveHealth {
public:
    /// True while taken out by failures; reads the clock only when a time was set.
    bool out() const {
        const auto until = out_until_.load(std::memory_order_relaxed);
        return until != 0 && Clock::now().time_since_epoch().count() < until;
    }
    bool out(Clock::time_point now) const {
        const auto until = out_until_.load(std::memory_order_relaxed);
        return until != 0 && now.time_since_epoch().count() < until;
    }
    /// Records a failure; true when it takes the server out (now until now + fail_timeout).
    bool record_failure(Clock::time_point now, int max_fails, std::chrono::milliseconds fail_timeout);
    /// Records a success: ends probation and clears the count (a success
    /// while out, from a request older than the failures, changes nothing).
    void record_success(Clock::time_point now) {
        if (pending_.load(std::memory_order_relaxed) && !out(now)) clear();
    }
    /// Forgets everything (the server was found healthy by an active check).
    void clear();
    /// Failures recorded and times taken out, since start (for metrics).
    std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
    std::uint64_t trips() const { return trips_.load(std::memory_order_relaxed); }

private:
    std::atomic<Clock::rep> out_until_{0};  // 0 = not out
    std::atomic<bool> pending_{false};      // fails_ > 0 or probation_: a success must clear
    std::atomic<std::uint64_t> failures_{0};
    std::atomic<std::uint64_t> trips_{0};
    std::mutex mutex_;  // guards the three below
    int fails_ = 0;
    bool probation_ = false;
    Clock::time_point window_start_{};
};

}  // namespace tether::upstream
