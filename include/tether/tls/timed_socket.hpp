// A TCP socket with per-operation deadlines: the contract of
// beast::tcp_stream's expires_after / expires_at / expires_never (an
// operation gets the expiry set before it began; one still pending at its
// deadline ends with beast::error::timeout and the socket is closed, so the
// other direction's operation ends too), at a fraction of the cost.
//
// tcp_stream arms a timer wait when each read or write begins and cancels it
// when the operation ends (a timer queue insert and removal, a cancelled
// handler run through the scheduler, executor work guards), ~14 times per
// proxied keep-alive request. Here one timer per socket is armed lazily,
// an operation that ends in time touches no timer, and expires_after counts
// from core::coarse_now() (the clock read once per completion handled).
// The parts:
//   timed_socket_state.hpp  the state shared with pending handlers: deadlines, the timer
//   timed_completion.hpp    the handler around each operation's completion
//   immediate_io.hpp        reads and writes done at once, without the reactor
//   reactor_registration.hpp, draining_buffer.hpp: the reactor's tricks they use
// Threading: the socket's executor (one worker thread) only.
#pragma once

#include <chrono>
#include <cstddef>
#include <type_traits>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "tether/core/coarse_clock.hpp"
#include "tether/core/executor.hpp"
#include "tether/tls/draining_buffer.hpp"
#include "tether/tls/immediate_io.hpp"
#include "tether/tls/reactor_registration.hpp"
#include "tether/tls/send_queue.hpp"
#include "tether/tls/timed_completion.hpp"
#include "tether/tls/timed_socket_state.hpp"

namespace tether::tls {

class TimedSocket {
public:
    using Clock = std::chrono::steady_clock;
    using executor_type = Executor;       // the worker's (core/executor.hpp)
    using lowest_layer_type = TcpSocket;  // for asio::ssl::stream

    explicit TimedSocket(TcpSocket&& socket);
    explicit TimedSocket(const executor_type& ex);
    ~TimedSocket();  // closes the socket, as tcp_stream's destructor
    TimedSocket(const TimedSocket&) = delete;
    TimedSocket& operator=(const TimedSocket&) = delete;

    executor_type get_executor() { return s_->socket.get_executor(); }
    TcpSocket& socket() { return s_->socket; }
    lowest_layer_type& lowest_layer() { return s_->socket; }

    /// The deadline of the next read and of the next write (a direction with
    /// an operation pending keeps the one it began with).
    void expires_at(Clock::time_point t) {
        for (auto& d : s_->dir)
            if (!d.pending) d.next = t;
    }
    void expires_after(Clock::duration d) { expires_at(core::coarse_now() + d); }
    void expires_never() { expires_at(Clock::time_point::max()); }
    /// Registers a socket that is not yet with its reactor (see
    /// reactor_registration.hpp): needed before an Asio asynchronous
    /// operation is started on socket() directly. Nothing when it is.
    boost::system::error_code join_reactor() { return s_->join_reactor(); }
    /// Cancels the pending operations (they end with operation_aborted).
    void cancel() {
        boost::system::error_code ignored;
        s_->socket.cancel(ignored);
    }

