// One client connection, served by one coroutine (ENGINEERING.md "The path
// of a request"): read a head with deadline and limits, refuse what must not
// be forwarded, pick a backend, reuse or open an upstream connection, relay
// the body and the response in bounded chunks, and on a 101 hand both streams
// to the WebSocket tunnel. On a TLS listener the session first runs the
// handshake (within timeouts.client_header); everything after it is the same
// code for http and https (tls::ClientStream). Keep-alive and pipelining on the client side
// (requests answered one at a time, in order).
// Threading: runs on its worker's executor only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "tether/core/executor.hpp"
#include "tether/http/proxy_context.hpp"
#include "tether/limits/ip_connections.hpp"

namespace tether::http {

/// The counts an open client connection holds (the process's connections,
/// its address's, the worker's gauge of its listener), given back once when
/// it closes. Movable: a plain WebSocket tunnel, which outlives the session
/// that opened it, takes them over.
class ConnectionHold {
public:
    ConnectionHold() = default;
    ConnectionHold(std::atomic<int>* connections, limits::IpConnections* per_ip, std::string ip,
                   std::vector<std::int64_t>* active, std::size_t slot)
        : connections_(connections), per_ip_(per_ip), ip_(std::move(ip)), active_(active),
          slot_(slot) {}
    ConnectionHold(ConnectionHold&& o) noexcept
        : connections_(std::exchange(o.connections_, nullptr)),
          per_ip_(std::exchange(o.per_ip_, nullptr)), ip_(std::move(o.ip_)),
          active_(std::exchange(o.active_, nullptr)), slot_(o.slot_) {}
    ConnectionHold& operator=(ConnectionHold&& o) noexcept {
        if (this != &o) {
            release();
            connections_ = std::exchange(o.connections_, nullptr);
            per_ip_ = std::exchange(o.per_ip_, nullptr);
            ip_ = std::move(o.ip_);
            active_ = std::exchange(o.active_, nullptr);
            slot_ = o.slot_;
        }
        return *this;
    }
    ~ConnectionHold() { release(); }
    /// The address counted in per_ip (known after a PROXY header).
    void set_counted_ip(std::string ip) { ip_ = std::move(ip); }
    void release() {
        if (connections_) connections_->fetch_sub(1, std::memory_order_relaxed);
        if (per_ip_ && !ip_.empty()) per_ip_->remove(ip_);
        if (active_ && slot_ < active_->size()) --(*active_)[slot_];
        connections_ = nullptr;
        per_ip_ = nullptr;
        active_ = nullptr;
    }

private:
    std::atomic<int>* connections_ = nullptr;
    limits::IpConnections* per_ip_ = nullptr;
    std::string ip_;  ///< counted in per_ip_ ("" = not counted)
    std::vector<std::int64_t>* active_ = nullptr;  ///< the worker's connections_active
    std::size_t slot_ = 0;
};

/// Where a connection comes from, as the listener learnt it.
struct ClientOrigin {
    std::string address;  ///< the socket peer, or the source of a PROXY header ("" = ask the socket)
    std::uint16_t port = 0;  ///< the port of `address`
    std::string preread;  ///< bytes read past a PROXY header (the start of TLS or HTTP)
    ConnectionHold hold;  ///< the listener's counts, kept as long as the connection
};

/// Serves `socket` (accepted on listener `listener`) until it closes.
Awaitable<void> serve_client(TcpSocket socket, ProxyContext& ctx,
                             std::size_t listener, ClientOrigin origin = {});

}  // namespace tether::http
