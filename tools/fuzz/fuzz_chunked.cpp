// libFuzzer target: chunked request-body decoding (Beast's chunk parser with
// tether's chunk-extension limit) on bytes split at an input-chosen point,
// checked against a second parse fed one byte at a time. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/http/string_body.hpp>

#include "tether/http/strict_parser.hpp"

namespace bhttp = boost::beast::http;

namespace {

constexpr std::string_view kHead =
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

struct Result {
    bool done = false;
    bool failed = false;
    std::string body;
};

Result parse(std::string_view body, std::size_t step) {
    tether::http::StrictRequestParser<bhttp::string_body> p;
    p.body_limit(1 << 16);
    boost::beast::error_code ec;
    std::string in(kHead);
    std::size_t fed = 0;
    std::size_t used = 0;
    while (!p.is_done()) {
        if (used == in.size()) {
            if (fed == body.size()) break;
            const std::size_t n = std::min(step, body.size() - fed);
            in.append(body.substr(fed, n));
            fed += n;
        }
        used += p.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
        if (ec == bhttp::error::need_more) {
            ec = {};
            if (fed == body.size()) break;
            const std::size_t n = std::min(step, body.size() - fed);
            in.append(body.substr(fed, n));
            fed += n;
            continue;
        }
        if (ec) return {false, true, {}};
    }
    return {p.is_done(), false, p.is_done() ? p.get().body() : std::string()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 4096) return 0;
    std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
    const Result a = parse(body, std::max<std::size_t>(1, data[0]));
    const Result b = parse(body, 1);
    // The decoded body never exceeds the input, and the way bytes arrive
    // never turns a refused body into an accepted one or changes what is
    // accepted. (Beast may still be waiting for more bytes in one feeding
    // where it already failed in another: an unterminated quoted chunk
    // extension is found bad byte by byte, but awaits its end when the line
    // came whole. Neither forwards anything, so that is not a divergence.)
    if (a.body.size() > body.size()) __builtin_trap();
    if ((a.done && b.failed) || (a.failed && b.done)) __builtin_trap();
    if (a.done && b.done && a.body != b.body) __builtin_trap();
    return 0;
}
