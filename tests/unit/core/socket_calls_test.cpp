// core::sys_recv / sys_send / sys_recvmsg / sys_sendmsg (socket_calls.hpp) on
// a connected TCP pair on 127.0.0.1: the libc calls' results in every build,
// and, in sanitizer builds, what the sanitizers must see of them (the reason
// those builds call glibc's functions, not syscall(2)):
// - ASan: a receive into or a send from freed or too short memory is
//   reported at the call (death tests, ASan builds only; with syscall(2) the
//   kernel writes or reads there unseen and the child does not die);
// - TSan: a send and the receive of its bytes order what the sender wrote
//   before it and what the receiver reads after it; with syscall(2) TSan sees
//   no order, reports a data race and the process exits 66.
// Threading: the test's thread, and one sender thread in the ordering tests.
#include "tether/core/socket_calls.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace tether::core {
namespace {

// A connected TCP pair on 127.0.0.1 (a, b), blocking; closed at the end.
struct TcpPair {
    int a = -1, b = -1;
    TcpPair() {
        const int l = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        EXPECT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&addr), len), 0);
        EXPECT_EQ(::listen(l, 1), 0);
        EXPECT_EQ(::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len), 0);
        a = ::socket(AF_INET, SOCK_STREAM, 0);
        EXPECT_EQ(::connect(a, reinterpret_cast<sockaddr*>(&addr), len), 0);
        b = ::accept(l, nullptr, nullptr);
        ::close(l);
        EXPECT_GE(b, 0);
    }
    ~TcpPair() {
        ::close(a);
        ::close(b);
    }
    // Blocks until `n` bytes came on b (bounded by the 5 s receive timeout).
    std::string take(int fd, std::size_t n) const {
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string got;
        char buf[256];
        while (got.size() < n) {
            const ssize_t k = ::recv(fd, buf, std::min(sizeof buf, n - got.size()), 0);
            if (k <= 0) break;
            got.append(buf, static_cast<std::size_t>(k));
        }
        return got;
    }
};

TEST(SocketCalls, SendAndReceiveAsTheLibcCallsDo) {
    TcpPair p;
    EXPECT_EQ(sys_send(p.a, "hello", 5, MSG_NOSIGNAL), 5);
    EXPECT_EQ(p.take(p.b, 5), "hello");

    std::string one = "ab", two = "cde";
    std::array<iovec, 2> out{{{one.data(), one.size()}, {two.data(), two.size()}}};
    msghdr m{};
    m.msg_iov = out.data();
    m.msg_iovlen = out.size();
    EXPECT_EQ(sys_sendmsg(p.b, &m, MSG_NOSIGNAL), 5);

    // recvmsg into two buffers (MSG_WAITALL: the 5 bytes may come in two
    // segments), then nothing left: -1 with EAGAIN.
    std::array<char, 3> x{};
    std::array<char, 2> y{};
    std::array<iovec, 2> in{{{x.data(), x.size()}, {y.data(), y.size()}}};
    msghdr r{};
    r.msg_iov = in.data();
    r.msg_iovlen = in.size();
    EXPECT_EQ(sys_recvmsg(p.a, &r, MSG_WAITALL), 5);
    EXPECT_EQ(std::string(x.data(), x.size()) + std::string(y.data(), y.size()), "abcde");
    char c;
    errno = 0;
    EXPECT_EQ(sys_recv(p.a, &c, 1, MSG_DONTWAIT), -1);
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);

    // The peer's close: 0.
    ::shutdown(p.b, SHUT_WR);
    EXPECT_EQ(sys_recv(p.a, &c, 1, 0), 0);
}

// A plain int written by the sender before its send and read by the receiver
// after its receive: ordered only by the socket (TSan: release and acquire on
// the descriptor, seen at glibc's calls). A normal build just passes it.
TEST(SocketCalls, WhatTheSenderWroteBeforeTheSendIsSeenAfterTheReceive) {
    TcpPair p;
    int plain = 0;  // no atomic, no lock: the socket is the only order
    std::thread sender([&] {
        plain = 42;
        EXPECT_EQ(sys_send(p.a, "x", 1, MSG_NOSIGNAL), 1);
    });
    char c = 0;
    EXPECT_EQ(sys_recv(p.b, &c, 1, 0), 1);
    EXPECT_EQ(plain, 42);  // before the join: no order from the thread's end
    sender.join();
}

TEST(SocketCalls, WhatTheSenderWroteBeforeTheSendmsgIsSeenAfterTheRecvmsg) {
    TcpPair p;
    int plain = 0;
    std::thread sender([&] {
        plain = 7;
        char x = 'x';
        iovec v{&x, 1};
        msghdr m{};
        m.msg_iov = &v;
        m.msg_iovlen = 1;
        EXPECT_EQ(sys_sendmsg(p.a, &m, MSG_NOSIGNAL), 1);
    });
    char c = 0;
    iovec v{&c, 1};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    EXPECT_EQ(sys_recvmsg(p.b, &m, 0), 1);
    EXPECT_EQ(plain, 7);
    sender.join();
}

#if defined(__SANITIZE_ADDRESS__)
// What each death test's child does. It sends its report to its own stderr,
// for EXPECT_DEATH, not to the report files of ASAN_OPTIONS=log_path (a
// report there fails the run).
void recv_into_freed(int fd) {
    __sanitizer_set_report_path("stderr");
    char* buf = new char[64];
    delete[] buf;
    (void)sys_recv(fd, buf, 64, MSG_WAITALL);
}

void recvmsg_past_the_buffer(int fd) {
    __sanitizer_set_report_path("stderr");
    char* buf = new char[16];
    iovec v{buf, 64};  // the iovec says 64: the kernel writes past the 16
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    (void)sys_recvmsg(fd, &m, MSG_WAITALL);
    delete[] buf;
}

void sendmsg_of_freed(int fd) {
    __sanitizer_set_report_path("stderr");
    char* bytes = new char[64]();
    delete[] bytes;
    iovec v{bytes, 64};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    (void)sys_sendmsg(fd, &m, MSG_NOSIGNAL);
}

void send_of_freed(int fd) {
    __sanitizer_set_report_path("stderr");
    char* bytes = new char[64]();
    delete[] bytes;
    (void)sys_send(fd, bytes, 64, MSG_NOSIGNAL);
}

TEST(SocketCallsDeathTest, RecvIntoFreedMemoryIsReported) {
    TcpPair p;
    ASSERT_EQ(::send(p.b, std::string(64, 'z').data(), 64, 0), 64);
    EXPECT_DEATH(recv_into_freed(p.a), "heap-use-after-free");
}

TEST(SocketCallsDeathTest, RecvmsgPastTheBufferIsReported) {
    TcpPair p;
    ASSERT_EQ(::send(p.b, std::string(64, 'z').data(), 64, 0), 64);
    EXPECT_DEATH(recvmsg_past_the_buffer(p.a), "heap-buffer-overflow");
}

TEST(SocketCallsDeathTest, SendmsgOfFreedBytesIsReported) {
    TcpPair p;
    EXPECT_DEATH(sendmsg_of_freed(p.a), "heap-use-after-free");
}

TEST(SocketCallsDeathTest, SendOfFreedBytesIsReported) {
    TcpPair p;
    EXPECT_DEATH(send_of_freed(p.a), "heap-use-after-free");
}
#endif

}  // namespace
}  // namespace tether::core
