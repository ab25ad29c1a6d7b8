// The PROXY protocol header tether sends to a server first, on each new
// upstream connection, when the upstream has `send_proxy_protocol: v1|v2`
// (HAProxy's `send-proxy` / `send-proxy-v2`;
// https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt). It carries
// the client address tether believes (the socket peer, a PROXY header's
// source, or the trusted X-Forwarded-For hop) and the address the client
// connected to. The receiving side of the same protocol is
// net/proxy_protocol.hpp. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/ip/address.hpp>

namespace tether::http {

/// The header of a TCP connection from `src`:`src_port` to `dst`:`dst_port`,
/// version 1 (text) or 2 (binary, PROXY command, no TLVs). When one address
/// is IPv4 and the other IPv6, both are written as IPv6 (v4-mapped).
std::string make_proxy_header(int version, const boost::asio::ip::address& src,
                              std::uint16_t src_port, const boost::asio::ip::address& dst,
                              std::uint16_t dst_port);

}  // namespace tether::http
