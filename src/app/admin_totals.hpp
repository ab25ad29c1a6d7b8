// What /metrics (admin_metrics.cpp) and /status (admin_views.cpp) both
// read from an AdminView: per-server totals over the workers' snapshots, the
// generation every worker routes with, an affinity mode's name.
// Threading: the admin thread, like the views.
#pragma once

#include <cstdint>
#include <map>

#include "tether/app/admin_views.hpp"

namespace tether::app {

const char* affinity_name(config::Affinity a);

/// Per backend: totals over workers.
struct ServerTotals {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;  // 5xx answers
    std::int64_t tunnels = 0;
    std::int64_t eio_polling = 0;  // Engine.IO sessions by transport
    std::int64_t eio_websocket = 0;
};

std::map<const upstream::Backend*, ServerTotals> server_totals(const AdminView& v);

/// The lowest generation any worker has installed (see admin_views.cpp).
std::uint64_t applied_generation(const AdminView& v);

}  // namespace tether::app
