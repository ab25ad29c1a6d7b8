// PROXY protocol v1/v2 header parser: complete, partial, and malformed headers.
#include "tether/net/proxy_protocol.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tether::net {
namespace {

using State = ProxyHeader::State;

std::string v2(unsigned char ver_cmd, unsigned char fam, const std::string& addr) {
    std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
    h.push_back(static_cast<char>(ver_cmd));
    h.push_back(static_cast<char>(fam));
    h.push_back(static_cast<char>(addr.size() >> 8));
    h.push_back(static_cast<char>(addr.size() & 0xff));
    return h + addr;
}

std::string v4_block(unsigned char a, unsigned char b, unsigned char c, unsigned char d,
                     std::uint16_t sport) {
    std::string s{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                  static_cast<char>(d), 10, 0, 0, 1,
                  static_cast<char>(sport >> 8), static_cast<char>(sport & 0xff), 1, static_cast<char>(187)};
    return s;
}

TEST(ProxyProtocol, V1Tcp4WithTrailingBytes) {
    const std::string h = "PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    const auto r = parse_proxy_header(h + "GET / HTTP/1.1\r\n");
    ASSERT_EQ(r.state, State::done);
    EXPECT_EQ(r.version, 1);
    EXPECT_EQ(r.length, h.size());
    ASSERT_TRUE(r.source);
    EXPECT_EQ(r.source->to_string(), "203.0.113.7");
    EXPECT_EQ(r.source_port, 56324);
}

TEST(ProxyProtocol, V1Tcp6) {
    const auto r = parse_proxy_header("PROXY TCP6 2001:db8::7 2001:db8::1 1000 443\r\n");
    ASSERT_EQ(r.state, State::done);
    EXPECT_EQ(r.source->to_string(), "2001:db8::7");
}

TEST(ProxyProtocol, V1UnknownKeepsPeer) {
    const auto r = parse_proxy_header("PROXY UNKNOWN\r\n");
    ASSERT_EQ(r.state, State::done);
    EXPECT_FALSE(r.source);
    EXPECT_EQ(r.length, 15u);
}

TEST(ProxyProtocol, V1PartialNeedsMore) {
    EXPECT_EQ(parse_proxy_header("PRO").state, State::need_more);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4").state, State::need_more);
    EXPECT_EQ(parse_proxy_header("").state, State::need_more);
}

TEST(ProxyProtocol, V1Malformed) {
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 ::1 5.6.7.8 1 2\r\n").state, State::invalid);  // family
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY " + std::string(120, 'x')).state, State::invalid);
}

TEST(ProxyProtocol, NotAHeader) {
    const auto r = parse_proxy_header("GET / HTTP/1.1\r\n\r\n");
    EXPECT_EQ(r.state, State::invalid);
    EXPECT_EQ(parse_proxy_header("\x16\x03\x01").state, State::invalid);  // a TLS ClientHello
}

TEST(ProxyProtocol, V2ProxyTcp4) {
    const std::string h = v2(0x21, 0x11, v4_block(198, 51, 100, 9, 40000));
    const auto r = parse_proxy_header(h + "\x16\x03\x01");
    ASSERT_EQ(r.state, State::done);
    EXPECT_EQ(r.version, 2);
    EXPECT_EQ(r.length, 28u);
    EXPECT_EQ(r.source->to_string(), "198.51.100.9");
    EXPECT_EQ(r.source_port, 40000);
}

TEST(ProxyProtocol, V2ProxyTcp6WithTlvs) {
    std::string addr(36, '\0');
    addr[0] = 0x20;
    addr[1] = 0x01;
    addr[2] = 0x0d;
    addr[3] = static_cast<char>(0xb8);
    addr[15] = 0x42;
    addr[32] = 0x01;
    addr[33] = 0x02;
    addr += std::string("\x04\x00\x03" "abc", 6);  // a TLV (NOOP) the parser skips
    const auto r = parse_proxy_header(v2(0x21, 0x21, addr));
    ASSERT_EQ(r.state, State::done);
    EXPECT_EQ(r.length, 16u + 42u);
    EXPECT_EQ(r.source->to_string(), "2001:db8::42");
    EXPECT_EQ(r.source_port, 0x0102);
}

TEST(ProxyProtocol, V2LocalKeepsPeer) {
    const auto r = parse_proxy_header(v2(0x20, 0x00, ""));
    ASSERT_EQ(r.state, State::done);
    EXPECT_FALSE(r.source);
    EXPECT_EQ(r.length, 16u);
}

TEST(ProxyProtocol, V2UdpAndUnixKeepPeer) {
    EXPECT_FALSE(parse_proxy_header(v2(0x21, 0x12, v4_block(1, 2, 3, 4, 5))).source);
    EXPECT_FALSE(parse_proxy_header(v2(0x21, 0x31, std::string(216, 'x'))).source);
}

TEST(ProxyProtocol, V2PartialNeedsMore) {
    const std::string h = v2(0x21, 0x11, v4_block(1, 2, 3, 4, 5));
    for (std::size_t n = 1; n < h.size(); ++n)
        EXPECT_EQ(parse_proxy_header(h.substr(0, n)).state, State::need_more) << n;
}

TEST(ProxyProtocol, V2Malformed) {
    EXPECT_EQ(parse_proxy_header(v2(0x11, 0x11, v4_block(1, 2, 3, 4, 5))).state, State::invalid);
    EXPECT_EQ(parse_proxy_header(v2(0x22, 0x11, v4_block(1, 2, 3, 4, 5))).state, State::invalid);
    EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, "short")).state, State::invalid);
    EXPECT_EQ(parse_proxy_header(v2(0x21, 0x21, v4_block(1, 2, 3, 4, 5))).state, State::invalid);
    std::string huge = v2(0x21, 0x11, "");
    huge[14] = 0x10;  // 4096 bytes announced
    EXPECT_EQ(parse_proxy_header(huge).state, State::invalid);
}

