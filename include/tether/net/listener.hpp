// One listening socket of one worker. Every worker binds its own acceptor on
// each listen address with SO_REUSEPORT, so the kernel spreads connections
// over workers and no accept path is shared. Enforces limits.max_connections
// (process-wide, accept and close the excess) and max_connections_per_ip per
// client address: the socket peer, or on a proxy_protocol listener the source
// the PROXY header gives (counted once the header is read). Connections are
// taken with accept4 until EAGAIN (accepted_socket.hpp: no ioctl,
// getpeername, setsockopt or epoll_ctl DEL per connection). An accept error
// such as EMFILE backs off instead of spinning.
// Threading: created on the main thread (before the worker starts, or by a
// reload while it runs); after that touched only on the worker's thread. The
// listening socket is bound on the main thread (so a reload that cannot bind
// is refused) but joins the worker's reactor only in start(), which runs
// before the worker's thread exists or on it: no thread but the worker's ever
// touches its reactor's state for a descriptor (the worker's io_context runs
// without per-descriptor locks, worker.cpp).
// ~Listener and close() close a socket never started.
#pragma once

#include <atomic>
#include <cstddef>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tether/core/executor.hpp"
#include "tether/http/proxy_context.hpp"
#include "tether/http/session.hpp"
#include "tether/limits/ip_connections.hpp"
#include "tether/limits/rate_limiter.hpp"
#include "tether/net/accepted_socket.hpp"

namespace tether::net {

struct ProcessCounters {
    std::atomic<int> connections{0};  ///< client connections held by the process
    int max_connections = 0;
    limits::IpConnections per_ip;            ///< for limits.max_connections_per_ip
    limits::RateLimiter* rate = nullptr;     ///< for limits.rate (owned by the app)
};

class Listener {
public:
    /// Binds and listens (a socket of its own, not yet with the reactor);
    /// throws boost::system::system_error on failure.
    Listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& ep,
             std::size_t index, http::ProxyContext& ctx, ProcessCounters& counters);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    /// Hands the socket to the acceptor (registering it with the reactor)
    /// and starts the accept loop (plain handlers). On the worker's thread,
    /// or before it starts.
    void start();
    void close();
    std::uint16_t port() const { return port_; }

private:
    enum class AcceptState { taken, drained, failed };

    /// One step of the accept loop: takes a connection, then posts the next
    /// step, waits for the socket to be readable, or backs off.
    void accept_ready();
    void back_off();
    /// Takes one queued connection: taken, drained (EAGAIN) or failed
    /// (EMFILE...: back off).
    AcceptState accept_one();
    /// Refuses a connection over max_connections or max_connections_per_ip
    /// (closed unanswered), or starts its session.
    void take(const AcceptedConnection& c, bool proxy);
    /// Counts `ip` for max_connections_per_ip (into `counted_ip`); false: over
    /// the limit (counted as refused). True, uncounted, when the limit is off.
    bool count_client(const std::string& ip, std::string& counted_ip);
    /// Whether this listener reads a PROXY protocol header first (current config).
    bool proxy_protocol() const;
    /// Reads the PROXY header, counts the client's address, then serves.
    Awaitable<void> serve_proxied(TcpSocket socket, http::ClientOrigin origin);
    Awaitable<bool> read_proxy_header(TcpSocket& socket, http::ClientOrigin& origin);

    boost::asio::ip::tcp::acceptor acceptor_;
    SteadyTimer backoff_;
    std::size_t index_;
    http::ProxyContext& ctx_;
    ProcessCounters& counters_;
    std::uint16_t port_ = 0;
    int bound_fd_ = -1;  // the listening socket until start() hands it to acceptor_
    boost::asio::ip::tcp protocol_;
};

}  // namespace tether::net
