// tether's own error responses; see error_response.hpp.
#include "tether/http/error_response.hpp"

#include <algorithm>
#include <string>

namespace tether::http {

void write_error_response(errc e, std::string_view request_id, bool close, std::string& out,
                          int retry_after_s) {
    const int status = to_http_status(e);
    const std::string_view text = error_text(e);
    std::string body = std::to_string(status);
    body.append(" ").append(text).append("\n");
    out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(text);
    out.append("\r\nServer: tether\r\nContent-Type: text/plain; charset=utf-8\r\n");
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    if (!request_id.empty()) out.append("X-Request-Id: ").append(request_id).append("\r\n");
    if (e == errc::no_server) out.append("Retry-After: 1\r\n");
    if (e == errc::rate_limited)
        out.append("Retry-After: ").append(std::to_string(std::max(1, retry_after_s))).append("\r\n");
    if (e == errc::upgrade_required) out.append("Sec-WebSocket-Version: 13\r\n");
    out.append(close ? "Connection: close\r\n" : "");
    out.append("\r\n").append(body);
}

void write_engineio_unknown_sid(std::string_view request_id, std::string_view origin,
                                std::string& out) {
    static constexpr std::string_view kBody = R"({"code":1,"message":"Session ID unknown"})";
    out.append("HTTP/1.1 400 Bad Request\r\nServer: tether\r\nContent-Type: application/json\r\n");
    out.append("Content-Length: ").append(std::to_string(kBody.size())).append("\r\n");
    if (!request_id.empty()) out.append("X-Request-Id: ").append(request_id).append("\r\n");
    if (!origin.empty()) {
        out.append("Access-Control-Allow-Origin: ").append(origin).append("\r\n");
        out.append("Access-Control-Allow-Credentials: true\r\n");
    }
    out.append("Connection: close\r\n\r\n").append(kBody);
}

}  // namespace tether::http
