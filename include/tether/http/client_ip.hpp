// Who the client is: trusted_proxies and X-Forwarded-For (SPEC "ip_hash").
// A request's client IP is its peer (the socket peer, or the address of a
// PROXY protocol header) unless that peer is a trusted proxy; then it is the
// right-most X-Forwarded-For hop that is not trusted (every hop trusted: the
// left-most one). A hop that is not an address ends the walk: the client is
// then the trusted hop right of it (nginx's realip with recursion does the
// same). Hops may carry a port ("1.2.3.4:5678", "[2001:db8::1]:443").
// Pure; built once per configuration snapshot, read on one worker's thread.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace tether::http {

class TrustedProxies {
public:
    TrustedProxies() = default;
    /// `cidrs` as the loader checked them ("10.0.0.0/8", "fd00::/8").
    explicit TrustedProxies(const std::vector<std::string>& cidrs);

    bool empty() const { return nets_.empty(); }
    bool contains(const boost::asio::ip::address& a) const;

    /// The client IP of a request from `peer` whose X-Forwarded-For field
    /// lines are `xff` (in order of appearance).
    std::string client_ip(std::string_view peer, std::span<const std::string_view> xff) const;

private:
    struct Net {
        boost::asio::ip::address_v6 base;  // v4 as v4-mapped
        unsigned prefix = 0;               // on the v6 form
    };
    std::vector<Net> nets_;
};

/// An X-Forwarded-For hop as an address (spaces and a port removed).
std::optional<boost::asio::ip::address> parse_hop(std::string_view hop);

}  // namespace tether::http
