// A small io_uring used only to hand the kernel a batch of non-blocking sends
// in one system call: the plain WebSocket tunnels' sends of one batch of
// events (ws/tunnel_reactor) and the HTTP path's small writes (SendQueue,
// tls/send_queue.hpp).
//
// Each send is IORING_OP_SEND with MSG_DONTWAIT | MSG_NOSIGNAL: it runs inline
// while io_uring_enter submits it, as a sendto() would, and a socket that is
// full answers -EAGAIN instead of being waited for; so when submit() returns
// every send has its result and its bytes are no longer needed. What this
// saves over one sendto() per send: the system call entries and exits, and the
// points where the worker can be preempted by the peers its sends woke (on
// loopback a send wakes the receiver from inside the sender's system call).
//
// Built on the raw system calls (<linux/io_uring.h>), no liburing. open()
// gives nullptr where io_uring is not available (old kernel, seccomp filters
// of container runtimes, kernel.io_uring_disabled): the caller sends itself.
// Threading: one thread only (made with IORING_SETUP_SINGLE_ISSUER when the
// kernel has it: create and use it on the same thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

struct io_uring_sqe;
struct io_uring_cqe;
struct msghdr;

namespace tether::core {

class SendRing {
public:
    /// A ring of `entries` sends (a power of two), or nullptr (errno set).
    static std::unique_ptr<SendRing> open(unsigned entries);
    ~SendRing();
    SendRing(const SendRing&) = delete;
    SendRing& operator=(const SendRing&) = delete;

    unsigned capacity() const { return entries_; }
    /// Sends pushed whose results next_result() has not given yet.
    unsigned queued() const { return queued_; }
    bool full() const { return queued_ == entries_; }

    /// Queues a send of [p, p + n) on fd; `tag` comes back with its result.
    /// The bytes must stay valid until submit() returns. Not when full().
    void push(int fd, const void* p, std::size_t n, std::uint64_t tag);
    /// The same for a gathered send (IORING_OP_SENDMSG): `m` and the
    /// iovecs and bytes it points to stay valid until submit() returns.
    void push_msg(int fd, const msghdr* m, std::uint64_t tag);

    /// Submits what is queued in one io_uring_enter and waits for every
    /// result (sends that do not wait: no socket is waited for). If the
    /// kernel refuses the submission itself (e.g. EBUSY, ENOMEM), the sends
    /// it did not take are made here, one send() each, with their results.
    void submit();

    /// One result of the sends submitted: (tag, bytes sent or -errno); false
    /// when every result was given.
    bool next_result(std::uint64_t& tag, int& res);

    /// io_uring_enter calls made (a test hook: sends per system call).
    std::uint64_t enters() const { return enters_; }
    /// Test hook: the next io_uring_enter fails with `err` without a call.
    void fail_next_enter(int err) { inject_errno_ = err; }

private:
    SendRing() = default;
    void push_entry(std::uint8_t opcode, int fd, const void* addr, std::uint32_t len,
                    std::uint64_t tag);

    int fd_ = -1;
    unsigned entries_ = 0;
    unsigned queued_ = 0;       // pushed, result not yet given
    unsigned unsubmitted_ = 0;  // pushed, not yet taken by the kernel
    // Sends the kernel refused, made with send(): [failed_next_, failed_end_)
    // of the submission queue, each result kept in its entry; given after
    // the ring's results.
    unsigned failed_next_ = 0;
    unsigned failed_end_ = 0;
    int inject_errno_ = 0;
    // The mapped rings (one mapping when the kernel has IORING_FEAT_SINGLE_MMAP).
    void* sq_map_ = nullptr;
    std::size_t sq_map_len_ = 0;
    void* cq_map_ = nullptr;
    std::size_t cq_map_len_ = 0;
    io_uring_sqe* sqes_ = nullptr;
    std::size_t sqes_len_ = 0;
    unsigned* sq_head_ = nullptr;
    unsigned* sq_tail_ = nullptr;
    unsigned* sq_array_ = nullptr;
    unsigned sq_mask_ = 0;
    unsigned sq_local_tail_ = 0;
    unsigned* cq_head_ = nullptr;
    unsigned* cq_tail_ = nullptr;
    io_uring_cqe* cqes_ = nullptr;
    unsigned cq_mask_ = 0;
    std::uint64_t enters_ = 0;
};

}  // namespace tether::core
