// Router decisions per affinity mode (SPEC "Routing rules") over a Runtime
// built by hand: none, ip_hash (prefixes, stability across a new server,
// rebinding, bounded load), cookie (attributes, a second replica, forgeries),
// sid (handshake, bound, dead, fallback cookie, paths); masked_ip.
#include "tether/affinity/router.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tether/balance/cookie_token.hpp"
#include "tether/core/coarse_clock.hpp"
#include "router_fixture.hpp"

namespace {

using namespace tether;
using affinity::LocalTable;
using affinity::masked_ip;
using affinity::RouteDecision;
using affinity::RouteInput;
using affinity::Router;
using upstream::Backend;

constexpr char kSecret[] = "a shared secret between replicas";

config::Upstream upstream_config(config::Affinity mode, int servers = 3) {
    config::Upstream u;
    u.name = "chat";
    u.affinity = mode;
    u.balance = config::Balance::round_robin;
    u.cookie.secret = kSecret;
    for (int i = 1; i <= servers; ++i) {
        config::Server s;
        s.name = "s" + std::to_string(i);
        s.address = {"10.0.0." + std::to_string(i), 3000};
        u.servers.push_back(s);
    }
    return u;
}

/// One replica's view: config snapshot, Runtime, routing tables.
struct Replica {
    std::shared_ptr<const config::Config> config;
    upstream::Runtime rt;
    std::shared_ptr<const affinity::RoutingTables> tables;

    const upstream::Upstream& up() const { return rt.upstreams[0]; }
    Backend& backend(const std::string& name) const {
        for (const auto& b : rt.upstreams[0].backends)
            if (b->name() == name) return *b;
        throw std::runtime_error("no backend " + name);
    }
};

/// Builds a replica for `u`; backends named in `reuse` are shared (as a reload does).
std::unique_ptr<Replica> make_replica(const config::Upstream& u,
                                      const std::vector<std::shared_ptr<Backend>>& reuse = {},
                                      const std::string& process_secret = "process-secret-1") {
    auto cfg = std::make_shared<config::Config>();
    cfg->upstreams.emplace(u.name, u);
    auto r = std::make_unique<Replica>();
    r->config = cfg;
    r->rt.config = cfg;
    upstream::Upstream up;
    up.config = &cfg->upstreams.at(u.name);
    up.backends = affinity_test::backends_of(*up.config, reuse);
    r->rt.upstreams.push_back(std::move(up));
    r->rt.listener_upstream = {0};
    r->tables = affinity::build_routing(r->rt, process_secret);
    return r;
}

/// A Router with its own Picker, routing against one replica.
struct Client {
    Replica& replica;
    Router router;
    balance::Picker picker{config::Balance::round_robin, 1};

    Client(Replica& r, LocalTable& table) : replica(r), router(table) {}

    RouteDecision route(std::string_view target, std::string_view cookie = {},
                        std::string_view ip = "192.0.2.1",
                        std::span<const Backend* const> exclude = {}) {
        return router.route(replica.rt, 0, *replica.tables, picker, RouteInput{target, cookie, ip},
                            exclude);
    }
    std::string ip(std::string_view addr) { return name(route("/", {}, addr)); }
    static std::string name(const RouteDecision& d) { return d.backend ? d.backend->name() : ""; }
};

std::string ip_of(int i) {
    return "10." + std::to_string(i / 65536 % 256) + "." + std::to_string(i / 256 % 256) + "." +
           std::to_string(i % 256);
}

/// "tether=TOKEN" out of "Set-Cookie: tether=TOKEN; Path=/; ...\r\n".
std::string cookie_pair(std::string_view set_cookie) {
    const std::string_view prefix = "Set-Cookie: ";
    EXPECT_TRUE(set_cookie.starts_with(prefix)) << set_cookie;
    set_cookie.remove_prefix(prefix.size());
    return std::string(set_cookie.substr(0, set_cookie.find(';')));
}

// --- none ------------------------------------------------------------------

TEST(RouterNone, UsesThePickerAndEmitsNothing) {
    auto r = make_replica(upstream_config(config::Affinity::none));
    LocalTable table(1000);
    Client c(*r, table);
    std::string seq;
    for (int i = 0; i < 6; ++i) {
        const auto d = c.route("/socket.io/?EIO=4&sid=abc", "tether=whatever", ip_of(i));
        seq += Client::name(d).substr(1);
        EXPECT_TRUE(d.set_cookie.empty());
        EXPECT_FALSE(d.learn_sid);
        EXPECT_FALSE(d.unknown_sid);
    }
    EXPECT_EQ(seq, "123123");  // round robin, untouched by cookie, sid or IP
    EXPECT_EQ(table.size(), 0u);
    const Backend* exclude[] = {&r->backend("s1")};
    for (int i = 0; i < 4; ++i) EXPECT_NE(Client::name(c.route("/", {}, "1.1.1.1", exclude)), "s1");
}

TEST(RouterNone, NoServerIsAnError) {
    auto r = make_replica(upstream_config(config::Affinity::none));
    for (auto& b : r->up().backends) b->set_up(false);
    LocalTable table(1000);
    Client c(*r, table);
    const auto d = c.route("/");
    EXPECT_EQ(d.backend, nullptr);
    EXPECT_EQ(d.error, errc::no_server);
}

// --- ip_hash -----------------------------------------------------------------

TEST(RouterIpHash, SameIpSameServerRepeatedly) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    LocalTable table(1000);
    Client c(*r, table);
    const std::string first = c.ip("203.0.113.7");
    ASSERT_FALSE(first.empty());
    for (int i = 0; i < 20; ++i) EXPECT_EQ(c.ip("203.0.113.7"), first);
    EXPECT_EQ(c.router.stats("chat").misses, 1u);
    EXPECT_EQ(c.router.stats("chat").local_hits, 20u);
    EXPECT_EQ(table.get("chat:ip_hash:203.0.113.7", Clock::now(), std::chrono::hours(1)), first);
}

