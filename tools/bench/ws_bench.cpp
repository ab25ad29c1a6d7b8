// tether-ws-bench: the WebSocket load client of the benchmarks (tools/bench/compare.py).
//
//   tether-ws-bench echo --host H --port P [--conns 64] [--size 256] [--seconds 10]
//   tether-ws-bench idle --host H --port P [--conns 10000] [--hold-seconds 30]
//                        [--sources 127.0.0.1,127.0.0.2,...]
//   both: [--path /] [--timeout-ms 5000] [--concurrency 256]
//
// echo (ws_bench_echo.cpp: plain sockets and epoll, not Beast, so that the client costs little
//   CPU per message): every connection sends one binary message of --size bytes, waits for its
//   echo and repeats (closed loop). The clock starts once every connection has finished its
//   handshake and stops --seconds later. Prints one JSON line:
//   {"messages","msgs_per_s","p50_us","p99_us","p999_us","max_us","conns","failed","errors",...}
// idle: opens --conns connections, at most --concurrency in flight; connection i binds source
//   address i mod |--sources| with IP_BIND_ADDRESS_NO_PORT, so the ephemeral port is chosen per
//   (source, destination) and every source address adds another ~28k ports. Each sends one
//   small message and waits for its echo. Then `ready N` (N = connections open) on stdout; holds
//   them --hold-seconds or until stdin closes (watched only when stdin is a pipe, socket or
//   terminal); closes them with a close handshake and prints one JSON line
//   {"opened","failed","closed","close_failed","open_seconds"}. Failures are tallied by stage
//   and error on stderr.
//
// Threading: idle: one io_context run by the main thread, --concurrency worker coroutines;
// echo: see ws_bench_echo.cpp. Nothing is shared across threads.
// Deadlines: connect, upgrade, the first echo and the close handshake each run under a
// tcp_stream expiry of --timeout-ms; Beast's own websocket timer is never armed, so an idle
// connection costs no timer.
// Memory: per idle connection the client holds one stream and nothing else (no pending read).
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ws_bench_echo.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using beast::error_code;
using Clock = std::chrono::steady_clock;
using Ws = websocket::stream<beast::tcp_stream>;

constexpr auto kTok = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kProbe = "tether-ws-bench";

struct Options {
    std::string mode;
    std::string host;
    std::string port;
    std::string path = "/";
    std::size_t conns = 0;  // 0: the mode's default (echo 64, idle 10000)
    std::size_t size = 256;
    double seconds = 10;
    double hold_seconds = 30;
    std::vector<asio::ip::address> sources;
    std::chrono::milliseconds timeout{5000};
    std::size_t concurrency = 256;
};

// Where and how to connect; built once from Options.
struct Target {
    tcp::endpoint endpoint;
    std::string host_header;
    std::string path;
    std::chrono::milliseconds timeout;
};

// A failed step: which stage and why. Empty stage = success.
struct Failure {
    std::string_view stage;
    error_code ec;
    explicit operator bool() const { return !stage.empty(); }
};

// Failure counts by "stage: message", printed on stderr at the end of a run.
class Tally {
public:
    void add(const Failure& f) { ++counts_[std::string(f.stage) + ": " + f.ec.message()]; }
    void print() const {
        for (const auto& [what, n] : counts_)
            std::cerr << "tether-ws-bench: " << n << " x " << what << '\n';
    }

private:
    std::map<std::string, std::size_t> counts_;
};

void usage() {
    std::cerr << "usage: tether-ws-bench echo --host H --port P [--conns 64] [--size 256] "
                 "[--seconds 10]\n"
                 "       tether-ws-bench idle --host H --port P [--conns 10000] "
                 "[--hold-seconds 30] [--sources A,B,...]\n"
                 "       common: [--path /] [--timeout-ms 5000] [--concurrency 256]\n";
}

