// One clock read per completion handled (issue 9, the keep-alive path).
//
// A proxied keep-alive request read the steady clock 11 times (the deadline
// set before each read and write, the exchange's start and end, the pool's
// idle stamp, passive health's success), though the exchange runs in four
// short stretches of code, each started by the completion of a socket
// operation: the request came, the request went, the response head came,
// the response went. tls::TimedSocket opens a ClockScope around every
// completion it delivers; inside it, coarse_now() reads the clock once and
// gives every later caller the same time until the completion handler
// returns (the coroutine it resumed has suspended again). Outside any scope
// coarse_now() is steady_clock::now().
//
// So a deadline set inside a stretch counts from the stretch's first clock
// read: earlier than it would by the CPU time the stretch took before it
// (microseconds; no wait happens inside a stretch), never later. nginx and
// HAProxy do the same with a time cached for a whole turn of their event
// loop. Timeouts still fire by the real clock (TimedSocket's timer).
// Threading: per thread (thread_local); scopes nest (an inner one keeps the
// outer one's time).
#pragma once

#include <chrono>

namespace tether::core {

namespace detail {
struct CoarseClockState {
    std::chrono::steady_clock::time_point now{};
    unsigned depth = 0;  // open ClockScopes on this thread
    bool read = false;   // `now` was read in the current outermost scope
};
inline constinit thread_local CoarseClockState coarse_clock_state{};
}  // namespace detail

/// steady_clock::now(), read at most once per outermost ClockScope.
inline std::chrono::steady_clock::time_point coarse_now() noexcept {
    auto& s = detail::coarse_clock_state;
    if (s.depth == 0) return std::chrono::steady_clock::now();
    if (!s.read) {
        s.now = std::chrono::steady_clock::now();
        s.read = true;
    }
    return s.now;
}

/// While one lives on this thread, coarse_now() reads the clock once.
/// Open it only around code that does not wait (one handler's run).
class ClockScope {
public:
    ClockScope() noexcept { ++detail::coarse_clock_state.depth; }
    ~ClockScope() {
        auto& s = detail::coarse_clock_state;
        if (--s.depth == 0) s.read = false;
    }
    ClockScope(const ClockScope&) = delete;
    ClockScope& operator=(const ClockScope&) = delete;
};

}  // namespace tether::core
