// TimedCompletion: the handler a TimedSocket (timed_socket.hpp) gives Asio
// for each operation. It holds a reference to the socket's state
// (timed_socket_state.hpp), ends the operation's direction (turning an
// expired one's error into beast::error::timeout), notes whether a read
// drained the socket (draining_buffer.hpp), then runs the caller's handler,
// whose executor and cancellation slot it keeps (the associator below) and
// whose continuation hint it passes on. Its allocator is the thread's
// RecyclingPool (for the operation Asio makes for it), whatever the caller's.
//
// Every completion runs inside a core::ClockScope, and expires_after counts
// from core::coarse_now(): the clock is read once per completion handled,
// however many deadlines and time stamps the resumed code sets before it
// waits again (coarse_clock.hpp).
// Threading: the socket's executor (one worker thread) only.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/handler_continuation_hook.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "tether/core/coarse_clock.hpp"
#include "tether/core/recycling_pool.hpp"
#include "tether/tls/timed_socket_state.hpp"

namespace tether::tls {

/// The completion of one operation of `direction` (TimedSocketState::kRead,
/// kWrite, or kNoDirection for one completed at once: nothing to end).
template <class Handler>
class TimedCompletion {
public:
    // Asio's memory for the operation carrying it (and for a completion
    // posted at once) from the thread's pool, in size classes, not from
    // Asio's per-thread cache of 8 blocks of any size, which tens of
    // sessions with an operation pending each overran (a malloc and a free
    // per miss).
    using allocator_type = RecyclingAllocator<void>;
    allocator_type get_allocator() const noexcept { return {}; }
    TimedCompletion(TimedSocketRef state, int direction, Handler h)
        : state_(std::move(state)), direction_(direction), handler_(std::move(h)) {}
    template <class... Args>
    void operator()(boost::system::error_code ec, Args&&... args) {
        const core::ClockScope clock_scope;
        if (direction_ == TimedSocketState::kNoDirection)
            return std::move(handler_)(ec, std::forward<Args>(args)...);
        if constexpr (sizeof...(Args) == 1 &&
                      (std::is_same_v<std::decay_t<Args>, std::size_t> && ...)) {
            if (direction_ == TimedSocketState::kRead &&
                state_->read_asked > 0)  // what Asio's flag now says
                state_->maybe_drained = (... || (args < state_->read_asked));
        }
        state_->end(direction_, ec);
        std::move(handler_)(ec, std::forward<Args>(args)...);
    }
    const Handler& handler() const noexcept { return handler_; }
    friend bool asio_handler_is_continuation(TimedCompletion* t) {
        return boost_asio_handler_cont_helpers::is_continuation(t->handler_);
    }

private:
    TimedSocketRef state_;
    int direction_;
    Handler handler_;
};

}  // namespace tether::tls

template <template <typename, typename> class Associator, class Handler, class DefaultCandidate>
struct boost::asio::associator<Associator, tether::tls::TimedCompletion<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const tether::tls::TimedCompletion<Handler>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.handler());
    }
    static auto get(const tether::tls::TimedCompletion<Handler>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler(), c)) {
        return Associator<Handler, DefaultCandidate>::get(h.handler(), c);
    }
};