std::vector<asio::ip::address> parse_sources(std::string_view list) {
    std::vector<asio::ip::address> out;
    while (!list.empty()) {
        const auto comma = list.find(',');
        const auto item = list.substr(0, comma);
        if (!item.empty()) out.push_back(asio::ip::make_address(std::string(item)));
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return out;
}

// Throws std::exception on a malformed value; nullopt on an unknown key or a missing value.
std::optional<Options> parse_args(int argc, char** argv) {
    if (argc < 2) return std::nullopt;
    Options o;
    o.mode = argv[1];
    if (o.mode != "echo" && o.mode != "idle") return std::nullopt;
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) return std::nullopt;
        const std::string_view key = argv[i];
        const std::string value = argv[i + 1];
        if (key == "--host") o.host = value;
        else if (key == "--port") o.port = value;
        else if (key == "--path") o.path = value;
        else if (key == "--conns") o.conns = std::stoul(value);
        else if (key == "--size") o.size = std::stoul(value);
        else if (key == "--seconds") o.seconds = std::stod(value);
        else if (key == "--hold-seconds") o.hold_seconds = std::stod(value);
        else if (key == "--sources") o.sources = parse_sources(value);
        else if (key == "--timeout-ms") o.timeout = std::chrono::milliseconds(std::stoul(value));
        else if (key == "--concurrency") o.concurrency = std::max<std::size_t>(1, std::stoul(value));
        else return std::nullopt;
    }
    if (o.host.empty() || o.port.empty() || o.size == 0) return std::nullopt;
    if (o.conns == 0) o.conns = o.mode == "echo" ? 64 : 10000;
    return o;
}

// Many idle connections need many descriptors: take the hard limit, warn if it is short.
void raise_fd_limit(std::size_t needed) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed)
        std::cerr << "tether-ws-bench: RLIMIT_NOFILE " << lim.rlim_cur << " < " << needed
                  << " descriptors needed\n";
}

// Connects (from `source` when given) and upgrades; the deadline covers both. Leaves the
// stream with no armed timer.
asio::awaitable<Failure> open_ws(Ws& ws, const Target& t, const asio::ip::address* source) {
    auto& stream = beast::get_lowest_layer(ws);
    auto& sock = stream.socket();
    error_code ec;
    sock.open(t.endpoint.protocol(), ec);
    if (ec) co_return Failure{"socket", ec};
    if (source) {
        int one = 1;  // the port is picked at connect(), per destination, not at bind()
        ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sock.bind(tcp::endpoint{*source, 0}, ec);
        if (ec) co_return Failure{"bind", ec};
    }
    stream.expires_after(t.timeout);
    auto [cec] = co_await stream.async_connect(t.endpoint, kTok);
    if (cec) co_return Failure{"connect", cec};
    sock.set_option(tcp::no_delay(true), ec);

    websocket::permessage_deflate pmd;
    pmd.client_enable = false;
    pmd.server_enable = false;
    ws.set_option(pmd);
    websocket::stream_base::timeout none{};
    none.handshake_timeout = websocket::stream_base::none();
    none.idle_timeout = websocket::stream_base::none();
    none.keep_alive_pings = false;
    ws.set_option(none);  // deadlines come from the tcp_stream expiry alone
    ws.secure_prng(false);
    ws.binary(true);
    auto [hec] = co_await ws.async_handshake(t.host_header, t.path, kTok);
    stream.expires_never();
    if (hec) co_return Failure{"handshake", hec};
    co_return Failure{};
}

// One message out and its echo back, compared byte for byte.
asio::awaitable<Failure> round_trip(Ws& ws, beast::flat_buffer& buf, std::string_view payload) {
    auto [wec, wn] = co_await ws.async_write(asio::buffer(payload.data(), payload.size()), kTok);
    if (wec) co_return Failure{"write", wec};
    auto [rec, rn] = co_await ws.async_read(buf, kTok);
    if (rec) co_return Failure{"read", rec};
    const bool same = buf.size() == payload.size() &&
                      std::memcmp(buf.data().data(), payload.data(), payload.size()) == 0;
    buf.consume(buf.size());
    if (!same) co_return Failure{"echo", boost::system::errc::make_error_code(boost::system::errc::bad_message)};
    co_return Failure{};
}

asio::awaitable<Failure> close_ws(Ws& ws, const Target& t) {
    beast::get_lowest_layer(ws).expires_after(t.timeout);
    auto [ec] = co_await ws.async_close(websocket::close_code::normal, kTok);
    beast::get_lowest_layer(ws).expires_never();
    if (ec) co_return Failure{"close", ec};
    co_return Failure{};
}

// Logs what escapes a coroutine (nothing should).
void log_escape(std::exception_ptr e) {
    if (!e) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        std::cerr << "tether-ws-bench: " << x.what() << '\n';
    }
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// ---------------------------------------------------------------------------------- idle
struct IdleRun {
    const Options& opt;
    Target target;
    std::vector<std::unique_ptr<Ws>> conns;  // null where opening failed
    std::size_t next = 0, opened = 0, failed = 0, closed = 0, close_failed = 0;
    Tally tally;
};

