// The workers' counters as the admin endpoints show them. Each read of
// /metrics or /status asks every worker for a copy of its counters (made on
// the worker's thread) and waits for all of them until one common deadline.
// A worker that misses it (its event loop blocked or stopped) is shown with
// the last copy it gave, marked stale, so a counter summed over workers never
// goes down between two scrapes (Prometheus would read a drop as a counter
// reset). A copy it owes is not asked for again until it arrives, so a stuck
// worker gets at most one request queued.
// Threading: collect() runs on the admin thread; a mutex makes concurrent
// calls safe (they are served one after the other).
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "tether/net/worker.hpp"

namespace tether::app {

/// One worker's state as of the last collect().
struct WorkerSnapshotState {
    bool stale = false;        ///< it missed the deadline; its last copy is shown (or none)
    std::uint64_t misses = 0;  ///< collects it missed the deadline of, since start
    Clock::time_point taken{}; ///< when the copy shown was made (epoch: never)
};

struct CollectedSnapshots {
    /// One copy per worker that has ever answered, in worker order
    /// (Snapshot::worker tells which); fresh or, for a stale worker, its last.
    std::vector<std::shared_ptr<const net::Worker::Snapshot>> workers;
    std::vector<WorkerSnapshotState> states;  ///< by worker index, one per worker
};

class SnapshotCollector {
public:
    explicit SnapshotCollector(std::chrono::milliseconds timeout) : timeout_(timeout) {}

    CollectedSnapshots collect(const std::vector<std::unique_ptr<net::Worker>>& workers);

private:
    struct Slot {
        std::optional<std::future<net::Worker::Snapshot>> pending;  // asked, not answered yet
        std::shared_ptr<const net::Worker::Snapshot> last;
        WorkerSnapshotState state;
    };

    std::chrono::milliseconds timeout_;
    std::mutex mutex_;
    std::vector<Slot> slots_;  // by worker index
};

}  // namespace tether::app
