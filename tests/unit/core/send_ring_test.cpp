// SendRing over real sockets (AF_UNIX stream pairs, non-blocking): several
// sends in one io_uring_enter, each with its own result; a full socket gives
// a short send and then -EAGAIN (it is not waited for); a bad descriptor fails
// alone; a submission the kernel refuses is sent with send(). Skipped where
// the kernel refuses io_uring. Under ASan: bytes freed before the submission
// are reported.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "tether/core/send_ring.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

using tether::core::SendRing;

struct SocketPair {
    int a = -1;
    int b = -1;
    SocketPair() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        a = fds[0];
        b = fds[1];
    }
    ~SocketPair() {
        ::close(a);
        ::close(b);
    }
    std::string drain() const {
        std::string got;
        char buf[65536];
        for (ssize_t n; (n = ::read(b, buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
        return got;
    }
};

std::map<std::uint64_t, int> results(SendRing& r) {
    std::map<std::uint64_t, int> out;
    std::uint64_t tag;
    int res;
    while (r.next_result(tag, res)) out[tag] = res;
    return out;
}

TEST(SendRing, SendsOfABatchInOneSystemCall) {
    auto ring = SendRing::open(8);
    if (!ring) GTEST_SKIP() << "io_uring not available here";
    SocketPair p[3];
    const std::string msg[3] = {"first", std::string(1000, 'x'), "third one"};
    for (int i = 0; i < 3; ++i) ring->push(p[i].a, msg[i].data(), msg[i].size(), 10 + i);
    EXPECT_EQ(ring->queued(), 3u);
    ring->submit();
    EXPECT_EQ(ring->enters(), 1u);
    const auto r = results(*ring);
    ASSERT_EQ(r.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(r.at(10 + i), static_cast<int>(msg[i].size()));
        EXPECT_EQ(p[i].drain(), msg[i]);
    }
    EXPECT_EQ(ring->queued(), 0u);
    ring->push(p[0].a, "again", 5, 1);  // the ring is reused
    ring->submit();
    EXPECT_EQ(results(*ring).at(1), 5);
    EXPECT_EQ(p[0].drain(), "again");
    EXPECT_EQ(ring->enters(), 2u);
}

TEST(SendRing, AFullSocketIsNotWaitedFor) {
    auto ring = SendRing::open(8);
    if (!ring) GTEST_SKIP() << "io_uring not available here";
    SocketPair p;
    int small = 4096;
    ::setsockopt(p.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    const std::string big(4 << 20, 'b');
    ring->push(p.a, big.data(), big.size(), 1);
    ring->push(p.a, big.data(), big.size(), 2);
    ring->submit();  // returns: neither send waits for the reader
    const auto r = results(*ring);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_GT(r.at(1), 0);
    EXPECT_LT(r.at(1), static_cast<int>(big.size()));
    EXPECT_EQ(r.at(2), -EAGAIN);
    EXPECT_EQ(p.drain().size(), static_cast<std::size_t>(r.at(1)));
}

TEST(SendRing, ABadDescriptorFailsAlone) {
    auto ring = SendRing::open(8);
    if (!ring) GTEST_SKIP() << "io_uring not available here";
    SocketPair p;
    const int closed = ::dup(p.a);
    ::close(closed);
    ring->push(closed, "lost", 4, 1);
    ring->push(p.a, "kept", 4, 2);
    ring->submit();
    const auto r = results(*ring);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r.at(1), -EBADF);
    EXPECT_EQ(r.at(2), 4);
    EXPECT_EQ(p.drain(), "kept");
}

// When io_uring_enter itself fails (EBUSY, ENOMEM...), the sends are made
// with send(): same results, same bytes, nothing lost; the ring goes on.
TEST(SendRing, ARefusedSubmissionSendsEachItself) {
    auto ring = SendRing::open(8);
    if (!ring) GTEST_SKIP() << "io_uring not available here";
    SocketPair p[2];
    ring->push(p[0].a, "one", 3, 1);
    ring->push(p[1].a, "two!", 4, 2);
    ring->fail_next_enter(EBUSY);
    ring->submit();
    EXPECT_EQ(ring->enters(), 0u);
    const auto r = results(*ring);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r.at(1), 3);
    EXPECT_EQ(r.at(2), 4);
    EXPECT_EQ(p[0].drain(), "one");
    EXPECT_EQ(p[1].drain(), "two!");
    ring->push(p[0].a, "three", 5, 3);  // the next submission goes through the ring
    ring->submit();
    EXPECT_EQ(ring->enters(), 1u);
    EXPECT_EQ(results(*ring).at(3), 5);
    EXPECT_EQ(p[0].drain(), "three");
}

TEST(SendRing, FullAfterCapacitySends) {
    auto ring = SendRing::open(4);
    if (!ring) GTEST_SKIP() << "io_uring not available here";
    SocketPair p;
    EXPECT_EQ(ring->capacity(), 4u);
    for (int i = 0; i < 4; ++i) ring->push(p.a, "z", 1, i);
    EXPECT_TRUE(ring->full());
    ring->submit();
    EXPECT_EQ(results(*ring).size(), 4u);
    EXPECT_FALSE(ring->full());
    EXPECT_EQ(p.drain(), "zzzz");
}

#if defined(__SANITIZE_ADDRESS__)
// The kernel reads a queued send's bytes in io_uring_enter, unseen by ASan
// (no send() to intercept): submit() checks them itself. Without that check
// the freed bytes below go out and nothing is reported.
TEST(SendRingDeathTest, BytesFreedBeforeTheSubmissionAreReported) {
    if (!SendRing::open(4)) GTEST_SKIP() << "io_uring not available here";
    SocketPair p;
    EXPECT_DEATH(
        {
            // This child's report to its stderr, for EXPECT_DEATH, not to the
            // report files of ASAN_OPTIONS=log_path (a report there fails the run).
            __sanitizer_set_report_path("stderr");
            auto ring = SendRing::open(4);
            char* bytes = new char[64]();
            ring->push(p.a, bytes, 64, 1);
            delete[] bytes;
            ring->submit();
        },
        "heap-use-after-free");
    EXPECT_EQ(p.drain(), "");  // the child died before its send
}
#endif

}  // namespace
