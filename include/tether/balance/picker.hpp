// Placement of new clients over an upstream's backends (SPEC "Routing rules"):
// round_robin (smooth weighted, as nginx), least_conn (fewest active
// connections per unit of weight, ties rotated), random_two (two weighted
// random choices, the less loaded wins: Mitzenmacher's power of two choices).
//
// Eligible: Backend::accepts_new() and not in `exclude` (servers already tried
// for this request). Backup servers are considered only when no primary is
// eligible: every primary is down, draining, full (max_conns) or was already
// tried, as nginx passes a request to its backups.
//
// Threading: one Picker per worker and upstream, used only on that worker's
// thread; it reads the backends' atomic state and keeps its own cursor/RNG.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tether/core/hash.hpp"
#include "tether/upstream/backend.hpp"

namespace tether::balance {

using upstream::Backend;
using BackendList = std::vector<std::shared_ptr<Backend>>;

class Picker {
public:
    Picker(config::Balance method, std::uint64_t seed);

    /// The backend for a new client, or nullptr when none is eligible.
    const std::shared_ptr<Backend>* pick(const BackendList& backends,
                                         std::span<const Backend* const> exclude = {});

private:
    void collect_eligible(const BackendList& backends, std::span<const Backend* const> exclude);
    std::size_t pick_round_robin(const BackendList& backends);
    std::size_t pick_least_conn(const BackendList& backends);
    std::size_t pick_random_two(const BackendList& backends);
    std::size_t weighted_random(const BackendList& backends, int total_weight);

    config::Balance method_;
    Rng rng_;
    std::uint64_t cursor_ = 0;
    std::vector<std::size_t> eligible_;        // scratch, reused: no allocation per pick
    std::vector<std::int64_t> current_weight_;  // smooth WRR state, by backend index
};

}  // namespace tether::balance
