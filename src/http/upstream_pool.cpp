// Upstream keep-alive pool; see upstream_pool.hpp.
#include "tether/http/upstream_pool.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tether::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A kept-alive connection is usable when a non-blocking peek finds nothing to
// read: 0 bytes means the backend closed it, data means it sent something
// unsolicited (never safe to reuse).
bool still_open(UpstreamConnection& c) {
    if (c.buffer.size() != 0) return false;
    char byte;
    const ssize_t n = ::recv(c.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<UpstreamConnection> UpstreamPool::take_idle(const upstream::Backend& b) {
    auto it = idle_.find(&b);
    if (it == idle_.end()) return nullptr;
    auto& v = it->second;
    while (!v.empty()) {
        auto c = std::move(v.back());
        v.pop_back();
        if (still_open(*c)) {
            c->reused = true;
            return c;
        }
    }
    return nullptr;
}

asio::awaitable<std::pair<boost::system::error_code, std::unique_ptr<UpstreamConnection>>>
UpstreamPool::connect(std::shared_ptr<upstream::Backend> b, std::chrono::milliseconds timeout) {
    auto c = std::make_unique<UpstreamConnection>(ex_);
    c->backend = b;
    c->stream.expires_after(timeout);
    auto [ec, ep] = co_await c->stream.async_connect(
        b->endpoints(), asio::as_tuple(asio::use_awaitable));
    if (!ec) {
        boost::system::error_code ignored;
        c->stream.socket().set_option(tcp::no_delay(true), ignored);
        c->stream.expires_never();
    }
    co_return std::make_pair(ec, std::move(c));
}

void UpstreamPool::give_back(std::unique_ptr<UpstreamConnection> c, int keepalive) {
    if (keepalive <= 0 || c->buffer.size() != 0) return;
    auto& v = idle_[c->backend.get()];
    if (static_cast<int>(v.size()) >= kSurplusFactor * keepalive) v.erase(v.begin());  // the oldest
    c->idle_since = Clock::now();
    c->keepalive = keepalive;
    c->stream.expires_never();
    v.push_back(std::move(c));
}

std::size_t UpstreamPool::idle_count() const {
    std::size_t n = 0;
    for (const auto& [b, v] : idle_) n += v.size();
    return n;
}

}  // namespace tether::http
