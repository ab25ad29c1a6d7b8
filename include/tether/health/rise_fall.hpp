// The verdict of active checks on one server, as HAProxy's rise/fall: a
// server that is up goes down after `fall` failed checks in a row; a server
// that is down comes up after `rise` good checks in a row (and is usable the
// moment the rise-th one arrives). A single odd result in a run of the other
// kind resets the run, so a flapping server does not flap routing.
// Threading: plain value type, owned by one prober.
#pragma once

#include <span>

#include "tether/config/config.hpp"

namespace tether::health {

/// What one check found. The values index BackendState::checks.
enum class HealthResult { ok = 0, bad_status = 1, timeout = 2, error = 3 };

/// "ok", "bad_status", "timeout", "error" (the metrics label).
const char* to_string(HealthResult r);

/// True when `status` is in one of `ranges` (inclusive).
bool status_expected(int status, std::span<const config::StatusRange> ranges);

class RiseFall {
public:
    RiseFall(bool initial_up, int rise, int fall)
        : up_(initial_up), rise_(rise < 1 ? 1 : rise), fall_(fall < 1 ? 1 : fall) {}

    /// Takes one check result; true when the verdict changed.
    bool record(bool ok);
    bool up() const { return up_; }
    /// Good (when down) or bad (when up) results in a row so far.
    int run() const { return run_; }

private:
    bool up_;
    int rise_;
    int fall_;
    int run_ = 0;
};

}  // namespace tether::health
