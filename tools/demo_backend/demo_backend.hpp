// tether-demo-backend's shared parts (see main.cpp for what the program does): the limits,
// the server's identity and counters (Server), one connection (Conn), and what main.cpp's
// connection loop calls in endpoints.cpp.
// Threading: a Conn belongs to the coroutine of its connection, on the io_context (thread)
// that accepted it; Server is shared by every thread (atomics, and fields set before start).
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace demo_backend {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using beast::error_code;

constexpr auto kTok = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::uint64_t kBodyLimit = 1024 * 1024;  // every request body except /echo
constexpr std::size_t kPiece = 64 * 1024;          // body buffer and /bytes write size
constexpr std::size_t kWsMessageMax = 16 * 1024 * 1024;
constexpr std::string_view kAlphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
static_assert(kAlphabet.size() == 64 && kPiece % 64 == 0);

using Parser = http::request_parser<http::buffer_body>;
using Request = http::request<http::buffer_body>;

// Identity and counters shared by every thread; lives until main returns.
struct Server {
    std::string name;
    std::string hello;    // "hello from NAME"
    std::string pattern;  // kPiece bytes of kAlphabet: every /bytes write starts at offset 0
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> websockets{0};
    std::atomic<std::uint64_t> health_checks{0};  // GET /healthz answered
    std::atomic<unsigned> health_code{200};       // what /healthz answers (see /set-health)
    std::atomic<std::uint64_t> sessions{0};  // Engine.IO handshakes answered
};

// One client connection, owned by its run_connection coroutine.
struct Conn {
    tcp::socket sock;
    Server& srv;
    beast::flat_buffer buf;         // bytes read past the current parse point
    std::unique_ptr<char[]> piece;  // kPiece bytes for request bodies, made on first use
    std::string raw_head;           // the head as received, kept for /headers only
};

/// Value of `key` in the query string of `target` ("" for a bare key), if present.
std::optional<std::string_view> query_param(std::string_view target, std::string_view key);
/// `s` as a decimal number; `fallback` when absent or not one.
std::uint64_t to_uint(std::optional<std::string_view> s, std::uint64_t fallback);
/// Answers one request whose head is in `parser`; true when the connection may be reused.
asio::awaitable<bool> handle(Conn& c, Parser& parser);
/// Answers a head that could not be parsed (400, or 431 when too large).
asio::awaitable<void> reject(Conn& c, error_code ec);

}  // namespace demo_backend
