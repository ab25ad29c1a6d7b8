// tether-ws-bench: the WebSocket load client of the benchmarks (tools/bench/compare.py).
//
//   tether-ws-bench echo --host H --port P [--conns 64] [--size 256] [--seconds 10]
//   tether-ws-bench idle --host H --port P [--conns 10000] [--hold-seconds 30]
//                        [--sources 127.0.0.1,127.0.0.2,...]
//   both: [--path /] [--timeout-ms 5000] [--concurrency 256]
//
// echo: every connection sends one binary message of --size bytes, waits for its echo and
//   repeats (closed loop). The clock starts once every connection has finished its handshake
//   and stops --seconds later. Prints one JSON line:
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
// Threading: one io_context run by the main thread, one coroutine per connection (echo) or
// --concurrency worker coroutines (idle); nothing is shared across threads.
// Deadlines: connect, upgrade, the first echo and the close handshake each run under a
// tcp_stream expiry of --timeout-ms; Beast's own websocket timer is never armed, so an idle
// connection costs no timer. In echo mode one watchdog closes every socket at --seconds + 10 s.
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

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using beast::error_code;
using Clock = std::chrono::steady_clock;
using Ws = websocket::stream<beast::tcp_stream>;

constexpr auto kTok = asio::as_tuple(asio::use_awaitable);
constexpr auto kWatchdogGrace = std::chrono::seconds(10);
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

// ---------------------------------------------------------------------------------- echo
// State of one echo run; lives on main's stack until the io_context has run dry.
struct EchoRun {
    EchoRun(asio::io_context& io, const Options& o, Target t)
        : opt(o), target(std::move(t)), gate(io, Clock::time_point::max()), watchdog(io) {}

    const Options& opt;
    Target target;
    std::vector<std::unique_ptr<Ws>> conns;
    std::vector<std::uint64_t> samples_ns;  // one per completed round trip inside the window
    std::size_t arrived = 0, failed = 0, errors = 0, finished = 0;
    bool timed_out = false;
    asio::steady_timer gate;  // cancelled when every connection is open (or failed)
    asio::steady_timer watchdog;
    Clock::time_point start, end, last_done;
    Tally tally;

    // Called by each connection once its handshake is done or failed; the last one starts the
    // clock. Returns true for the last one.
    bool arrive() {
        if (++arrived < conns.size()) return false;
        start = Clock::now();
        end = start + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(opt.seconds));
        last_done = start;
        gate.cancel();
        watchdog.expires_at(end + kWatchdogGrace);
        watchdog.async_wait([this](error_code ec) {
            if (ec) return;
            timed_out = true;
            for (auto& ws : conns) beast::get_lowest_layer(*ws).close();
        });
        return true;
    }

    void done() {
        if (++finished == conns.size()) watchdog.cancel();
    }
};

asio::awaitable<void> echo_connection(EchoRun& run, Ws& ws) {
    auto f = co_await open_ws(ws, run.target, nullptr);
    if (f) {
        ++run.failed;
        run.tally.add(f);
    }
    if (!run.arrive()) co_await run.gate.async_wait(kTok);
    if (f) {
        run.done();
        co_return;
    }

    std::string payload(run.opt.size, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
    beast::flat_buffer buf;
    for (auto now = Clock::now(); now < run.end;) {
        f = co_await round_trip(ws, buf, payload);
        const auto after = Clock::now();
        if (f) {
            ++run.errors;
            run.tally.add(f);
            break;
        }
        if (after <= run.end) run.samples_ns.push_back(std::uint64_t((after - now).count()));
        now = after;
    }
    run.last_done = std::max(run.last_done, std::min(Clock::now(), run.end));
    if (!f && !run.timed_out) {
        if (auto c = co_await close_ws(ws, run.target)) run.tally.add(c);
    }
    run.done();
}

double percentile_us(const std::vector<std::uint64_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    const auto i = std::min(sorted.size() - 1, static_cast<std::size_t>(p * sorted.size()));
    return std::chrono::duration<double, std::micro>(Clock::duration(sorted[i])).count();
}

int run_echo(asio::io_context& io, const Options& opt, Target target) {
    EchoRun run(io, opt, std::move(target));
    run.samples_ns.reserve(1 << 20);
    for (std::size_t i = 0; i < opt.conns; ++i) run.conns.push_back(std::make_unique<Ws>(io));
    for (auto& ws : run.conns) asio::co_spawn(io, echo_connection(run, *ws), log_escape);
    io.run();

    auto& s = run.samples_ns;
    std::sort(s.begin(), s.end());
    const double secs = std::max(1e-9, seconds_between(run.start, run.last_done));
    run.tally.print();
    std::printf(
        "{\"messages\":%zu,\"msgs_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"p999_us\":%.1f,\"max_us\":%.1f,\"conns\":%zu,\"size\":%zu,\"seconds\":%.3f,"
        "\"failed\":%zu,\"errors\":%zu,\"timed_out\":%s}\n",
        s.size(), double(s.size()) / secs, percentile_us(s, 0.50), percentile_us(s, 0.99),
        percentile_us(s, 0.999), s.empty() ? 0.0 : percentile_us(s, 1.0), opt.conns, opt.size,
        secs, run.failed, run.errors, run.timed_out ? "true" : "false");
    std::fflush(stdout);
    return run.failed == opt.conns ? 1 : 0;
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
    return opt->mode == "echo" ? run_echo(io, *opt, std::move(target))
                               : run_idle(io, *opt, std::move(target));
}
