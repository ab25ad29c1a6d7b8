// tether-demo-backend's HTTP endpoints (listed in main.cpp's opening comment): one request
// whose head is parsed, its body read, echoed or discarded, and its answer written.
// Threading: the coroutine of the request's connection (demo_backend.hpp).
#include <charconv>
#include <string>

#include "demo_backend.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on answer()'s coroutine frame
// in the TSan build (-DTETHER_TSAN=ON -DTETHER_WERROR=ON, since this file was
// split out of main.cpp): asio's awaitable_frame has a matching operator
// new/delete pair (RecyclingPool, asio_frames.hpp), and the warning depends on
// how the frame's allocation gets inlined. As src/tls/client_stream.cpp.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace demo_backend {

// Value of `key` in the query string of `target` ("" for a bare key), if present.
std::optional<std::string_view> query_param(std::string_view target, std::string_view key) {
    for (auto q = target.find('?'); q != std::string_view::npos;) {
        target.remove_prefix(q + 1);
        q = target.find('&');
        auto item = target.substr(0, q);
        auto eq = item.find('=');
        if (item.substr(0, eq) == key)
            return eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    }
    return std::nullopt;
}

// Decimal `s`, or `fallback` when absent or not a number.
std::uint64_t to_uint(std::optional<std::string_view> s, std::uint64_t fallback) {
    std::uint64_t v = 0;
    if (!s) return fallback;
    auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    return ec == std::errc{} && end == s->data() + s->size() ? v : fallback;
}

// A response to `req` carrying the headers every answer has.
template <class Body>
http::response<Body> make_response(Conn const& c, Request const& req, unsigned code) {
    http::response<Body> res{static_cast<http::status>(code), req.version()};
    res.set("X-Backend", c.srv.name);
    res.keep_alive(req.keep_alive());
    return res;
}

// Writes a complete response (headers only for HEAD); true when the connection may be reused.
asio::awaitable<bool> send_text(Conn& c, Request const& req, unsigned code, std::string body,
                                std::string_view type = "text/plain") {
    auto res = make_response<http::string_body>(c, req, code);
    res.set(http::field::content_type, type);
    if (code != 204 && code != 304) {
        res.content_length(body.size());
        if (req.method() != http::verb::head) res.body() = std::move(body);
    }
    auto [ec, n] = co_await http::async_write(c.sock, res, kTok);
    co_return !ec && res.keep_alive();
}

// Writes the head of a response whose body the caller streams.
asio::awaitable<error_code> send_head(Conn& c, http::response<http::empty_body>& res) {
    http::response_serializer<http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(c.sock, sr, kTok);
    co_return ec;
}

// Sends "100 Continue" when the client waits for it before sending its body.
asio::awaitable<bool> send_continue(Conn& c, Parser const& parser) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (parser.is_done() || !beast::iequals(parser.get()[http::field::expect], "100-continue"))
        co_return true;
    auto [ec, n] = co_await asio::async_write(c.sock, asio::buffer(kContinue), kTok);
    co_return !ec;
}

// Parses the next piece of the request body into c.piece; returns the bytes stored there.
asio::awaitable<std::pair<error_code, std::size_t>> read_piece(Conn& c, Parser& parser) {
    if (!c.piece) c.piece = std::make_unique<char[]>(kPiece);
    auto& body = parser.get().body();
    body.data = c.piece.get();
    body.size = kPiece;
    auto [ec, n] = co_await http::async_read_some(c.sock, c.buf, parser, kTok);
    if (ec == http::error::need_buffer) ec = {};
    co_return std::pair{ec, kPiece - body.size};
}

// Writes `data` raw or as one chunk; chunked without data: the last chunk. (No co_await inside
// ?: here: GCC 12 miscompiles it in nested conditionals.)
asio::awaitable<error_code> write_piece(Conn& c, asio::const_buffer data, bool chunked) {
    std::tuple<error_code, std::size_t> r;
    if (!chunked)
        r = co_await asio::async_write(c.sock, data, kTok);
    else if (data.size() > 0)
        r = co_await asio::async_write(c.sock, http::make_chunk(data), kTok);
    else
        r = co_await asio::async_write(c.sock, http::make_chunk_last(), kTok);
    co_return std::get<0>(r);
}

