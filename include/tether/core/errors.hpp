// What can go wrong on the data path, as values (ENGINEERING.md: errors are
// values), and the one mapping from an error to the HTTP status a client sees.
#pragma once

#include <string_view>

namespace tether {

enum class errc {
    ok = 0,
    bad_request,         ///< malformed or ambiguous request -> 400
    header_too_large,    ///< request head over limits.max_header_size -> 431
    body_too_large,      ///< body over limits.max_body_size -> 413
    no_server,           ///< no server of the upstream can take the request -> 503
    upstream_connect,    ///< connect refused / failed -> 502
    upstream_broken,     ///< backend closed or sent garbage before a response -> 502
    upstream_timeout,    ///< no response head within timeouts.upstream_response -> 504
    client_timeout,      ///< the client was too slow (head or body) -> 408
    upgrade_required,    ///< bad WebSocket version -> 426
    session_unknown,     ///< Engine.IO sid bound to a dead server -> 400 (Engine.IO body)
    rate_limited,        ///< over limits.rate for the client IP -> 429 (with Retry-After)
};

/// The HTTP status sent to the client for `e` (200 for errc::ok).
int to_http_status(errc e);

/// A short reason phrase for the status line and the plain-text error body.
std::string_view error_text(errc e);

}  // namespace tether
