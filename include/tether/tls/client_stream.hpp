// One side of a proxied connection, plain or TLS, behind one type so that the
// session, the body relay and the WebSocket tunnel are written once
// (ENGINEERING.md: no copy of the proxy logic). The client side (TLS server
// role: handshake()) and the upstream side (TLS client role to a server of
// an upstream with `tls`: connect_tls()) are both this type. Underneath is always a
// TimedSocket (tcp_stream's per-operation deadlines without a timer wait per
// operation), whose deadlines (expires_after) also bound the TLS operations
// running over it.
//
// Plain connections go straight to the TimedSocket (no type erasure on the
// plain path). TLS operations are type-erased (any_completion_handler) into
// client_stream.cpp, so asio::ssl's composed operations are compiled once
// there. A TLS write of several small buffers is gathered into one record.
// The stream supports one read and one write at a time, concurrently (the
// duplex relay and the tunnel use both).
// Threading: the connection's worker executor only.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>

#include "tether/core/executor.hpp"
#include "tether/tls/server_context.hpp"
#include "tether/tls/timed_socket.hpp"

namespace tether::tls {

class UpstreamContext;

class ClientStream {
public:
    using executor_type = Executor;  // the worker's (core/executor.hpp)
    using Handler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
    static constexpr std::size_t kMaxGather = 8;

    explicit ClientStream(TcpSocket&& socket);
    explicit ClientStream(const executor_type& ex);
    ~ClientStream();
    ClientStream(const ClientStream&) = delete;
    ClientStream& operator=(const ClientStream&) = delete;

    /// Server-side TLS handshake within `deadline` with `ctx` (kept alive by
    /// the stream). `preread`: bytes already read from the socket (after a
    /// PROXY header). plain_http: a plain request came; it was answered 400.
    /// On failure `reason` says why (OpenSSL's reason).
    Awaitable<Handshake> handshake(std::shared_ptr<ServerContext> ctx,
                                   std::chrono::milliseconds deadline, std::string_view preread,
                                   std::string& reason);

    /// Client-side TLS handshake to a server (an upstream connection), within
    /// the deadline already set on the stream (expires_at). `key` names the
    /// server for session resumption, `name` is checked and sent as SNI
    /// (UpstreamContext::prepare). On failure `reason` says why (for a
    /// refused certificate, the verification error: "hostname mismatch").
    Awaitable<boost::system::error_code> connect_tls(
        std::shared_ptr<UpstreamContext> ctx, std::string key, std::string_view name,
        std::string& reason);
    /// The last handshake resumed a session.
    bool tls_resumed() const;

    bool is_tls() const { return tls_ != nullptr; }
    executor_type get_executor() { return tcp_.get_executor(); }
    TcpSocket& socket() { return tcp_.socket(); }
    TimedSocket& tcp() { return tcp_; }
    void expires_after(std::chrono::steady_clock::duration d) { tcp_.expires_after(d); }
    void expires_never() { tcp_.expires_never(); }
    /// Waits until a read would find something (bytes, the end, an error),
    /// within the read deadline, without reading. Plain only: a TLS stream
    /// may hold bytes already read from the socket.
    template <class Token>
    auto async_wait_readable(Token&& token) {
        return tcp_.async_wait_readable(std::forward<Token>(token));
    }
    /// Cancels the pending operations (a TLS stream is not usable afterwards).
    void cancel() { tcp_.cancel(); }
    /// Decrypted bytes a TLS read would return at once (0 when plain).
    std::size_t tls_pending() const;
    /// The negotiated protocol ("TLSv1.3"), or "" when plain.
    std::string_view tls_version() const;

    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& b) {
                if (!tls_) return tcp_.async_read_some(b, std::move(handler));
                tls_read(first_buffer<boost::asio::mutable_buffer>(b), Handler(std::move(handler)));
            },
            token, buffers);
    }

    /// Writes what a plain socket takes at once (TimedSocket::write_now); a
    /// TLS stream writes nothing here (0, would_block).
    template <class ConstBuffers>
    std::size_t write_now(const ConstBuffers& buffers, boost::system::error_code& ec) {
        if (tls_) {
            ec = boost::asio::error::would_block;
            return 0;
        }
        return tcp_.write_now(buffers, ec);
    }

    /// TimedSocket::queue_write on a plain stream; a TLS stream queues
    /// nothing (false).
    template <class ConstBuffers>
    bool queue_write(SendQueue& q, const ConstBuffers& buffers) {
        return !tls_ && tcp_.queue_write(q, buffers);
    }
    bool send_queued() const { return !tls_ && tcp_.send_queued(); }
    template <class Token>
    auto async_queued_send(Token&& token) {
        return tcp_.async_queued_send(std::forward<Token>(token));
    }

    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& b) {
                if (!tls_) return tcp_.async_write_some(b, std::move(handler));
                std::array<boost::asio::const_buffer, kMaxGather> arr;
                std::size_t n = 0;
                for (auto it = boost::asio::buffer_sequence_begin(b);
                     it != boost::asio::buffer_sequence_end(b) && n < kMaxGather; ++it)
                    if (boost::asio::const_buffer c(*it); c.size() > 0) arr[n++] = c;
                tls_write(arr, n, Handler(std::move(handler)));
            },
            token, buffers);
    }

private:
    struct Tls;
    template <class B, class Seq>
    static B first_buffer(const Seq& seq) {
        for (auto it = boost::asio::buffer_sequence_begin(seq);
             it != boost::asio::buffer_sequence_end(seq); ++it)
            if (B b(*it); b.size() > 0) return b;
        return B();
    }
    void tls_read(boost::asio::mutable_buffer b, Handler h);
    void tls_write(const std::array<boost::asio::const_buffer, kMaxGather>& bufs, std::size_t n,
                   Handler h);

    TimedSocket tcp_;
    std::unique_ptr<Tls> tls_;
};

}  // namespace tether::tls
