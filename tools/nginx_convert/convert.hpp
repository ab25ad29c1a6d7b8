// nginx.conf -> tether YAML. convert() walks the directive tree of nginx_conf.hpp and builds
// the tether configuration (SPEC.md "Configuration"): upstreams with their servers and
// balancing method, one listener per `listen` of a proxying `server` block, TLS, timeouts,
// limits and header settings. Every directive it does not carry over is reported as a Finding
// with its file and line; a Finding of kind `not_translated` means the result would behave
// differently in a way that matters (the tool then exits non-zero). Pure; single-threaded.
#pragma once

#include <string>
#include <vector>

#include "nginx_conf.hpp"

namespace tether::nginx {

struct Finding {
    enum class Kind {
        ignored,         ///< no tether equivalent, and none needed (gzip, sendfile, ...)
        note,            ///< translated, with a difference worth knowing
        suggestion,      ///< a better tether setting exists (affinity: sid for Socket.IO)
        not_translated,  ///< the result behaves differently in a way that matters
    };
    Kind kind = Kind::ignored;
    std::string file;
    int line = 0;
    std::string message;
    std::string text() const;  ///< "FILE:LINE: KIND: message"
};

struct Conversion {
    std::string yaml;               ///< the tether configuration
    std::vector<Finding> findings;  ///< in file order
    /// True when some finding is not_translated.
    bool differs() const;
};

/// Converts parsed directives. `source` names the main file in the YAML's header comment;
/// relative certificate paths resolve against `conf_dir` (nginx's conf prefix).
Conversion convert(const std::vector<Directive>& directives, const std::string& source,
                   const std::string& conf_dir);

}  // namespace tether::nginx
