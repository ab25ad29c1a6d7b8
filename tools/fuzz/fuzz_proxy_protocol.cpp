// libFuzzer target: the PROXY protocol v1/v2 parser (src/net/proxy_protocol.cpp)
// on arbitrary connection bytes. Beyond "no crash", it checks what the listener
// relies on:
// - a header taken (done) is 1..kMaxProxyHeader bytes within the input: v1 is
//   "PROXY " ... CRLF of at most 107 bytes, v2 the signature, version 2 and
//   16 + the announced length;
// - a source address is one the header spells: TCP4/v2 IPv4 gives an IPv4
//   address, TCP6/v2 IPv6 an IPv6 one without zone, the v2 bytes and port are
//   the header's, and its text form (what the session logs and forwards) parses
//   back to the same address;
// - need_more only below kMaxProxyHeader bytes (the listener's read bound), an
//   error always says why;
// - reads in pieces decide as the whole: each prefix of the input is need_more
//   while shorter than the header, and parsing stops at the header's end (a
//   prefix that decides, done or invalid, decides the same for the whole).
// Single-threaded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "tether/net/proxy_protocol.hpp"

using tether::net::kMaxProxyHeader;
using tether::net::parse_proxy_header;
using tether::net::ProxyHeader;
using State = ProxyHeader::State;

namespace {

constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

void check_alone(std::string_view in, const ProxyHeader& h) {
    const auto* b = reinterpret_cast<const unsigned char*>(in.data());
    if (h.state == State::invalid && h.error.empty()) __builtin_trap();
    if (h.state == State::need_more && in.size() >= kMaxProxyHeader) __builtin_trap();
    if (h.state == State::need_more && h.version == 1 && in.size() >= 107) __builtin_trap();
    if (h.source && h.state != State::done) __builtin_trap();
    if (h.state != State::done) return;
    if (h.length == 0 || h.length > in.size() || h.length > kMaxProxyHeader) __builtin_trap();
    if (h.version == 1) {
        if (h.length > 107 || in.substr(0, 6) != "PROXY " ||
            in.substr(h.length - 2, 2) != "\r\n")
            __builtin_trap();
        const auto line = in.substr(6, h.length - 8);
        if (line.find_first_of("\r\n") != std::string_view::npos) __builtin_trap();
        if (h.source) {
            const bool v4 = line.starts_with("TCP4 ");
            if (!v4 && !line.starts_with("TCP6 ")) __builtin_trap();
            if (h.source->is_v4() != v4) __builtin_trap();
            // The source is the header's second field, as written.
            const auto field = line.substr(5, line.find(' ', 5) - 5);
            boost::system::error_code ec;
            const auto again = boost::asio::ip::make_address(std::string(field), ec);
            if (ec || again != *h.source) __builtin_trap();
        }
    } else if (h.version == 2) {
        if (h.length < 16 || std::memcmp(b, kV2Signature, 12) != 0 || (b[12] >> 4) != 2 ||
            h.length != 16 + ((std::size_t{b[14]} << 8) | b[15]))
            __builtin_trap();
        if (h.source) {
            if ((b[12] & 0x0f) != 1) __builtin_trap();  // only PROXY names a source
            const unsigned family = b[13];
            if (family == 0x11) {
                if (!h.source->is_v4() || h.length < 28) __builtin_trap();
                const auto raw = h.source->to_v4().to_bytes();
                if (std::memcmp(raw.data(), b + 16, 4) != 0) __builtin_trap();
                if (h.source_port != ((b[24] << 8) | b[25])) __builtin_trap();
            } else if (family == 0x21) {
                if (!h.source->is_v6() || h.length < 52) __builtin_trap();
                const auto raw = h.source->to_v6().to_bytes();
                if (std::memcmp(raw.data(), b + 16, 16) != 0) __builtin_trap();
                if (h.source_port != ((b[48] << 8) | b[49])) __builtin_trap();
            } else {
                __builtin_trap();  // UDP, UNIX, UNSPEC keep the socket peer
            }
        }
    } else {
        __builtin_trap();
    }
    if (h.source) {
        if (h.source->is_v6() && h.source->to_v6().scope_id() != 0) __builtin_trap();
        const auto text = h.source->to_string();
        boost::system::error_code ec;
        const auto again = boost::asio::ip::make_address(text, ec);
        if (ec || again != *h.source || text.find('%') != std::string::npos) __builtin_trap();
    }
}

bool same(const ProxyHeader& a, const ProxyHeader& b) {
    return a.state == b.state && a.length == b.length && a.version == b.version &&
           a.source == b.source && a.source_port == b.source_port;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const ProxyHeader whole = parse_proxy_header(in);
    check_alone(in, whole);

    // Prefixes: every length up to 130 (all of v1, the v2 fixed part), around the
    // header's end, and a spread over the rest.
    std::vector<std::size_t> cuts;
    for (std::size_t n = 0; n <= std::min<std::size_t>(size, 130); ++n) cuts.push_back(n);
    for (std::size_t n : {whole.length - 1, whole.length, whole.length + 1, size - 1})
        if (whole.length > 0 && n <= size) cuts.push_back(n);
    for (std::size_t n = 131; n < size; n += std::max<std::size_t>(1, size / 16))
        cuts.push_back(n);
    for (const std::size_t n : cuts) {
        if (n > size) continue;
        const ProxyHeader part = parse_proxy_header(in.substr(0, n));
        check_alone(in.substr(0, n), part);
        switch (part.state) {
            case State::need_more:  // the whole may still be anything but shorter
                if (whole.state == State::done && n >= whole.length) __builtin_trap();
                break;
            case State::done:  // decided on the first part.length bytes only
                if (!same(part, whole)) __builtin_trap();
                break;
            case State::invalid:
                if (whole.state != State::invalid) __builtin_trap();
                break;
        }
        if (whole.state == State::done && n < whole.length && part.state != State::need_more)
            __builtin_trap();
        if (whole.state == State::need_more && part.state != State::need_more) __builtin_trap();
    }
    return 0;
}
