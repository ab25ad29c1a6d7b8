// Request refusal rules; see request_check.hpp.
#include "tether/http/request_check.hpp"

#include <array>
#include <cctype>
#include <charconv>

#include <boost/beast/http/buffer_body.hpp>

#include "tether/http/strict_parser.hpp"

#include <boost/beast/core/string.hpp>

namespace tether::http {

namespace {

using boost::beast::iequals;

struct FieldCounts {
    int host = 0;
    int content_length = 0;
    int transfer_encoding = 0;
    int upgrade = 0;
    int ws_key = 0;
    int ws_version = 0;
    std::string_view host_value;
    std::string_view content_length_value;
    std::string_view transfer_encoding_value;
};

FieldCounts count_fields(const RequestHead& req) {
    FieldCounts c;
    for (const auto& f : req) {
        switch (f.name()) {
            case bhttp::field::host:
                ++c.host;
                c.host_value = f.value();
                break;
            case bhttp::field::upgrade: ++c.upgrade; break;
            case bhttp::field::sec_websocket_key: ++c.ws_key; break;
            case bhttp::field::sec_websocket_version: ++c.ws_version; break;
            case bhttp::field::content_length:
                ++c.content_length;
                c.content_length_value = f.value();
                break;
            case bhttp::field::transfer_encoding:
                ++c.transfer_encoding;
                c.transfer_encoding_value = f.value();
                break;
            default: break;
        }
    }
    return c;
}

bool valid_target(const RequestHead& req) {
    const std::string_view t = req.target();
    if (t.empty()) return false;
    if (t == "*") return req.method() == bhttp::verb::options;
    return t.front() == '/';
}

// RFC 3986 host [":" port]: reg-name / IPv4 / IP-literal characters only (no
// space, "/", "@", "?", "#", "\\" or controls). An empty Host is legal.
// A table, not std::isalnum (a call per character, and the locale's idea
// of a letter) and a search of the specials.
constexpr std::array<bool, 256> kHostChars = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (char c : std::string_view("-._~!$&'()*+,;=:[]%")) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

bool valid_host(std::string_view h) {
    for (unsigned char ch : h)
        if (!kHostChars[ch]) return false;
    return true;
}

// A Sec-WebSocket-Key is the base64 of 16 bytes: 22 characters and "==".
bool valid_ws_key(std::string_view k) {
    if (k.size() != 24 || k.substr(22) != "==") return false;
    for (std::size_t i = 0; i < 22; ++i) {
        const unsigned char ch = static_cast<unsigned char>(k[i]);
        if (!std::isalnum(ch) && ch != '+' && ch != '/') return false;
    }
    // The last character carries 2 bits of the 16th byte and 4 zero bits.
    return std::string_view("AQgw").find(k[21]) != std::string_view::npos;
}

// RFC 6455 4.2.1: GET, HTTP/1.1, Upgrade: websocket, Connection containing
// "upgrade", one key (base64 of 16 bytes), one version 13 (else 426).
errc check_websocket(const RequestHead& req, const FieldCounts& c) {
    if (req.method() != bhttp::verb::get || req.version() != 11) return errc::bad_request;
    if (c.upgrade != 1 || c.ws_key != 1 || c.ws_version > 1) return errc::bad_request;
    auto key = req.find(bhttp::field::sec_websocket_key);
    if (!valid_ws_key(key->value())) return errc::bad_request;
    auto version = req.find(bhttp::field::sec_websocket_version);
    if (version == req.end() || version->value() != "13") return errc::upgrade_required;
    return errc::ok;
}

bool has_token(std::string_view v, std::string_view want) {
    while (!v.empty()) {
        auto comma = v.find(',');
        auto token = v.substr(0, comma);
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
            token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
            token.remove_suffix(1);
        if (iequals(token, want)) return true;
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    return false;
}

bool connection_has_upgrade(const RequestHead& req) {
    for (const auto& f : req)
        if (f.name() == bhttp::field::connection && has_token(f.value(), "upgrade")) return true;
    return false;
}

bool upgrade_names_websocket(const RequestHead& req) {
    for (const auto& f : req)
        if (f.name() == bhttp::field::upgrade && has_token(f.value(), "websocket")) return true;
    return false;
}

}  // namespace

bool folded_field(std::string_view name, std::string_view value) {
    // Unfolded, Beast hands out a view into the input right after "name:" and
    // its whitespace; a folded value was rebuilt elsewhere (or starts on the
    // next line). Walk from the colon, stopping at the first byte that is not
    // whitespace: the input always holds the line's CR, so this stays inside it.
    const char* p = name.data() + name.size();
    if (*p != ':') return true;
    for (++p; p != value.data(); ++p)
        if (*p != ' ' && *p != '\t') return true;
    return false;
}

bool framing_lookalike(std::string_view name) {
    return iequals(name, "content_length") || iequals(name, "transfer_encoding");
}

RequestVerdict check_request(const RequestHead& req, std::uint64_t max_body_size) {
    RequestVerdict v;
    if (req.version() != 11 && req.version() != 10) return {errc::bad_request};
    if (req.method() == bhttp::verb::connect || !valid_target(req)) return {errc::bad_request};
    const FieldCounts c = count_fields(req);
    if (c.host > 1 || (req.version() == 11 && c.host == 0)) return {errc::bad_request};
    if (c.content_length > 1 || c.transfer_encoding > 1) return {errc::bad_request};
    if (c.content_length && c.transfer_encoding) return {errc::bad_request};
    if (c.transfer_encoding && !iequals(c.transfer_encoding_value, "chunked"))
        return {errc::bad_request};
    // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
    if (c.transfer_encoding && req.version() == 10) return {errc::bad_request};
    if (c.host && !valid_host(c.host_value)) return {errc::bad_request};
    if (c.content_length) {
        std::uint64_t n = 0;
        const auto s = c.content_length_value;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (ec != std::errc{} || p != s.data() + s.size()) return {errc::bad_request};
        if (n > max_body_size) return {errc::body_too_large};
    }
    // Other upgrades (h2c...) are not offered: Upgrade is hop-by-hop and the
    // request is forwarded as a plain one. One naming websocket must be a
    // valid RFC 6455 handshake, Connection: upgrade included, without a body.
    if (upgrade_names_websocket(req)) {
        if (!connection_has_upgrade(req)) return {errc::bad_request};
        v.error = check_websocket(req, c);
        v.websocket_upgrade = v.error == errc::ok;
        if (v.websocket_upgrade && (c.content_length || c.transfer_encoding))
            return {errc::bad_request};
    }
    return v;
}

errc check_chunked_prefix(std::string_view bytes, std::uint64_t max_body_size) {
    static constexpr std::string_view kHead =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    StrictRequestParser<bhttp::buffer_body> p;
    p.body_limit(max_body_size);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(kHead.data(), kHead.size()), ec);
    char scratch[4096];  // the body is decoded and dropped
    while (!bytes.empty() && !p.is_done()) {
        p.get().body().data = scratch;
        p.get().body().size = sizeof scratch;
        const std::size_t used = p.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
        bytes.remove_prefix(used);
        if (ec == bhttp::error::need_buffer) {
            ec = {};
            continue;
        }
        if (ec == bhttp::error::need_more) return errc::ok;
        if (ec == bhttp::error::body_limit) return errc::body_too_large;
        if (ec) return errc::bad_request;
        if (used == 0) break;
    }
    return errc::ok;
}

}  // namespace tether::http
