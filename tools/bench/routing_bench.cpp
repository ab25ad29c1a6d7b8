// tether-routing-bench: Google Benchmark microbenchmarks of the per-request
// routing path: Router decisions for affinity none, cookie (a returning
// client, a new one) and on a local-table hit (sid, ip_hash), cookie token
// decoding, Maglev lookup, Engine.IO open-packet parsing, WebSocket frame
// tracking, request- and response-head writing; plus the resident memory one
// LocalTable entry costs (counter bytes_per_entry).
//
//   ./tether-routing-bench [--benchmark_filter=REGEX] [--benchmark_repetitions=N]
//
// Threading: single-threaded; every benchmark builds its own fixtures.
// Inputs are fixed (fixed seeds, the real EIO4 capture), so runs compare.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tether/affinity/local_table.hpp"
#include "tether/affinity/router.hpp"
#include "tether/balance/cookie_token.hpp"
#include "tether/balance/engineio.hpp"
#include "tether/balance/maglev.hpp"
#include "tether/core/hash.hpp"
#include "tether/http/headers.hpp"
#include "tether/ws/frame_tracker.hpp"

#ifndef TETHER_SHARED_TESTDATA
#define TETHER_SHARED_TESTDATA "../shared/testdata"
#endif

namespace {

using namespace tether;

constexpr char kSecret[] = "bench secret";
constexpr char kBase64Id[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 20-character Engine.IO-like session id.
std::string make_sid(Rng& rng) {
    std::string sid(20, 'A');
    for (char& c : sid) c = kBase64Id[rng.below(64)];
    return sid;
}

/// Resident set size in bytes (/proc/self/statm, second field, in pages).
long resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

/// A hand-built Runtime of one upstream "chat" with servers s1..s3 and its routing tables.
struct Replica {
    std::shared_ptr<config::Config> config = std::make_shared<config::Config>();
    upstream::Runtime rt;
    std::shared_ptr<const affinity::RoutingTables> tables;

    explicit Replica(config::Affinity mode) {
        config::Upstream u;
        u.name = "chat";
        u.affinity = mode;
        u.cookie.secret = kSecret;
        for (int i = 1; i <= 3; ++i) {
            config::Server s;
            s.name = "s" + std::to_string(i);
            s.address = {"10.0.0." + std::to_string(i), 3000};
            u.servers.push_back(s);
        }
        config->upstreams.emplace(u.name, u);
        rt.config = config;
        upstream::Upstream up;
        up.config = &config->upstreams.at("chat");
        for (const auto& s : up.config->servers)
            up.backends.push_back(std::make_shared<upstream::Backend>(
                s, std::vector<boost::asio::ip::tcp::endpoint>{}));
        rt.upstreams.push_back(std::move(up));
        rt.listener_upstream = {0};
        tables = affinity::build_routing(rt, "process secret");
    }
};

// --- memory per LocalTable entry (first, so that no freed memory is reused) ----

void BM_LocalTableMemoryPerEntry(benchmark::State& state) {
    const auto entries = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        state.PauseTiming();
        Rng rng(42);
        std::vector<std::string> keys;
        keys.reserve(entries);
        for (std::size_t i = 0; i < entries; ++i) keys.push_back("io:sid:" + make_sid(rng));
        // Twice the entries as bound: ceil(max/64) per shard must not evict.
        auto table = std::make_unique<affinity::LocalTable>(2 * entries);
        const auto now = Clock::now();
        const long before = resident_bytes();
        state.ResumeTiming();
        for (const auto& k : keys) table->put(k, "s1", now, std::chrono::hours(1));
        state.PauseTiming();
        const long after = resident_bytes();
        state.counters["entries"] = static_cast<double>(table->size());
        state.counters["rss_growth_MiB"] = static_cast<double>(after - before) / (1 << 20);
        state.counters["bytes_per_entry"] =
            static_cast<double>(after - before) / static_cast<double>(table->size());
        table.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(entries));
}
BENCHMARK(BM_LocalTableMemoryPerEntry)
    ->Arg(1'000'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// --- router -------------------------------------------------------------------

// affinity: none, the balance algorithm alone (round_robin): the baseline the
// sticky modes are measured against.
void BM_RouteNone(benchmark::State& state) {
    Replica r(config::Affinity::none);
    affinity::LocalTable table(1024);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::round_robin, 1);
    const affinity::RouteInput in{"/api/messages?page=2", "", "203.0.113.7"};
    for (auto _ : state) {
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
    }
}
BENCHMARK(BM_RouteNone);

// affinity: cookie with a genuine cookie naming a live server (the steady state).
void BM_RouteCookieHit(benchmark::State& state) {
    Replica r(config::Affinity::cookie);
    affinity::LocalTable table(1024);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::round_robin, 1);
    const std::string cookie = "theme=dark; tether=" +
        balance::encode_cookie_token(kSecret, "chat", balance::cookie_server_id("chat", "s2")) +
        "; lang=en";
    const affinity::RouteInput in{"/api/messages?page=2", cookie, "203.0.113.7"};
    for (auto _ : state) {
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
        if (!d.backend || d.backend->name() != "s2" || !d.set_cookie.empty()) {
            state.SkipWithError("the cookie did not route to s2");
            break;
        }
    }
}
BENCHMARK(BM_RouteCookieHit);

