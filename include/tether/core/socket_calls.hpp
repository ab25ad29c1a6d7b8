// Socket calls of the request path made straight through syscall(2), not
// through glibc's recv / recvmsg / sendmsg wrappers. Those are POSIX
// cancellation points: once a process has a second thread (every tether
// process has), glibc brackets each call with __pthread_enable_asynccancel
// and __pthread_disable_asynccancel, two atomic read-modify-writes of the
// thread's cancel state. tether never cancels a thread, so they buy nothing
// here: ~40 ns per call on the benchmark machine (a loop of EAGAIN recvs,
// libc 330-370 ns, syscall(2) 280-310 ns), four calls per proxied
// keep-alive request (docs/benchmarks.md, "Keep-alive, fifth pass").
// Same results as the libc calls: the count, or -1 with errno set.
// Threading: none of its own.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>

namespace tether::core {

inline ssize_t sys_recv(int fd, void* buf, std::size_t len, int flags) {
    return static_cast<ssize_t>(::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr));
}

inline ssize_t sys_recvmsg(int fd, msghdr* m, int flags) {
    return static_cast<ssize_t>(::syscall(SYS_recvmsg, fd, m, flags));
}

inline ssize_t sys_sendmsg(int fd, const msghdr* m, int flags) {
    return static_cast<ssize_t>(::syscall(SYS_sendmsg, fd, m, flags));
}

}  // namespace tether::core
