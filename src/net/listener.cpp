// Accept loop; see listener.hpp.
#include "tether/net/listener.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tether/core/log.hpp"
#include "tether/http/session.hpp"

namespace tether::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr int kBacklog = 4096;
constexpr std::chrono::milliseconds kAcceptBackoff{50};

}  // namespace

Listener::Listener(asio::io_context& io, const tcp::endpoint& ep, std::size_t index,
                   http::ProxyContext& ctx, ProcessCounters& counters)
    : acceptor_(io), backoff_(io), index_(index), ctx_(ctx), counters_(counters) {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    const int one = 1;
    if (::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw boost::system::system_error(errno, boost::system::system_category(), "SO_REUSEPORT");
    if (ep.address().is_v6()) acceptor_.set_option(asio::ip::v6_only(true));
    acceptor_.bind(ep);
    acceptor_.listen(kBacklog);
    port_ = acceptor_.local_endpoint().port();
}

void Listener::start() {
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), [](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            log::error(std::string("accept loop ended: ") + x.what());
        }
    });
}

void Listener::close() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    backoff_.cancel();
}

awaitable<void> Listener::accept_loop() {
    while (acceptor_.is_open()) {
        auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
        if (!acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
        if (ec) {  // EMFILE, ENFILE, ENOBUFS...: wait a little rather than spin
            log::warn("accept failed: " + ec.message());
            backoff_.expires_after(kAcceptBackoff);
            co_await backoff_.async_wait(use_tuple);
            continue;
        }
        std::string counted_ip;
        if (!admit(socket, counted_ip)) {
            boost::system::error_code ignored;
            socket.close(ignored);
            continue;
        }
        asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket), std::move(counted_ip)),
                       [](std::exception_ptr e) {
                           if (!e) return;
                           try {
                               std::rethrow_exception(e);
                           } catch (const std::exception& x) {
                               log::error(std::string("session ended by exception: ") + x.what());
                           }
                       });
    }
}

// Over max_connections, or over max_connections_per_ip for the peer: the
// connection is closed at once, unanswered (counted by reason).
bool Listener::admit(const tcp::socket& socket, std::string& counted_ip) {
    if (counters_.connections.fetch_add(1, std::memory_order_relaxed) >=
        counters_.max_connections) {
        counters_.connections.fetch_sub(1, std::memory_order_relaxed);
        ++ctx_.stats.refused_connections;
        return false;
    }
    const int per_ip = ctx_.runtime->config->limits.max_connections_per_ip;
    if (per_ip <= 0) return true;
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (ec) return true;
    counted_ip = peer.address().to_string();
    if (counters_.per_ip.try_add(counted_ip, per_ip)) return true;
    counters_.connections.fetch_sub(1, std::memory_order_relaxed);
    ++ctx_.stats.refused_per_ip;
    counted_ip.clear();
    return false;
}

awaitable<void> Listener::serve(tcp::socket socket, std::string counted_ip) {
    struct Release {
        ProcessCounters& c;
        std::string ip;
        ~Release() {
            c.connections.fetch_sub(1, std::memory_order_relaxed);
            if (!ip.empty()) c.per_ip.remove(ip);
        }
    } release{counters_, std::move(counted_ip)};
    auto& stats = ctx_.stats;
    ++stats.connections_total[index_];
    ++stats.connections_active[index_];
    co_await http::serve_client(std::move(socket), ctx_, index_);
    --stats.connections_active[index_];
}

}  // namespace tether::net
