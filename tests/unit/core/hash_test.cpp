// Golden values: stable_hash must never change across builds or machines,
// or replicas would disagree about consistent-hash placement.
#include <gtest/gtest.h>

#include "tether/core/hash.hpp"
#include "tether/core/units.hpp"

namespace {

TEST(StableHash, GoldenValues) {
    EXPECT_EQ(tether::stable_hash(""), 6566800829925814604ull);
    EXPECT_EQ(tether::stable_hash("s1"), 11840924212426161320ull);
    EXPECT_EQ(tether::stable_hash("127.0.0.1:3001", 7), 244472093184708554ull);
    EXPECT_NE(tether::stable_hash("s1"), tether::stable_hash("s2"));
    EXPECT_NE(tether::stable_hash("s1", 1), tether::stable_hash("s1", 2));
    EXPECT_EQ(tether::stable_hash("s1"), tether::stable_hash(std::string("s1")));
}

TEST(Rng, BelowStaysInRangeAndIsDeterministic) {
    tether::Rng a(5), b(5);
    for (int i = 0; i < 1000; ++i) {
        const auto x = a.below(7);
        EXPECT_LT(x, 7u);
        EXPECT_EQ(x, b.below(7));
    }
}

}  // namespace
