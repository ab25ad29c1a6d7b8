// Request refusal rules; see request_check.hpp.
#include "tether/http/request_check.hpp"

#include <charconv>

#include <boost/beast/core/string.hpp>

namespace tether::http {

namespace {

using boost::beast::iequals;

struct FieldCounts {
    int host = 0;
    int content_length = 0;
    int transfer_encoding = 0;
    std::string_view content_length_value;
    std::string_view transfer_encoding_value;
};

FieldCounts count_fields(const RequestHead& req) {
    FieldCounts c;
    for (const auto& f : req) {
        switch (f.name()) {
            case bhttp::field::host: ++c.host; break;
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

// RFC 6455 4.2.1: GET, HTTP/1.1, Upgrade: websocket, Connection containing
// "upgrade", a 16-byte base64 key (24 characters), version 13.
errc check_websocket(const RequestHead& req) {
    if (req.method() != bhttp::verb::get || req.version() != 11) return errc::bad_request;
    auto key = req.find(bhttp::field::sec_websocket_key);
    if (key == req.end() || key->value().size() != 24) return errc::bad_request;
    auto version = req.find(bhttp::field::sec_websocket_version);
    if (version == req.end() || version->value() != "13") return errc::upgrade_required;
    return errc::ok;
}

bool connection_has_upgrade(const RequestHead& req) {
    for (const auto& f : req) {
        if (f.name() != bhttp::field::connection) continue;
        std::string_view v = f.value();
        while (!v.empty()) {
            auto comma = v.find(',');
            auto token = v.substr(0, comma);
            while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
            while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
            if (iequals(token, "upgrade")) return true;
            if (comma == std::string_view::npos) break;
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

}  // namespace

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
    if (c.content_length) {
        std::uint64_t n = 0;
        const auto s = c.content_length_value;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (ec != std::errc{} || p != s.data() + s.size()) return {errc::bad_request};
        if (n > max_body_size) return {errc::body_too_large};
    }
    auto upgrade = req.find(bhttp::field::upgrade);
    // Other upgrades (h2c...) are not offered: Upgrade is hop-by-hop and the
    // request is forwarded as a plain one.
    if (upgrade != req.end() && connection_has_upgrade(req) &&
        iequals(upgrade->value(), "websocket")) {
        v.error = check_websocket(req);
        v.websocket_upgrade = v.error == errc::ok;
        if (v.websocket_upgrade && (c.content_length || c.transfer_encoding))
            return {errc::bad_request};
    }
    return v;
}

}  // namespace tether::http
