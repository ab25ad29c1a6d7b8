// Worker snapshots for the admin endpoints, stale ones kept; see snapshot_collector.hpp.
#include "tether/app/snapshot_collector.hpp"

#include <string>

#include "tether/core/log.hpp"

namespace tether::app {

CollectedSnapshots SnapshotCollector::collect(
    const std::vector<std::unique_ptr<net::Worker>>& workers) {
    std::lock_guard lock(mutex_);
    if (slots_.size() < workers.size()) slots_.resize(workers.size());
    // Ask them all first, then wait once: n stuck workers cost one timeout, not n.
    for (std::size_t i = 0; i < workers.size(); ++i)
        if (!slots_[i].pending) slots_[i].pending = workers[i]->request_snapshot();
    const auto deadline = std::chrono::steady_clock::now() + timeout_;

    CollectedSnapshots out;
    out.states.reserve(workers.size());
    for (std::size_t i = 0; i < workers.size(); ++i) {
        Slot& slot = slots_[i];
        bool fresh = false;
        if (slot.pending->wait_until(deadline) == std::future_status::ready) {
            try {
                slot.last = std::make_shared<const net::Worker::Snapshot>(slot.pending->get());
                slot.state.taken = Clock::now();
                fresh = true;
            } catch (const std::future_error&) {
                // the worker dropped the request unanswered (halted): still a miss
            }
            slot.pending.reset();
        }
        if (fresh && slot.state.stale)
            log::info("worker " + std::to_string(i) + " answers the admin snapshot again");
        if (!fresh) {
            ++slot.state.misses;
            if (!slot.state.stale)
                log::warn("worker " + std::to_string(i) + " did not copy its counters within " +
                          std::to_string(timeout_.count()) +
                          " ms (event loop blocked?): /metrics and /status show its last copy "
                          "(tether_worker_snapshot_stale)");
        }
        slot.state.stale = !fresh;
        out.states.push_back(slot.state);
        if (slot.last) out.workers.push_back(slot.last);
    }
    return out;
}

}  // namespace tether::app
