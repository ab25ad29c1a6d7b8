// Socket calls of the request path and the plain tunnels made straight
// through syscall(2), not through glibc's recv / send / recvmsg / sendmsg
// wrappers. Those are POSIX cancellation points: once a process has a second
// thread (every tether process has), glibc brackets each call with
// __pthread_enable_asynccancel and __pthread_disable_asynccancel, two atomic
// read-modify-writes of the thread's cancel state. tether never cancels a
// thread, so they buy nothing here: ~40 ns per call on the benchmark machine
// (a loop of EAGAIN recvs, libc 330-370 ns, syscall(2) 280-310 ns), four
// calls per proxied keep-alive request (docs/benchmarks.md, "Keep-alive,
// fifth pass"); 2.3% of a worker's samples in the WebSocket echo benchmark.
//
// Sanitizer builds (ASan or TSan) call glibc's functions instead: the
// sanitizers intercept those and see nothing of a syscall(). ASan checks the
// bytes the kernel wrote or read lie in live memory (a receive into a freed
// or too short buffer is reported at the call); TSan records those accesses
// and treats a send and a receive on a socket as a release and an acquire
// (what the sender wrote before sending happens before what the receiver
// does after receiving). tests/unit/core/socket_calls_test.cpp proves both.
// Same results either way: the count, or -1 with errno set.
// Threading: none of its own.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TETHER_SOCKET_CALLS_LIBC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TETHER_SOCKET_CALLS_LIBC 1
#endif
#endif

namespace tether::core {

/// True when the calls below go through glibc (a sanitizer build).
inline constexpr bool kSocketCallsThroughLibc =
#ifdef TETHER_SOCKET_CALLS_LIBC
    true;
#else
    false;
#endif

inline ssize_t sys_recv(int fd, void* buf, std::size_t len, int flags) {
#ifdef TETHER_SOCKET_CALLS_LIBC
    return ::recv(fd, buf, len, flags);
#else
    return static_cast<ssize_t>(::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr));
#endif
}

inline ssize_t sys_send(int fd, const void* buf, std::size_t len, int flags) {
#ifdef TETHER_SOCKET_CALLS_LIBC
    return ::send(fd, buf, len, flags);
#else
    return static_cast<ssize_t>(::syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0));
#endif
}

inline ssize_t sys_recvmsg(int fd, msghdr* m, int flags) {
#ifdef TETHER_SOCKET_CALLS_LIBC
    return ::recvmsg(fd, m, flags);
#else
    return static_cast<ssize_t>(::syscall(SYS_recvmsg, fd, m, flags));
#endif
}

inline ssize_t sys_sendmsg(int fd, const msghdr* m, int flags) {
#ifdef TETHER_SOCKET_CALLS_LIBC
    return ::sendmsg(fd, m, flags);
#else
    return static_cast<ssize_t>(::syscall(SYS_sendmsg, fd, m, flags));
#endif
}

}  // namespace tether::core
