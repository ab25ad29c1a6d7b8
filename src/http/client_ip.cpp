// Client IP from trusted proxies; see client_ip.hpp.
#include "tether/http/client_ip.hpp"

#include <charconv>

namespace tether::http {

namespace ip = boost::asio::ip;

namespace {

ip::address_v6 as_v6(const ip::address& a) {
    return a.is_v4() ? ip::make_address_v6(ip::v4_mapped, a.to_v4()) : a.to_v6();
}

bool same_prefix(const ip::address_v6& a, const ip::address_v6& b, unsigned prefix) {
    const auto x = a.to_bytes(), y = b.to_bytes();
    unsigned i = 0;
    for (; prefix >= 8; prefix -= 8, ++i)
        if (x[i] != y[i]) return false;
    if (prefix == 0) return true;
    const unsigned char mask = static_cast<unsigned char>(0xff << (8 - prefix));
    return (x[i] & mask) == (y[i] & mask);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<ip::address> parse_hop(std::string_view hop) {
    hop = trim(hop);
    if (!hop.empty() && hop.front() == '[') {  // [v6] or [v6]:port
        const auto end = hop.find(']');
        if (end == std::string_view::npos) return std::nullopt;
        hop = hop.substr(1, end - 1);
    } else if (hop.find(':') == hop.rfind(':') && hop.find(':') != std::string_view::npos) {
        hop = hop.substr(0, hop.find(':'));  // v4:port
    }
    boost::system::error_code ec;
    const auto a = ip::make_address(std::string(hop), ec);
    if (ec) return std::nullopt;
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::address(ip::make_address_v4(ip::v4_mapped, a.to_v6()));
    return a;
}

TrustedProxies::TrustedProxies(const std::vector<std::string>& cidrs) {
    for (const auto& c : cidrs) {
        const auto slash = c.find('/');
        boost::system::error_code ec;
        const auto a = ip::make_address(c.substr(0, slash), ec);
        if (ec) continue;
        unsigned prefix = a.is_v4() ? 32 : 128;
        if (slash != std::string::npos) {
            const char* first = c.data() + slash + 1;
            std::from_chars(first, c.data() + c.size(), prefix);
        }
        if (a.is_v4()) prefix = std::min(prefix, 32u) + 96;
        nets_.push_back({as_v6(a), std::min(prefix, 128u)});
    }
}

bool TrustedProxies::contains(const ip::address& a) const {
    const auto v6 = as_v6(a);
    for (const auto& n : nets_)
        if (same_prefix(v6, n.base, n.prefix)) return true;
    return false;
}

std::string TrustedProxies::client_ip(std::string_view peer,
                                      std::span<const std::string_view> xff) const {
    if (nets_.empty() || xff.empty()) return std::string(peer);
    const auto peer_addr = parse_hop(peer);
    if (!peer_addr || !contains(*peer_addr)) return std::string(peer);
    std::string current(peer);
    // Right to left over the hops of every field line, last line first.
    for (auto line = xff.rbegin(); line != xff.rend(); ++line) {
        std::string_view rest = *line;
        while (!rest.empty()) {
            const auto comma = rest.rfind(',');
            const std::string_view hop =
                comma == std::string_view::npos ? rest : rest.substr(comma + 1);
            rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
            if (trim(hop).empty()) continue;
            const auto a = parse_hop(hop);
            if (!a) return current;
            current = a->to_string();
            if (!contains(*a)) return current;
        }
    }
    return current;
}

}  // namespace tether::http
