// Frame boundary tracking over arbitrary read splits.
#include <gtest/gtest.h>

#include <vector>

#include "tether/ws/frame_tracker.hpp"

namespace {

using tether::ws::FrameTracker;

std::vector<unsigned char> frame(unsigned opcode, std::size_t len, bool masked) {
    std::vector<unsigned char> f{static_cast<unsigned char>(0x80 | opcode)};
    const unsigned char m = masked ? 0x80 : 0;
    if (len < 126) {
        f.push_back(static_cast<unsigned char>(m | len));
    } else if (len < 65536) {
        f.push_back(m | 126);
        f.push_back(static_cast<unsigned char>(len >> 8));
        f.push_back(static_cast<unsigned char>(len));
    } else {
        f.push_back(m | 127);
        for (int i = 7; i >= 0; --i) f.push_back(static_cast<unsigned char>(len >> (8 * i)));
    }
    if (masked) f.insert(f.end(), {1, 2, 3, 4});
    f.insert(f.end(), len, 'x');
    return f;
}

std::vector<unsigned char> stream() {
    std::vector<unsigned char> s;
    for (auto [op, len, masked] : std::vector<std::tuple<unsigned, std::size_t, bool>>{
             {1, 5, false}, {2, 300, true}, {9, 0, false}, {2, 70000, false}, {1, 125, true},
             {8, 2, true}}) {
        auto f = frame(op, len, masked);
        s.insert(s.end(), f.begin(), f.end());
    }
    return s;
}

TEST(FrameTracker, CountsFramesWhateverTheReadSplit) {
    const auto s = stream();
    std::vector<std::size_t> steps{4096u, 1000000u};
    for (std::size_t step = 1; step <= 40; ++step) steps.push_back(step);  // every header split
    for (std::size_t step : steps) {
        FrameTracker t;
        for (std::size_t i = 0; i < s.size(); i += step)
            EXPECT_EQ(t.feed(s.data() + i, std::min(step, s.size() - i)),
                      std::min(step, s.size() - i));
        EXPECT_EQ(t.frames(), 6u) << "step " << step;
        EXPECT_TRUE(t.at_boundary());
        EXPECT_EQ(t.opcode(), 8u);
    }
}

TEST(FrameTracker, NotAtBoundaryMidFrame) {
    auto f = frame(2, 300, false);
    FrameTracker t;
    t.feed(f.data(), 3);
    EXPECT_FALSE(t.at_boundary());
    t.feed(f.data() + 3, f.size() - 3);
    EXPECT_TRUE(t.at_boundary());
}

TEST(FrameTracker, StopAtBoundaryConsumesExactlyOneFrame) {
    const auto s = stream();
    FrameTracker t;
    const std::size_t first = frame(1, 5, false).size();
    EXPECT_EQ(t.feed(s.data(), s.size(), true), first);
    EXPECT_EQ(t.frames(), 1u);
    EXPECT_TRUE(t.at_boundary());
}

TEST(FrameTracker, StopAtBoundaryWalksEveryFrame) {
    const auto s = stream();
    FrameTracker t;
    std::size_t off = 0;
    std::vector<unsigned> ops;
    while (off < s.size()) {
        off += t.feed(s.data() + off, s.size() - off, true);
        EXPECT_TRUE(t.at_boundary());
        ops.push_back(t.opcode());
    }
    EXPECT_EQ(ops, (std::vector<unsigned>{1, 2, 9, 2, 1, 8}));
    EXPECT_EQ(t.frames(), 6u);
}

TEST(FrameTracker, CloseFramesAreWellFormed) {
    using namespace tether::ws;
    FrameTracker a;
    a.feed(kCloseGoingAwayToClient, sizeof kCloseGoingAwayToClient);
    EXPECT_EQ(a.frames(), 1u);
    EXPECT_EQ(a.opcode(), 8u);
    FrameTracker b;
    b.feed(kCloseGoingAwayToServer, sizeof kCloseGoingAwayToServer);
    EXPECT_EQ(b.frames(), 1u);
    // unmask the payload: code 1001
    const unsigned hi = kCloseGoingAwayToServer[6] ^ kCloseGoingAwayToServer[2];
    const unsigned lo = kCloseGoingAwayToServer[7] ^ kCloseGoingAwayToServer[3];
    EXPECT_EQ((hi << 8) | lo, 1001u);
}

}  // namespace