TEST(RouterIpHash, SpreadsNewClientsOverAllServers) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    LocalTable table(10000);
    Client c(*r, table);
    std::map<std::string, int> count;
    for (int i = 0; i < 600; ++i) ++count[c.ip(ip_of(i))];
    ASSERT_EQ(count.size(), 3u);
    for (const auto& [name, k] : count) EXPECT_GT(k, 100) << name;
}

TEST(RouterIpHash, SameSlash24SharesAServerWithPrefix24) {
    auto u = upstream_config(config::Affinity::ip_hash);
    u.ip_hash.prefix_v4 = 24;
    auto r = make_replica(u);
    LocalTable table(10000);
    Client c(*r, table);
    std::set<std::string> used;
    for (int net = 0; net < 40; ++net) {
        const std::string base = "198.51." + std::to_string(net) + ".";
        const std::string server = c.ip(base + "1");
        used.insert(server);
        for (int host : {2, 77, 200, 255})
            EXPECT_EQ(c.ip(base + std::to_string(host)), server) << net;
    }
    EXPECT_EQ(used.size(), 3u) << "different /24s still spread";
    EXPECT_EQ(table.count_prefix("chat:ip_hash:"), 40u) << "one binding per /24";
    EXPECT_TRUE(table.get("chat:ip_hash:198.51.0.0", Clock::now(), std::chrono::hours(1)));
}

TEST(RouterIpHash, BindingSurvivesAddingAServer) {
    auto r3 = make_replica(upstream_config(config::Affinity::ip_hash, 3));
    LocalTable table(100000);
    std::map<std::string, std::string> before;
    {
        Client c(*r3, table);
        for (int i = 0; i < 400; ++i) before[ip_of(i)] = c.ip(ip_of(i));
    }
    auto r4 = make_replica(upstream_config(config::Affinity::ip_hash, 4), r3->up().backends);
    ASSERT_EQ(&r4->backend("s1"), &r3->backend("s1"));  // shared, as a reload does

    // Without the table, Maglev alone would move about a quarter of them to s4...
    LocalTable fresh(100000);
    Client without(*r4, fresh);
    int would_move = 0;
    for (const auto& [ip, server] : before) would_move += without.ip(ip) != server;
    EXPECT_GT(would_move, 50);
    // ...but the bindings keep every live client where it is.
    Client c(*r4, table);
    for (const auto& [ip, server] : before) EXPECT_EQ(c.ip(ip), server) << ip;
    EXPECT_EQ(c.router.stats("chat").rebinds, 0u);
    // New clients do reach the new server.
    int on_s4 = 0;
    for (int i = 1000; i < 1400; ++i) on_s4 += c.ip(ip_of(i)) == "s4";
    EXPECT_GT(on_s4, 50);
}

