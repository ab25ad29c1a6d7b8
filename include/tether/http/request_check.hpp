// Refusal of requests tether will not forward (SPEC "Errors a client sees"):
// ambiguous framing (Content-Length with Transfer-Encoding, duplicate
// Content-Length, a Transfer-Encoding other than one final "chunked"), a
// missing or repeated Host, targets that are not origin-form, versions other
// than HTTP/1.0 and 1.1, a body over limits.max_body_size, and malformed
// WebSocket upgrades. Runs on the parsed head, before any byte goes upstream.
#pragma once

#include <cstdint>
#include <string_view>

#include "tether/core/errors.hpp"
#include "tether/http/headers.hpp"

namespace tether::http {

struct RequestVerdict {
    errc error = errc::ok;
    bool websocket_upgrade = false;  ///< a valid RFC 6455 upgrade request
};

/// Checks a parsed request head. `content_length` is the parser's value
/// (nullopt when absent or chunked).
RequestVerdict check_request(const RequestHead& req, std::uint64_t max_body_size);

/// Checks the chunked body bytes that came with the head, before anything goes
/// upstream: `bytes` is what the client buffer holds after the head (a prefix
/// of the body, the whole body, maybe followed by a pipelined request). ok when
/// they are a valid prefix or a whole valid body; bad_request for bad framing
/// (chunk size, extension, CRLF, trailer), body_too_large past `max_body_size`.
errc check_chunked_prefix(std::string_view bytes, std::uint64_t max_body_size);

}  // namespace tether::http
