// libFuzzer target: a backend's response through the parser the session uses
// (ResponseParser: tether's own for the usual heads, Beast's for the rest)
// and, as the reference, Beast's own response parser (buffer_body, its
// fields recorded as they come), both fed the same bytes the same way: in up
// to three reads split where the input says, each put as the session puts
// (all that is buffered; need_more: read on; need_buffer: a fresh body
// buffer of the chosen size), put_eof at the end of the input. The two must
// agree at every step: bytes used, error, head done, message done; on the
// head (status, version, reason, each field's enum, name and value in order);
// on the framing read when the head is done (keep_alive, need_eof, chunked,
// upgrade, content_length, content_length_remaining); on the body bytes; on
// the fields after the body (trailers). Settings from the input: skip (a HEAD
// request's response), header_limit, body_limit, body buffer size.
// Then the head tether writes to the client under a rewrite the first byte
// picks must be, up to the order of differently named fields (FlatFields
// keeps the backend's order, basic_fields puts a field after the last of its
// name), the one written from Beast's basic_fields, and must parse again.
// In fuzz builds the head writer traps when its size bound falls short
// (headers.cpp, TETHER_FUZZING). Input: mode byte (the rewrite), options
// byte, two split bytes, then the response. Single-threaded.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "response_diff.hpp"
#include "tether/http/response_parser.hpp"

namespace bhttp = boost::beast::http;
using namespace tether::http;
using namespace tether::http::diff;

namespace {

// The head's lines grouped by field name (case-insensitive), each name's
// lines in their order; the status line first.
std::map<std::string, std::vector<std::string_view>> by_name(std::string_view head) {
    std::map<std::string, std::vector<std::string_view>> lines;
    for (bool first = true; !head.empty(); first = false) {
        const std::size_t eol = std::min(head.find("\r\n"), head.size());
        const std::string_view line = head.substr(0, eol);
        std::string name(first ? std::string_view() : line.substr(0, line.find(':')));
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        lines[name].push_back(line);
        head.remove_prefix(std::min(eol + 2, head.size()));
    }
    return lines;
}

template <class Parser>
bool parse_head(Parser& p, std::string_view raw, std::uint32_t limit) {
    p.header_limit(limit);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    return (!ec || ec == bhttp::error::need_more) && p.is_header_done();
}

// The head written from the flat fields against the one from basic_fields
// (each parser given the whole input, the head alone: no trailer's fields).
void check_written_head(std::uint8_t mode, std::string_view raw) {
    ResponseParser flat;
    flat.skip(true);
    if (!parse_head(flat, raw, 1 << 20)) return;
    bhttp::response_parser<bhttp::empty_body, tether::http::FieldsAllocator> beast;
    beast.skip(true);
    if (!parse_head(beast, raw, 1 << 20)) __builtin_trap();  // the verdicts differ
    ResponseRewrite rw;
    rw.body = static_cast<Framing>(mode & 3);
    rw.close = (mode & 4) != 0;
    rw.keep_alive_header = (mode & 8) != 0;
    rw.upgrade = (mode & 16) != 0;
    if (mode & 32) rw.extra = "Set-Cookie: tether=abc; Path=/; HttpOnly\r\n";
    const unsigned version = (mode & 64) ? 10 : 11;
    std::string from_flat = "x", from_beast = "x";  // written after what is there
    write_response_head(flat.get(), flat.fields(), version, rw, from_flat);
    write_response_head(beast.get(), version, rw, from_beast);
    if (from_flat.size() != from_beast.size() || by_name(from_flat) != by_name(from_beast))
        __builtin_trap();
    bhttp::response_parser<bhttp::empty_body> again;
    again.skip(true);  // a head alone, whatever its framing says
    // (what tether adds may take it past 8192)
    if (!parse_head(again, std::string_view(from_flat).substr(1), 1 << 20)) __builtin_trap();
    if (again.get().result_int() != flat.get().result_int()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::uint8_t mode = data[0], options = data[1];
    const std::string_view raw(reinterpret_cast<const char*>(data + 4), size - 4);
    std::size_t a = raw.size() * data[2] / 256, b = raw.size() * data[3] / 256;
    if (a > b) std::swap(a, b);
    const std::vector<std::string_view> pieces = {raw.substr(0, a), raw.substr(a, b - a),
                                                  raw.substr(b)};
    static constexpr std::uint32_t kHeaderLimits[] = {8192, 24, 100, 65536};
    static constexpr std::size_t kBodyBuffers[] = {4096, 1, 3, 16, 100, 1000, 8192, 65536};
    Settings s;
    s.skip = (options & 1) != 0;
    s.header_limit = kHeaderLimits[(options >> 1) & 3];
    s.body_buffer = kBodyBuffers[(options >> 3) & 7];
    switch (options >> 6) {
        case 0: s.body_limit = boost::optional<std::uint64_t>();  break;  // the session's
        case 1: break;
        case 2: s.body_limit = boost::optional<std::uint64_t>(10); break;
        default: s.body_limit = boost::optional<std::uint64_t>(1000); break;
    }

    const auto [mine, beast] = both(pieces, s);
    if (!(mine == beast)) __builtin_trap();
    check_written_head(mode, raw);
    return 0;
}