// affinity: cookie, a first request (no cookie): balance, and a Set-Cookie to send.
void BM_RouteCookieNew(benchmark::State& state) {
    Replica r(config::Affinity::cookie);
    affinity::LocalTable table(1024);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::round_robin, 1);
    const affinity::RouteInput in{"/", "theme=dark", "203.0.113.7"};
    for (auto _ : state) {
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
        if (d.set_cookie.empty()) {
            state.SkipWithError("no Set-Cookie for a new client");
            break;
        }
    }
}
BENCHMARK(BM_RouteCookieNew);

void BM_RouteSidLocalHit(benchmark::State& state) {
    Replica r(config::Affinity::sid);
    affinity::LocalTable table(1'000'000);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::least_conn, 1);
    Rng rng(7);
    const std::string sid = make_sid(rng);
    router.bind_sid(r.rt.upstreams[0], sid, "s2");
    const std::string target = "/socket.io/?EIO=4&transport=polling&t=PQx1a2b&sid=" + sid;
    const affinity::RouteInput in{target, "io=" + sid, "203.0.113.7"};
    for (auto _ : state) {
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
    }
    if (router.stats("chat").local_hits != static_cast<std::uint64_t>(state.iterations()))
        state.SkipWithError("not a local hit");
}
BENCHMARK(BM_RouteSidLocalHit);

// affinity sid, a polling client's next request on its kept-alive connection:
// the connection's SidMemo finds the binding again without the key (the
// steady state of tools/bench/affinity_overhead.py's `sid`). The target is
// scanned by the caller, as the session does, and included here.
void BM_RouteSidMemoHit(benchmark::State& state) {
    Replica r(config::Affinity::sid);
    affinity::LocalTable table(1'000'000);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::least_conn, 1);
    Rng rng(7);
    const std::string sid = make_sid(rng);
    router.bind_sid(r.rt.upstreams[0], sid, "s2");
    const std::string target = "/socket.io/?EIO=4&transport=polling&t=PQx1a2b&sid=" + sid;
    const auto& sc = r.rt.upstreams[0].config->sid;
    affinity::SidMemo memo;
    affinity::RouteInput in{target, "io=" + sid, "203.0.113.7"};
    in.memo = &memo;
    for (auto _ : state) {
        const auto q = balance::eio_query(in.target, sc.path, sc.param);
        in.eio = &q;
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
    }
    if (router.stats("chat").local_hits != static_cast<std::uint64_t>(state.iterations()) ||
        !memo.holds(r.tables->upstreams[0].generation, sid))
        state.SkipWithError("not a hit through the memo");
}
BENCHMARK(BM_RouteSidMemoHit);

void BM_RouteIpHashLocalHit(benchmark::State& state) {
    Replica r(config::Affinity::ip_hash);
    affinity::LocalTable table(1'000'000);
    affinity::Router router(table);
    balance::Picker picker(config::Balance::least_conn, 1);
    const affinity::RouteInput in{"/api/messages?page=2", "", "203.0.113.7"};
    router.route(r.rt, 0, *r.tables, picker, in, {});  // binds
    for (auto _ : state) {
        auto d = router.route(r.rt, 0, *r.tables, picker, in, {});
        benchmark::DoNotOptimize(d);
    }
    if (router.stats("chat").local_hits != static_cast<std::uint64_t>(state.iterations()))
        state.SkipWithError("not a local hit");
}
BENCHMARK(BM_RouteIpHashLocalHit);

// --- cookie token, Maglev ---------------------------------------------------------

void BM_CookieTokenDecode(benchmark::State& state) {
    const std::string token =
        balance::encode_cookie_token(kSecret, "chat", balance::cookie_server_id("chat", "s2"));
    for (auto _ : state) {
        auto id = balance::decode_cookie_token(kSecret, "chat", token);
        benchmark::DoNotOptimize(id);
    }
}
BENCHMARK(BM_CookieTokenDecode);

