// Both directions of one HTTP exchange at once. Once the request head is on
// its way, the request body keeps flowing to the backend in a second
// coroutine (the request pump) while the session reads and relays the
// response. Sending the whole body first stalls a backend that answers while
// it still reads (an echo of a large upload) as soon as both directions'
// socket buffers are full.
//
// The rules both sides keep:
//  - The response path owns the outcome and always join()s the pump before it
//    decides anything, so the pump never outlives the exchange it borrows.
//  - A failure on the client side of the request (bad chunking, too large,
//    too slow, gone) stops both directions; the response path then answers
//    400/408/413 only if no response byte went out.
//  - The response head read has no deadline of its own while the pump runs
//    (a long upload must not count against it): once the pump has sent the
//    whole request it keeps timeouts.upstream_response itself and cancels the
//    read when it runs out (`head_timed_out`).
//  - stop() is called only when every operation still pending on the two
//    streams is meant to end: it cancels them, and the flag catches a
//    completion already queued.
// Threading: one worker's executor. Both coroutines run on its one thread, so
// the shared state is plain data.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>

#include "http/relay.hpp"
#include "tether/core/executor.hpp"

namespace tether::http {

/// The pump's two timers, made only when there is a pump (a request whose
/// body is here whole, the usual case, needs none).
struct PumpTimers {
    explicit PumpTimers(const Executor& ex) : deadline(ex), finished_signal(ex) {
        finished_signal.expires_at(SteadyTimer::time_point::max());
    }
    SteadyTimer deadline;         ///< upstream_response, run by the pump
    SteadyTimer finished_signal;  ///< cancelled when the pump ends
};

struct Duplex {
    Duplex() = default;
    Duplex(const Duplex&) = delete;
    Duplex& operator=(const Duplex&) = delete;

    RelayProgress request;        ///< the request body's progress
    RelayProgress response;       ///< the response's progress (head_out: a response began)
    RelayStatus request_status;   ///< how the request relay ended, once `request_relayed`
    bool pumped = false;          ///< the request body runs in the pump
    bool request_relayed = false; ///< the request relay ended (whatever its outcome)
    bool finished = true;         ///< no pump, or the pump's coroutine ended
    bool stop = false;            ///< both directions give up
    bool head_received = false;   ///< the response head read ended
    bool head_timed_out = false;  ///< the pump's upstream_response deadline ran out
    std::exception_ptr error;     ///< escaped the pump; rethrown by join()
    std::optional<PumpTimers> timers;  ///< made by start_pump()
};

/// Stops both directions: pending operations on either stream end.
template <class ClientStream, class UpstreamStream>
void stop(Duplex& d, ClientStream& client, UpstreamStream& upstream) {
    d.stop = true;
    if (d.timers) d.timers->deadline.cancel();
    boost::system::error_code ignored;
    client.socket().cancel(ignored);
    upstream.socket().cancel(ignored);
}

/// Marks the end of the response head read (the pump's deadline is no longer needed).
inline void head_read_ended(Duplex& d) {
    d.head_received = true;
    if (d.timers) d.timers->deadline.cancel();
}

/// The pump: relays the request body, then keeps the response head deadline.
template <class ClientStream, class UpstreamStream, class Parser>
Awaitable<void> pump_request(Duplex& d, ClientStream& client,
                             boost::beast::flat_buffer& client_buf, Parser& p,
                             UpstreamStream& upstream,
                             std::string_view head, Framing framing, RelayEnv env,
                             std::chrono::milliseconds response_timeout) {
    namespace asio = boost::asio;
    env.stop = &d.stop;
    d.request_status =
        co_await relay_body(client, client_buf, p, upstream, head, framing, env, d.request);
    d.request_relayed = true;
    if (d.request_status.failed_side == RelaySide::source) {
        stop(d, client, upstream);
        co_return;
    }
    if (d.stop || d.head_received) co_return;
    d.timers->deadline.expires_after(response_timeout);
    auto [ec] = co_await d.timers->deadline.async_wait(await_tuple);
    if (ec || d.stop || d.head_received) co_return;
    d.head_timed_out = true;
    boost::system::error_code ignored;
    upstream.socket().cancel(ignored);
}

/// Runs `pump` beside the caller; join() waits for its end.
inline void start_pump(Duplex& d, const Executor& ex,
                       Awaitable<void> pump) {
    d.pumped = true;
    d.finished = false;
    d.timers.emplace(ex);
    boost::asio::co_spawn(ex, std::move(pump), [&d](std::exception_ptr e) {
        d.error = e;
        d.finished = true;
        d.timers->finished_signal.cancel();
    });
}

/// Waits until the pump has ended; rethrows what escaped it.
inline Awaitable<void> join(Duplex& d) {
    namespace asio = boost::asio;
    while (!d.finished)
        co_await d.timers->finished_signal.async_wait(await_tuple);
    if (d.error) std::rethrow_exception(d.error);
}

}  // namespace tether::http