// One of --concurrency openers: takes the next index until all are done.
asio::awaitable<void> idle_opener(IdleRun& run) {
    auto ex = co_await asio::this_coro::executor;
    beast::flat_buffer buf;
    for (std::size_t i; (i = run.next++) < run.opt.conns;) {
        auto ws = std::make_unique<Ws>(ex);
        const auto* source =
            run.opt.sources.empty() ? nullptr : &run.opt.sources[i % run.opt.sources.size()];
        auto f = co_await open_ws(*ws, run.target, source);
        if (!f) {
            beast::get_lowest_layer(*ws).expires_after(run.target.timeout);
            f = co_await round_trip(*ws, buf, kProbe);
            beast::get_lowest_layer(*ws).expires_never();
        }
        buf.clear();
        if (f) {
            ++run.failed;
            run.tally.add(f);
            continue;
        }
        ++run.opened;
        run.conns[i] = std::move(ws);
    }
}

asio::awaitable<void> idle_closer(IdleRun& run) {
    for (std::size_t i; (i = run.next++) < run.conns.size();) {
        if (!run.conns[i]) continue;
        if (auto f = co_await close_ws(*run.conns[i], run.target)) {
            ++run.close_failed;
            run.tally.add(f);
        } else {
            ++run.closed;
        }
        run.conns[i].reset();
    }
}

// A pipe, socket or terminal on stdin can signal "stop" by closing; anything else
// (/dev/null, a file) would read EOF at once and is not watched.
bool stdin_is_watchable() {
    struct stat st {};
    if (::fstat(0, &st) != 0) return false;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || ::isatty(0);
}

// Reads stdin until EOF (or an error, or the cancel at the end of the hold), then ends the hold.
asio::awaitable<void> watch_stdin(asio::posix::stream_descriptor& in, asio::steady_timer& hold) {
    char sink[256];
    for (;;) {
        auto [ec, n] = co_await in.async_read_some(asio::buffer(sink), kTok);
        if (ec) break;
    }
    hold.cancel();
}

// Waits --hold-seconds or until stdin reaches EOF, whichever is first.
void idle_hold(asio::io_context& io, const Options& opt) {
    asio::steady_timer hold(io, std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(opt.hold_seconds)));
    std::optional<asio::posix::stream_descriptor> in;
    if (stdin_is_watchable()) {
        in.emplace(io, ::dup(0));
        asio::co_spawn(io, watch_stdin(*in, hold), log_escape);
    }
    hold.async_wait([&in](error_code) {
        error_code ignored;
        if (in) in->cancel(ignored);
    });
    io.restart();
    io.run();  // both waits are done when it returns; `hold` and `in` outlive them
}

int run_idle(asio::io_context& io, const Options& opt, Target target) {
    IdleRun run{opt, std::move(target), {}, 0, 0, 0, 0, 0, {}};
    run.conns.resize(opt.conns);
    const auto workers = std::min(opt.concurrency, opt.conns);
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(io, idle_opener(run), log_escape);
    io.run();
    const double open_seconds = seconds_between(t0, Clock::now());
    std::printf("ready %zu\n", run.opened);
    std::fflush(stdout);

    idle_hold(io, opt);

    io.restart();
    run.next = 0;
    for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(io, idle_closer(run), log_escape);
    io.run();

    run.tally.print();
    std::printf(
        "{\"opened\":%zu,\"failed\":%zu,\"closed\":%zu,\"close_failed\":%zu,"
        "\"open_seconds\":%.3f}\n",
        run.opened, run.failed, run.closed, run.close_failed, open_seconds);
    std::fflush(stdout);
    return run.opened == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::optional<Options> opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "tether-ws-bench: bad value: " << e.what() << '\n';
    }
    if (!opt) {
        usage();
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(opt->conns + 64);
    asio::io_context io(1);
    Target target;
    try {
        tcp::resolver resolver(io);
        target.endpoint = resolver.resolve(opt->host, opt->port).begin()->endpoint();
    } catch (const std::exception& e) {
        std::cerr << "tether-ws-bench: cannot resolve " << opt->host << ':' << opt->port << ": "
                  << e.what() << '\n';
        return 1;
    }
    target.host_header = opt->host + ':' + opt->port;
    target.path = opt->path;
    target.timeout = opt->timeout;
    if (opt->mode == "echo") {
        tether::bench::EchoOptions e;
        if (!target.endpoint.address().is_v4()) {
            std::cerr << "tether-ws-bench: echo takes an IPv4 address\n";
            return 1;
        }
        std::memcpy(&e.endpoint, target.endpoint.data(), sizeof e.endpoint);
        e.host_header = target.host_header;
        e.path = target.path;
        e.conns = opt->conns;
        e.size = opt->size;
        e.seconds = opt->seconds;
        e.timeout = target.timeout;
        return tether::bench::run_raw_echo(e);
    }
    return run_idle(io, *opt, std::move(target));
}
