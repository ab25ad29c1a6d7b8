// tether-demo-backend: the HTTP/1.1 + WebSocket server that the README runs three of behind
// tether, the backend of the integration tests and the fast backend of the benchmarks.
//
//   tether-demo-backend --name NAME --listen HOST:PORT [--threads N]
//
// Once bound it prints one line `listening HOST:PORT` (the actual port); SIGTERM and SIGINT
// exit 0 at once. Every response carries `X-Backend: NAME`.
//   /healthz "ok\n" (or the status set by /set-health?code=N, 200-599, for health-check tests)
//   | /stats JSON counters (health_checks counts /healthz) | /headers the request head as received
//   POST|PUT /echo: the body streamed back through a 64 KiB buffer (Content-Length when the
//     request had one, chunked otherwise) | /bytes?n=N&mode=length|chunked|close: N bytes of
//     kAlphabet repeated, in 64 KiB writes | /sleep?ms=N | /status?code=N
//   POST|PUT /sink: the body read through a 64 KiB buffer and discarded (any size), then
//     200 with the byte count as text (uploads that need no echo: no read/write deadlock)
//   /close, /reset: close (FIN) or abort (RST) without answering
//   /socket.io/ (benchmarks of sid affinity): without `sid`, an Engine.IO 4 open packet with
//     a new sid "NAME-N"; with one, the noop packet "6NAME"
//   anything else: "hello from NAME\n". HEAD gets headers only. Endpoints match on the path
//   whatever the method, except /echo and /sink, which need POST or PUT.
//   `Upgrade: websocket` on any path: echo (text as text, binary as binary, up to 16 MiB);
//   `whoami` gets NAME; `?hello=1` first sends "hello from NAME".
//
// Threading: one io_context per thread, each with its own acceptor on the same port
// (SO_REUSEPORT when N > 1). A connection lives on the io_context that accepted it, in one
// coroutine, so nothing needs a strand; counters are process-wide atomics. Contract: one
// request at a time per connection, answered in order (pipelining-safe); a request's body is
// consumed before the next head is read. No idle timeout: the proxy in front owns deadlines.
#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <charconv>
#include <csignal>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

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

// Logs what escapes a coroutine (nothing should).
void log_escape(std::exception_ptr e) {
    try {
        if (e) std::rethrow_exception(e);
    } catch (std::exception const& x) {
        std::cerr << "tether-demo-backend: " << x.what() << std::endl;
    }
}

// A WebSocket session after the handshake: echoes messages until the peer closes. It runs as
// its own coroutine so that the HTTP connection's parser and buffers are freed meanwhile.
asio::awaitable<void> echo_websocket(websocket::stream<tcp::socket> ws, Server& srv, bool hello) {
    error_code ec;
    std::size_t n = 0;
    if (hello) std::tie(ec, n) = co_await ws.async_write(asio::buffer(srv.hello), kTok);
    beast::flat_buffer msg;
    while (!ec) {
        std::tie(ec, n) = co_await ws.async_read(msg, kTok);
        if (ec) break;
        ws.text(ws.got_text());
        bool const whoami =
            ws.got_text() && msg.size() == 6 && beast::buffers_to_string(msg.data()) == "whoami";
        auto const out = whoami ? asio::const_buffer(srv.name.data(), srv.name.size()) : msg.data();
        std::tie(ec, n) = co_await ws.async_write(out, kTok);
        msg.consume(msg.size());
        if (msg.capacity() > kPiece) msg.shrink_to_fit();  // idle sessions stay small
    }
}

// Accepts the upgrade in `req` and hands the stream to echo_websocket.
asio::awaitable<void> accept_websocket(Conn& c, Request const& req) {
    websocket::stream<tcp::socket> ws{std::move(c.sock)};
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.idle_timeout = websocket::stream_base::none();  // idle sessions live forever
    timeouts.keep_alive_pings = false;
    ws.set_option(timeouts);
    websocket::permessage_deflate pmd;
    pmd.server_enable = false;
    ws.set_option(pmd);
    ws.set_option(websocket::stream_base::decorator(
        [&srv = c.srv](websocket::response_type& res) { res.set("X-Backend", srv.name); }));
    ws.read_message_max(kWsMessageMax);
    ws.auto_fragment(false);
    error_code ec;
    if (c.buf.size() == 0) {
        std::tie(ec) = co_await ws.async_accept(req, kTok);
    } else {  // frames came with the head: replay both so that the stream keeps the frames
        std::ostringstream head;
        head << req.base() << beast::make_printable(c.buf.data());
        std::tie(ec) = co_await ws.async_accept(asio::buffer(head.str()), kTok);
    }
    if (ec) co_return;
    ++c.srv.websockets;
    bool const hello = query_param(req.target(), "hello") == "1";
    auto ex = ws.get_executor();
    asio::co_spawn(ex, echo_websocket(std::move(ws), c.srv, hello), log_escape);
}

