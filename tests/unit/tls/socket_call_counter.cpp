// The counting pass-through socket calls of socket_call_counter.hpp. The
// definition of syscall has fixed parameters: on
// x86-64 a variadic call passes its first six arguments in the same
// registers, and glibc's syscall reads six whatever the call's own count.
#include "socket_call_counter.hpp"

#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>
#include <utility>

int g_watched_fd = -1;
int g_recv_calls = 0;
int g_recv_would_block = 0;
int g_send_calls = 0;
int g_libc_socket_calls = 0;
void (*g_after_would_block)() = nullptr;

namespace {

using SyscallFn = long (*)(long, long, long, long, long, long, long);

long real_syscall(long n, long a, long b, long c, long d, long e, long f) {
    static const auto fn = reinterpret_cast<SyscallFn>(dlsym(RTLD_NEXT, "syscall"));
    return fn(n, a, b, c, d, e, f);
}

long counted(long n, long a, long b, long c, long d, long e, long f, bool libc) {
    const long r = real_syscall(n, a, b, c, d, e, f);
    const bool receive = n == SYS_recvfrom || n == SYS_recvmsg;
    const bool send = n == SYS_sendto || n == SYS_sendmsg;
    if ((!receive && !send) || static_cast<int>(a) != g_watched_fd) return r;
    g_libc_socket_calls += libc ? 1 : 0;
    if (send) {
        ++g_send_calls;
        return r;
    }
    ++g_recv_calls;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ++g_recv_would_block;
        if (auto after = std::exchange(g_after_would_block, nullptr)) {
            const int saved = errno;
            after();
            errno = saved;
        }
    }
    return r;
}

long as_long(const void* p) { return reinterpret_cast<long>(p); }

}  // namespace

// glibc's syscall, under another C++ name (its variadic declaration comes
// with <unistd.h>) and the same symbol.
extern "C" long counting_syscall(long n, long a, long b, long c, long d, long e, long f) __asm__(
    "syscall");
extern "C" long counting_syscall(long n, long a, long b, long c, long d, long e, long f) {
    return counted(n, a, b, c, d, e, f, false);
}

extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
    return counted(SYS_recvfrom, fd, as_long(buf), static_cast<long>(len), flags, 0, 0, true);
}

extern "C" ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                            socklen_t* fromlen) {
    return counted(SYS_recvfrom, fd, as_long(buf), static_cast<long>(len), flags, as_long(from),
                   as_long(fromlen), true);
}

extern "C" ssize_t recvmsg(int fd, msghdr* msg, int flags) {
    return counted(SYS_recvmsg, fd, as_long(msg), flags, 0, 0, 0, true);
}

extern "C" ssize_t send(int fd, const void* buf, size_t len, int flags) {
    return counted(SYS_sendto, fd, as_long(buf), static_cast<long>(len), flags, 0, 0, true);
}

extern "C" ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
                          socklen_t tolen) {
    return counted(SYS_sendto, fd, as_long(buf), static_cast<long>(len), flags, as_long(to),
                   static_cast<long>(tolen), true);
}

extern "C" ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
    return counted(SYS_sendmsg, fd, as_long(msg), flags, 0, 0, 0, true);
}
