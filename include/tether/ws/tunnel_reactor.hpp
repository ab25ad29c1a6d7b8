// A worker's readiness set for plain WebSocket tunnels: one epoll instance of
// its own, edge-triggered, nested in the worker's Asio loop (Asio waits for
// the epoll descriptor to become readable, then the reactor takes the ready
// events in batches and calls each socket's handler).
//
// Why not Asio's own reactor: in Boost 1.81 every async_wait re-arms the
// descriptor with one epoll_ctl, and async_read_some first tries a read that
// a drained socket answers with EAGAIN; either way a relayed step cost three
// system calls. Here a socket is registered once, for the life of the tunnel
// (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), and a step is one recv and one
// send, as in nginx. The nesting costs one epoll_wait and one epoll_ctl per
// batch of events, not per step.
//
// Sends of one batch go out together: while a batch is handled, a tunnel
// reads into the reactor's batch arena (batch_buffer) and queues the send of
// what it read (queue_send) instead of calling send(); at the end of the
// batch (or when the arena or the ring is full) one io_uring_enter hands the
// kernel every queued send (SendRing), and each sender gets its result
// (SendHandler::on_sent, then on_flushed to go on). Where io_uring is not
// available (or batch_sends is off) the tunnels send at once, as before.
//
// Clients (the tunnels) are owned by the reactor: live ones in one intrusive
// list, finished ones in another until the current batch is over (a batch may
// still hold events for a finished tunnel's other socket). The reactor must
// be destroyed before its io_context (Worker::~Worker does).
// Threading: one per worker, used only on its thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "tether/core/executor.hpp"
#include "tether/core/send_ring.hpp"

namespace tether::ws {

/// Gets a registered socket's edge-triggered readiness.
class ReadyHandler {
public:
    /// `events`: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP bits.
    virtual void on_ready(std::uint32_t events) = 0;

protected:
    ~ReadyHandler() = default;
};

/// Gets the result of a send queued with TunnelReactor::queue_send.
class SendHandler {
public:
    /// Bytes sent, or -errno (-EAGAIN: the socket took nothing). The queued
    /// bytes are still readable here (copy what was not sent).
    virtual void on_sent(int result) = 0;
    /// After the results of a submission: the handler may go on (and queue
    /// again). A handler whose tunnel ended meanwhile ignores it (the client
    /// is destroyed only after the batch).
    virtual void on_flushed() = 0;

protected:
    ~SendHandler() = default;
};

/// Something the reactor owns and destroys (a tunnel).
class ReactorClient {
public:
    virtual ~ReactorClient() = default;

private:
    friend class TunnelReactor;
    ReactorClient* prev_ = nullptr;
    ReactorClient* next_ = nullptr;
    bool retired_ = false;
};

class TunnelReactor {
public:
    /// batch_sends: queue the sends of a batch into one io_uring submission
    /// (when the kernel allows io_uring).
    explicit TunnelReactor(Executor ex, bool batch_sends = true);
    ~TunnelReactor();  // destroys every client, live or retired
    TunnelReactor(const TunnelReactor&) = delete;
    TunnelReactor& operator=(const TunnelReactor&) = delete;

    /// Registers `fd` for the life of its handler; false (errno set) on failure.
    bool add(int fd, ReadyHandler* h);
    /// Takes ownership of a new client.
    void adopt(ReactorClient* c);
    /// The client finished: destroyed once the events in hand are handled
    /// (after the batch, or from a handler posted to the executor).
    void retire(ReactorClient* c);

    /// True while a batch is handled and its sends are being queued: then
    /// read into batch_buffer() and send with queue_send().
    bool batching() const { return in_batch_ && ring_ != nullptr; }
    /// Room for a read of up to `n` bytes that stays valid until its queued
    /// send has its result (submits what is queued first when the arena or
    /// the ring is full). Only when batching().
    char* batch_buffer(std::size_t n);
    /// Queues the send of [p, p + len) on fd; p from the last batch_buffer().
    /// `h` gets the result. Only when batching().
    void queue_send(int fd, const char* p, std::size_t len, SendHandler* h);
    /// Submits the queued sends now (before a descriptor they may name is
    /// closed: a new socket could get its number).
    void flush_sends();

    /// Test hooks: sends queued in batches, and io_uring_enter calls made for them.
    std::uint64_t sends_batched() const { return sends_batched_; }
    std::uint64_t send_submissions() const { return ring_ ? ring_->enters() : 0; }

    /// The time the current batch started (one clock read per batch), or now
    /// outside a batch.
    std::chrono::steady_clock::time_point now() const {
        return in_batch_ ? now_ : std::chrono::steady_clock::now();
    }
    const Executor& executor() const { return executor_; }
    std::size_t size() const { return live_count_; }

private:
    void wait();
    void run_batch();
    void drain_sends();
    void collect();
    static void destroy_list(ReactorClient*& head);
    static void unlink(ReactorClient*& head, ReactorClient* c);
    static void push(ReactorClient*& head, ReactorClient* c);

    Executor executor_;
    boost::asio::posix::stream_descriptor epoll_;  // the nested epoll instance
    std::chrono::steady_clock::time_point now_;
    ReactorClient* live_ = nullptr;
    ReactorClient* retired_ = nullptr;
    std::size_t live_count_ = 0;
    bool in_batch_ = false;
    bool collect_posted_ = false;
    // Batched sends (batch_sends_): the ring, made on the worker's thread by
    // the first batch; the arena the queued bytes live in; who goes on next.
    bool batch_sends_;
    bool ring_tried_ = false;
    bool reaping_ = false;
    std::unique_ptr<core::SendRing> ring_;
    std::unique_ptr<char[]> arena_;
    std::size_t arena_size_ = 0;
    std::size_t arena_used_ = 0;
    std::vector<SendHandler*> resume_;
    std::vector<SendHandler*> resuming_;
    std::uint64_t sends_batched_ = 0;
};

}  // namespace tether::ws
