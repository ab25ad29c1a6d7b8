// PROXY protocol v1 (text) and v2 (binary) header parser, as sent by L4
// balancers (HAProxy, AWS NLB, GCP) before the client's bytes
// (https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt).
// The source address of a PROXY command with TCP over IPv4/IPv6 becomes the
// client address; LOCAL (a balancer's own health check), UNKNOWN and other
// families keep the socket peer. A header is at most kMaxHeader bytes
// (v1: 107; v2: 16 + its length, TLVs included); anything else is invalid.
// Strict where the specification is: v1 fields separated by one space, no CR
// or LF but the final CRLF, no IPv6 zone; v2 PROXY with a protocol byte the
// specification names and TLVs that fit the header (their meaning ignored).
// A prefix of the bytes never decides differently from the whole: need_more
// until the header is complete, invalid as soon as it cannot be one
// (tools/fuzz/fuzz_proxy_protocol.cpp checks this). Pure function, no I/O.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

namespace tether::net {

struct ProxyHeader {
    enum class State { need_more, done, invalid };
    State state = State::need_more;
    std::size_t length = 0;  ///< bytes of the header (done)
    std::optional<boost::asio::ip::address> source;  ///< none: keep the socket peer
    std::uint16_t source_port = 0;
    int version = 0;         ///< 1 or 2 once known
    std::string error;       ///< why it is invalid
};

inline constexpr std::size_t kMaxProxyHeader = 16 + 2048;

/// Parses the start of a connection's bytes.
ProxyHeader parse_proxy_header(std::string_view bytes);

}  // namespace tether::net
