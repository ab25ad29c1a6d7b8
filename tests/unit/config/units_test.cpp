// parse_duration / parse_size (core/units.hpp): the unit grammar every config key relies on.
// Lives with the config tests because the config loader is its only caller.
#include "tether/core/units.hpp"

#include <gtest/gtest.h>

namespace tether {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, BareZeroIsZero) { EXPECT_EQ(parse_duration("0"), milliseconds(0)); }

TEST(ParseDuration, EveryUnit) {
    EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
    EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
    EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
    EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
    EXPECT_EQ(parse_duration("7d"), milliseconds(7LL * 86'400'000));
    EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(ParseDuration, RejectsUnknownUnitMissingUnitAndNegative) {
    EXPECT_EQ(parse_duration("5x"), std::nullopt);
    EXPECT_EQ(parse_duration("5"), std::nullopt);  // only a bare 0 may omit the unit
    EXPECT_EQ(parse_duration("-1"), std::nullopt);
    EXPECT_EQ(parse_duration("-1s"), std::nullopt);
    EXPECT_EQ(parse_duration(""), std::nullopt);
    EXPECT_EQ(parse_duration("s"), std::nullopt);
    EXPECT_EQ(parse_duration("1.5s"), std::nullopt);
    EXPECT_EQ(parse_duration(" 5s"), std::nullopt);
    EXPECT_EQ(parse_duration("5S"), std::nullopt);
}

TEST(ParseDuration, OverflowIsRejected) {
    EXPECT_EQ(parse_duration("99999999999999999999ms"), std::nullopt);  // > uint64
    EXPECT_EQ(parse_duration("999999999999999d"), std::nullopt);        // product > int64
    EXPECT_TRUE(parse_duration("106751991167d").has_value());           // still fits int64 ms
}

TEST(ParseSize, SuffixesEitherCase) {
    EXPECT_EQ(parse_size("512"), 512u);
    EXPECT_EQ(parse_size("16k"), 16u * 1024);
    EXPECT_EQ(parse_size("16K"), 16u * 1024);
    EXPECT_EQ(parse_size("1m"), 1024u * 1024);
    EXPECT_EQ(parse_size("1M"), 1024u * 1024);
    EXPECT_EQ(parse_size("1g"), 1024ull * 1024 * 1024);
    EXPECT_EQ(parse_size("0"), 0u);
}

TEST(ParseSize, RejectsGarbageAndNegative) {
    EXPECT_EQ(parse_size("5x"), std::nullopt);
    EXPECT_EQ(parse_size("-1"), std::nullopt);
    EXPECT_EQ(parse_size(""), std::nullopt);
    EXPECT_EQ(parse_size("k"), std::nullopt);
    EXPECT_EQ(parse_size("16kb"), std::nullopt);
}

TEST(ParseSize, OverflowIsRejected) {
    EXPECT_EQ(parse_size("18446744073709551616"), std::nullopt);  // uint64 max + 1
    EXPECT_EQ(parse_size("99999999999g"), std::nullopt);          // product > int64
    EXPECT_EQ(parse_size("8589934591g"), 8589934591ull << 30);    // largest that fits
}

}  // namespace
}  // namespace tether
