// Loads a tether YAML file into config::Config. Every problem is reported as
// FILE:LINE:COL: message (1-based line and column), all of them at once, so
// `tether -t` and SIGHUP reload print the same list. Runs off the I/O threads
// (start-up, reload); throws nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tether/config/config.hpp"

namespace tether::config {

struct Diagnostic {
    std::string file;
    int line = 0;  ///< 1-based; 0 when the problem has no position
    int column = 0;
    std::string message;
    /// "FILE:LINE:COL: message" (warnings read "FILE:LINE:COL: warning: message").
    std::string text(bool warning = false) const;
};

struct LoadResult {
    std::optional<Config> config;  ///< set only when errors is empty
    std::vector<Diagnostic> errors;
    std::vector<Diagnostic> warnings;
};

/// Reads and validates the file at `path`; relative paths inside are resolved
/// against the file's directory.
LoadResult load_config(const std::string& path);

/// Same, from text already in memory. `file` is the name used in diagnostics,
/// `base_dir` the directory relative paths are resolved against.
LoadResult load_config_text(std::string_view yaml, const std::string& file,
                            const std::string& base_dir);

}  // namespace tether::config
