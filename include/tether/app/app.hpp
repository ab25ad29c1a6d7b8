// Wiring of the process: load the config, build the routing snapshot, start
// the workers, and react to signals (SIGTERM/SIGINT graceful stop, SIGHUP
// reload). Runs on the main thread, which is never an I/O worker, so blocking
// work (DNS, reading files) happens here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tether/config/config.hpp"

namespace tether::app {

/// Prints every diagnostic of `path` to stderr; returns the exit code of
/// `tether -t` (0 valid, 1 invalid).
int check_config(const std::string& path);

/// Runs tether on `path` until stopped; returns the process exit code.
int run(const std::string& path);

}  // namespace tether::app
