// A TCP socket with per-operation deadlines: the contract of
// beast::tcp_stream's expires_after / expires_at / expires_never (an
// operation gets the expiry set before it began; one still pending at its
// deadline ends with beast::error::timeout and the socket is closed, so the
// other direction's operation ends too), at a fraction of the cost.
//
// tcp_stream arms a timer wait when each read or write begins and cancels it
// when the operation ends (a timer queue insert and removal, a cancelled
// handler run through the scheduler, executor work guards), ~14 times per
// proxied keep-alive request. Here one steady_timer per socket is armed
// lazily: only when an operation begins with a deadline earlier than the one
// the timer already waits for. When the timer fires, a pending operation
// past its deadline times out; otherwise the timer is re-armed for the
// earliest deadline still pending, or left idle. An operation that ends in
// time touches no timer, and a deadline that moves forward (each read or
// write sets a later one) costs one clock read. A timeout still fires at its
// deadline, never later than tcp_stream would.
//
// The socket and the deadline state live in one small object shared (by a
// plain reference count: one thread) with the pending handlers, so a
// completion that runs after the owner is gone touches live memory.
//
// Every completion runs inside a core::ClockScope, and expires_after counts
// from core::coarse_now(): the clock is read once per completion handled,
// however many deadlines and time stamps the resumed code sets before it
// waits again (coarse_clock.hpp).
// Threading: the socket's executor (one worker thread) only.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/handler_continuation_hook.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>

#include "tether/core/coarse_clock.hpp"
#include "tether/core/executor.hpp"
#include "tether/tls/draining_buffer.hpp"
#include "tether/tls/reactor_registration.hpp"

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
    boost::system::error_code join_reactor() {
        if (!s_->lazy) return {};
        s_->lazy = false;
        return register_socket(s_->socket);
    }
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
                    done_now(b, receive_now, handler))
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
        IoVecs io(buffers);
        if (s_->dir[kWrite].pending) {
            ec = boost::asio::error::would_block;
            return 0;
        }
        ec = {};
        return io.bytes > 0 ? send_now(s_->socket.native_handle(), io.v, io.n, ec) : 0;
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                if (s_->lazy && done_now(b, send_now, handler)) return;
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
    static constexpr int kRead = 0;

    // An operation done without the reactor: its handler runs from the
    // executor's queue, as after Asio's own speculative read or write.
    // One non-blocking try of the operation (receive_now / send_now) without
    // the reactor: true when it completed `handler` (bytes, an error, or the
    // failure to join the reactor); false when it would block and the socket
    // is now registered, so the caller goes through Asio as usual.
    template <class Buffers, class Io, class Handler>
    bool done_now(const Buffers& b, Io io_now, Handler& handler) {
        IoVecs io(b);
        boost::system::error_code ec;
        std::size_t n = 0;
        if (io.bytes > 0) n = io_now(s_->socket.native_handle(), io.v, io.n, ec);
        if (ec != boost::asio::error::would_block) {
            complete_now(std::move(handler), ec, n);
            return true;
        }
        if ((ec = join_reactor())) {
            complete_now(std::move(handler), ec, 0);
            return true;
        }
        return false;
    }

    template <class Handler>
    void complete_now(Handler&& handler, boost::system::error_code ec, std::size_t n) {
        boost::asio::post(s_->socket.get_executor(),
                          boost::asio::append(Timed<std::decay_t<Handler>>(
                                                  s_, kNoDirection, std::forward<Handler>(handler)),
                                              ec, n));
    }
    static constexpr int kWrite = 1;
    static constexpr int kNoDirection = -1;  // completed at once (complete_now): nothing begun

    struct Direction {
        Clock::time_point next = Clock::time_point::max();      // for the next operation
        Clock::time_point deadline = Clock::time_point::max();  // of the pending one
        bool pending = false;
        bool timed_out = false;
    };

    struct State {
        explicit State(TcpSocket&& s)
            : socket(std::move(s)), lazy(unregistered(socket)) {}
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
        bool starts_message = false;  // next_read_starts_message()

        void begin(int i) {
            Direction& d = dir[i];
            d.pending = true;
            d.timed_out = false;
            d.deadline = d.next;
            if (d.deadline < armed) arm(d.deadline);
        }
        /// The end of direction i's operation: its error, timeout if it was timed out.
        void end(int i, boost::system::error_code& ec) {
            Direction& d = dir[i];
            d.pending = false;
            if (d.timed_out) {
                d.timed_out = false;
                ec = boost::beast::error::timeout;
            }
        }
        void arm(Clock::time_point t);
        void fired(std::uint64_t generation);
    };

    // An owning reference to the State (not atomic: one thread).
    class Ref {
    public:
        explicit Ref(State* s) : s_(s) { ++s_->refs; }
        State& operator*() const { return *s_; }
        Ref(const Ref& o) : s_(o.s_) { ++s_->refs; }
        Ref(Ref&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
        Ref& operator=(const Ref&) = delete;
        ~Ref() {
            if (s_ && --s_->refs == 0) delete s_;
        }
        State* operator->() const { return s_; }

    private:
        State* s_;
    };

public:
    /// The completion of one operation: ends the direction, then the caller's
    /// handler (whose executor, allocator and cancellation slot it keeps),
    /// inside a core::ClockScope.
    template <class Handler>
    class Timed {
    public:
        Timed(Ref state, int direction, Handler h)
            : state_(std::move(state)), direction_(direction), handler_(std::move(h)) {}
        template <class... Args>
        void operator()(boost::system::error_code ec, Args&&... args) {
            const core::ClockScope clock_scope;
            if (direction_ == kNoDirection) return std::move(handler_)(ec, std::forward<Args>(args)...);
            if constexpr (sizeof...(Args) == 1 &&
                          (std::is_same_v<std::decay_t<Args>, std::size_t> && ...)) {
                if (direction_ == kRead && state_->read_asked > 0)  // what Asio's flag now says
                    state_->maybe_drained = (... || (args < state_->read_asked));
            }
            state_->end(direction_, ec);
            std::move(handler_)(ec, std::forward<Args>(args)...);
        }
        const Handler& handler() const noexcept { return handler_; }
        friend bool asio_handler_is_continuation(Timed* t) {
            return boost_asio_handler_cont_helpers::is_continuation(t->handler_);
        }

    private:
        Ref state_;
        int direction_;
        Handler handler_;
    };

private:
    Ref s_;
};

}  // namespace tether::tls

template <template <typename, typename> class Associator, class Handler, class DefaultCandidate>
struct boost::asio::associator<Associator, tether::tls::TimedSocket::Timed<Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const tether::tls::TimedSocket::Timed<Handler>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.handler());
    }
    static auto get(const tether::tls::TimedSocket::Timed<Handler>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler(), c)) {
        return Associator<Handler, DefaultCandidate>::get(h.handler(), c);
    }
};