TEST(RouterIpHash, BoundServerDownRebindsElsewhere) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    LocalTable table(10000);
    Client c(*r, table);
    std::string ip;
    for (int i = 0; i < 100 && ip.empty(); ++i)
        if (c.ip(ip_of(i)) == "s2") ip = ip_of(i);
    ASSERT_FALSE(ip.empty());
    const auto rebinds = c.router.stats("chat").rebinds;

    r->backend("s2").set_up(false);
    const std::string moved = c.ip(ip);
    EXPECT_NE(moved, "s2");
    EXPECT_FALSE(moved.empty());
    EXPECT_EQ(c.router.stats("chat").rebinds, rebinds + 1);
    EXPECT_EQ(table.get("chat:ip_hash:" + ip, Clock::now(), std::chrono::hours(1)), moved);
    EXPECT_EQ(c.ip(ip), moved);
    EXPECT_EQ(c.router.stats("chat").rebinds, rebinds + 1) << "rebound once, then a hit";

    r->backend("s2").set_up(true);  // back up: the client stays where it was rebound
    EXPECT_EQ(c.ip(ip), moved);
}

TEST(RouterIpHash, ExcludedBoundServerIsRetriedElsewhere) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    LocalTable table(1000);
    Client c(*r, table);
    const std::string first = c.ip("203.0.113.9");
    const Backend* exclude[] = {&r->backend(first)};
    const auto d = c.route("/", {}, "203.0.113.9", exclude);
    ASSERT_TRUE(d.backend);
    EXPECT_NE(d.backend->name(), first);
}

TEST(RouterIpHash, BoundedLoadAppliesToNewKeysOnly) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    ASSERT_EQ(r->up().config->ip_hash.balance_factor, 150);
    // Placement with no load, in a scratch table: some keys belong to s1.
    std::vector<std::string> s1_keys, new_s1_keys;
    {
        LocalTable scratch(100000);
        Client c(*r, scratch);
        for (int i = 0; i < 300; ++i)
            if (c.ip(ip_of(i)) == "s1") s1_keys.push_back(ip_of(i));
        for (int i = 300; i < 600; ++i)
            if (c.ip(ip_of(i)) == "s1") new_s1_keys.push_back(ip_of(i));
    }
    ASSERT_GT(s1_keys.size(), 50u);
    ASSERT_GT(new_s1_keys.size(), 50u);

    LocalTable table(100000);
    Client c(*r, table);
    for (const auto& ip : s1_keys) ASSERT_EQ(c.ip(ip), "s1");  // bound while s1 is idle

    // s1 holds 100 connections, s2 and s3 none: cap = ceil(1.5 x 101 x 1/3) = 51 < 100.
    r->backend("s1").add_active(100);
    for (const auto& ip : new_s1_keys) {
        const std::string got = c.ip(ip);
        EXPECT_NE(got, "s1") << ip << " is new: over-cap s1 must be skipped";
        EXPECT_FALSE(got.empty());
    }
    for (const auto& ip : s1_keys) EXPECT_EQ(c.ip(ip), "s1") << ip << " is bound: it stays";

    // Load gone: new keys reach s1 again.
    r->backend("s1").add_active(-100);
    int back_on_s1 = 0;
    for (int i = 600; i < 900; ++i) back_on_s1 += c.ip(ip_of(i)) == "s1";
    EXPECT_GT(back_on_s1, 50);
}

TEST(RouterIpHash, DrainingServerKeepsBoundClientsAndGetsNoNewOnes) {
    auto r = make_replica(upstream_config(config::Affinity::ip_hash));
    LocalTable table(100000);
    Client c(*r, table);
    std::vector<std::string> on_s3;
    for (int i = 0; i < 300; ++i)
        if (c.ip(ip_of(i)) == "s3") on_s3.push_back(ip_of(i));
    ASSERT_FALSE(on_s3.empty());
    r->backend("s3").set_draining(true);
    for (const auto& ip : on_s3) EXPECT_EQ(c.ip(ip), "s3");
    for (int i = 1000; i < 1300; ++i) EXPECT_NE(c.ip(ip_of(i)), "s3");
}

// --- cookie ------------------------------------------------------------------

TEST(RouterCookie, NoCookiePlacesAndSetsASignedCookie) {
    auto r = make_replica(upstream_config(config::Affinity::cookie));
    LocalTable table(1000);
    Client c(*r, table);
    const auto d = c.route("/");
    ASSERT_TRUE(d.backend);
    const std::string sc(d.set_cookie);
    EXPECT_TRUE(sc.starts_with("Set-Cookie: tether=")) << sc;
    EXPECT_TRUE(sc.ends_with("\r\n")) << sc;
    EXPECT_NE(sc.find("; Path=/"), std::string::npos) << sc;
    EXPECT_NE(sc.find("; HttpOnly"), std::string::npos) << sc;
    EXPECT_NE(sc.find("; SameSite=Lax"), std::string::npos) << sc;
    EXPECT_EQ(sc.find("Secure"), std::string::npos) << sc;
    EXPECT_EQ(sc.find("Max-Age"), std::string::npos) << sc;
    EXPECT_EQ(sc.find(d.backend->name() + ";"), std::string::npos) << "opaque: " << sc;
    EXPECT_EQ(sc.find("10.0.0."), std::string::npos) << "opaque: " << sc;
    EXPECT_EQ(c.router.stats("chat").misses, 1u);
}

