// Passive failure accounting (max_fails within fail_timeout), on a fake clock:
// the time points are made by hand, no sleeping.
#include <gtest/gtest.h>

#include "tether/upstream/backend.hpp"

namespace {

using namespace std::chrono_literals;
using tether::Clock;
using tether::upstream::Backend;
using tether::upstream::PassiveHealth;

const Clock::time_point t0 = Clock::time_point{} + 1000h;  // far from the epoch of `0 = not out`

TEST(Passive, MaxFailsWithinFailTimeoutTakesTheServerOut) {
    PassiveHealth p;
    EXPECT_FALSE(p.record_failure(t0, 3, 10s));
    EXPECT_FALSE(p.record_failure(t0 + 1s, 3, 10s));
    EXPECT_FALSE(p.out(t0 + 2s));
    EXPECT_TRUE(p.record_failure(t0 + 2s, 3, 10s));
    EXPECT_TRUE(p.out(t0 + 2s));
    EXPECT_TRUE(p.out(t0 + 11s));
    EXPECT_FALSE(p.out(t0 + 12s));  // out for fail_timeout from the tripping failure
    EXPECT_EQ(p.trips(), 1u);
    EXPECT_EQ(p.failures(), 3u);
}

TEST(Passive, FailuresSpreadBeyondTheWindowDoNotAddUp) {
    PassiveHealth p;
    EXPECT_FALSE(p.record_failure(t0, 3, 10s));
    EXPECT_FALSE(p.record_failure(t0 + 5s, 3, 10s));
    EXPECT_FALSE(p.record_failure(t0 + 10s, 3, 10s));  // the window of t0 closed: a new one
    EXPECT_FALSE(p.record_failure(t0 + 15s, 3, 10s));
    EXPECT_FALSE(p.out(t0 + 15s));
    EXPECT_TRUE(p.record_failure(t0 + 16s, 3, 10s));
}

TEST(Passive, SuccessClearsTheCount) {
    PassiveHealth p;
    p.record_failure(t0, 2, 10s);
    p.record_success(t0 + 1s);
    EXPECT_FALSE(p.record_failure(t0 + 2s, 2, 10s));
    EXPECT_TRUE(p.record_failure(t0 + 3s, 2, 10s));
}

TEST(Passive, ProbationAfterComingBackOneFailureTakesItOutAgain) {
    PassiveHealth p;
    p.record_failure(t0, 2, 10s);
    ASSERT_TRUE(p.record_failure(t0, 2, 10s));
    EXPECT_FALSE(p.out(t0 + 10s));
    EXPECT_TRUE(p.record_failure(t0 + 10s, 2, 10s));  // nginx: one failure after the timeout
    EXPECT_TRUE(p.out(t0 + 19s));
    // A success once back in ends probation: counting starts over.
    p.record_success(t0 + 21s);
    EXPECT_FALSE(p.record_failure(t0 + 22s, 2, 10s));
    EXPECT_FALSE(p.out(t0 + 22s));
}

TEST(Passive, FailuresWhileOutNeitherCountNorExtend) {
    PassiveHealth p;
    ASSERT_TRUE(p.record_failure(t0, 1, 10s));
    EXPECT_FALSE(p.record_failure(t0 + 9s, 1, 10s));  // a request started before the trip
    EXPECT_FALSE(p.out(t0 + 10s));
}

TEST(Passive, SuccessWhileOutKeepsItOut) {
    PassiveHealth p;
    ASSERT_TRUE(p.record_failure(t0, 1, 10s));
    p.record_success(t0 + 1s);  // an older request answered late
    EXPECT_TRUE(p.out(t0 + 5s));
}

TEST(Passive, MaxFailsZeroDisablesAccounting) {
    PassiveHealth p;
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(p.record_failure(t0, 0, 10s));
    EXPECT_FALSE(p.out(t0));
    EXPECT_EQ(p.failures(), 0u);
}

TEST(Passive, ClearBringsItBackAtOnce) {
    PassiveHealth p;
    ASSERT_TRUE(p.record_failure(t0, 1, 10s));
    p.clear();
    EXPECT_FALSE(p.out(t0 + 1s));
}

TEST(Passive, BackendUsesItsServerSettingsAndIsDownWhileOut) {
    tether::config::Server s;
    s.name = "s1";
    s.max_fails = 2;
    s.fail_timeout = 30'000ms;
    Backend b(s, {});
    EXPECT_TRUE(b.up());
    const auto now = Clock::now();
    EXPECT_FALSE(b.record_failure(now));
    EXPECT_TRUE(b.record_failure(now));
    EXPECT_FALSE(b.up());
    EXPECT_FALSE(b.accepts_new());
    EXPECT_TRUE(b.up(now + 31s));
    b.state().passive.clear();
    EXPECT_TRUE(b.up());
}

}  // namespace
