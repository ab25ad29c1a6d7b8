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

#include <cstddef>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "tether/http/proxy_context.hpp"

namespace tether::http {

/// Where a connection comes from, as the listener learnt it.
struct ClientOrigin {
    std::string address;  ///< the socket peer, or the source of a PROXY header ("" = the peer)
    std::string preread;  ///< bytes read past a PROXY header (the start of TLS or HTTP)
};

/// Serves `socket` (accepted on listener `listener`) until it closes.
boost::asio::awaitable<void> serve_client(boost::asio::ip::tcp::socket socket, ProxyContext& ctx,
                                          std::size_t listener, ClientOrigin origin = {});

}  // namespace tether::http
