// PROXY protocol parser; see proxy_protocol.hpp.
#include "tether/net/proxy_protocol.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <vector>

namespace tether::net {

namespace ip = boost::asio::ip;

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::size_t kV1Max = 107;
constexpr std::array<unsigned char, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

ProxyHeader invalid(std::string why, int version) {
    ProxyHeader h;
    h.state = ProxyHeader::State::invalid;
    h.error = std::move(why);
    h.version = version;
    return h;
}

bool parse_port(std::string_view s, std::uint16_t& out) {
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
    unsigned v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v > 65535) return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

// "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" or "PROXY UNKNOWN ...\r\n".
ProxyHeader parse_v1(std::string_view bytes) {
    const auto crlf = bytes.substr(0, kV1Max).find("\r\n");
    if (crlf == std::string_view::npos) {
        if (bytes.size() >= kV1Max) return invalid("v1 header without CRLF in 107 bytes", 1);
        if (bytes.find('\n') != std::string_view::npos) return invalid("v1 header: bare LF", 1);
        ProxyHeader h;
        h.version = 1;
        return h;
    }
    std::string_view line = bytes.substr(kV1Prefix.size(), crlf - kV1Prefix.size());
    std::vector<std::string_view> parts;
    while (!line.empty() && parts.size() < 6) {
        const auto sp = line.find(' ');
        parts.push_back(line.substr(0, sp));
        line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    }
    ProxyHeader h;
    h.version = 1;
    h.length = crlf + 2;
    if (!parts.empty() && parts[0] == "UNKNOWN") {
        h.state = ProxyHeader::State::done;
        return h;
    }
    if (parts.size() != 5 || !line.empty() || (parts[0] != "TCP4" && parts[0] != "TCP6"))
        return invalid("v1 header: expected 'TCP4|TCP6 src dst sport dport'", 1);
    boost::system::error_code ec1, ec2;
    const auto src = ip::make_address(std::string(parts[1]), ec1);
    const auto dst = ip::make_address(std::string(parts[2]), ec2);
    const bool v4 = parts[0] == "TCP4";
    std::uint16_t dport = 0;
    if (ec1 || ec2 || src.is_v4() != v4 || dst.is_v4() != v4 ||
        !parse_port(parts[3], h.source_port) || !parse_port(parts[4], dport))
        return invalid("v1 header: bad address or port", 1);
    h.source = src;
    h.state = ProxyHeader::State::done;
    return h;
}

ProxyHeader parse_v2(std::string_view bytes) {
    ProxyHeader h;
    h.version = 2;
    if (bytes.size() < 16) return h;
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
    if ((b[12] >> 4) != 2) return invalid("v2 header: version is not 2", 2);
    const unsigned command = b[12] & 0x0f;
    if (command > 1) return invalid("v2 header: unknown command", 2);
    const std::size_t len = (std::size_t{b[14]} << 8) | b[15];
    if (16 + len > kMaxProxyHeader) return invalid("v2 header: longer than 2064 bytes", 2);
    if (bytes.size() < 16 + len) return h;
    h.length = 16 + len;
    h.state = ProxyHeader::State::done;
    if (command == 0) return h;  // LOCAL: the balancer itself
    const unsigned family = b[13] >> 4, transport = b[13] & 0x0f;
    if (transport != 1) return h;  // not a stream: keep the peer
    const unsigned char* a = b + 16;
    if (family == 1) {  // IPv4: src, dst, sport, dport
        if (len < 12) return invalid("v2 header: short IPv4 addresses", 2);
        ip::address_v4::bytes_type raw;
        std::memcpy(raw.data(), a, 4);
        h.source = ip::address_v4(raw);
        h.source_port = static_cast<std::uint16_t>((a[8] << 8) | a[9]);
    } else if (family == 2) {
        if (len < 36) return invalid("v2 header: short IPv6 addresses", 2);
        ip::address_v6::bytes_type raw;
        std::memcpy(raw.data(), a, 16);
        h.source = ip::address_v6(raw);
        h.source_port = static_cast<std::uint16_t>((a[32] << 8) | a[33]);
    }
    return h;
}

}  // namespace

ProxyHeader parse_proxy_header(std::string_view bytes) {
    const std::size_t n1 = std::min(bytes.size(), kV1Prefix.size());
    if (bytes.substr(0, n1) == kV1Prefix.substr(0, n1) && !bytes.empty()) {
        if (bytes.size() < kV1Prefix.size()) {
            ProxyHeader h;
            h.version = 1;
            return h;
        }
        return parse_v1(bytes);
    }
    const std::size_t n2 = std::min(bytes.size(), kV2Signature.size());
    if (n2 > 0 && std::memcmp(bytes.data(), kV2Signature.data(), n2) == 0) {
        if (bytes.size() < kV2Signature.size()) {
            ProxyHeader h;
            h.version = 2;
            return h;
        }
        return parse_v2(bytes);
    }
    if (bytes.empty()) return ProxyHeader{};
    return invalid("no PROXY protocol header", 0);
}

}  // namespace tether::net
