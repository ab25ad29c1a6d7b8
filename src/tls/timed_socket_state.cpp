// The lazily armed per-socket deadline timer; see timed_socket_state.hpp.
// Threading: the socket's executor (one worker thread) only.
#include "tether/tls/timed_socket_state.hpp"

#include <algorithm>

namespace tether::tls {

void TimedSocketState::arm(Clock::time_point t) {
    armed = t;
    const std::uint64_t g = ++generation;
    if (!timer) timer.emplace(socket.get_executor());
    timer->expires_at(t);  // a wait for a later deadline ends as aborted (and is ignored)
    timer->async_wait([ref = TimedSocketRef(this), g](boost::system::error_code ec) {
        if (!ec) ref->fired(g);
    });
}

// The timer's wait ended: time out each pending operation past its deadline
// (closing the socket, as tcp_stream does, ends both), or wait for the
// earliest deadline still ahead.
void TimedSocketState::fired(std::uint64_t g) {
    if (g != generation) return;  // replaced by a wait for an earlier deadline
    armed = Clock::time_point::max();
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    bool expired = false;
    for (auto& d : dir) {
        if (!d.pending) continue;
        if (d.deadline <= now) {
            d.timed_out = true;
            expired = true;
        } else {
            next = std::min(next, d.deadline);
        }
    }
    if (expired) {
        boost::system::error_code ignored;
        socket.close(ignored);
        return;
    }
    if (next != Clock::time_point::max()) arm(next);
}

}  // namespace tether::tls