    /// Reads some bytes. A read into one buffer that got fewer bytes than
    /// asked leaves the socket marked drained in Asio's reactor
    /// (draining_buffer.hpp): the next read then first tries recv(2) itself,
    /// as Asio would, unless the caller said a message just ended
    /// (next_read_starts_message), in which case it waits for the socket's
    /// next edge without a recv that would find nothing.
    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                const bool starts_message = std::exchange(s_->starts_message, false);
                // Unregistered: tried at once; if that found nothing, the
                // socket has just joined the reactor and Asio need not try again.
                const bool found_empty = s_->lazy;
                if ((s_->lazy || (s_->maybe_drained && !starts_message)) &&
                    done_now(s_, b, receive_now, handler))
                    return;
                s_->begin(kRead);
                if constexpr (kDrainingReads && std::is_convertible_v<const MutableBuffers&,
                                                                      boost::asio::mutable_buffer>) {
                    const boost::asio::mutable_buffer one(b);
                    s_->read_asked = one.size();
                    s_->socket.async_read_some(
                        DrainingBuffer(one, found_empty),
                        Timed<decltype(handler)>(s_, kRead, std::move(handler)));
                } else {
                    s_->read_asked = 0;
                    s_->socket.async_read_some(b, Timed<decltype(handler)>(s_, kRead,
                                                                           std::move(handler)));
                }
            },
            token, buffers);
    }

    /// The next read is the first of a new message, and the bytes of the last
    /// one all came (an HTTP response on a kept-alive connection, after the
    /// request went): if the last read drained the socket, the next waits for
    /// new bytes without trying a recv first. An end of stream that came with
    /// the last bytes is then seen only with the next event on the socket (a
    /// write to a closed peer brings its reset), so never use it where the
    /// end of the stream itself is what is awaited.
    void next_read_starts_message() { s_->starts_message = true; }

    /// Writes what the socket takes at once of `buffers` (one non-blocking
    /// sendmsg, no deadline needed: nothing waits): the bytes written, or 0
    /// with `ec` (would_block: none taken, or a write is pending).
    template <class ConstBuffers>
    std::size_t write_now(const ConstBuffers& buffers, boost::system::error_code& ec) {
        return tls::write_now(*s_, buffers, ec);
    }

    /// Queues the write of `buffers` in the worker's send queue instead of
    /// sending it now (send_queue.hpp); then co_await async_queued_send()
    /// for its result. False: not queued (a write pending or queued, or the
    /// queue takes none): write it as usual.
    template <class ConstBuffers>
    bool queue_write(SendQueue& q, const ConstBuffers& buffers) {
        if (s_->dir[kWrite].pending || s_->send_slot != 0 || s_->send_done) return false;
        IoVecs io(buffers);
        return q.push(*s_, io.v, io.n, io.bytes);
    }
    /// A write queued by queue_write() has yet to give its result.
    bool send_queued() const { return s_->send_slot != 0 || s_->send_done; }
    /// The result of the write queued (send_queued()): the bytes sent (a
    /// part, or none with would_block, when the socket was full), or an error.
    template <class Token>
    auto async_queued_send(Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler) {
                using H = decltype(handler);
                if (s_->send_slot != 0) {
                    s_->send_queue->wait(*s_, new SendWaiterOf<H>(std::move(handler)));
                    return;
                }
                // The result came first (or nothing was queued: an error).
                const int res = s_->send_done ? s_->send_result : -EINVAL;
                s_->send_done = false;
                boost::asio::post(s_->socket.get_executor(),
                                  boost::asio::append(std::move(handler), send_error(res),
                                                      res > 0 ? static_cast<std::size_t>(res) : 0));
            },
            token);
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                if (s_->lazy && done_now(s_, b, send_now, handler)) return;
                s_->begin(kWrite);
                s_->socket.async_write_some(b, Timed<decltype(handler)>(s_, kWrite,
                                                                        std::move(handler)));
            },
            token, buffers);
    }

    /// Waits until the socket is readable (data, end of stream or an error)
    /// without reading: a read deadline applies as to a read.
    template <class Token>
    auto async_wait_readable(Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) {
                if (s_->lazy) {
                    if (const auto ec = join_reactor()) {
                        boost::asio::post(s_->socket.get_executor(),
                                          boost::asio::append(std::move(handler), ec));
                        return;
                    }
                }
                s_->begin(kRead);
                s_->socket.async_wait(boost::asio::socket_base::wait_read,
                                      Timed<decltype(handler)>(s_, kRead, std::move(handler)));
            },
            token);
    }

    /// Connects to the first endpoint of `endpoints` that accepts (the write
    /// deadline applies to the whole attempt).
    template <class Endpoints, class Token>
    auto async_connect(const Endpoints& endpoints, Token&& token) {
        using Sig = void(boost::system::error_code, boost::asio::ip::tcp::endpoint);
        return boost::asio::async_initiate<Token, Sig>(
            [this](auto handler, const Endpoints& eps) {
                s_->begin(kWrite);
                boost::asio::async_connect(
                    s_->socket, eps, Timed<decltype(handler)>(s_, kWrite, std::move(handler)));
            },
            token, endpoints);
    }

private:
    using State = TimedSocketState;
    static constexpr int kRead = State::kRead;
    static constexpr int kWrite = State::kWrite;
    template <class Handler>
    using Timed = TimedCompletion<Handler>;

    TimedSocketRef s_;
};

}  // namespace tether::tls
