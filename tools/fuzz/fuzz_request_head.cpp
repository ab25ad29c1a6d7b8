// libFuzzer target: a request head through the path the client session takes
// (tether's strict Beast parser, then check_request, then the head written
// upstream under a rewrite the first byte also picks). The first input byte
// splits the rest in two puts, as a head arriving in two reads. The written
// head must parse again with the same method and target; in fuzz builds the
// head writer traps when its size bound falls short (headers.cpp,
// TETHER_FUZZING). Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/http/empty_body.hpp>

#include "tether/http/headers.hpp"
#include "tether/http/request_check.hpp"
#include "tether/http/strict_parser.hpp"

namespace bhttp = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t split = data[0];
    std::string_view raw(reinterpret_cast<const char*>(data + 1), size - 1);
    tether::http::StrictRequestParser<bhttp::empty_body> p;
    p.eager(false);
    p.header_limit(8192);
    boost::beast::error_code ec;
    std::size_t used = 0;
    for (std::string_view piece : {raw.substr(0, split), raw}) {
        if (piece.size() <= used) continue;
        used += p.put(boost::asio::buffer(piece.data() + used, piece.size() - used), ec);
        if (ec == bhttp::error::need_more) ec = {};
        if (ec || p.is_header_done()) break;
    }
    if (ec || !p.is_header_done()) return 0;
    const auto verdict = tether::http::check_request(p.get(), 1 << 20);
    if (verdict.error != tether::errc::ok) return 0;
    // What check_request lets through has one framing and at most one Host.
    const auto& req = p.get();
    const auto cl = req.count(bhttp::field::content_length);
    const auto te = req.count(bhttp::field::transfer_encoding);
    if ((cl && te) || cl > 1 || te > 1 || req.count(bhttp::field::host) > 1) __builtin_trap();
    if (verdict.websocket_upgrade && (cl || te)) __builtin_trap();

    tether::http::RequestRewrite rw;
    rw.client_ip = "203.0.113.7";
    rw.proto = (split & 1) ? "https" : "http";
    if (split & 2) rw.request_id = "0123456789abcdef0123456789abcdef";
    rw.forwarded = (split & 4) == 0;
    rw.upgrade = verdict.websocket_upgrade;
    if (p.chunked()) rw.body = tether::http::Framing::chunked;  // as the session does
    else if (p.content_length()) rw.body = tether::http::Framing::length;
    if (split & 32) rw.peer_ip = "198.51.100.1";
    std::string out = "x";  // written after what is there
    tether::http::write_request_head(req, rw, out);
    tether::http::StrictRequestParser<bhttp::empty_body> again;
    again.eager(false);
    again.header_limit(1 << 20);
    again.put(boost::asio::buffer(out.data() + 1, out.size() - 1), ec);
    if ((ec && ec != bhttp::error::need_more) || !again.is_header_done()) __builtin_trap();
    if (again.get().method_string() != req.method_string() || again.get().target() != req.target())
        __builtin_trap();
    return 0;
}