// Found while writing tools/fuzz/fuzz_proxy_protocol.cpp, whose invariant is that a prefix
// of the bytes never decides differently from the whole: "PROXY UNKNOWN \n" was refused
// (bare LF) while "PROXY UNKNOWN \n\r\n", read at once, was accepted. A CR or LF other
// than the final CRLF is now refused wherever it is, as soon as it is seen.
TEST(ProxyProtocol, V1StrayCrOrLfIsRefusedWhateverTheReads) {
    for (std::string h : {"PROXY UNKNOWN \n\r\n", "PROXY UNKNOWN x\ry\r\n",
                          "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", "PROXY \r\r\n"}) {
        for (std::size_t n = 1; n <= h.size(); ++n) {
            const auto state = parse_proxy_header(h.substr(0, n)).state;
            EXPECT_NE(state, State::done) << n << " of " << h;
            if (n == h.size()) {
                EXPECT_EQ(state, State::invalid) << h;
            }
        }
    }
    EXPECT_EQ(parse_proxy_header("PROXY UNKNOWN\r").state, State::need_more);
}

TEST(ProxyProtocol, V1FieldsAreSeparatedByExactlyOneSpace) {
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY UNKNOWNX\r\n").state, State::invalid);
    const auto unknown = parse_proxy_header("PROXY UNKNOWN ffff::1 ::1 1 2\r\n");
    EXPECT_EQ(unknown.state, State::done);  // UNKNOWN's fields are ignored
    EXPECT_FALSE(unknown.source);
}

TEST(ProxyProtocol, V1Ipv6ZoneIsRefused) {
    EXPECT_EQ(parse_proxy_header("PROXY TCP6 fe80::1%1 ::1 1 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP6 fe80::1%lo ::1 1 2\r\n").state, State::invalid);
    EXPECT_EQ(parse_proxy_header("PROXY TCP6 ::1 fe80::1%lo 1 2\r\n").state, State::invalid);
}

TEST(ProxyProtocol, V2UnknownFamilyOrTransportIsRefusedForProxyOnly) {
    for (unsigned char fam : {0x41, 0x13, 0x01, 0x10, 0xff})
        EXPECT_EQ(parse_proxy_header(v2(0x21, fam, v4_block(1, 2, 3, 4, 5))).state,
                  State::invalid)
            << int(fam);
    const auto unspec = parse_proxy_header(v2(0x21, 0x00, ""));  // PROXY over UNSPEC
    EXPECT_EQ(unspec.state, State::done);
    EXPECT_FALSE(unspec.source);
    // LOCAL ignores the whole block, whatever it holds.
    EXPECT_EQ(parse_proxy_header(v2(0x20, 0xff, "xy")).state, State::done);
    EXPECT_EQ(parse_proxy_header(v2(0x21, 0x12, "short")).state, State::invalid);  // UDP too
}

TEST(ProxyProtocol, V2TlvsMustFitTheHeader) {
    const std::string addr = v4_block(1, 2, 3, 4, 5);
    const auto ok = parse_proxy_header(
        v2(0x21, 0x11, addr + std::string("\x04\x00\x00" "\xea\x00\x02" "ab", 8)));
    ASSERT_EQ(ok.state, State::done);  // an empty NOOP, an AWS TLV
    EXPECT_EQ(ok.source->to_string(), "1.2.3.4");
    EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, addr + std::string("\x04\x00", 2))).state,
              State::invalid);  // truncated type + length
    EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, addr + std::string("\x04\x00\x05" "abc", 6)))
                  .state,
              State::invalid);  // value longer than the header
}

}  // namespace
}  // namespace tether::net
