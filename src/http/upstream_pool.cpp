// Upstream keep-alive pool; see upstream_pool.hpp.
#include "tether/http/upstream_pool.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "tether/core/coarse_clock.hpp"

namespace tether::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A kept-alive connection is usable when a non-blocking peek finds nothing to
// read: 0 bytes means the backend closed it, data means it sent something
// unsolicited (never safe to reuse).
bool still_open(UpstreamConnection& c) {
    if (c.buffer.size() != 0 || c.stream.tls_pending() != 0) return false;
    char byte;
    const ssize_t n = ::recv(c.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<UpstreamConnection> UpstreamPool::take_idle(const upstream::Backend& b,
                                                           const ConnectSpec& spec,
                                                           bool replayable, Clock::time_point now) {
    auto it = idle_.find(&b);
    if (it == idle_.end()) return nullptr;
    auto& v = it->second;
    for (std::size_t i = v.size(); i-- > 0;) {  // the most recent first
        if (v[i]->tls != spec.tls.get() || v[i]->proxy_header != spec.proxy_header) continue;
        auto c = std::move(v[i]);
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
        const bool fresh = replayable && now - c->idle_since < kUncheckedIdle;
        if (fresh || still_open(*c)) {
            c->reused = true;
            return c;
        }
    }
    return nullptr;
}

Awaitable<ConnectResult> UpstreamPool::connect(std::shared_ptr<upstream::Backend> b,
                                               std::chrono::milliseconds timeout,
                                               ConnectSpec spec) {
    ConnectResult r;
    r.conn = std::make_unique<UpstreamConnection>(ex_);
    auto& c = *r.conn;
    c.backend = b;
    c.tls = spec.tls.get();
    auto& raw = c.stream.tcp();
    const auto until = core::coarse_now() + timeout;
    raw.expires_at(until);
    auto [ec, ep] = co_await raw.async_connect(b->endpoints(), await_tuple);
    if (ec) {
        r.ec = ec;
        co_return r;
    }
    boost::system::error_code ignored;
    raw.socket().set_option(tcp::no_delay(true), ignored);
    if (!spec.proxy_header.empty()) {
        raw.expires_at(until);
        auto [wec, wn] = co_await asio::async_write(raw, asio::buffer(spec.proxy_header),
                                                    await_tuple);
        if (wec) {
            r.ec = wec;
            co_return r;
        }
        c.proxy_header = std::move(spec.proxy_header);
    }
    if (spec.tls) {
        raw.expires_at(until);
        const auto& address = b->server().address;
        r.ec = co_await c.stream.connect_tls(spec.tls, address.text(),
                                             spec.tls->name_for(address.host), r.reason);
        r.tls_failed = r.ec.failed();
        if (r.ec) co_return r;
    }
    raw.expires_never();
    co_return r;
}

void UpstreamPool::give_back(std::unique_ptr<UpstreamConnection> c, int keepalive) {
    if (keepalive <= 0 || c->buffer.size() != 0) return;
    auto& v = idle_[c->backend.get()];
    if (static_cast<int>(v.size()) >= kSurplusFactor * keepalive) v.erase(v.begin());  // the oldest
    c->idle_since = core::coarse_now();
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
