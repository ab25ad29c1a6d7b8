// errc -> HTTP status and text; the single place that decides what a client sees.
#include "tether/core/errors.hpp"

namespace tether {

int to_http_status(errc e) {
    switch (e) {
        case errc::ok: return 200;
        case errc::bad_request: return 400;
        case errc::header_too_large: return 431;
        case errc::body_too_large: return 413;
        case errc::no_server: return 503;
        case errc::upstream_connect: return 502;
        case errc::upstream_broken: return 502;
        case errc::upstream_timeout: return 504;
        case errc::client_timeout: return 408;
        case errc::upgrade_required: return 426;
        case errc::session_unknown: return 400;
        case errc::rate_limited: return 429;
    }
    return 500;
}

std::string_view error_text(errc e) {
    switch (e) {
        case errc::ok: return "OK";
        case errc::bad_request: return "Bad Request";
        case errc::header_too_large: return "Request Header Fields Too Large";
        case errc::body_too_large: return "Payload Too Large";
        case errc::no_server: return "Service Unavailable";
        case errc::upstream_connect: return "Bad Gateway";
        case errc::upstream_broken: return "Bad Gateway";
        case errc::upstream_timeout: return "Gateway Timeout";
        case errc::client_timeout: return "Request Timeout";
        case errc::upgrade_required: return "Upgrade Required";
        case errc::session_unknown: return "Bad Request";
        case errc::rate_limited: return "Too Many Requests";
    }
    return "Internal Server Error";
}

}  // namespace tether