void BM_MaglevLookup(benchmark::State& state) {
    std::vector<balance::MaglevTable::Member> members;
    for (int i = 1; i <= state.range(0); ++i) members.push_back({"s" + std::to_string(i), 1});
    const balance::MaglevTable table(members);
    std::vector<std::uint64_t> hashes(4096);
    for (std::size_t i = 0; i < hashes.size(); ++i)
        hashes[i] = stable_hash("198.51.100." + std::to_string(i));
    std::vector<char> up(members.size(), 1);
    up[0] = 0;  // one member down: a third of the walks go past it
    std::size_t i = 0;
    for (auto _ : state) {
        const int m = table.lookup(hashes[i++ & 4095],
                                   [&](int idx) { return up[static_cast<std::size_t>(idx)] != 0; });
        benchmark::DoNotOptimize(m);
    }
}
BENCHMARK(BM_MaglevLookup)->Arg(3)->Arg(32);

// --- Engine.IO, WebSocket, HTTP heads ------------------------------------------------

void BM_OpenPacketParserEio4(benchmark::State& state) {
    std::ifstream in(std::string(TETHER_SHARED_TESTDATA) + "/engineio/eio4-polling-handshake.body",
                     std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string body = ss.str();
    if (body.empty()) {
        state.SkipWithError("capture eio4-polling-handshake.body not found");
        return;
    }
    for (auto _ : state) {
        balance::OpenPacketParser p;
        auto s = p.feed(body);
        benchmark::DoNotOptimize(s);
        benchmark::DoNotOptimize(p.sid().data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_OpenPacketParserEio4);

void BM_FrameTrackerFeed64KiB(benchmark::State& state) {
    // 256 frames of 256 bytes each: header 82 7e 00 fc (binary, 252-byte payload) + payload.
    std::vector<unsigned char> buf;
    buf.reserve(64 * 1024);
    while (buf.size() < 64 * 1024) {
        const unsigned char header[] = {0x82, 0x7e, 0x00, 0xfc};
        buf.insert(buf.end(), header, header + 4);
        buf.insert(buf.end(), 252, 0x5a);
    }
    ws::FrameTracker tracker;
    for (auto _ : state) {
        const std::size_t n = tracker.feed(buf.data(), buf.size());
        benchmark::DoNotOptimize(n);
    }
    if (tracker.frames() != static_cast<std::uint64_t>(state.iterations()) * 256 ||
        !tracker.at_boundary())
        state.SkipWithError("frame count mismatch");
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
    state.counters["frames"] =
        benchmark::Counter(static_cast<double>(tracker.frames()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FrameTrackerFeed64KiB);

void BM_WriteRequestHeadSocketIo(benchmark::State& state) {
    namespace bhttp = boost::beast::http;
    http::RequestHead req;
    req.method(bhttp::verb::get);
    req.target("/socket.io/?EIO=4&transport=polling&t=PQx1a2b&sid=sXIjZz9g-LylGIquAAAA");
    req.version(11);
    req.set(bhttp::field::host, "chat.example.com");
    req.set(bhttp::field::user_agent,
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Safari/537.36");
    req.set(bhttp::field::accept, "*/*");
    req.set(bhttp::field::accept_language, "en-US,en;q=0.9");
    req.set(bhttp::field::accept_encoding, "gzip, deflate, br");
    req.set(bhttp::field::referer, "https://chat.example.com/room/42");
    req.set(bhttp::field::cookie,
            "io=sXIjZz9g-LylGIquAAAA; tether=AXDrwauOaJp2DCNJOsH2sd5B8R8eYvnEdg");
    req.set(bhttp::field::connection, "keep-alive");
    req.set("Keep-Alive", "timeout=5");
    http::RequestRewrite rw;
    rw.client_ip = "203.0.113.7";
    rw.proto = "http";
    rw.request_id = "3f2c9a0e4b1d7c65";
    std::string out;
    out.reserve(4096);
    for (auto _ : state) {
        out.clear();
        http::write_request_head(req, rw, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_WriteRequestHeadSocketIo);

void BM_WriteResponseHeadTypical(benchmark::State& state) {
    namespace bhttp = boost::beast::http;
    http::ResponseHead res;
    res.result(bhttp::status::ok);
    res.version(11);
    res.set(bhttp::field::content_type, "text/plain; charset=UTF-8");
    res.set(bhttp::field::content_length, "16");
    res.set(bhttp::field::date, "Mon, 30 Nov 2026 15:00:00 GMT");
    res.set(bhttp::field::cache_control, "no-cache");
    res.set(bhttp::field::connection, "keep-alive");
    res.set("Keep-Alive", "timeout=5");
    res.set("Access-Control-Allow-Origin", "https://chat.example.com");
    http::ResponseRewrite rw;
    rw.body = http::Framing::length;
    std::string out;
    out.reserve(4096);
    for (auto _ : state) {
        out.clear();
        http::write_response_head(res, 11, rw, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_WriteResponseHeadTypical);

}  // namespace