TEST(RouterCookie, ConfiguredAttributes) {
    auto u = upstream_config(config::Affinity::cookie);
    u.cookie.name = "lb";
    u.cookie.max_age = std::chrono::hours(1);
    u.cookie.secure = true;
    u.cookie.same_site = config::SameSite::strict;
    u.cookie.http_only = false;
    auto r = make_replica(u);
    LocalTable table(1000);
    Client c(*r, table);
    const std::string sc(c.route("/").set_cookie);
    EXPECT_TRUE(sc.starts_with("Set-Cookie: lb=")) << sc;
    EXPECT_NE(sc.find("; Path=/"), std::string::npos) << sc;
    EXPECT_NE(sc.find("; Max-Age=3600"), std::string::npos) << sc;
    EXPECT_NE(sc.find("; Secure"), std::string::npos) << sc;
    EXPECT_NE(sc.find("; SameSite=Strict"), std::string::npos) << sc;
    EXPECT_EQ(sc.find("HttpOnly"), std::string::npos) << sc;

    u.cookie.secure = false;
    u.cookie.same_site = config::SameSite::none;  // browsers demand Secure with None
    auto r2 = make_replica(u);
    Client c2(*r2, table);
    const std::string sc2(c2.route("/").set_cookie);
    EXPECT_NE(sc2.find("; SameSite=None"), std::string::npos) << sc2;
    EXPECT_NE(sc2.find("; Secure"), std::string::npos) << sc2;
}

TEST(RouterCookie, CookieRoutesToTheSameServerOnAnotherReplica) {
    auto a = make_replica(upstream_config(config::Affinity::cookie), {}, "process-secret-A");
    auto b = make_replica(upstream_config(config::Affinity::cookie), {}, "process-secret-B");
    LocalTable table_a(1000), table_b(1000);
    Client ca(*a, table_a), cb(*b, table_b);
    std::set<std::string> seen;
    for (int i = 0; i < 3; ++i) {
        const auto placed = ca.route("/");
        ASSERT_TRUE(placed.backend);
        seen.insert(placed.backend->name());
        const std::string cookie = "theme=dark; " + cookie_pair(placed.set_cookie) + "; io=stale";
        for (int k = 0; k < 5; ++k) {
            const auto d = cb.route("/", cookie);
            EXPECT_EQ(Client::name(d), placed.backend->name()) << cookie;
            EXPECT_TRUE(d.set_cookie.empty()) << "a valid cookie is not set again";
        }
        EXPECT_EQ(Client::name(ca.route("/", cookie)), placed.backend->name());
    }
    EXPECT_EQ(seen.size(), 3u);
    EXPECT_EQ(cb.router.stats("chat").local_hits, 15u);
    EXPECT_EQ(table_b.size(), 0u) << "cookie mode needs no table";
}

TEST(RouterCookie, ForgedCookiesArePlacedAgainAndCounted) {
    auto r = make_replica(upstream_config(config::Affinity::cookie));
    LocalTable table(1000);
    Client c(*r, table);
    const std::string genuine = cookie_pair(c.route("/").set_cookie);
    const std::string other_secret =
        "tether=" + balance::encode_cookie_token("another secret", "chat",
                                                 balance::cookie_server_id("chat", "s1"));
    const std::string other_upstream =
        "tether=" + balance::encode_cookie_token(kSecret, "billing",
                                                 balance::cookie_server_id("billing", "s1"));
    const std::string other_server =  // genuine, for a server this replica lacks
        "tether=" + balance::encode_cookie_token(kSecret, "chat",
                                                 balance::cookie_server_id("chat", "s9"));
    std::vector<std::string> forged{"tether=garbage", "tether=s1", other_secret,
                                    other_upstream, other_server, genuine + "A"};
    // The router checks a token against the tokens it issued (no HMAC per
    // request): every one-character change of a genuine token must still fail.
    const std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .";
    for (std::size_t pos = std::string_view("tether=").size(); pos < genuine.size(); ++pos) {
        for (char ch : alphabet) {
            if (ch == genuine[pos]) continue;
            forged.push_back(genuine);
            forged.back()[pos] = ch;
        }
    }
    for (std::size_t i = 0; i < forged.size(); ++i) {
        const auto d = c.route("/", forged[i]);
        EXPECT_TRUE(d.backend) << forged[i];
        EXPECT_TRUE(std::string(d.set_cookie).starts_with("Set-Cookie: tether=")) << forged[i];
        EXPECT_EQ(c.router.stats("chat").bad_cookies, i + 1) << forged[i];
    }
    EXPECT_EQ(c.router.stats("chat").local_hits, 0u);
    EXPECT_TRUE(c.route("/", genuine).set_cookie.empty()) << "the genuine token still routes";
}

