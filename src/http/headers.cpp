// Head rewriting; see headers.hpp.
#include "tether/http/headers.hpp"

#include <array>
#include <charconv>

#include <boost/beast/core/string.hpp>

namespace tether::http {

namespace {

using boost::beast::iequals;

constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "proxy-connection", "te",
    "trailer",    "transfer-encoding", "upgrade"};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool listed_in(std::string_view name, std::string_view list) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        const auto token = trim(list.substr(0, comma));
        if (iequals(token, name)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
}

bool is_forwarding_field(std::string_view name) {
    return iequals(name, "x-real-ip") || iequals(name, "x-forwarded-proto") ||
           iequals(name, "x-forwarded-host") || iequals(name, "x-forwarded-for");
}

void append_forwarded(const RequestHead& req, const RequestRewrite& rw, std::string& out) {
    std::string_view xff;
    for (const auto& f : req)
        if (iequals(f.name_string(), "x-forwarded-for")) xff = f.value();
    out.append("X-Forwarded-For: ");
    if (!xff.empty()) out.append(xff).append(", ");
    out.append(rw.peer_ip.empty() ? rw.client_ip : rw.peer_ip).append("\r\n");
    append_field(out, "X-Real-IP", rw.client_ip);
    append_field(out, "X-Forwarded-Proto", rw.proto);
    if (auto host = req.find(bhttp::field::host); host != req.end())
        append_field(out, "X-Forwarded-Host", host->value());
}

}  // namespace

bool is_hop_by_hop(std::string_view name, std::string_view connection_value) {
    for (auto h : kHopByHop)
        if (iequals(name, h)) return true;
    return !connection_value.empty() && listed_in(name, connection_value);
}

void write_request_head(const RequestHead& req, const RequestRewrite& rw, std::string& out) {
    out.append(req.method_string()).push_back(' ');
    out.append(req.target()).append(" HTTP/1.1\r\n");
    std::string_view connection;
    if (auto c = req.find(bhttp::field::connection); c != req.end()) connection = c->value();
    std::string_view upgrade;
    for (const auto& f : req) {
        const std::string_view name = f.name_string();
        if (rw.upgrade && iequals(name, "upgrade")) upgrade = f.value();
        if (is_hop_by_hop(name, connection)) continue;
        if (iequals(name, "x-request-id") && !rw.request_id.empty()) continue;
        if (rw.forwarded && is_forwarding_field(name)) continue;
        if (iequals(name, "expect")) continue;  // tether answered 100-continue itself
        append_field(out, name, f.value());
    }
    if (rw.forwarded) append_forwarded(req, rw, out);
    if (!rw.request_id.empty()) append_field(out, "X-Request-Id", rw.request_id);
    if (rw.body == Framing::chunked) out.append("Transfer-Encoding: chunked\r\n");
    if (rw.upgrade) {
        append_field(out, "Upgrade", upgrade);
        out.append("Connection: upgrade\r\n");
    }
    out.append("\r\n");
}

void write_response_head(const ResponseHead& res, unsigned client_version,
                         const ResponseRewrite& rw, std::string& out) {
    out.append(client_version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    char code[8];
    auto [end, ec] = std::to_chars(code, code + sizeof code, res.result_int());
    out.append(code, end).push_back(' ');
    std::string_view reason = res.reason();
    if (reason.empty()) reason = bhttp::obsolete_reason(res.result());
    out.append(reason).append("\r\n");
    std::string_view connection;
    if (auto c = res.find(bhttp::field::connection); c != res.end()) connection = c->value();
    for (const auto& f : res) {
        const std::string_view name = f.name_string();
        if (rw.upgrade && iequals(name, "upgrade")) {
            append_field(out, name, f.value());
            continue;
        }
        if (is_hop_by_hop(name, connection)) continue;
        if (rw.body == Framing::chunked && iequals(name, "content-length")) continue;
        append_field(out, name, f.value());
    }
    if (rw.body == Framing::chunked) out.append("Transfer-Encoding: chunked\r\n");
    if (rw.upgrade) out.append("Connection: upgrade\r\n");
    else if (rw.close) out.append("Connection: close\r\n");
    else if (rw.keep_alive_header) out.append("Connection: keep-alive\r\n");
    out.append(rw.extra);
    out.append("\r\n");
}

void write_chunk_header(std::size_t size, std::string& out) {
    char hex[20];
    auto [end, ec] = std::to_chars(hex, hex + sizeof hex, size, 16);
    out.append(hex, end).append("\r\n");
}

}  // namespace tether::http
