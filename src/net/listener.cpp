// Accept loop; see listener.hpp.
#include "tether/net/listener.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tether/core/log.hpp"
#include "tether/core/recycling_pool.hpp"
#include "tether/http/session.hpp"
#include "tether/net/accepted_socket.hpp"
#include "tether/net/proxy_protocol.hpp"

namespace tether::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr int kBacklog = 4096;
constexpr std::chrono::milliseconds kAcceptBackoff{50};

[[noreturn]] void throw_errno(const char* what) {
    throw boost::system::system_error(errno, boost::system::system_category(), what);
}

// A listening socket with the options every listener has: non-blocking
// (accept4 until EAGAIN), SO_REUSEADDR and SO_REUSEPORT (one per worker),
// IPv6 only on an IPv6 address, TCP_NODELAY for the sockets accepted from it
// (accepted_socket.hpp: one setsockopt here instead of one per connection).
// Plain system calls: the socket joins no io_context here.
int open_listening_socket(const tcp::endpoint& ep) {
    const int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            IPPROTO_TCP);
    if (fd < 0) throw_errno("socket");
    try {
        const int one = 1;
        if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
            throw_errno("SO_REUSEADDR");
        if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            throw_errno("SO_REUSEPORT");
        if (ep.address().is_v6() &&
            ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
            throw_errno("IPV6_V6ONLY");
        if (::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) throw_errno("bind");
        if (::listen(fd, kBacklog) != 0) throw_errno("listen");
        if (const auto ec = set_listener_no_delay(fd))
            throw boost::system::system_error(ec, "TCP_NODELAY");
    } catch (...) {
        ::close(fd);
        throw;
    }
    return fd;
}

}  // namespace

Listener::Listener(asio::io_context& io, const tcp::endpoint& ep, std::size_t index,
                   http::ProxyContext& ctx, ProcessCounters& counters)
    : acceptor_(io),
      backoff_(io),
      index_(index),
      ctx_(ctx),
      counters_(counters),
      bound_fd_(open_listening_socket(ep)),
      protocol_(ep.protocol()) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::getsockname(bound_fd_, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
        const boost::system::system_error e(errno, boost::system::system_category(), "getsockname");
        ::close(bound_fd_);
        throw e;
    }
    port_ = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(local).sin6_port
                                              : reinterpret_cast<sockaddr_in&>(local).sin_port);
}

Listener::~Listener() {
    if (bound_fd_ >= 0) ::close(bound_fd_);
}

void Listener::start() {
    if (bound_fd_ < 0) return;  // closed before it started
    boost::system::error_code ec;
    acceptor_.assign(protocol_, std::exchange(bound_fd_, -1), ec);
    if (ec) {  // the reactor refused it (epoll_ctl: ENOMEM, ENOSPC)
        log::error("listener on port " + std::to_string(port_) + " not started: " + ec.message());
        return;
    }
    acceptor_.native_non_blocking(true, ec);  // what Asio knows: it is non-blocking already
    asio::post(ctx_.executor, [this] { accept_ready(); });
}

void Listener::close() {
    if (bound_fd_ >= 0) ::close(std::exchange(bound_fd_, -1));
    boost::system::error_code ec;
    acceptor_.close(ec);
    backoff_.cancel();
}

// Takes one queued connection, then lets the worker's other work run before
// the next (a post), so a long queue does not start every session at once
// (the sessions' first steps run in between, and their coroutine frames are
// recycled from Asio's small per-thread cache instead of each allocating: 64
// at a time cost ~20% more instructions per connection under callgrind).
// Waits for the listening socket to be readable only once accept4 said
// EAGAIN: Asio registers it edge-triggered, so a wake-up is owed only for
// connections that arrive after the queue was seen empty. Plain handlers,
// not a coroutine: no frame allocated and resumed per connection. close()
// ends the loop (a closed acceptor stops it at its next step); the Listener
// outlives it (Worker keeps retired listeners).
void Listener::accept_ready() {
    if (!acceptor_.is_open()) return;
    AcceptState state = AcceptState::failed;
    try {
        state = accept_one();
    } catch (const std::exception& x) {  // bad_alloc...: back off, as for EMFILE
        log::error(std::string("taking a connection failed: ") + x.what());
    }
    if (!acceptor_.is_open()) return;
    switch (state) {
        case AcceptState::taken:
            // The post's memory from the thread's pool (as tls/timed_completion.hpp).
            asio::post(ctx_.executor,
                       asio::bind_allocator(RecyclingAllocator<void>(), [this] { accept_ready(); }));
            break;
        case AcceptState::drained:
            acceptor_.async_wait(tcp::acceptor::wait_read, [this](boost::system::error_code ec) {
                if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
                if (ec) {
                    log::warn("accept wait failed: " + ec.message());
                    back_off();
                    return;
                }
                accept_ready();
            });
            break;
        case AcceptState::failed:  // EMFILE, ENFILE, ENOBUFS...: wait rather than spin
            back_off();
            break;
    }
}

void Listener::back_off() {
    backoff_.expires_after(kAcceptBackoff);
    backoff_.async_wait([this](boost::system::error_code) { accept_ready(); });
}

Listener::AcceptState Listener::accept_one() {
    for (;;) {
        AcceptedConnection c;
        if (accept_connection(acceptor_.native_handle(), c)) {
            take(c, proxy_protocol());
            return AcceptState::taken;
        }
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) return AcceptState::drained;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM) continue;
        log::warn("accept failed: " +
                  boost::system::error_code(err, boost::system::system_category()).message());
        return AcceptState::failed;
    }
}

