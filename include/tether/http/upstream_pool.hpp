// Per-worker pool of kept-alive backend connections (upstream `keepalive`:
// idle connections kept per worker and server). A connection taken from the
// pool is checked with a non-blocking peek first, so one the backend already
// closed is dropped instead of failing a request. Idle ones past
// timeouts.idle are closed by sweep().
// Threading: owned by one worker; used only on its thread.
#pragma once

#include <chrono>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "tether/core/connection_registry.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::http {

struct UpstreamConnection {
    explicit UpstreamConnection(boost::asio::any_io_executor ex) : stream(std::move(ex)) {}
    boost::beast::tcp_stream stream;
    boost::beast::flat_buffer buffer;  ///< bytes read past the last response (normally none)
    std::shared_ptr<upstream::Backend> backend;
    bool reused = false;
    Clock::time_point idle_since;
};

class UpstreamPool {
public:
    explicit UpstreamPool(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

    /// A live idle connection to `b`, or nullptr.
    std::unique_ptr<UpstreamConnection> take_idle(const upstream::Backend& b);

    /// Opens a new connection to `b` within `timeout`.
    boost::asio::awaitable<std::pair<boost::system::error_code, std::unique_ptr<UpstreamConnection>>>
    connect(std::shared_ptr<upstream::Backend> b, std::chrono::milliseconds timeout);

    /// Keeps `c` for reuse if the backend's pool has room (`keepalive`).
    void give_back(std::unique_ptr<UpstreamConnection> c, int keepalive);

    /// Closes connections idle for longer than `idle`, and all of backends no
    /// longer in use (`alive(backend)` false).
    template <class Alive>
    void sweep(Clock::time_point now, std::chrono::milliseconds idle, Alive&& alive) {
        for (auto it = idle_.begin(); it != idle_.end();) {
            auto& v = it->second;
            const bool keep_backend = !v.empty() && alive(*v.front()->backend);
            std::erase_if(v, [&](const auto& c) { return !keep_backend || now - c->idle_since > idle; });
            it = v.empty() ? idle_.erase(it) : std::next(it);
        }
    }

    std::size_t idle_count() const;
    void clear() { idle_.clear(); }

private:
    boost::asio::any_io_executor ex_;
    std::unordered_map<const upstream::Backend*, std::vector<std::unique_ptr<UpstreamConnection>>>
        idle_;
};

}  // namespace tether::http