TEST(RouterCookie, CookieForADownServerIsReplacedAndCountedAsRebind) {
    auto r = make_replica(upstream_config(config::Affinity::cookie));
    LocalTable table(1000);
    Client c(*r, table);
    auto placed = c.route("/");
    const std::string server = placed.backend->name();
    const std::string cookie = cookie_pair(placed.set_cookie);
    r->backend(server).set_up(false);
    const auto d = c.route("/", cookie);
    ASSERT_TRUE(d.backend);
    EXPECT_NE(d.backend->name(), server);
    EXPECT_NE(cookie_pair(d.set_cookie), cookie) << "a cookie for the new server";
    EXPECT_EQ(c.router.stats("chat").rebinds, 1u);
    EXPECT_EQ(c.router.stats("chat").bad_cookies, 0u);
}

TEST(RouterCookie, DrainingServerKeepsItsCookieClients) {
    auto r = make_replica(upstream_config(config::Affinity::cookie));
    LocalTable table(1000);
    Client c(*r, table);
    auto placed = c.route("/");
    const std::string server = placed.backend->name();
    const std::string cookie = cookie_pair(placed.set_cookie);
    r->backend(server).set_draining(true);
    EXPECT_EQ(Client::name(c.route("/", cookie)), server);
    for (int i = 0; i < 6; ++i) EXPECT_NE(Client::name(c.route("/")), server);
}

TEST(RouterCookie, EmptySecretUsesTheProcessSecret) {
    auto u = upstream_config(config::Affinity::cookie);
    u.cookie.secret.clear();
    auto a = make_replica(u, {}, "process-secret-A");
    auto b = make_replica(u, {}, "process-secret-B");
    LocalTable ta(100), tb(100);
    Client ca(*a, ta), cb(*b, tb);
    const std::string cookie = cookie_pair(ca.route("/").set_cookie);
    ca.route("/", cookie);
    EXPECT_EQ(ca.router.stats("chat").local_hits, 1u);
    cb.route("/", cookie);
    EXPECT_EQ(cb.router.stats("chat").bad_cookies, 1u) << "only this replica understands it";
}

// --- sid -----------------------------------------------------------------------

constexpr char kHandshake[] = "/socket.io/?EIO=4&transport=polling&t=PQx1";

TEST(RouterSid, HandshakeIsPlacedAndLearnsTheSid) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    const auto d = c.route(kHandshake);
    ASSERT_TRUE(d.backend);
    EXPECT_TRUE(d.learn_sid);
    EXPECT_FALSE(d.unknown_sid);
    EXPECT_TRUE(std::string(d.set_cookie).starts_with("Set-Cookie: tether=")) << d.set_cookie;
    const auto empty_sid = c.route("/socket.io/?EIO=4&transport=polling&sid=");
    EXPECT_TRUE(empty_sid.learn_sid) << "an empty sid is a handshake";
    EXPECT_TRUE(c.route("/socket.io/?EIO=4&transport=websocket").learn_sid);
    EXPECT_TRUE(c.route("/socket.io?EIO=4&transport=polling").learn_sid);
}

TEST(RouterSid, HandshakeWithoutFallbackCookieSetsNoCookie) {
    auto u = upstream_config(config::Affinity::sid);
    u.sid.fallback_cookie = false;
    auto r = make_replica(u);
    LocalTable table(1000);
    Client c(*r, table);
    const auto d = c.route(kHandshake);
    EXPECT_TRUE(d.learn_sid);
    EXPECT_TRUE(d.set_cookie.empty());
}

