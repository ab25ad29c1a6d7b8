// PROXY protocol parser; see proxy_protocol.hpp.
#include "tether/net/proxy_protocol.hpp"

#include <array>
#include <charconv>
#include <cstring>

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

bool parse_address(std::string_view s, bool v4, ip::address& out) {
    // No IPv6 zone ("fe80::1%eth0"): a header names an address, not an interface.
    if (s.empty() || s.find('%') != std::string_view::npos) return false;
    boost::system::error_code ec;
    out = ip::make_address(std::string(s), ec);
    return !ec && out.is_v4() == v4;
}

// "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" or "PROXY UNKNOWN ...\r\n".
// The line ends at the first CRLF within 107 bytes; a CR or LF anywhere else
// is invalid as soon as it is seen, so a prefix of the bytes never decides
// differently from the whole.
ProxyHeader parse_v1(std::string_view bytes) {
    std::size_t crlf = std::string_view::npos;
    const std::size_t scan = std::min(bytes.size(), kV1Max);
    for (std::size_t i = kV1Prefix.size(); i < scan; ++i) {
        if (bytes[i] == '\n') return invalid("v1 header: bare LF", 1);
        if (bytes[i] != '\r') continue;
        if (i + 1 == bytes.size()) break;  // the LF may come next
        if (i + 1 == kV1Max || bytes[i + 1] != '\n') return invalid("v1 header: bare CR", 1);
        crlf = i;
        break;
    }
    if (crlf == std::string_view::npos) {
        if (bytes.size() >= kV1Max) return invalid("v1 header without CRLF in 107 bytes", 1);
        ProxyHeader h;
        h.version = 1;
        return h;
    }
    const std::string_view line = bytes.substr(kV1Prefix.size(), crlf - kV1Prefix.size());
    ProxyHeader h;
    h.version = 1;
    h.length = crlf + 2;
    // UNKNOWN may be followed by anything (the receiver ignores it).
    if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) {
        h.state = ProxyHeader::State::done;
        return h;
    }
    // Exactly five fields, each separated by one space.
    std::array<std::string_view, 5> parts;
    std::size_t n = 0, from = 0;
    for (;;) {
        const auto sp = line.find(' ', from);
        const auto part = line.substr(from, sp == std::string_view::npos ? sp : sp - from);
        if (part.empty() || n == parts.size())
            return invalid("v1 header: expected 'TCP4|TCP6 src dst sport dport'", 1);
        parts[n++] = part;
        if (sp == std::string_view::npos) break;
        from = sp + 1;
    }
    if (n != parts.size() || (parts[0] != "TCP4" && parts[0] != "TCP6"))
        return invalid("v1 header: expected 'TCP4|TCP6 src dst sport dport'", 1);
    const bool v4 = parts[0] == "TCP4";
    ip::address src, dst;
    std::uint16_t dport = 0;
    if (!parse_address(parts[1], v4, src) || !parse_address(parts[2], v4, dst) ||
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
    if (command == 0) return h;  // LOCAL: the balancer itself; the block is ignored
    // PROXY: the protocol byte is one of those the specification names (section
    // 2.2: others "must be rejected as invalid by receivers").
    const unsigned family = b[13] >> 4, transport = b[13] & 0x0f;
    if (family > 3 || transport > 2 || ((family == 0) != (transport == 0)))
        return invalid("v2 header: unknown address family or transport", 2);
    static constexpr std::size_t kAddressBytes[] = {0, 12, 36, 216};
    if (len < kAddressBytes[family])
        return invalid(family == 1   ? "v2 header: short IPv4 addresses"
                       : family == 2 ? "v2 header: short IPv6 addresses"
                                     : "v2 header: short UNIX addresses",
                       2);
    // The TLVs after the addresses: each type, 2-byte length and value within
    // the header (HAProxy refuses the header otherwise). Their meaning is ignored.
    for (std::size_t at = 16 + kAddressBytes[family]; at < 16 + len;) {
        if (16 + len - at < 3) return invalid("v2 header: truncated TLV", 2);
        at += 3 + ((std::size_t{b[at + 1]} << 8) | b[at + 2]);
        if (at > 16 + len) return invalid("v2 header: TLV longer than the header", 2);
    }
    if (transport != 1) return h;  // not a stream (or UNSPEC): keep the peer
    const unsigned char* a = b + 16;
    if (family == 1) {  // IPv4: src, dst, sport, dport
        ip::address_v4::bytes_type raw;
        std::memcpy(raw.data(), a, 4);
        h.source = ip::address_v4(raw);
        h.source_port = static_cast<std::uint16_t>((a[8] << 8) | a[9]);
    } else if (family == 2) {
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
