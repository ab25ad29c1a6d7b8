// What the admin endpoints show, rendered from worker snapshots (copied on
// each worker's thread, see SnapshotCollector) and the routing snapshot. Runs on the admin thread.
#pragma once

#include <string>
#include <vector>

#include "tether/affinity/local_table.hpp"
#include "tether/app/snapshot_collector.hpp"
#include "tether/net/worker.hpp"
#include "tether/redis/client.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::app {

struct AdminView {
    const upstream::Runtime& runtime;
    /// Copies of the workers that ever answered (stale ones: their last copy).
    const std::vector<std::shared_ptr<const net::Worker::Snapshot>>& workers;
    const std::vector<WorkerSnapshotState>& worker_states;  ///< one per worker
    const affinity::LocalTable& table;
    bool stopping = false;
    const redis::Client* redis = nullptr;  ///< null without `redis:`
};

std::string render_metrics(const AdminView& v);
std::string render_status(const AdminView& v);
/// Listening and at least one server of every upstream up.
bool is_ready(const upstream::Runtime& rt, bool stopping);

}  // namespace tether::app