// POST|PUT /echo: the response head first, then each body piece as soon as it is parsed.
asio::awaitable<bool> echo(Conn& c, Parser& parser) {
    auto const& req = parser.get();
    auto res = make_response<http::empty_body>(c, req, 200);
    auto type = req[http::field::content_type];
    res.set(http::field::content_type, type.empty() ? "application/octet-stream" : type);
    bool const chunked = !parser.content_length() && !parser.is_done();
    chunked ? res.chunked(true) : res.content_length(parser.content_length().value_or(0));
    auto ec = co_await send_head(c, res);
    while (!ec && !parser.is_done()) {
        auto [read_ec, got] = co_await read_piece(c, parser);
        ec = read_ec;
        if (!ec && got > 0) ec = co_await write_piece(c, {c.piece.get(), got}, chunked);
    }
    if (!ec && chunked) ec = co_await write_piece(c, {}, true);
    co_return !ec && res.keep_alive();
}

// POST|PUT /sink: reads and discards the body piece by piece, then answers its byte count.
asio::awaitable<bool> sink(Conn& c, Parser& parser) {
    std::uint64_t total = 0;
    error_code ec;
    while (!ec && !parser.is_done()) {
        auto [read_ec, got] = co_await read_piece(c, parser);
        ec = read_ec;
        total += got;
    }
    if (ec) co_return false;
    co_return co_await send_text(c, parser.get(), 200, std::to_string(total) + "\n");
}

// GET /bytes?n=N&mode=length|chunked|close: N pattern bytes in kPiece writes.
asio::awaitable<bool> send_bytes(Conn& c, Request const& req) {
    auto const total = to_uint(query_param(req.target(), "n"), 0);
    auto const mode = query_param(req.target(), "mode").value_or("length");
    if (mode != "length" && mode != "chunked" && mode != "close")
        co_return co_await send_text(c, req, 400, "bad mode\n");
    bool const chunked = mode == "chunked" && req.version() >= 11;
    bool const close = mode != "length" && !chunked;  // HTTP/1.0 cannot chunk: close-delimit
    auto res = make_response<http::empty_body>(c, req, 200);
    res.set(http::field::content_type, "application/octet-stream");
    chunked ? res.chunked(true) : close ? res.keep_alive(false) : res.content_length(total);
    auto ec = co_await send_head(c, res);
    if (req.method() == http::verb::head) co_return !ec && !close;
    for (std::uint64_t sent = 0; !ec && sent < total;) {
        auto const len = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, total - sent));
        ec = co_await write_piece(c, asio::buffer(c.srv.pattern.data(), len), chunked);
        sent += len;
    }
    if (!ec && chunked) ec = co_await write_piece(c, {}, true);
    co_return !ec && !close && res.keep_alive();
}

// GET /stats body (the name is printed as given: names are identifiers).
std::string stats_json(Server const& srv) {
    return "{\"name\":\"" + srv.name + "\",\"connections\":" + std::to_string(srv.connections) +
           ",\"requests\":" + std::to_string(srv.requests) +
           ",\"websockets\":" + std::to_string(srv.websockets) +
           ",\"health_checks\":" + std::to_string(srv.health_checks) + "}\n";
}

// GET /headers body: the head as received (request line, then the header lines in received
// order and case; beast's fields would group repeated names), with LF line ends.
std::string headers_text(std::string_view raw) {
    std::string out;
    for (auto eol = raw.find("\r\n"); eol != 0 && eol != raw.npos; eol = raw.find("\r\n")) {
        out.append(raw.substr(0, eol)) += '\n';  // up to the blank line that ends the head
        raw.remove_prefix(eol + 2);
    }
    return out;
}

