// The deadline part of TimedSocket (timed_socket.hpp): the state a socket
// shares with its pending handlers, and the lazily armed timer.
//
// One steady_timer per socket is armed lazily: only when an operation begins
// with a deadline earlier than the one the timer already waits for. When the
// timer fires, a pending operation past its deadline times out; otherwise the
// timer is re-armed for the earliest deadline still pending, or left idle. An
// operation that ends in time touches no timer, and a deadline that moves
// forward (each read or write sets a later one) costs one clock read. A
// timeout still fires at its deadline, never later than tcp_stream would.
//
// The socket and the deadline state live in one small object shared (by a
// plain reference count, TimedSocketRef: one thread) with the pending
// handlers, so a completion that runs after the owner is gone touches live
// memory.
// Threading: the socket's executor (one worker thread) only.
#pragma once

#include <boost/beast/core/error.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "tether/core/executor.hpp"
#include "tether/core/recycling_pool.hpp"
#include "tether/tls/reactor_registration.hpp"

namespace tether::tls {

class SendQueue;

struct TimedSocketState {
    using Clock = std::chrono::steady_clock;
    static constexpr int kRead = 0;
    static constexpr int kWrite = 1;
    static constexpr int kNoDirection = -1;  // completed at once (complete_now): nothing begun

    struct Direction {
        Clock::time_point next = Clock::time_point::max();      // for the next operation
        Clock::time_point deadline = Clock::time_point::max();  // of the pending one
        bool pending = false;
        bool timed_out = false;
    };

    explicit TimedSocketState(TcpSocket&& s) : socket(std::move(s)), lazy(unregistered(socket)) {}
    // One per connection: from the thread's pool, not malloc.
    static void* operator new(std::size_t n) { return RecyclingPool::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { RecyclingPool::deallocate(p, n); }
    TcpSocket socket;
    // Made when first armed: a connection whose operations all end at
    // once never needs it (a timer's construction looks its service up
    // under the io_context's registry lock).
    std::optional<SteadyTimer> timer;
    // Not registered with the reactor yet (reactor_registration.hpp): a
    // read or write is tried at once, and registers it only if it would block.
    bool lazy;
    Direction dir[2];
    Clock::time_point armed = Clock::time_point::max();  // the timer's wait; max: none
    std::uint64_t generation = 0;                        // of the timer's current wait
    int refs = 0;
    std::size_t read_asked = 0;   // of the read pending in Asio (0: not a DrainingBuffer)
    bool maybe_drained = false;   // Asio may skip trying the next read at once
    bool starts_message = false;  // TimedSocket::next_read_starts_message()
    // A write queued in the worker's SendQueue (send_queue.hpp): the queue
    // and the entry (index + 1 in its batch not flushed yet; 0: none), or
    // the result (send_done) when it came before the waiter did.
    bool send_done = false;
    std::uint32_t send_slot = 0;
    int send_result = 0;
    SendQueue* send_queue = nullptr;

    void begin(int i) {
        Direction& d = dir[i];
        d.pending = true;
        d.timed_out = false;
        d.deadline = d.next;
        if (d.deadline < armed) arm(d.deadline);
    }
    /// The end of direction i's operation: its error, timeout if it was timed
    /// out.
    void end(int i, boost::system::error_code& ec) {
        Direction& d = dir[i];
        d.pending = false;
        if (d.timed_out) {
            d.timed_out = false;
            ec = boost::beast::error::timeout;
        }
    }
    /// Registers the socket with its reactor if it is not yet (see
    /// reactor_registration.hpp). Nothing when it is.
    boost::system::error_code join_reactor() {
        if (!lazy) return {};
        lazy = false;
        return register_socket(socket);
    }
    void arm(Clock::time_point t);
    void fired(std::uint64_t generation);
};

/// An owning reference to the TimedSocketState (not atomic: one thread).
class TimedSocketRef {
public:
    explicit TimedSocketRef(TimedSocketState* s) : s_(s) { ++s_->refs; }
    TimedSocketState& operator*() const { return *s_; }
    TimedSocketRef(const TimedSocketRef& o) : s_(o.s_) { ++s_->refs; }
    TimedSocketRef(TimedSocketRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    TimedSocketRef& operator=(const TimedSocketRef&) = delete;
    // Small enough to be inlined: an operation's handler is moved several
    // times on its way through Asio, and each moved-from copy is destroyed.
    // With the state's destruction (the socket's close) inline, the compiler
    // made this a call each time (~100 instructions per keep-alive request).
    ~TimedSocketRef() {
        if (s_ && --s_->refs == 0) destroy(s_);
    }
    TimedSocketState* operator->() const { return s_; }

private:
    [[gnu::noinline]] static void destroy(TimedSocketState* s) { delete s; }
    TimedSocketState* s_;
};

}  // namespace tether::tls
