// The worker's queue of small writes on plain sockets (the HTTP path's
// request to the backend, the response to the client), sent in one
// io_uring submission per batch of ready events instead of one sendmsg each.
//
// A write is queued (TimedSocket::queue_write) instead of sent; its
// coroutine then waits for the result (TimedSocket::async_queued_send), as
// it would wait for any write. The first write queued posts one flush to the
// worker's executor: Asio runs it after the handlers already queued (the
// rest of the batch of completions) and the reactor's next epoll_wait(0),
// and it gives every queued send to the kernel in one io_uring_enter
// (core::SendRing: each runs inline with MSG_DONTWAIT, as sendmsg would),
// then resumes each waiter with its own result: the bytes sent, or an error;
// would_block (a full socket) sent nothing. A short or refused send goes on
// with the caller's usual asynchronous write and its deadline.
//
// Descriptors: the queue keeps each socket's state alive (TimedSocketRef)
// and reads its descriptor at the flush, not when the write was queued: a
// socket closed meanwhile (its deadline, a stop, its owner gone) has none,
// and its send fails with bad_descriptor instead of going to whatever the
// number was given to since.
//
// Where io_uring is not available (old kernel, seccomp filter of a
// container runtime, kernel.io_uring_disabled) or the queue is off, nothing
// is queued and every write is sent at once, as before.
// Threading: the worker's thread only (the ring is made on it, single issuer).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include "tether/core/executor.hpp"
#include "tether/core/recycling_pool.hpp"
#include "tether/core/send_ring.hpp"
#include "tether/tls/timed_socket_state.hpp"

namespace tether::tls {

/// A coroutine waiting for its queued send (type-erased handler).
struct SendWaiter {
    void (*complete)(SendWaiter*, boost::system::error_code, std::size_t);  // runs, then frees
    void (*destroy)(SendWaiter*);                                           // frees only
};

template <class Handler>
struct SendWaiterOf : SendWaiter {
    explicit SendWaiterOf(Handler&& h) : SendWaiter{&run, &drop}, handler(std::move(h)) {}
    static void* operator new(std::size_t n) { return RecyclingPool::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { RecyclingPool::deallocate(p, n); }
    static void run(SendWaiter* w, boost::system::error_code ec, std::size_t n) {
        auto* self = static_cast<SendWaiterOf*>(w);
        Handler h(std::move(self->handler));
        delete self;
        std::move(h)(ec, n);
    }
    static void drop(SendWaiter* w) { delete static_cast<SendWaiterOf*>(w); }
    Handler handler;
};

class SendQueue {
public:
    static constexpr unsigned kRingEntries = 64;  // sends per io_uring_enter at most
    static constexpr std::size_t kMaxPieces = 4;  // buffers of one queued write

    /// `enabled` false: never queues (every write is sent at once).
    explicit SendQueue(Executor ex, bool enabled = true) : executor_(ex), enabled_(enabled) {}
    ~SendQueue() { abandon(); }
    SendQueue(const SendQueue&) = delete;
    SendQueue& operator=(const SendQueue&) = delete;

    /// Queues a send of `v[0..n)` (`bytes` in all) on `s`'s socket; false
    /// when not queued (off, no io_uring, too many pieces): send it at once.
    bool push(TimedSocketState& s, const iovec* v, std::size_t n, std::size_t bytes);
    /// Registers the waiter of `s`'s queued send (taken over).
    void wait(TimedSocketState& s, SendWaiter* w);
    /// Sends everything queued (what the posted flush runs).
    void flush();
    /// Frees the waiters of sends never flushed (the worker's shutdown:
    /// before the io_context goes, their coroutines with it).
    void abandon();

    std::size_t queued() const { return entries_.size(); }
    /// The ring (made at the first push), or null: test hooks.
    core::SendRing* ring() { return ring_.get(); }
    std::uint64_t sends_queued() const { return sends_queued_; }

private:
    struct Entry {
        TimedSocketRef s;
        iovec v[kMaxPieces];
        std::size_t n = 0;
        msghdr m{};
        int res = 0;
        SendWaiter* w = nullptr;
        explicit Entry(TimedSocketState& st) : s(&st) {}
    };
    bool ready();
    void reap();
    void finish(Entry& e);

    Executor executor_;
    bool enabled_;
    bool ring_tried_ = false;
    bool flush_posted_ = false;
    std::unique_ptr<core::SendRing> ring_;
    std::vector<Entry> entries_;   // queued, not yet flushed
    std::vector<Entry> flushing_;  // the flush in progress
    std::uint64_t sends_queued_ = 0;
};

/// A queued send's result as a write's: (ec, bytes); would_block: none sent.
inline boost::system::error_code send_error(int res) {
    if (res >= 0) return {};
    if (res == -EAGAIN || res == -EWOULDBLOCK) return boost::asio::error::would_block;
    return {-res, boost::asio::error::get_system_category()};
}

}  // namespace tether::tls
