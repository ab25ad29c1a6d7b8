// The connections a worker holds, for graceful stop and coarse timers.
// An intrusive doubly-linked list: O(1) add and remove, no allocation.
// Threading: one registry per worker, touched only on its thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace tether {

using Clock = std::chrono::steady_clock;

class ConnectionRegistry;

/// A client connection or tunnel that must react to a graceful stop.
class TrackedConnection {
public:
    virtual ~TrackedConnection() = default;
    /// Graceful stop began: finish in-flight work, close at `close_at` at the
    /// latest (tunnels spread their close over drain.close_spread).
    virtual void begin_stop(Clock::time_point close_at) = 0;
    /// Periodic tick from the worker (about every 100 ms): coarse idle limits.
    virtual void tick(Clock::time_point now) = 0;
    /// A reload closed listener slot `slot`: a client connection accepted on
    /// it finishes its request in flight, then closes (an idle one at once).
    virtual void listener_closed(std::size_t /*slot*/) {}
    /// The server this connection is tunnelled to (an opaque key: the
    /// upstream state of that server), or nullptr.
    virtual const void* server_key() const { return nullptr; }
    /// Its server was drained: close at `close_at` (a tunnel: 1001 at a frame
    /// boundary); nullopt = re-enabled, a close not yet begun is called off.
    virtual void drain(std::optional<Clock::time_point> /*close_at*/) {}

private:
    friend class ConnectionRegistry;
    TrackedConnection* prev_ = nullptr;
    TrackedConnection* next_ = nullptr;
};

class ConnectionRegistry {
public:
    void add(TrackedConnection* c) {
        c->prev_ = nullptr;
        c->next_ = head_;
        if (head_) head_->prev_ = c;
        head_ = c;
        ++size_;
    }
    void remove(TrackedConnection* c) {
        if (c->prev_) c->prev_->next_ = c->next_;
        else head_ = c->next_;
        if (c->next_) c->next_->prev_ = c->prev_;
        c->prev_ = c->next_ = nullptr;
        --size_;
    }
    /// Calls f(TrackedConnection&) for each; f may remove the current entry.
    template <class F>
    void for_each(F&& f) {
        for (TrackedConnection* c = head_; c;) {
            TrackedConnection* next = c->next_;
            f(*c);
            c = next;
        }
    }
    std::size_t size() const { return size_; }

private:
    TrackedConnection* head_ = nullptr;
    std::size_t size_ = 0;
};

/// Registers `self` for its lifetime.
class RegistryEntry {
public:
    RegistryEntry(ConnectionRegistry& r, TrackedConnection* self) : r_(r), self_(self) {
        r_.add(self_);
    }
    ~RegistryEntry() { r_.remove(self_); }
    RegistryEntry(const RegistryEntry&) = delete;
    RegistryEntry& operator=(const RegistryEntry&) = delete;

private:
    ConnectionRegistry& r_;
    TrackedConnection* self_;
};

}  // namespace tether
