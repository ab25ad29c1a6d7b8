// core::coarse_now and ClockScope: the clock read once per scope, fresh
// outside any and in each new outermost scope.
#include "tether/core/coarse_clock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace tether::core {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(CoarseClock, OutsideAScopeEveryReadIsTheClock) {
    const auto a = coarse_now();
    std::this_thread::sleep_for(2ms);
    const auto b = coarse_now();
    EXPECT_GE(b - a, 2ms);
}

TEST(CoarseClock, InsideAScopeTheFirstReadIsKept) {
    const auto before = Clock::now();
    Clock::time_point a, b;
    {
        const ClockScope scope;
        a = coarse_now();
        std::this_thread::sleep_for(2ms);
        b = coarse_now();
    }
    EXPECT_EQ(a, b);
    EXPECT_GE(a, before);
    EXPECT_LE(a, Clock::now());
}

TEST(CoarseClock, InnerScopeKeepsTheOuterTimeAndANewScopeReadsAgain) {
    Clock::time_point outer, inner, after_inner;
    {
        const ClockScope scope;
        outer = coarse_now();
        std::this_thread::sleep_for(2ms);
        {
            const ClockScope nested;
            inner = coarse_now();
        }
        after_inner = coarse_now();  // the inner scope's end does not end the outer's time
    }
    EXPECT_EQ(inner, outer);
    EXPECT_EQ(after_inner, outer);
    std::this_thread::sleep_for(2ms);
    {
        const ClockScope scope;
        EXPECT_GE(coarse_now() - outer, 4ms);
    }
}

TEST(CoarseClock, AScopeOpenedBeforeAnyReadReadsWhenFirstAsked) {
    const ClockScope scope;
    std::this_thread::sleep_for(2ms);
    const auto before = Clock::now();
    EXPECT_GE(coarse_now(), before);  // not the time the scope was opened
}

TEST(CoarseClock, EachThreadHasItsOwn) {
    const ClockScope scope;
    const auto here = coarse_now();
    std::this_thread::sleep_for(2ms);
    Clock::time_point there;
    std::thread([&] { there = coarse_now(); }).join();  // no scope on that thread
    EXPECT_GE(there - here, 2ms);
    EXPECT_EQ(coarse_now(), here);
}

}  // namespace
}  // namespace tether::core
