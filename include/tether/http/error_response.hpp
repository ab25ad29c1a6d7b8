// The responses tether itself writes: a short plain-text body, X-Request-Id,
// Retry-After on 503, Sec-WebSocket-Version on 426. Pure; no I/O.
#pragma once

#include <string>
#include <string_view>

#include "tether/core/errors.hpp"

namespace tether::http {

/// Appends a complete HTTP/1.1 error response for `e` to `out`.
void write_error_response(errc e, std::string_view request_id, bool close, std::string& out,
                          int retry_after_s = 0);

/// Appends Engine.IO's own answer to a request whose session does not exist
/// (HTTP 400, {"code":1,"message":"Session ID unknown"}), with the CORS
/// headers engine.io sends when the request had an Origin, so a browser
/// client reads it and makes a new handshake at once.
void write_engineio_unknown_sid(std::string_view request_id, std::string_view origin,
                                std::string& out);

}  // namespace tether::http