// Answers the endpoints without a request body; true when the connection may be reused.
asio::awaitable<bool> answer(Conn& c, Request const& req, std::string_view path) {
    if (path == "/healthz") {
        ++c.srv.health_checks;
        auto const code = c.srv.health_code.load();
        co_return co_await send_text(c, req, code, code < 300 ? "ok\n" : "failing\n");
    }
    if (path == "/set-health") {  // a switch for the health-check tests
        auto const code = to_uint(query_param(req.target(), "code"), 0);
        if (code < 200 || code > 599)
            co_return co_await send_text(c, req, 400, "code must be 200-599\n");
        c.srv.health_code = static_cast<unsigned>(code);
        co_return co_await send_text(c, req, 200, "healthz answers " + std::to_string(code) + "\n");
    }
    if (path == "/stats")
        co_return co_await send_text(c, req, 200, stats_json(c.srv), "application/json");
    if (path == "/headers") co_return co_await send_text(c, req, 200, headers_text(c.raw_head));
    if (path == "/bytes") co_return co_await send_bytes(c, req);
    if (path == "/sleep") {
        auto const ms = to_uint(query_param(req.target(), "ms"), 0);
        asio::steady_timer timer{c.sock.get_executor(), std::chrono::milliseconds(ms)};
        co_await timer.async_wait(kTok);
        co_return co_await send_text(c, req, 200, "slept " + std::to_string(ms) + "\n");
    }
    if (path == "/socket.io/") {
        // A minimal Engine.IO 4 polling peer, for benchmarks of sid affinity:
        // a handshake (no sid) gets an open packet with a new sid; a request
        // with a sid gets a noop packet naming this server.
        if (auto sid = query_param(req.target(), "sid"); sid && !sid->empty())
            co_return co_await send_text(c, req, 200, "6" + c.srv.name);
        auto const n = c.srv.sessions.fetch_add(1, std::memory_order_relaxed);
        co_return co_await send_text(
            c, req, 200,
            R"(0{"sid":")" + c.srv.name + "-" + std::to_string(n) +
                R"(","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000})",
            "text/plain; charset=UTF-8");
    }
    if (path == "/status") {
        auto const code = to_uint(query_param(req.target(), "code"), 0);
        if (code < 200 || code > 599)
            co_return co_await send_text(c, req, 400, "code must be 200-599\n");
        co_return co_await send_text(c, req, static_cast<unsigned>(code),
                                     "status " + std::to_string(code) + "\n");
    }
    co_return co_await send_text(c, req, 200, c.srv.hello + "\n");
}

// Answers one request whose head is in `parser`; true when the connection may be reused.
asio::awaitable<bool> handle(Conn& c, Parser& parser) {
    auto const& req = parser.get();
    auto const path = req.target().substr(0, req.target().find('?'));
    error_code ec;
    if (path == "/close" || path == "/reset") {
        if (path == "/reset") c.sock.set_option(asio::socket_base::linger(true, 0), ec);
        c.sock.close(ec);
        co_return false;
    }
    bool const post_or_put = req.method() == http::verb::post || req.method() == http::verb::put;
    bool const is_echo = path == "/echo" && post_or_put;
    if (path == "/sink" && post_or_put) {
        if (!co_await send_continue(c, parser)) co_return false;
        co_return co_await sink(c, parser);
    }
    if (!is_echo && parser.content_length().value_or(0) > kBodyLimit) {
        co_await send_text(c, req, 413, "body too large\n");
        co_return false;
    }
    if (!is_echo) parser.body_limit(kBodyLimit);  // chunked bodies are counted while parsed
    if (!co_await send_continue(c, parser)) co_return false;
    if (is_echo) co_return co_await echo(c, parser);
    while (!ec && !parser.is_done()) ec = (co_await read_piece(c, parser)).first;  // discard
    if (ec == http::error::body_limit) co_await send_text(c, req, 413, "body too large\n");
    if (ec) co_return false;
    co_return co_await answer(c, req, path);
}

// Answers a head that could not be parsed (400, or 431 when too large); silent when the peer
// simply went away.
asio::awaitable<void> reject(Conn& c, error_code ec) {
    if (ec.category() != http::make_error_code(http::error::header_limit).category() ||
        ec == http::error::end_of_stream || ec == http::error::partial_message)
        co_return;
    Request req{http::verb::get, "/", 11};
    req.keep_alive(false);
    bool const too_large = ec == http::error::header_limit;
    co_await send_text(c, req, too_large ? 431 : 400, too_large ? "head too large\n" : "bad\n");
}

}  // namespace demo_backend
