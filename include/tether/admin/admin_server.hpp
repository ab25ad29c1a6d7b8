// The admin HTTP server (SPEC "Admin endpoints"): /metrics, /healthz,
// /readyz, /status, the status page at /, and the drain API. It runs on its
// own thread with its own io_context, never on an I/O worker, so a slow
// scrape cannot delay proxied traffic. What it serves comes from handlers
// the app provides (they collect from workers by post()).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace tether::admin {

struct Handlers {
    std::function<std::string()> metrics;  ///< Prometheus text
    std::function<std::string()> status;   ///< JSON
    std::function<bool()> ready;
    /// Drains (drain = true) or re-enables server `s` of upstream `u`;
    /// false when there is no such server.
    std::function<bool(std::string_view u, std::string_view s, bool drain)> set_drain;
};

class AdminServer {
public:
    /// Binds `ep`; throws boost::system::system_error when it cannot.
    AdminServer(const boost::asio::ip::tcp::endpoint& ep, Handlers handlers);
    ~AdminServer();
    void start();
    void stop();
    std::uint16_t port() const { return port_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::thread thread_;
    std::uint16_t port_ = 0;
};

/// The live status page (plain HTML + JS reading /status; no external assets).
std::string_view status_page();

}  // namespace tether::admin