TEST(RouterSid, BoundSidRoutesToItsServer) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    c.router.bind_sid(r->up(), "sXIjZz9g-LylGIquAAAA", "s2");
    EXPECT_EQ(c.router.stats("chat").sids_learnt, 1u);
    EXPECT_EQ(table.get("chat:sid:sXIjZz9g-LylGIquAAAA", Clock::now(), std::chrono::hours(1)),
              "s2");
    for (int i = 0; i < 6; ++i) {
        const auto d = c.route("/socket.io/?EIO=4&transport=polling&t=x" + std::to_string(i) +
                               "&sid=sXIjZz9g-LylGIquAAAA");
        EXPECT_EQ(Client::name(d), "s2");
        EXPECT_FALSE(d.learn_sid);
        EXPECT_TRUE(d.set_cookie.empty());
    }
    EXPECT_EQ(
        Client::name(c.route("/socket.io/?EIO=4&transport=websocket&sid=sXIjZz9g-LylGIquAAAA")),
        "s2");
    EXPECT_EQ(Client::name(c.route("/socket.io/?sid=sXIjZz9g%2DLylGIquAAAA")), "s2")
        << "percent-decoded";
    EXPECT_EQ(c.router.stats("chat").local_hits, 8u);
}

// The router reads the time as the rest of the request path does
// (core::coarse_now): inside a completion's ClockScope a sticky request makes
// no clock read of its own, and the expiry it sets counts from the scope's
// time. Outside a scope (the tests above) it is the clock itself.
std::chrono::milliseconds left_at(const LocalTable& table, const std::string& key,
                                  Clock::time_point at) {
    for (std::size_t shard = 0; shard < LocalTable::kShards; ++shard)
        for (const auto& b : table.bindings(shard, at))
            if (b.key == key) return b.left;
    ADD_FAILURE() << "no binding " << key;
    return {};
}

TEST(RouterSid, StickyRequestsTakeTheTimeOfTheirCompletionsClockRead) {
    using namespace std::chrono_literals;
    for (const auto mode : {config::Affinity::sid, config::Affinity::ip_hash}) {
        auto r = make_replica(upstream_config(mode));
        LocalTable table(1000);
        Client c(*r, table);
        if (mode == config::Affinity::sid) c.router.bind_sid(r->up(), "abc", "s2");
        const auto ttl = r->up().config->affinity_ttl;
        const std::string key = mode == config::Affinity::sid ? "chat:sid:abc"
                                                              : "chat:ip_hash:203.0.113.7";
        for (int step = 0; step < 2; ++step) {  // ip_hash: placed, then a hit; sid: two hits
            Clock::time_point scope_time;
            {
                const core::ClockScope scope;
                scope_time = core::coarse_now();
                std::this_thread::sleep_for(20ms);
                const auto d = c.route("/socket.io/?EIO=4&transport=polling&sid=abc", {},
                                       "203.0.113.7");
                ASSERT_NE(d.backend, nullptr);
            }
            EXPECT_EQ(left_at(table, key, scope_time), ttl)
                << "expiry = the scope's time + ttl, not a later clock read (step " << step << ")";
        }
    }
}

// The local table remembers a binding's server by its index in the routing
// snapshot; a reload that reorders the servers (same Backends, new indexes)
// must still route the sid to its server, and its counters to its upstream.
TEST(RouterSid, BoundSidFollowsItsServerAcrossAReloadThatReordersServers) {
    auto cfg = upstream_config(config::Affinity::sid);
    auto before = make_replica(cfg);
    LocalTable table(1000);
    Router router(table);
    balance::Picker picker{config::Balance::round_robin, 1};
    auto route = [&](Replica& r, std::string_view target) {
        return router.route(r.rt, 0, *r.tables, picker, RouteInput{target, {}, "192.0.2.1"}, {});
    };
    router.bind_sid(before->up(), "abc", "s3");
    EXPECT_EQ(Client::name(route(*before, "/socket.io/?EIO=4&sid=abc")), "s3");
    std::reverse(cfg.servers.begin(), cfg.servers.end());  // s3 s2 s1
    auto after = make_replica(cfg, before->up().backends);
    ASSERT_EQ(after->up().backends[0]->name(), "s3");
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(Client::name(route(*after, "/socket.io/?EIO=4&sid=abc")), "s3");
        EXPECT_EQ(Client::name(route(*before, "/socket.io/?EIO=4&sid=abc")), "s3");
    }
    auto other_cfg = upstream_config(config::Affinity::sid);
    other_cfg.name = "other";
    auto other = make_replica(other_cfg);
    router.bind_sid(other->up(), "abc", "s1");
    EXPECT_EQ(Client::name(route(*other, "/socket.io/?EIO=4&sid=abc")), "s1");
    EXPECT_EQ(router.stats("chat").local_hits, 7u);
    EXPECT_EQ(router.stats("other").local_hits, 1u);
}

