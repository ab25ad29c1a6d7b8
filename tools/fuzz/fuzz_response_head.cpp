// libFuzzer target: a backend's response head through the path the session
// takes (ResponseParser, whose fields are a FlatFields), then the head tether
// writes to the client, under a rewrite chosen by the first input byte. The
// same head parsed by Beast's own response parser (basic_fields) must give
// the same written head up to the order of differently named fields: the two
// write_response_head overloads are one template over two field containers,
// FlatFields keeps the backend's order and basic_fields puts a field after
// the last one of its name. The written head must parse again.
// In fuzz builds the head writer traps when its size bound falls short
// (headers.cpp, TETHER_FUZZING). Single-threaded.
#include <cstddef>
#include <cctype>
#include <cstdint>
#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "tether/http/response_parser.hpp"

namespace bhttp = boost::beast::http;
using namespace tether::http;

namespace {

template <class Parser>
bool parse_head(Parser& p, std::string_view raw, std::uint32_t limit = 8192) {
    p.eager(false);
    p.header_limit(limit);
    boost::beast::error_code ec;
    p.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    return (!ec || ec == bhttp::error::need_more) && p.is_header_done();
}

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    std::string_view raw(reinterpret_cast<const char*>(data + 1), size - 1);
    ResponseParser flat;
    if (!parse_head(flat, raw)) return 0;
    bhttp::response_parser<bhttp::empty_body, FieldsAllocator> beast;
    if (!parse_head(beast, raw)) __builtin_trap();  // same parser, same verdict

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
    return 0;
}
