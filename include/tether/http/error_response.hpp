// The responses tether itself writes: a short plain-text body, X-Request-Id,
// Retry-After on 503, Sec-WebSocket-Version on 426. Pure; no I/O.
#pragma once

#include <string>
#include <string_view>

#include "tether/core/errors.hpp"

namespace tether::http {

/// Appends a complete HTTP/1.1 error response for `e` to `out`.
void write_error_response(errc e, std::string_view request_id, bool close, std::string& out);

}  // namespace tether::http
