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
// Clients (the tunnels) are owned by the reactor: live ones in one intrusive
// list, finished ones in another until the current batch is over (a batch may
// still hold events for a finished tunnel's other socket). The reactor must
// be destroyed before its io_context (Worker::~Worker does).
// Threading: one per worker, used only on its thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "tether/core/executor.hpp"

namespace tether::ws {

/// Gets a registered socket's edge-triggered readiness.
class ReadyHandler {
public:
    /// `events`: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP bits.
    virtual void on_ready(std::uint32_t events) = 0;

protected:
    ~ReadyHandler() = default;
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
    explicit TunnelReactor(Executor ex);
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
};

}  // namespace tether::ws
