// Head rewriting; see headers.hpp.
#include "tether/http/headers.hpp"

#include <array>
#include <charconv>
#include <cstring>

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

// "name: value\r\n", grown once and copied in (four appends each check the
// capacity and take ~100 instructions a field).
void append_field(std::string& out, std::string_view name, std::string_view value) {
    const std::size_t at = out.size();
    out.resize(at + name.size() + value.size() + 4);
    char* p = out.data() + at;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    if (!value.empty()) std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\r';
    *p = '\n';
}

bool is_forwarding_field(std::string_view name) {
    return iequals(name, "x-real-ip") || iequals(name, "x-forwarded-proto") ||
           iequals(name, "x-forwarded-host") || iequals(name, "x-forwarded-for");
}

// A hop-by-hop field by its parsed name (Beast matches names to its field
// enum case-insensitively when it parses or inserts them, so every name in
// kHopByHop has its enum, and a field::unknown name is none of them).
bool hop_by_hop_field(bhttp::field f) {
    switch (f) {
        case bhttp::field::connection:
        case bhttp::field::keep_alive:
        case bhttp::field::proxy_connection:
        case bhttp::field::te:
        case bhttp::field::trailer:
        case bhttp::field::transfer_encoding:
        case bhttp::field::upgrade:
            return true;
        default:
            return false;
    }
}

// The fields a rewrite reads before it copies the rest, in one pass by enum
// (Beast's find(field) walks its name-ordered set comparing names as text):
// the first Connection and Host, the last Upgrade and X-Forwarded-For.
struct Looked {
    std::string_view connection, host, upgrade, xff;
    bool has_host = false;
};

template <class Fields>
Looked look_up(const Fields& fields) {
    Looked l;
    bool has_connection = false;
    for (const auto& f : fields) {
        switch (f.name()) {
            case bhttp::field::connection:
                if (!has_connection) l.connection = f.value();
                has_connection = true;
                break;
            case bhttp::field::host:
                if (!l.has_host) l.host = f.value();
                l.has_host = true;
                break;
            case bhttp::field::upgrade:
                l.upgrade = f.value();
                break;
            case bhttp::field::unknown:
                if (iequals(f.name_string(), "x-forwarded-for")) l.xff = f.value();
                break;
            default:
                break;
        }
    }
    return l;
}

// Hop-by-hop for this message: by the field's enum, or named in Connection.
template <class Field>
bool hop_by_hop(const Field& f, std::string_view connection) {
    if (f.name() != bhttp::field::unknown && hop_by_hop_field(f.name())) return true;
    return !connection.empty() && listed_in(f.name_string(), connection);
}

void append_forwarded(const Looked& l, const RequestRewrite& rw, std::string& out) {
    out.append("X-Forwarded-For: ");
    if (!l.xff.empty()) out.append(l.xff).append(", ");
    out.append(rw.peer_ip.empty() ? rw.client_ip : rw.peer_ip).append("\r\n");
    append_field(out, "X-Real-IP", rw.client_ip);
    append_field(out, "X-Forwarded-Proto", rw.proto);
    if (l.has_host) append_field(out, "X-Forwarded-Host", l.host);
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
    const Looked l = look_up(req);
    for (const auto& f : req) {
        if (hop_by_hop(f, l.connection)) continue;
        const std::string_view name = f.name_string();
        if (f.name() == bhttp::field::expect) continue;  // tether answered 100-continue itself
        if (f.name() == bhttp::field::unknown) {  // X-Request-Id and X-Forwarded-* have no enum
            if (!rw.request_id.empty() && iequals(name, "x-request-id")) continue;
            if (rw.forwarded && is_forwarding_field(name)) continue;
        }
        append_field(out, name, f.value());
    }
    if (rw.forwarded) append_forwarded(l, rw, out);
    if (!rw.request_id.empty()) append_field(out, "X-Request-Id", rw.request_id);
    if (rw.body == Framing::chunked) out.append("Transfer-Encoding: chunked\r\n");
    if (rw.upgrade) {
        append_field(out, "Upgrade", l.upgrade);
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
    const Looked l = look_up(res);
    for (const auto& f : res) {
        const std::string_view name = f.name_string();
        if (rw.upgrade && f.name() == bhttp::field::upgrade) {
            append_field(out, name, f.value());
            continue;
        }
        if (hop_by_hop(f, l.connection)) continue;
        if (rw.body == Framing::chunked && f.name() == bhttp::field::content_length) continue;
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
