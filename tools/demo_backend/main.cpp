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

#include "demo_backend.hpp"

namespace demo_backend {
namespace {

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
}  // namespace demo_backend

using namespace demo_backend;

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