// Reads a request head into `parser` (as http::async_read_header does) and, when the target
// is /headers, keeps the head's bytes in c.raw_head.
asio::awaitable<error_code> read_head(Conn& c, Parser& parser) {
    error_code ec = http::error::need_more;
    while (ec == http::error::need_more) {
        if (c.buf.size() > 0) {
            auto const used = parser.put(c.buf.data(), ec);  // 0 until the whole head is there
            auto const target = parser.get().target();
            if (!ec && target.substr(0, target.find('?')) == "/headers")
                c.raw_head.assign(static_cast<char const*>(c.buf.data().data()), used);
            c.buf.consume(used);
            if (ec != http::error::need_more) break;
        }
        auto const space = c.buf.prepare(beast::read_size(c.buf, kPiece));
        auto [read_ec, n] = co_await c.sock.async_read_some(space, kTok);
        c.buf.commit(n);
        if (read_ec == asio::error::eof)
            co_return parser.got_some() ? http::error::partial_message : http::error::end_of_stream;
        if (read_ec) co_return read_ec;
    }
    co_return ec;
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

// One TCP connection: requests in order until either side closes.
asio::awaitable<void> run_connection(tcp::socket sock, Server& srv) {
    Conn c{std::move(sock), srv, {}, {}, {}};
    for (bool reuse = true; reuse;) {
        Parser parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(boost::none);  // decided per endpoint once the head is known
        c.raw_head.clear();
        if (auto ec = co_await read_head(c, parser)) {
            co_await reject(c, ec);
            break;
        }
        ++srv.requests;
        if (websocket::is_upgrade(parser.get()))
            co_return co_await accept_websocket(c, parser.get());
        reuse = co_await handle(c, parser);
    }
    error_code ec;
    c.sock.shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor, Server& srv) {
    auto ex = co_await asio::this_coro::executor;
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(kTok);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {  // EMFILE and friends: back off instead of spinning
            asio::steady_timer pause{ex, std::chrono::milliseconds(50)};
            co_await pause.async_wait(kTok);
            continue;
        }
        ++srv.connections;
        sock.set_option(tcp::no_delay(true), ec);
        asio::co_spawn(ex, run_connection(std::move(sock), srv), log_escape);
    }
}

tcp::acceptor open_acceptor(asio::io_context& ctx, tcp::endpoint ep, bool reuse_port) {
    tcp::acceptor acceptor{ctx, ep.protocol()};
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    if (reuse_port &&
        ::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
    acceptor.bind(ep);
    acceptor.listen(asio::socket_base::max_listen_connections);
    return acceptor;
}

struct Options {
    std::string name, host, port;
    unsigned threads = 1;
};

std::optional<Options> parse_args(int argc, char** argv) {
    Options opt;
    std::string listen;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view const key = argv[i];
        if (key == "--threads") opt.threads = static_cast<unsigned>(to_uint(argv[i + 1], 0));
        if (key == "--name") opt.name = argv[i + 1];
        if (key == "--listen") listen = argv[i + 1];
        if (key != "--threads" && key != "--name" && key != "--listen") return std::nullopt;
    }
    auto const colon = listen.rfind(':');
    if (argc % 2 == 0 || opt.name.empty() || colon == std::string::npos || opt.threads == 0)
        return std::nullopt;
    bool const bracketed = listen.front() == '[';  // [::1]:8080
    opt.host = listen.substr(bracketed, colon - 2 * bracketed);
    opt.port = listen.substr(colon + 1);
    return opt;
}

// Many idle WebSocket sessions need many descriptors: take the hard limit.
void raise_fd_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
}

// Binds one acceptor per io_context and prints the `listening` line; false on failure.
bool listen_all(std::vector<std::unique_ptr<asio::io_context>>& contexts, Options const& opt,
                Server& srv) {
    try {
        tcp::resolver resolver{*contexts[0]};
        tcp::endpoint ep = *resolver.resolve(opt.host, opt.port, tcp::resolver::passive).begin();
        for (auto& ctx : contexts) {
            auto acceptor = open_acceptor(*ctx, ep, contexts.size() > 1);
            ep = acceptor.local_endpoint();  // port 0: the others join the port the first got
            asio::co_spawn(*ctx, accept_loop(std::move(acceptor), srv), log_escape);
        }
        auto const host = ep.address().to_string();
        std::cout << "listening " << (ep.address().is_v6() ? "[" + host + "]" : host) << ':'
                  << ep.port() << std::endl;
        return true;
    } catch (std::exception const& e) {
        std::cerr << "tether-demo-backend: cannot listen on " << opt.host << ':' << opt.port << ": "
                  << e.what() << std::endl;
        return false;
    }
}

}  // namespace

int main(int argc, char** argv) {
    auto const opt = parse_args(argc, argv);
    if (!opt) {
        std::cerr << "usage: tether-demo-backend --name NAME --listen HOST:PORT [--threads N]\n";
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    Server srv;
    srv.name = opt->name;
    srv.hello = "hello from " + opt->name;
    for (std::size_t i = 0; i < kPiece; ++i) srv.pattern += kAlphabet[i % kAlphabet.size()];
    std::vector<std::unique_ptr<asio::io_context>> contexts;
    for (unsigned i = 0; i < opt->threads; ++i)
        contexts.push_back(std::make_unique<asio::io_context>(1));
    if (!listen_all(contexts, *opt, srv)) return 1;
    asio::signal_set signals{*contexts[0], SIGINT, SIGTERM};
    signals.async_wait([&contexts](error_code, int) {
        for (auto& ctx : contexts) ctx->stop();
    });
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts.size(); ++i)
        threads.emplace_back([ctx = contexts[i].get()] { ctx->run(); });
    contexts[0]->run();
    for (auto& t : threads) t.join();
    return 0;
}
