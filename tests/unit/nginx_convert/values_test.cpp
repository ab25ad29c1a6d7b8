// nginx value syntax -> tether's (tools/nginx_convert/values.cpp): times, sizes, addresses.
#include <gtest/gtest.h>

#include "model.hpp"

namespace tether::nginx {
namespace {

TEST(NginxValues, TimeUnitsAndCombinations) {
    EXPECT_EQ(parse_time("60"), 60'000);  // no unit = seconds
    EXPECT_EQ(parse_time("500ms"), 500);
    EXPECT_EQ(parse_time("30s"), 30'000);
    EXPECT_EQ(parse_time("1m30s"), 90'000);
    EXPECT_EQ(parse_time("1h 30m"), 5'400'000);
    EXPECT_EQ(parse_time("86400s"), 86'400'000);
    EXPECT_EQ(parse_time("1d"), 86'400'000);
    EXPECT_EQ(parse_time("1w"), 7 * 86'400'000LL);
    EXPECT_EQ(parse_time("1M"), 30 * 86'400'000LL);
    EXPECT_EQ(parse_time("0"), 0);
    EXPECT_EQ(parse_time(""), std::nullopt);
    EXPECT_EQ(parse_time("5x"), std::nullopt);
    EXPECT_EQ(parse_time("-1s"), std::nullopt);
}

TEST(NginxValues, FormatsTheLargestDividingUnit) {
    EXPECT_EQ(format_ms(90'000), "90s");
    EXPECT_EQ(format_ms(120'000), "2m");
    EXPECT_EQ(format_ms(86'400'000), "1d");
    EXPECT_EQ(format_ms(1500), "1500ms");
    EXPECT_EQ(format_ms(0), "0");
}

TEST(NginxValues, Sizes) {
    EXPECT_EQ(parse_bytes("1024"), 1024u);
    EXPECT_EQ(parse_bytes("8k"), 8192u);
    EXPECT_EQ(parse_bytes("10M"), 10u << 20);
    EXPECT_EQ(parse_bytes("1g"), 1ULL << 30);
    EXPECT_EQ(parse_bytes("1x"), std::nullopt);
    EXPECT_EQ(format_bytes(64 * 1024), "64k");
    EXPECT_EQ(format_bytes(10u << 20), "10m");
    EXPECT_EQ(format_bytes(1000), "1000");
}

TEST(NginxValues, ListenAndServerAddresses) {
    EXPECT_EQ(parse_address("80", 80, "0.0.0.0"), "0.0.0.0:80");
    EXPECT_EQ(parse_address("*:8080", 80, "0.0.0.0"), "0.0.0.0:8080");
    EXPECT_EQ(parse_address("127.0.0.1", 80, "0.0.0.0"), "127.0.0.1:80");
    EXPECT_EQ(parse_address("app01:3000", 80, "0.0.0.0"), "app01:3000");
    EXPECT_EQ(parse_address("[::]:443", 80, "0.0.0.0"), "[::]:443");
    EXPECT_EQ(parse_address("[::1]", 80, "0.0.0.0"), "[::1]:80");
    EXPECT_EQ(parse_address("unix:/run/app.sock", 80, "0.0.0.0"), std::nullopt);
    EXPECT_EQ(parse_address("host:99999", 80, "0.0.0.0"), std::nullopt);
    EXPECT_EQ(parse_address("::1:80", 80, "0.0.0.0"), std::nullopt);
}

TEST(NginxValues, UpstreamNamesAreMadeValid) {
    EXPECT_EQ(sanitize_name("api-v2"), "api-v2");
    EXPECT_EQ(sanitize_name("127.0.0.1:6009"), "127.0.0.1_6009");
    EXPECT_EQ(sanitize_name(""), "upstream");
}

}  // namespace
}  // namespace tether::nginx