// Over max_connections, or over max_connections_per_ip for the peer: the
// connection is closed at once, unanswered (counted by reason), before it is
// handed to Asio. On a proxy_protocol listener the peer is the L4 balancer:
// the address is counted once the PROXY header has given the client's
// (count_client below).
void Listener::take(const AcceptedConnection& c, bool proxy) {
    if (counters_.connections.fetch_add(1, std::memory_order_relaxed) >=
        counters_.max_connections) {
        counters_.connections.fetch_sub(1, std::memory_order_relaxed);
        ++ctx_.stats.refused_connections;
        ::close(c.fd);
        return;
    }
    http::ClientOrigin origin;  // its address: the socket's peer (a PROXY header's source replaces it)
    peer_text(c.peer, origin.address, origin.port);
    std::string counted_ip;
    if (!proxy && !count_client(origin.address, counted_ip)) {
        counters_.connections.fetch_sub(1, std::memory_order_relaxed);
        ::close(c.fd);
        return;
    }
    TcpSocket socket(ctx_.executor);
    // A PROXY protocol header is read with Beast's tcp_stream (Asio's own
    // operations): registered now. A plain listener's session reads and
    // writes through tls::TimedSocket, which registers the socket only
    // when an operation would block.
    if (const auto ec = adopt_accepted(socket, c, proxy)) {  // the reactor refused it (ENOMEM...)
        log::warn("accepted connection dropped: " + ec.message());
        if (!counted_ip.empty()) counters_.per_ip.remove(counted_ip);
        counters_.connections.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    auto& stats = ctx_.stats;
    ++stats.connections_total[index_];
    ++stats.connections_active[index_];
    // Given back when the connection closes: at the end of the session, or at
    // the end of a plain WebSocket tunnel that took it over.
    origin.hold = http::ConnectionHold(&counters_.connections, &counters_.per_ip,
                                       std::move(counted_ip), &stats.connections_active, index_);
    // A plain listener's session is spawned as it is (no coroutine frame in between).
    auto session = proxy ? serve_proxied(std::move(socket), std::move(origin))
                         : http::serve_client(std::move(socket), ctx_, index_, std::move(origin));
    asio::co_spawn(ctx_.executor, std::move(session),
                   [](std::exception_ptr e) {
                       if (!e) return;
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception& x) {
                           log::error(std::string("session ended by exception: ") + x.what());
                       }
                   });
}

bool Listener::count_client(const std::string& ip, std::string& counted_ip) {
    const int per_ip = ctx_.runtime->config->limits.max_connections_per_ip;
    if (per_ip <= 0 || ip.empty()) return true;
    if (!counters_.per_ip.try_add(ip, per_ip)) {
        ++ctx_.stats.refused_per_ip;
        return false;
    }
    counted_ip = ip;
    return true;
}

bool Listener::proxy_protocol() const {
    const auto& rt = *ctx_.runtime;
    const std::size_t entry =
        index_ < rt.listener_config.size() ? rt.listener_config[index_] : upstream::kNoUpstream;
    return entry != upstream::kNoUpstream && rt.config->listen[entry].proxy_protocol;
}

// Reads the PROXY protocol header within timeouts.client_header. The bytes
// read past it go to the session (`preread`). False: refused (counted, logged).
Awaitable<bool> Listener::read_proxy_header(TcpSocket& socket, http::ClientOrigin& origin) {
    boost::beast::basic_stream<tcp, Executor> stream(std::move(socket));
    std::string bytes;
    ProxyHeader h;
    stream.expires_after(ctx_.runtime->config->timeouts.client_header);
    const std::string peer = origin.address.empty() ? "?" : origin.address;  // the socket's
    while (h.state == ProxyHeader::State::need_more) {
        const std::size_t had = bytes.size();
        bytes.resize(kMaxProxyHeader);
        auto [ec, n] = co_await stream.async_read_some(
            asio::buffer(bytes.data() + had, kMaxProxyHeader - had), use_tuple);
        bytes.resize(had + n);
        if (ec) {
            socket = stream.release_socket();
            if (had + n == 0 && ec != boost::beast::error::timeout) co_return false;  // a probe
            h = ProxyHeader{};
            h.state = ProxyHeader::State::invalid;
            h.error = ec == boost::beast::error::timeout ? "no complete header in time"
                                                           : "closed before a complete header";
            break;
        }
        h = parse_proxy_header(bytes);
        if (h.state == ProxyHeader::State::need_more && bytes.size() >= kMaxProxyHeader) {
            h.state = ProxyHeader::State::invalid;
            h.error = "header too long";
        }
    }
    if (stream.socket().is_open()) {
        stream.expires_never();
        socket = stream.release_socket();
    }
    if (h.state != ProxyHeader::State::done) {
        ++ctx_.stats.proxy_protocol_errors[index_];
        log::info("PROXY protocol header from " + peer + " refused: " + h.error);
        co_return false;
    }
    if (h.source) {
        origin.address = h.source->to_string();
        origin.port = h.source_port;
    }
    origin.preread = bytes.substr(h.length);
    co_return true;
}

Awaitable<void> Listener::serve_proxied(TcpSocket socket, http::ClientOrigin origin) {
    if (!co_await read_proxy_header(socket, origin)) co_return;
    // The client's address (a LOCAL header keeps the peer) counted per IP
    // now; over the limit the connection closes unanswered, as at accept.
    std::string counted;
    if (!count_client(origin.address, counted)) co_return;
    origin.hold.set_counted_ip(std::move(counted));
    co_await http::serve_client(std::move(socket), ctx_, index_, std::move(origin));
}

}  // namespace tether::net
