// Active check verdicts: rise/fall runs, initial state, flapping, status ranges.
#include <gtest/gtest.h>

#include <vector>

#include "tether/health/rise_fall.hpp"

namespace {

using tether::health::RiseFall;
using tether::health::status_expected;

TEST(RiseFall, UpServerGoesDownAfterFallFailuresInARow) {
    RiseFall v(true, 2, 3);
    EXPECT_FALSE(v.record(false));
    EXPECT_FALSE(v.record(false));
    EXPECT_TRUE(v.up());
    EXPECT_TRUE(v.record(false));  // the third in a row
    EXPECT_FALSE(v.up());
}

TEST(RiseFall, DownServerIsUsableTheMomentRiseIsMet) {
    RiseFall v(false, 2, 3);  // initial: down
    EXPECT_FALSE(v.up());
    EXPECT_FALSE(v.record(true));
    EXPECT_FALSE(v.up());
    EXPECT_TRUE(v.record(true));
    EXPECT_TRUE(v.up());
}

TEST(RiseFall, FlappingServerDoesNotFlapTheVerdict) {
    RiseFall up(true, 2, 3);
    RiseFall down(false, 2, 3);
    for (int i = 0; i < 50; ++i) {
        const bool ok = i % 2 == 0;  // good, bad, good, bad...
        EXPECT_FALSE(up.record(ok)) << i;
        EXPECT_FALSE(down.record(!ok)) << i;
    }
    EXPECT_TRUE(up.up());
    EXPECT_FALSE(down.up());
    // Two bad then one good: the run towards down starts over.
    up.record(true);
    up.record(false);
    up.record(false);
    up.record(true);
    EXPECT_EQ(up.run(), 0);
    up.record(false);
    up.record(false);
    EXPECT_TRUE(up.up());
    EXPECT_TRUE(up.record(false));
}

TEST(RiseFall, RiseAndFallOfOneSwitchOnEveryChange) {
    RiseFall v(true, 1, 1);
    EXPECT_TRUE(v.record(false));
    EXPECT_FALSE(v.up());
    EXPECT_FALSE(v.record(false));
    EXPECT_TRUE(v.record(true));
    EXPECT_TRUE(v.up());
}

TEST(RiseFall, ZeroOrNegativeCountsActLikeOne) {
    RiseFall v(true, 0, -5);
    EXPECT_TRUE(v.record(false));
    EXPECT_TRUE(v.record(true));
}

TEST(ExpectStatus, InclusiveRangesAnyOfThem) {
    const std::vector<tether::config::StatusRange> ranges{{200, 299}, {302, 302}};
    EXPECT_TRUE(status_expected(200, ranges));
    EXPECT_TRUE(status_expected(299, ranges));
    EXPECT_TRUE(status_expected(302, ranges));
    EXPECT_FALSE(status_expected(301, ranges));
    EXPECT_FALSE(status_expected(503, ranges));
    EXPECT_FALSE(status_expected(0, ranges));
    EXPECT_FALSE(status_expected(200, {}));
}

TEST(ExpectStatus, DefaultIs200To399) {
    const tether::config::HealthCheck hc;
    EXPECT_TRUE(status_expected(204, hc.expect_status));
    EXPECT_TRUE(status_expected(399, hc.expect_status));
    EXPECT_FALSE(status_expected(400, hc.expect_status));
    EXPECT_FALSE(status_expected(199, hc.expect_status));
}

}  // namespace