TEST(RouterSid, BoundSidOfADownServerIsUnknown) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    c.router.bind_sid(r->up(), "abc", "s2");
    r->backend("s2").set_up(false);
    const auto d = c.route("/socket.io/?EIO=4&transport=polling&sid=abc");
    EXPECT_TRUE(d.unknown_sid);
    EXPECT_EQ(d.backend, nullptr);
    EXPECT_EQ(c.router.stats("chat").unknown_sids, 1u);
    EXPECT_EQ(c.router.stats("chat").rebinds, 1u);
    EXPECT_EQ(table.get("chat:sid:abc", Clock::now(), std::chrono::hours(1)), std::nullopt)
        << "the dead binding is dropped";
}

TEST(RouterSid, SidBoundToARemovedServerIsUnknown) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    c.router.bind_sid(r->up(), "gone", "s9");
    EXPECT_TRUE(c.route("/socket.io/?EIO=4&sid=gone").unknown_sid);
}

TEST(RouterSid, DrainingServerKeepsItsSessions) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    c.router.bind_sid(r->up(), "abc", "s2");
    r->backend("s2").set_draining(true);
    EXPECT_EQ(Client::name(c.route("/socket.io/?EIO=4&sid=abc")), "s2");
    for (int i = 0; i < 6; ++i) EXPECT_NE(Client::name(c.route(kHandshake)), "s2");
}

TEST(RouterSid, UnboundSidFollowsAValidFallbackCookieAndIsBound) {
    auto a = make_replica(upstream_config(config::Affinity::sid), {}, "process-secret-A");
    auto b = make_replica(upstream_config(config::Affinity::sid), {}, "process-secret-B");
    LocalTable ta(1000), tb(1000);
    Client ca(*a, ta), cb(*b, tb);
    // Replica A answers the handshake; replica B never learnt the sid.
    std::string server, cookie;
    for (int i = 0; i < 3 && server != "s3"; ++i) {
        const auto h = ca.route(kHandshake);
        server = Client::name(h);
        cookie = cookie_pair(h.set_cookie);
    }
    ASSERT_EQ(server, "s3");
    const auto d =
        cb.route("/socket.io/?EIO=4&transport=polling&sid=unbound1", "io=unbound1; " + cookie);
    EXPECT_EQ(Client::name(d), "s3");
    EXPECT_FALSE(d.unknown_sid);
    EXPECT_EQ(tb.get("chat:sid:unbound1", Clock::now(), std::chrono::hours(1)), "s3");
    // From now on the binding alone routes it (no cookie needed).
    for (int i = 0; i < 4; ++i)
        EXPECT_EQ(Client::name(cb.route("/socket.io/?EIO=4&transport=polling&sid=unbound1")), "s3");
}

TEST(RouterSid, UnboundSidWithoutCookieIsPlacedByBalance) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    std::string seq;
    for (int i = 0; i < 3; ++i) {
        const auto d = c.route("/socket.io/?EIO=4&transport=polling&sid=nobody");
        seq += Client::name(d);
        EXPECT_FALSE(d.learn_sid);
        EXPECT_FALSE(d.unknown_sid);
    }
    EXPECT_EQ(seq, "s1s2s3");
    EXPECT_EQ(c.router.stats("chat").misses, 3u);
    // The io cookie is never used for routing; a forged tether cookie is counted.
    c.route("/socket.io/?EIO=4&sid=nobody", "io=nobody; tether=forged");
    EXPECT_EQ(c.router.stats("chat").bad_cookies, 1u);
}

TEST(RouterSid, PathOutsideSidPathIsPlainPlacement) {
    auto r = make_replica(upstream_config(config::Affinity::sid));
    LocalTable table(1000);
    Client c(*r, table);
    c.router.bind_sid(r->up(), "abc", "s2");
    std::string seq;
    for (int i = 0; i < 3; ++i) {
        const auto d = c.route("/api/messages?sid=abc");
        seq += Client::name(d);
        EXPECT_FALSE(d.learn_sid);
        EXPECT_TRUE(d.set_cookie.empty());
    }
    EXPECT_EQ(seq, "s1s2s3");
    EXPECT_FALSE(c.route("/").learn_sid);
    EXPECT_FALSE(c.route("/socket.iox/?EIO=4").learn_sid);
}

