// Socket calls on one watched descriptor, counted in the unit_tls binary by
// pass-through definitions (socket_call_counter.cpp) of glibc's recv,
// recvfrom, recvmsg, send, sendto, sendmsg and syscall: the executable's
// definitions are the ones linked, so Asio's socket_ops and tether's
// core::sys_* calls (socket_calls.hpp) both come through here. Every call
// still goes to the kernel, only counted.
// Threading: the test's thread only.
#pragma once

extern int g_watched_fd;
extern int g_recv_calls;        // receives on the watched descriptor, either way
extern int g_recv_would_block;  // of those, the ones that found nothing (EAGAIN)
extern int g_send_calls;        // sends on the watched descriptor, either way
extern int g_libc_socket_calls; // of all those, the ones made through glibc's wrappers
extern void (*g_after_would_block)();  // run once after a watched receive found nothing
