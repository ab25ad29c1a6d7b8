// The PROXY header tether sends to servers (http/proxy_header.hpp): exact bytes of v1 and
// v2, and each read back by the listener's own parser (net/proxy_protocol.hpp).
#include <gtest/gtest.h>

#include <string>

#include "tether/http/proxy_header.hpp"
#include "tether/net/proxy_protocol.hpp"

namespace tether::net {
namespace {

namespace ip = boost::asio::ip;
using http::make_proxy_header;

TEST(ProxySend, V1Tcp4ExactText) {
    EXPECT_EQ(make_proxy_header(1, ip::make_address("203.0.113.7"), 56324,
                                ip::make_address("10.0.0.1"), 443),
              "PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n");
}

TEST(ProxySend, V1Tcp6AndMixedFamiliesAsV6) {
    EXPECT_EQ(make_proxy_header(1, ip::make_address("2001:db8::1"), 1,
                                ip::make_address("2001:db8::2"), 2),
              "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
    EXPECT_EQ(make_proxy_header(1, ip::make_address("198.51.100.9"), 0,
                                ip::make_address("::1"), 8080),
              "PROXY TCP6 ::ffff:198.51.100.9 ::1 0 8080\r\n");
}

TEST(ProxySend, V2Tcp4ExactBytes) {
    const std::string h = make_proxy_header(2, ip::make_address("203.0.113.7"), 0x1234,
                                            ip::make_address("10.0.0.1"), 443);
    const std::string want = std::string("\r\n\r\n\0\r\nQUIT\n", 12) + "\x21\x11" +
                             std::string("\0\x0c", 2) + std::string("\xcb\x00\x71\x07", 4) +
                             std::string("\x0a\0\0\x01", 4) + "\x12\x34" + "\x01\xbb";
    EXPECT_EQ(h, want);
}

TEST(ProxySend, EveryHeaderParsesBackToItsSource) {
    for (int version : {1, 2}) {
        for (const char* src : {"203.0.113.7", "2001:db8::7"}) {
            const std::string h = make_proxy_header(version, ip::make_address(src), 40123,
                                                    ip::make_address("127.0.0.1"), 8443);
            const auto r = parse_proxy_header(h + "GET / HTTP/1.1\r\n");
            ASSERT_EQ(r.state, ProxyHeader::State::done) << version << " " << src << r.error;
            EXPECT_EQ(r.version, version);
            EXPECT_EQ(r.length, h.size());
            ASSERT_TRUE(r.source);
            const auto want = ip::make_address(src);
            const auto got = *r.source;
            // A v4 source with a v4 destination stays v4; with v6 it is v4-mapped.
            EXPECT_TRUE(got == want || (got.is_v6() && got.to_v6().is_v4_mapped() &&
                                        ip::make_address_v4(ip::v4_mapped, got.to_v6()) ==
                                            want.to_v4()))
                << got.to_string();
            EXPECT_EQ(r.source_port, 40123);
        }
    }
}

}  // namespace
}  // namespace tether::net