TEST(RouterSid, CustomPathAndParam) {
    auto u = upstream_config(config::Affinity::sid);
    u.sid.path = "/rt/";
    u.sid.param = "session";
    auto r = make_replica(u);
    LocalTable table(1000);
    Client c(*r, table);
    EXPECT_TRUE(c.route("/rt/?EIO=4&transport=websocket").learn_sid);
    EXPECT_TRUE(c.route("/rt?EIO=4&transport=polling").learn_sid);
    EXPECT_TRUE(c.route("/rt/?EIO=4&sid=xyz").learn_sid) << "sid is not the configured param";
    c.router.bind_sid(r->up(), "xyz", "s3");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(Client::name(c.route("/rt/?EIO=4&session=xyz")), "s3");
    EXPECT_FALSE(c.route("/socket.io/?EIO=4&transport=polling").learn_sid) << "outside /rt/";
    std::string seq;
    for (int i = 0; i < 3; ++i) seq += Client::name(c.route("/socket.io/?session=xyz"));
    EXPECT_NE(seq, "s3s3s3");
}

// --- masked_ip -------------------------------------------------------------------

TEST(MaskedIp, V4) {
    EXPECT_EQ(masked_ip("10.1.2.3", 24, 64), "10.1.2.0");
    EXPECT_EQ(masked_ip("10.1.2.3", 32, 64), "10.1.2.3");
    EXPECT_EQ(masked_ip("10.1.2.3", 0, 64), "0.0.0.0");
    EXPECT_EQ(masked_ip("10.1.2.255", 16, 64), "10.1.0.0");
    EXPECT_EQ(masked_ip("10.1.2.3", 20, 64), "10.1.0.0");
    EXPECT_EQ(masked_ip("255.255.255.255", 1, 64), "128.0.0.0");
}

TEST(MaskedIp, V6) {
    EXPECT_EQ(masked_ip("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2::");
    EXPECT_EQ(masked_ip("2001:db8:1:2:3:4:5:6", 24, 128), "2001:db8:1:2:3:4:5:6");
    EXPECT_EQ(masked_ip("2001:db8:1:2:3:4:5:6", 24, 0), "::");
    EXPECT_EQ(masked_ip("2001:db8:1:2:3:4:5:6", 24, 56), "2001:db8:1::");
    EXPECT_EQ(masked_ip("2001:db8:1:2ff:3:4:5:6", 24, 60), "2001:db8:1:2f0::");
    EXPECT_EQ(masked_ip("2001:DB8::1", 24, 128), "2001:db8::1") << "canonical text";
}

TEST(MaskedIp, V4MappedV6IsTreatedAsV4) {
    EXPECT_EQ(masked_ip("::ffff:10.1.2.3", 24, 64), "10.1.2.0");
    EXPECT_EQ(masked_ip("::ffff:10.1.2.3", 32, 0), "10.1.2.3");
    EXPECT_EQ(masked_ip("::ffff:10.1.2.3", 32, 64), masked_ip("10.1.2.3", 32, 64))
        << "one client, one key, whichever socket family it came in on";
}

TEST(MaskedIp, NotAnAddressIsUnchanged) {
    EXPECT_EQ(masked_ip("unix:/tmp/sock", 24, 64), "unix:/tmp/sock");
    EXPECT_EQ(masked_ip("", 24, 64), "");
    EXPECT_EQ(masked_ip("10.1.2", 24, 64), "10.1.2");
}

// The IPv4 fast path agrees with Asio's parser and printer (what it replaced).
TEST(MaskedIp, FastPathAgreesWithAsio) {
    for (const char* ip : {"0.0.0.0", "255.255.255.255", "10.1.2.3", "192.168.100.254", "1.10.100.9",
                           "010.1.2.3", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04", "1..2.3",
                           "1.2.3.4 ", "", "1234.1.1.1", "::ffff:10.1.2.3", "10.1.2.3a"}) {
        for (int bits : {0, 8, 13, 24, 32}) {
            boost::system::error_code ec;
            auto addr = boost::asio::ip::make_address(ip, ec);
            std::string expect = ip;
            if (!ec && addr.is_v4()) {
                const std::uint32_t mask = bits == 0 ? 0 : bits == 32 ? ~0u : ~0u << (32 - bits);
                expect = boost::asio::ip::address_v4(addr.to_v4().to_uint() & mask).to_string();
            }
            if (!ec && addr.is_v6()) continue;  // the v6 path is not the fast one
            EXPECT_EQ(masked_ip(ip, bits, 64), expect) << ip << "/" << bits;
        }
    }
}

}  // namespace
