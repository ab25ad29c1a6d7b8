// trusted_proxies: the client IP is the right-most untrusted X-Forwarded-For hop.
#include "tether/http/client_ip.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace tether::http {
namespace {

std::string ip(const TrustedProxies& t, std::string_view peer, std::vector<std::string_view> xff) {
    return t.client_ip(peer, xff);
}

TEST(ClientIp, NoTrustedProxiesIgnoresHeader) {
    TrustedProxies t;
    EXPECT_EQ(ip(t, "198.51.100.1", {"203.0.113.9"}), "198.51.100.1");
}

TEST(ClientIp, UntrustedPeerForgedHeaderIgnored) {
    TrustedProxies t({"10.0.0.0/8"});
    EXPECT_EQ(ip(t, "198.51.100.1", {"10.1.1.1, 203.0.113.9"}), "198.51.100.1");
}

TEST(ClientIp, TrustedPeerRightMostUntrustedHop) {
    TrustedProxies t({"10.0.0.0/8", "192.168.1.5"});
    // client, a spoofed hop the client wrote, then two trusted proxies
    EXPECT_EQ(ip(t, "10.0.0.2", {"1.1.1.1, 203.0.113.9, 192.168.1.5, 10.9.9.9"}), "203.0.113.9");
    EXPECT_EQ(ip(t, "10.0.0.2", {"203.0.113.9"}), "203.0.113.9");
}

TEST(ClientIp, SeveralHeaderLinesReadInOrder) {
    TrustedProxies t({"10.0.0.0/8"});
    EXPECT_EQ(ip(t, "10.0.0.2", {"198.51.100.3, 203.0.113.1", "10.2.2.2"}), "203.0.113.1");
}

TEST(ClientIp, AllHopsTrustedGivesLeftMost) {
    TrustedProxies t({"10.0.0.0/8"});
    EXPECT_EQ(ip(t, "10.0.0.2", {"10.3.3.3, 10.4.4.4"}), "10.3.3.3");
}

TEST(ClientIp, GarbageHopStopsAtTrustedNeighbour) {
    TrustedProxies t({"10.0.0.0/8"});
    EXPECT_EQ(ip(t, "10.0.0.2", {"203.0.113.1, unknown, 10.5.5.5"}), "10.5.5.5");
    EXPECT_EQ(ip(t, "10.0.0.2", {"nonsense"}), "10.0.0.2");
}

TEST(ClientIp, PortsEmptyHopsAndIpv6) {
    TrustedProxies t({"10.0.0.0/8", "fd00::/8"});
    EXPECT_EQ(ip(t, "10.0.0.2", {"203.0.113.1:5555"}), "203.0.113.1");
    EXPECT_EQ(ip(t, "fd00::1", {"[2001:db8::5]:443, , fd12::9"}), "2001:db8::5");
    EXPECT_EQ(ip(t, "10.0.0.2", {"2001:db8::6"}), "2001:db8::6");
}

TEST(ClientIp, PrefixBoundaries) {
    TrustedProxies t({"192.168.4.0/22", "2001:db8:1::/48"});
    EXPECT_TRUE(t.contains(boost::asio::ip::make_address("192.168.7.255")));
    EXPECT_FALSE(t.contains(boost::asio::ip::make_address("192.168.8.0")));
    EXPECT_TRUE(t.contains(boost::asio::ip::make_address("2001:db8:1:ffff::1")));
    EXPECT_FALSE(t.contains(boost::asio::ip::make_address("2001:db8:2::1")));
}

TEST(ClientIp, ParseHop) {
    EXPECT_EQ(parse_hop(" 1.2.3.4 ")->to_string(), "1.2.3.4");
    EXPECT_EQ(parse_hop("::ffff:1.2.3.4")->to_string(), "1.2.3.4");
    EXPECT_FALSE(parse_hop("[::1"));
    EXPECT_FALSE(parse_hop("example.com"));
}

}  // namespace
}  // namespace tether::http
