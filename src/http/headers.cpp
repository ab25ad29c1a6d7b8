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

// A head written through a pointer into room grown once to an upper bound of
// its size (one resize, which zero-fills that room), trimmed to what was
// written at the end. Appending piece by piece checked the capacity and set
// the length for each piece, and resize() per field zero-filled each field
// first: ~100 instructions a field (callgrind, per_request.py scenario a).
// The bound is summed from the same pieces as are written; should it ever
// fall short, put() grows the room (a cold path) rather than write past it,
// and fuzz builds (TETHER_FUZZING, tools/fuzz) trap there so that the
// fuzzers find such a bound.
class HeadOut {
public:
    HeadOut(std::string& out, std::size_t bound) : out_(out) {
        const std::size_t at = out_.size();
        out_.resize(at + bound);
        p_ = out_.data() + at;
        end_ = p_ + bound;
    }
    HeadOut(const HeadOut&) = delete;
    HeadOut& operator=(const HeadOut&) = delete;
    ~HeadOut() { out_.resize(static_cast<std::size_t>(p_ - out_.data())); }

    void put(std::string_view s) {
        room_for(s.size());
        raw(s);
    }
    void put(char c) {
        room_for(1);
        *p_++ = c;
    }
    /// "name: value\r\n", with one check of the room for all of it.
    void field(std::string_view name, std::string_view value) {
        room_for(field_bytes(name.size(), value.size()));
        raw(name);
        *p_++ = ':';
        *p_++ = ' ';
        raw(value);
        *p_++ = '\r';
        *p_++ = '\n';
    }
    /// What field() adds for a field of these name and value.
    static constexpr std::size_t field_bytes(std::size_t name, std::size_t value) {
        return name + value + 4;
    }

private:
    void room_for(std::size_t n) {
        if (n > static_cast<std::size_t>(end_ - p_)) [[unlikely]]
            more(n);
    }
    void raw(std::string_view s) {  // within room_for's room
        if (s.empty()) return;
        std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    [[gnu::noinline, gnu::cold]] void more(std::size_t n) {
#ifdef TETHER_FUZZING
        __builtin_trap();  // the bound fell short: a bug in a *_bytes sum
#endif
        const std::size_t used = static_cast<std::size_t>(p_ - out_.data());
        const std::size_t room = static_cast<std::size_t>(end_ - out_.data()) + n + 64;
        out_.resize(room);
        p_ = out_.data() + used;
        end_ = out_.data() + room;
    }

    std::string& out_;
    char* p_ = nullptr;
    char* end_ = nullptr;
};

constexpr std::size_t field_bytes(std::size_t name, std::size_t value) {
    return HeadOut::field_bytes(name, value);
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
    std::size_t bytes = 0;  ///< field_bytes() of every field: a bound of what is copied
};

template <class Fields>
Looked look_up(const Fields& fields) {
    Looked l;
    bool has_connection = false;
    for (const auto& f : fields) {
        l.bytes += field_bytes(f.name_string().size(), f.value().size());
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

std::string_view hop_address(const RequestRewrite& rw) {
    return rw.peer_ip.empty() ? rw.client_ip : rw.peer_ip;
}

// The request head's size bound past its fields (each term as written below).
std::size_t request_extra_bytes(const RequestHead& req, const Looked& l, const RequestRewrite& rw) {
    constexpr std::string_view kVersion = " HTTP/1.1\r\n";
    std::size_t n = req.method_string().size() + 1 + req.target().size() + kVersion.size();
    if (rw.forwarded)
        n += field_bytes(15, l.xff.size() + 2 + hop_address(rw).size()) +
             field_bytes(9, rw.client_ip.size()) + field_bytes(17, rw.proto.size()) +
             field_bytes(16, l.host.size());
    n += field_bytes(12, rw.request_id.size());
    n += field_bytes(17, 7);                      // Transfer-Encoding: chunked
    n += field_bytes(7, l.upgrade.size()) + field_bytes(10, 7);  // Upgrade, Connection: upgrade
    return n + 2;
}

void put_forwarded(const Looked& l, const RequestRewrite& rw, HeadOut& out) {
    out.put("X-Forwarded-For: ");
    if (!l.xff.empty()) {
        out.put(l.xff);
        out.put(", ");
    }
    out.put(hop_address(rw));
    out.put("\r\n");
    out.field("X-Real-IP", rw.client_ip);
    out.field("X-Forwarded-Proto", rw.proto);
    if (l.has_host) out.field("X-Forwarded-Host", l.host);
}

}  // namespace

bool is_hop_by_hop(std::string_view name, std::string_view connection_value) {
    for (auto h : kHopByHop)
        if (iequals(name, h)) return true;
    return !connection_value.empty() && listed_in(name, connection_value);
}

void write_request_head(const RequestHead& req, const RequestRewrite& rw, std::string& out) {
    const Looked l = look_up(req);
    HeadOut w(out, l.bytes + request_extra_bytes(req, l, rw));
    w.put(req.method_string());
    w.put(' ');
    w.put(req.target());
    w.put(" HTTP/1.1\r\n");
    for (const auto& f : req) {
        if (hop_by_hop(f, l.connection)) continue;
        const std::string_view name = f.name_string();
        if (f.name() == bhttp::field::expect) continue;  // tether answered 100-continue itself
        if (f.name() == bhttp::field::unknown) {  // X-Request-Id and X-Forwarded-* have no enum
            if (!rw.request_id.empty() && iequals(name, "x-request-id")) continue;
            if (rw.forwarded && is_forwarding_field(name)) continue;
        }
        w.field(name, f.value());
    }
    if (rw.forwarded) put_forwarded(l, rw, w);
    if (!rw.request_id.empty()) w.field("X-Request-Id", rw.request_id);
    if (rw.body == Framing::chunked) w.put("Transfer-Encoding: chunked\r\n");
    if (rw.upgrade) {
        w.field("Upgrade", l.upgrade);
        w.put("Connection: upgrade\r\n");
    }
    w.put("\r\n");
}

namespace {

template <class Fields>
void write_response_head_of(const StatusLine& line, const Fields& fields,
                            unsigned client_version, const ResponseRewrite& rw, std::string& out) {
    std::string_view reason = line.reason;
    if (reason.empty()) reason = bhttp::obsolete_reason(static_cast<bhttp::status>(line.status));
    const Looked l = look_up(fields);
    constexpr std::string_view kLongestConnection = "Connection: keep-alive\r\n";
    constexpr std::string_view kChunked = "Transfer-Encoding: chunked\r\n";
    HeadOut w(out, 9 + 3 + 1 + reason.size() + 2 + l.bytes + kChunked.size() +
                       kLongestConnection.size() + rw.extra.size() + 2);
    w.put(client_version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    // Three digits always (RFC 9112 status-code = 3DIGIT): the parser takes
    // "001" from a backend, which to_chars would write as "1".
    const unsigned status = line.status % 1000;  // Beast's parser: 3 digits
    const char code[3] = {static_cast<char>('0' + status / 100),
                          static_cast<char>('0' + status / 10 % 10),
                          static_cast<char>('0' + status % 10)};
    w.put(std::string_view(code, 3));
    w.put(' ');
    w.put(reason);
    w.put("\r\n");
    for (const auto& f : fields) {
        const std::string_view name = f.name_string();
        if (rw.upgrade && f.name() == bhttp::field::upgrade) {
            w.field(name, f.value());
            continue;
        }
        if (hop_by_hop(f, l.connection)) continue;
        if (rw.body == Framing::chunked && f.name() == bhttp::field::content_length) continue;
        w.field(name, f.value());
    }
    if (rw.body == Framing::chunked) w.put(kChunked);
    if (rw.upgrade) w.put("Connection: upgrade\r\n");
    else if (rw.close) w.put("Connection: close\r\n");
    else if (rw.keep_alive_header) w.put(kLongestConnection);
    w.put(rw.extra);
    w.put("\r\n");
}

}  // namespace

void write_response_head(const ResponseHead& res, unsigned client_version,
                         const ResponseRewrite& rw, std::string& out) {
    write_response_head_of(StatusLine{res.result_int(), res.reason()}, res, client_version, rw,
                           out);
}

void write_response_head(const StatusLine& line, const FlatFields& fields,
                         unsigned client_version, const ResponseRewrite& rw, std::string& out) {
    write_response_head_of(line, fields, client_version, rw, out);
}

void write_chunk_header(std::size_t size, std::string& out) {
    char hex[20];
    auto [end, ec] = std::to_chars(hex, hex + sizeof hex, size, 16);
    out.append(hex, end).append("\r\n");
}

}  // namespace tether::http
