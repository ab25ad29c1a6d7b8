// Config loader tests: defaults, the SPEC example, every key, and the exact text and position
// of each kind of diagnostic (what `tether -t` prints). Files live in a per-test temp dir;
// the two environment variables the loader reads are cleared around every test.
#include "tether/config/loader.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace tether::config {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

/// The SPEC.md "Configuration (YAML)" block, verbatim.
constexpr std::string_view kSpecExample =
    R"yaml(workers: auto                 # I/O threads; auto = CPUs this process may run on (affinity mask)
listen:
  - address: 0.0.0.0:8080     # host:port, [::]:port
    upstream: io_nodes
    proxy_protocol: false     # accept PROXY protocol v1/v2 from an L4 balancer
  - address: 0.0.0.0:8443
    upstream: io_nodes
    tls:
      certificate: conf/tls/cert.pem   # one certificate; or a list chosen by SNI:
      private_key: conf/tls/key.pem    # certificates: [{certificate, private_key}, ...]
      protocols: [TLSv1.2, TLSv1.3]    # (the first of the list is the default)
admin:                        # on by default at this address; `admin: off` disables it
  address: 127.0.0.1:9901     # /metrics /healthz /readyz /status and the drain API
redis:                        # optional: without it the affinity table is in-process (one replica)
  address: 127.0.0.1:6379
  password: ""                # or env: REDIS_PASSWORD
  db: 0
  key_prefix: "tether:"
  timeout: 100ms              # one operation; past it the proxy routes on its own decision
trusted_proxies: [10.0.0.0/8] # whose X-Forwarded-For is believed for the client IP
upstreams:
  io_nodes:
    affinity: sid             # none | ip_hash | cookie | sid
    balance: least_conn       # placement of new clients: least_conn | round_robin | random_two
    affinity_ttl: 1h          # a binding lives this long after its last use
    cookie:                   # affinity: cookie (and the fallback of sid)
      name: tether
      secret: ""              # HMAC key shared by replicas; or env: TETHER_COOKIE_SECRET.
                              # Empty: a random key per process, and -t warns that replicas
                              # will not understand each other's cookies
      max_age: 0              # 0 = session cookie
      secure: false
      http_only: true
      same_site: lax
    sid:                      # affinity: sid
      path: /socket.io/       # requests under this path carry Engine.IO traffic
      param: sid              # the query parameter that names the session
      fallback_cookie: true   # also set the signed tether cookie on the handshake answer;
                              # it routes a sid the affinity table cannot find (Redis down)
    ip_hash:
      hash: maglev            # consistent hashing over healthy servers
      balance_factor: 150     # bounded load, in percent of the mean (0 = off)
      prefix_v4: 32           # hash the address masked to this many bits (nginx uses 24)
      prefix_v6: 64
    drain:
      close_spread: 30s       # when a server is drained or tether stops, its tunnels get
                              # close code 1001 spread over this window, not all at once
    keepalive: 32             # idle upstream connections kept per worker
    retries: 1                # retry another server for a request not yet sent
    servers:
      - name: s1              # defaults to the address
        address: 127.0.0.1:3001
        weight: 1
        max_conns: 0          # 0 = unlimited
        max_fails: 3          # passive check, as nginx
        fail_timeout: 30s
        backup: false
    health_check:             # absent: no active checks (passive ones still apply)
      initial: up             # state before the first result: up | down
      path: /healthz
      interval: 2s
      timeout: 1s
      rise: 2
      fall: 3
      expect_status: 200-399
timeouts:
  connect: 5s                 # to a backend
  client_header: 10s          # whole request head from a client (slowloris)
  idle: 75s                   # keep-alive idle, both sides
  upstream_response: 60s      # first byte of a response
  tunnel: 1h                  # WebSocket idle in both directions (0 = never)
  shutdown: 30s
limits:
  max_connections: 100000     # client connections held by this process
  max_connections_per_ip: 0   # 0 = unlimited
  max_header_size: 16k
  max_body_size: 1m
  rate:                       # per client IP; absent = no rate limit
    requests_per_second: 100
    burst: 200
    shared: true              # one budget across replicas through Redis (local when Redis is down)
headers:
  forwarded: true             # X-Forwarded-For/-Proto/-Host and X-Real-IP
  request_id: true            # X-Request-Id, generated when absent
access_log:
  path: stdout                # stdout | stderr | off | a file (off may be quoted or not)
  format: combined            # combined | json
)yaml";

/// The smallest valid file: one listen entry, one upstream with one server (lines 1-7).
constexpr std::string_view kMinimal = R"(listen:
  - address: 0.0.0.0:8080
    upstream: app
upstreams:
  app:
    servers:
      - address: 127.0.0.1:3001
)";

constexpr std::string_view kDurationHint = "(use a number with ms, s, m, h or d, e.g. 500ms, 30s)";

class LoaderTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("tether_config_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_ / "conf" / "tls");
        write("conf/tls/cert.pem", "-----BEGIN CERTIFICATE-----\n");
        write("conf/tls/key.pem", "-----BEGIN PRIVATE KEY-----\n");
        save_env("REDIS_PASSWORD");
        save_env("TETHER_COOKIE_SECRET");
    }

    void TearDown() override {
        for (const auto& [name, value] : saved_env_) {
            if (value)
                ::setenv(name.c_str(), value->c_str(), 1);
            else
                ::unsetenv(name.c_str());
        }
        fs::remove_all(dir_);
    }

    void save_env(const std::string& name) {
        const char* value = std::getenv(name.c_str());
        saved_env_.emplace_back(name, value ? std::optional<std::string>(value) : std::nullopt);
        ::unsetenv(name.c_str());
    }

    void write(const std::string& relative, std::string_view text) {
        std::ofstream(dir_ / relative) << text;
    }

    LoadResult load(std::string_view yaml) {
        return load_config_text(yaml, "t.yaml", dir_.string());
    }

    /// Loads and returns the config, failing the test on any error.
    Config load_ok(std::string_view yaml) {
        LoadResult result = load(yaml);
        EXPECT_EQ(texts(result.errors), std::vector<std::string>{});
        return result.config.value_or(Config{});
    }

    /// The diagnostics as `tether -t` prints them.
    static std::vector<std::string> texts(const std::vector<Diagnostic>& list,
                                          bool warning = false) {
        std::vector<std::string> out;
        for (const Diagnostic& d : list) out.push_back(d.text(warning));
        return out;
    }

    /// Errors of kMinimal + `extra` (appended from line 8 on).
    std::vector<std::string> errors_with(std::string_view extra) {
        LoadResult result = load(std::string(kMinimal) + std::string(extra));
        EXPECT_FALSE(result.config.has_value());
        return texts(result.errors);
    }

    std::string path(const std::string& relative) const { return (dir_ / relative).string(); }

    fs::path dir_;
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_env_;
};

// ---- defaults and the full schema ---------------------------------------------------------

TEST_F(LoaderTest, MinimalFileTakesEveryDefault) {
    Config c = load_ok(kMinimal);
    EXPECT_EQ(c.source_path, "t.yaml");
    EXPECT_EQ(c.workers, 0);
    ASSERT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.listen[0].address.host, "0.0.0.0");
    EXPECT_EQ(c.listen[0].address.port, 8080);
    EXPECT_EQ(c.listen[0].upstream, "app");
    EXPECT_FALSE(c.listen[0].proxy_protocol);
    EXPECT_FALSE(c.listen[0].tls.has_value());
    EXPECT_TRUE(c.admin.enabled);
    EXPECT_EQ(c.admin.address.text(), "127.0.0.1:9901");
    EXPECT_FALSE(c.redis.has_value());
    EXPECT_TRUE(c.trusted_proxies.empty());

    ASSERT_EQ(c.upstreams.count("app"), 1u);
    const Upstream& u = c.upstreams.at("app");
    EXPECT_EQ(u.name, "app");
    EXPECT_EQ(u.affinity, Affinity::none);
    EXPECT_EQ(u.balance, Balance::least_conn);
    EXPECT_EQ(u.affinity_ttl, milliseconds(3'600'000));
    EXPECT_EQ(u.cookie.name, "tether");
    EXPECT_EQ(u.cookie.secret, "");
    EXPECT_EQ(u.cookie.max_age, milliseconds(0));
    EXPECT_FALSE(u.cookie.secure);
    EXPECT_TRUE(u.cookie.http_only);
    EXPECT_EQ(u.cookie.same_site, SameSite::lax);
    EXPECT_EQ(u.sid.path, "/socket.io/");
    EXPECT_EQ(u.sid.param, "sid");
    EXPECT_TRUE(u.sid.fallback_cookie);
    EXPECT_EQ(u.ip_hash.hash, "maglev");
    EXPECT_EQ(u.ip_hash.balance_factor, 150);
    EXPECT_EQ(u.ip_hash.prefix_v4, 32);
    EXPECT_EQ(u.ip_hash.prefix_v6, 64);
    EXPECT_EQ(u.drain.close_spread, milliseconds(30'000));
    EXPECT_FALSE(u.drain.close_removed);
    EXPECT_TRUE(u.fail_on_status.empty());  // a 5xx is not a passive failure by default
    EXPECT_EQ(u.keepalive, 32);
    EXPECT_EQ(u.retries, 1);
    EXPECT_FALSE(u.health_check.has_value());
    ASSERT_EQ(u.servers.size(), 1u);
    const Server& s = u.servers[0];
    EXPECT_EQ(s.name, "127.0.0.1:3001");  // defaults to the address
    EXPECT_EQ(s.address.text(), "127.0.0.1:3001");
    EXPECT_EQ(s.weight, 1);
    EXPECT_EQ(s.max_conns, 0);
    EXPECT_EQ(s.max_fails, 3);
    EXPECT_EQ(s.fail_timeout, milliseconds(30'000));
    EXPECT_FALSE(s.backup);

    EXPECT_EQ(c.timeouts.connect, milliseconds(5'000));
    EXPECT_EQ(c.timeouts.client_header, milliseconds(10'000));
    EXPECT_EQ(c.timeouts.idle, milliseconds(75'000));
    EXPECT_EQ(c.timeouts.upstream_response, milliseconds(60'000));
    EXPECT_EQ(c.timeouts.tunnel, milliseconds(3'600'000));
    EXPECT_EQ(c.timeouts.shutdown, milliseconds(30'000));
    EXPECT_EQ(c.limits.max_connections, 100'000);
    EXPECT_EQ(c.limits.max_connections_per_ip, 0);
    EXPECT_EQ(c.limits.max_header_size, 16u * 1024);
    EXPECT_EQ(c.limits.max_body_size, 1024u * 1024);
    EXPECT_EQ(c.limits.buffer_size, 16u * 1024);
    EXPECT_FALSE(c.limits.rate.has_value());
    EXPECT_TRUE(c.headers.forwarded);
    EXPECT_TRUE(c.headers.request_id);
    EXPECT_EQ(c.access_log.path, "stdout");
    EXPECT_EQ(c.access_log.format, LogFormat::combined);
}

TEST_F(LoaderTest, SpecExampleLoadsWithItsValues) {
    LoadResult result = load(kSpecExample);
    ASSERT_EQ(texts(result.errors), std::vector<std::string>{});
    const Config& c = *result.config;
    EXPECT_EQ(c.workers, 0);
    ASSERT_EQ(c.listen.size(), 2u);
    EXPECT_EQ(c.listen[0].address.text(), "0.0.0.0:8080");
    EXPECT_FALSE(c.listen[0].proxy_protocol);
    EXPECT_EQ(c.listen[1].address.text(), "0.0.0.0:8443");
    EXPECT_EQ(c.listen[1].upstream, "io_nodes");
    ASSERT_TRUE(c.listen[1].tls.has_value());
    ASSERT_EQ(c.listen[1].tls->certificates.size(), 1u);
    EXPECT_EQ(c.listen[1].tls->certificates[0].certificate, path("conf/tls/cert.pem"));
    EXPECT_EQ(c.listen[1].tls->certificates[0].private_key, path("conf/tls/key.pem"));
    EXPECT_EQ(c.listen[1].tls->protocols, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
    EXPECT_TRUE(c.admin.enabled);
    EXPECT_EQ(c.admin.address.text(), "127.0.0.1:9901");
    ASSERT_TRUE(c.redis.has_value());
    EXPECT_EQ(c.redis->address.text(), "127.0.0.1:6379");
    EXPECT_EQ(c.redis->password, "");
    EXPECT_EQ(c.redis->db, 0);
    EXPECT_EQ(c.redis->key_prefix, "tether:");
    EXPECT_EQ(c.redis->timeout, milliseconds(100));
    EXPECT_EQ(c.trusted_proxies, std::vector<std::string>{"10.0.0.0/8"});
    const Upstream& u = c.upstreams.at("io_nodes");
    EXPECT_EQ(u.affinity, Affinity::sid);
    EXPECT_EQ(u.servers.at(0).name, "s1");
    ASSERT_TRUE(u.health_check.has_value());
    EXPECT_TRUE(u.health_check->initial_up);
    EXPECT_EQ(u.health_check->path, "/healthz");
    ASSERT_EQ(u.health_check->expect_status.size(), 1u);
    EXPECT_EQ(u.health_check->expect_status[0].lo, 200);
    EXPECT_EQ(u.health_check->expect_status[0].hi, 399);
    ASSERT_TRUE(c.limits.rate.has_value());
    EXPECT_EQ(c.limits.rate->requests_per_second, 100);
    EXPECT_EQ(c.limits.rate->burst, 200);
    EXPECT_TRUE(c.limits.rate->shared);
    // sid affinity with an empty secret and no TETHER_COOKIE_SECRET: the one warning.
    EXPECT_EQ(texts(result.warnings, true),
              std::vector<std::string>{
                  "t.yaml:28:15: warning: 'upstreams.io_nodes.cookie.secret': empty and "
                  "TETHER_COOKIE_SECRET is not set; each process signs cookies with its own "
                  "random key, so replicas will not understand each other's cookies"});
}

/// Every key of the schema set to a value that differs from its default.
constexpr std::string_view kEveryKey = R"(workers: 3
listen:
  - address: "[::]:8080"
    upstream: io
    proxy_protocol: true
  - address: 127.0.0.1:8443
    upstream: io
    tls:
      certificates:
        - {certificate: conf/tls/cert.pem, private_key: conf/tls/key.pem}
        - {certificate: other.pem, private_key: conf/tls/key.pem}
      protocols: [TLSv1.3]
admin:
  address: 0.0.0.0:9000
redis:
  address: redis.local:6380
  password: hunter2
  db: 4
  key_prefix: "t2:"
  timeout: 250ms
trusted_proxies: [10.0.0.0/8, 192.168.1.7, "fd00::/8"]
upstreams:
  io:
    affinity: cookie
    balance: random_two
    affinity_ttl: 2h
    cookie:
      name: lb
      secret: s3cret
      max_age: 7d
      secure: true
      http_only: false
      same_site: strict
    sid:
      path: /ws/
      param: session
      fallback_cookie: false
    ip_hash:
      hash: maglev
      balance_factor: 125
      prefix_v4: 24
      prefix_v6: 48
    drain:
      close_spread: 0
      close_removed: true
    keepalive: 0
    retries: 3
    fail_on_status: [500-504, 429]
    servers:
      - name: a
        address: localhost:3001
        weight: 5
        max_conns: 100
        max_fails: 0
        fail_timeout: 10s
        backup: true
      - address: "[::1]:3002"
    health_check:
      initial: down
      path: /ready
      interval: 500ms
      timeout: 250ms
      rise: 1
      fall: 5
      expect_status: [200, "204-299"]
timeouts:
  connect: 1s
  client_header: 2s
  idle: 3s
  upstream_response: 4s
  tunnel: 0
  shutdown: 0
limits:
  max_connections: 10
  max_connections_per_ip: 2
  max_header_size: 8k
  max_body_size: 2m
  buffer_size: 64k
  rate:
    requests_per_second: 2.5
    burst: 10
    shared: false
headers:
  forwarded: false
  request_id: no
access_log:
  path: logs/access.log
  format: json
)";

TEST_F(LoaderTest, EveryKeyOverridesItsDefault) {
    write("other.pem", "x");
    fs::create_directories(dir_ / "logs");
    Config c = load_ok(kEveryKey);
    EXPECT_EQ(c.workers, 3);
    ASSERT_EQ(c.listen.size(), 2u);
    EXPECT_EQ(c.listen[0].address.host, "::");
    EXPECT_EQ(c.listen[0].address.text(), "[::]:8080");
    EXPECT_TRUE(c.listen[0].proxy_protocol);
    const TlsConfig& tls = c.listen[1].tls.value();
    ASSERT_EQ(tls.certificates.size(), 2u);
    EXPECT_EQ(tls.certificates[1].certificate, path("other.pem"));
    EXPECT_EQ(tls.protocols, std::vector<std::string>{"TLSv1.3"});
    EXPECT_EQ(c.admin.address.text(), "0.0.0.0:9000");
    const Redis& r = c.redis.value();
    EXPECT_EQ(r.address.host, "redis.local");
    EXPECT_EQ(r.address.port, 6380);
    EXPECT_EQ(r.password, "hunter2");
    EXPECT_EQ(r.db, 4);
    EXPECT_EQ(r.key_prefix, "t2:");
    EXPECT_EQ(r.timeout, milliseconds(250));
    EXPECT_EQ(c.trusted_proxies,
              (std::vector<std::string>{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8"}));

    const Upstream& u = c.upstreams.at("io");
    EXPECT_EQ(u.affinity, Affinity::cookie);
    EXPECT_EQ(u.balance, Balance::random_two);
    EXPECT_EQ(u.affinity_ttl, milliseconds(7'200'000));
    EXPECT_EQ(u.cookie.name, "lb");
    EXPECT_EQ(u.cookie.secret, "s3cret");
    EXPECT_EQ(u.cookie.max_age, milliseconds(7LL * 86'400'000));
    EXPECT_TRUE(u.cookie.secure);
    EXPECT_FALSE(u.cookie.http_only);
    EXPECT_EQ(u.cookie.same_site, SameSite::strict);
    EXPECT_EQ(u.sid.path, "/ws/");
    EXPECT_EQ(u.sid.param, "session");
    EXPECT_FALSE(u.sid.fallback_cookie);
    EXPECT_EQ(u.ip_hash.balance_factor, 125);
    EXPECT_EQ(u.ip_hash.prefix_v4, 24);
    EXPECT_EQ(u.ip_hash.prefix_v6, 48);
    EXPECT_EQ(u.drain.close_spread, milliseconds(0));
    EXPECT_TRUE(u.drain.close_removed);
    EXPECT_EQ(u.keepalive, 0);
    EXPECT_EQ(u.retries, 3);
    ASSERT_EQ(u.fail_on_status.size(), 2u);
    EXPECT_EQ(u.fail_on_status[0].lo, 500);
    EXPECT_EQ(u.fail_on_status[0].hi, 504);
    EXPECT_EQ(u.fail_on_status[1].lo, 429);
    EXPECT_TRUE(config::status_in(502, u.fail_on_status));
    EXPECT_FALSE(config::status_in(505, u.fail_on_status));
    ASSERT_EQ(u.servers.size(), 2u);
    const Server& a = u.servers[0];
    EXPECT_EQ(a.name, "a");
    EXPECT_EQ(a.address.text(), "localhost:3001");
    EXPECT_EQ(a.weight, 5);
    EXPECT_EQ(a.max_conns, 100);
    EXPECT_EQ(a.max_fails, 0);
    EXPECT_EQ(a.fail_timeout, milliseconds(10'000));
    EXPECT_TRUE(a.backup);
    EXPECT_EQ(u.servers[1].name, "[::1]:3002");
    EXPECT_EQ(u.servers[1].address.host, "::1");
    const HealthCheck& h = u.health_check.value();
    EXPECT_FALSE(h.initial_up);
    EXPECT_EQ(h.path, "/ready");
    EXPECT_EQ(h.interval, milliseconds(500));
    EXPECT_EQ(h.timeout, milliseconds(250));
    EXPECT_EQ(h.rise, 1);
    EXPECT_EQ(h.fall, 5);
    ASSERT_EQ(h.expect_status.size(), 2u);
    EXPECT_EQ(h.expect_status[0].lo, 200);
    EXPECT_EQ(h.expect_status[0].hi, 200);
    EXPECT_EQ(h.expect_status[1].lo, 204);
    EXPECT_EQ(h.expect_status[1].hi, 299);

    EXPECT_EQ(c.timeouts.connect, milliseconds(1000));
    EXPECT_EQ(c.timeouts.client_header, milliseconds(2000));
    EXPECT_EQ(c.timeouts.idle, milliseconds(3000));
    EXPECT_EQ(c.timeouts.upstream_response, milliseconds(4000));
    EXPECT_EQ(c.timeouts.tunnel, milliseconds(0));
    EXPECT_EQ(c.timeouts.shutdown, milliseconds(0));
    EXPECT_EQ(c.limits.max_connections, 10);
    EXPECT_EQ(c.limits.max_connections_per_ip, 2);
    EXPECT_EQ(c.limits.max_header_size, 8u * 1024);
    EXPECT_EQ(c.limits.max_body_size, 2u * 1024 * 1024);
    EXPECT_EQ(c.limits.buffer_size, 64u * 1024);
    const RateLimit& rate = c.limits.rate.value();
    EXPECT_EQ(rate.requests_per_second, 2.5);
    EXPECT_EQ(rate.burst, 10);
    EXPECT_FALSE(rate.shared);
    EXPECT_FALSE(c.headers.forwarded);
    EXPECT_FALSE(c.headers.request_id);
    EXPECT_EQ(c.access_log.path, path("logs/access.log"));
    EXPECT_EQ(c.access_log.format, LogFormat::json);
}

TEST_F(LoaderTest, SingleCertificateComesFirstAndTlsPathsMayBeAbsolute) {
    const std::string yaml =
        "upstreams:\n  app:\n    servers: [{address: 127.0.0.1:3001}]\n"
        "listen:\n  - address: 0.0.0.0:8443\n    upstream: app\n"
        "    tls: {certificate: " +
        path("conf/tls/cert.pem") + ", private_key: conf/tls/../tls/key.pem}\n";
    Config c = load_ok(yaml);
    const TlsConfig& tls = c.listen.at(0).tls.value();
    ASSERT_EQ(tls.certificates.size(), 1u);
    EXPECT_EQ(tls.certificates[0].certificate, path("conf/tls/cert.pem"));
    EXPECT_EQ(tls.certificates[0].private_key, path("conf/tls/key.pem"));
}

// ---- diagnostics: text and position -------------------------------------------------------

TEST_F(LoaderTest, UnknownKeyNamesPathAndValidKeys) {
    LoadResult result = load(R"(listen:
  - address: 0.0.0.0:8080
    upstream: app
upstreams:
  app:
    foo: 1
    servers:
      - address: 127.0.0.1:3001
)");
    EXPECT_EQ(texts(result.errors),
              std::vector<std::string>{
                  "t.yaml:6:5: unknown key 'foo' in 'upstreams.app' (valid: affinity, balance, "
                  "affinity_ttl, cookie, sid, ip_hash, drain, keepalive, retries, fail_on_status, "
                  "servers, "
                  "health_check, tls, send_proxy_protocol)"});
}

TEST_F(LoaderTest, UnknownTopLevelKey) {
    EXPECT_EQ(errors_with("listens: []\n"),
              std::vector<std::string>{
                  "t.yaml:8:1: unknown key 'listens' (valid: workers, listen, admin, redis, "
                  "trusted_proxies, upstreams, timeouts, limits, headers, access_log)"});
    // A key that swallowed the lines after it is cut short in the message.
    const std::string long_key(70, 'k');
    std::vector<std::string> errors = errors_with(long_key + ": 1\n");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_TRUE(errors[0].starts_with("t.yaml:8:1: unknown key '" + std::string(57, 'k') +
                                      "'... (valid: workers,"))
        << errors[0];
}

TEST_F(LoaderTest, WrongTypes) {
    EXPECT_EQ(errors_with("timeouts: 5s\n"),
              std::vector<std::string>{"t.yaml:8:11: 'timeouts': expected a map, got '5s'"});
    EXPECT_EQ(
        errors_with("trusted_proxies: {a: 1}\n"),
        std::vector<std::string>{"t.yaml:8:18: 'trusted_proxies': expected a list, got a map"});
    EXPECT_EQ(errors_with("headers:\n  forwarded: maybe\n"),
              std::vector<std::string>{"t.yaml:9:14: 'headers.forwarded': expected a boolean "
                                       "(true or false), got 'maybe'"});
    EXPECT_EQ(errors_with("limits:\n  max_connections: [1]\n"),
              std::vector<std::string>{
                  "t.yaml:9:20: 'limits.max_connections': expected an integer, got a list"});
    EXPECT_EQ(errors_with("limits:\n  max_connections: lots\n"),
              std::vector<std::string>{
                  "t.yaml:9:20: 'limits.max_connections': expected an integer, got 'lots'"});
    EXPECT_EQ(
        errors_with("redis:\n  key_prefix: {a: b}\n"),
        std::vector<std::string>{"t.yaml:9:15: 'redis.key_prefix': expected a string, got a map"});
    EXPECT_EQ(errors_with("workers: many\n"),
              std::vector<std::string>{
                  "t.yaml:8:10: 'workers': invalid value 'many' (valid: auto or 1..1024)"});
}

TEST_F(LoaderTest, BadDuration) {
    EXPECT_EQ(errors_with("timeouts:\n  connect: 5x\n"),
              std::vector<std::string>{"t.yaml:9:12: 'timeouts.connect': invalid duration '5x' " +
                                       std::string(kDurationHint)});
    EXPECT_EQ(errors_with("timeouts:\n  connect: 0\n"),
              std::vector<std::string>{"t.yaml:9:12: 'timeouts.connect': must be greater than 0"});
}

TEST_F(LoaderTest, BadSize) {
    EXPECT_EQ(errors_with("limits:\n  max_header_size: 16x\n"),
              std::vector<std::string>{
                  "t.yaml:9:20: 'limits.max_header_size': invalid size '16x' (use a number of "
                  "bytes with an optional k, m or g suffix, e.g. 16k, 1m)"});
    EXPECT_EQ(errors_with("limits:\n  buffer_size: 2g\n"),
              std::vector<std::string>{
                  "t.yaml:9:16: 'limits.buffer_size': 2g is too large (at most 1g)"});
}

TEST_F(LoaderTest, UnknownUpstream) {
    LoadResult result = load(R"(listen:
  - address: 0.0.0.0:8080
    upstream: foo
upstreams:
  app:
    servers: [{address: 127.0.0.1:3001}]
)");
    EXPECT_EQ(
        texts(result.errors),
        std::vector<std::string>{"t.yaml:3:15: 'listen[0].upstream': unknown upstream 'foo'"});
}

TEST_F(LoaderTest, DuplicateListenAddress) {
    LoadResult result = load(R"(listen:
  - address: 0.0.0.0:8080
    upstream: app
  - address: 0.0.0.0:8080
    upstream: app
upstreams:
  app:
    servers: [{address: 127.0.0.1:3001}]
)");
    EXPECT_EQ(texts(result.errors),
              std::vector<std::string>{
                  "t.yaml:4:14: 'listen[1].address': duplicate listen address '0.0.0.0:8080'"});
}

TEST_F(LoaderTest, EmptyServerListAndMissingServers) {
    LoadResult result = load(R"(listen:
  - {address: 0.0.0.0:8080, upstream: x}
upstreams:
  x:
    servers: []
  y:
    affinity: none
)");
    EXPECT_EQ(texts(result.errors),
              (std::vector<std::string>{
                  "t.yaml:5:14: 'upstreams.x.servers': at least one server is required",
                  "t.yaml:7:5: 'upstreams.y': missing required key 'servers'"}));
}

TEST_F(LoaderTest, BadEnumValue) {
    LoadResult result = load(R"(listen:
  - {address: 0.0.0.0:8080, upstream: io_nodes}
upstreams:
  io_nodes:
    affinity: sticky
    servers: [{address: 127.0.0.1:3001}]
)");
    EXPECT_EQ(texts(result.errors),
              std::vector<std::string>{"t.yaml:5:15: 'upstreams.io_nodes.affinity': invalid value "
                                       "'sticky' (valid: none, ip_hash, cookie, sid)"});
}

TEST_F(LoaderTest, YamlSyntaxErrorHasItsPosition) {
    LoadResult result = load("listen:\n  - address: [0.0.0.0:8080\nupstreams: {}\n");
    ASSERT_EQ(result.errors.size(), 1u);
    EXPECT_EQ(result.errors[0].line, 3);
    EXPECT_GT(result.errors[0].column, 0);
    EXPECT_TRUE(result.errors[0].text().starts_with("t.yaml:3:")) << result.errors[0].text();
    EXPECT_NE(result.errors[0].message.find("invalid YAML: "), std::string::npos);
    EXPECT_FALSE(result.config.has_value());

    LoadResult tabs = load("listen:\n\t- a\n");
    ASSERT_EQ(tabs.errors.size(), 1u);
    EXPECT_EQ(tabs.errors[0].line, 2);
}

TEST_F(LoaderTest, AllErrorsAreReportedInFileOrder) {
    LoadResult result = load(R"(workers: 0
listen:
  - address: 0.0.0.0:99999
    upstream: nowhere
  - upstream: app
upstreams:
  app:
    balance: fastest
    servers:
      - name: a
        address: 127.0.0.1:3001
        weight: 0
      - name: a
        address: 127.0.0.1:3002
timeouts:
  idle: forever
)");
    EXPECT_EQ(texts(result.errors),
              (std::vector<std::string>{
                  "t.yaml:1:10: 'workers': invalid value '0' (valid: auto or 1..1024)",
                  "t.yaml:3:14: 'listen[0].address': invalid address '0.0.0.0:99999': invalid "
                  "port '99999' (valid: 1..65535) (use host:port or [ipv6]:port, e.g. "
                  "0.0.0.0:8080)",
                  "t.yaml:4:15: 'listen[0].upstream': unknown upstream 'nowhere'",
                  "t.yaml:5:5: 'listen[1]': missing required key 'address'",
                  "t.yaml:8:14: 'upstreams.app.balance': invalid value 'fastest' (valid: "
                  "least_conn, round_robin, random_two)",
                  "t.yaml:12:17: 'upstreams.app.servers[0].weight': 0 is out of range (valid: "
                  "1..1000)",
                  "t.yaml:13:15: 'upstreams.app.servers[1].name': duplicate server name 'a' in "
                  "'upstreams.app.servers'",
                  "t.yaml:16:9: 'timeouts.idle': invalid duration 'forever' " +
                      std::string(kDurationHint)}));
}

TEST_F(LoaderTest, DefaultedServerNamesCollideOnTheAddress) {
    LoadResult result = load(R"(listen: [{address: 0.0.0.0:8080, upstream: app}]
upstreams:
  app:
    servers:
      - address: 127.0.0.1:3001
      - address: 127.0.0.1:3001
)");
    EXPECT_EQ(texts(result.errors),
              std::vector<std::string>{
                  "t.yaml:6:18: 'upstreams.app.servers[1].name': duplicate server name "
                  "'127.0.0.1:3001' in 'upstreams.app.servers'"});
}

TEST_F(LoaderTest, MissingRequiredKeys) {
    EXPECT_EQ(texts(load("").errors),
              (std::vector<std::string>{"t.yaml:1:1: missing required key 'listen'",
                                        "t.yaml:1:1: missing required key 'upstreams'"}));
    EXPECT_EQ(texts(load("# nothing\nworkers: 2\n").errors),
              (std::vector<std::string>{"t.yaml:2:1: missing required key 'listen'",
                                        "t.yaml:2:1: missing required key 'upstreams'"}));
    LoadResult result = load(R"(listen: []
upstreams:
  app:
    servers:
      - name: a
)");
    EXPECT_EQ(texts(result.errors),
              (std::vector<std::string>{
                  "t.yaml:1:9: 'listen': at least one listen entry is required",
                  "t.yaml:5:9: 'upstreams.app.servers[0]': missing required key 'address'"}));
    EXPECT_EQ(
        texts(load("listen: [{address: 0.0.0.0:1, upstream: a}]\nupstreams: {}\n").errors),
        std::vector<std::string>{"t.yaml:2:12: 'upstreams': at least one upstream is required"});
}

TEST_F(LoaderTest, DuplicateKeyIsAnError) {
    EXPECT_EQ(errors_with("workers: 2\nworkers: 3\n"),
              std::vector<std::string>{"t.yaml:9:1: 'workers': duplicate key"});
}

TEST_F(LoaderTest, RangesOfIntegers) {
    LoadResult result = load(R"(listen: [{address: 0.0.0.0:8080, upstream: app}]
upstreams:
  app:
    ip_hash: {prefix_v4: 33, prefix_v6: 129, balance_factor: 50}
    retries: -1
    servers: [{address: 127.0.0.1:3001, weight: 1001, max_conns: -2}]
)");
    EXPECT_EQ(texts(result.errors),
              (std::vector<std::string>{
                  "t.yaml:4:26: 'upstreams.app.ip_hash.prefix_v4': 33 is out of range (valid: "
                  "0..32)",
                  "t.yaml:4:41: 'upstreams.app.ip_hash.prefix_v6': 129 is out of range (valid: "
                  "0..128)",
                  "t.yaml:4:62: 'upstreams.app.ip_hash.balance_factor': 50 is out of range "
                  "(valid: 0 = off, or 100..65535)",
                  "t.yaml:5:14: 'upstreams.app.retries': -1 is out of range (valid: 0 or more)",
                  "t.yaml:6:49: 'upstreams.app.servers[0].weight': 1001 is out of range (valid: "
                  "1..1000)",
                  "t.yaml:6:66: 'upstreams.app.servers[0].max_conns': -2 is out of range (valid: "
                  "0 or more)"}));
}

// ---- upstream TLS and PROXY protocol to the servers -----------------------------------

TEST_F(LoaderTest, UpstreamTlsAndSendProxyDefaultToOff) {
    Config c = load_ok(kMinimal);
    const Upstream& u = c.upstreams.at("app");
    EXPECT_FALSE(u.tls.has_value());
    EXPECT_EQ(u.send_proxy_protocol, SendProxy::off);
}

TEST_F(LoaderTest, UpstreamTlsEveryKey) {
    Config c = load_ok(std::string(kMinimal) +
                       "    send_proxy_protocol: v2\n"
                       "    tls:\n"
                       "      verify: false\n"
                       "      ca: conf/tls/cert.pem\n"
                       "      server_name: api.internal\n"
                       "      certificate: conf/tls/cert.pem\n"
                       "      private_key: conf/tls/key.pem\n"
                       "      protocols: [TLSv1.3]\n"
                       "      ciphers: ECDHE+AESGCM\n");
    const Upstream& u = c.upstreams.at("app");
    EXPECT_EQ(u.send_proxy_protocol, SendProxy::v2);
    ASSERT_TRUE(u.tls.has_value());
    EXPECT_FALSE(u.tls->verify);
    EXPECT_EQ(u.tls->ca, path("conf/tls/cert.pem"));
    EXPECT_EQ(u.tls->server_name, "api.internal");
    EXPECT_EQ(u.tls->certificate, path("conf/tls/cert.pem"));
    EXPECT_EQ(u.tls->private_key, path("conf/tls/key.pem"));
    EXPECT_EQ(u.tls->protocols, std::vector<std::string>{"TLSv1.3"});
    EXPECT_EQ(u.tls->ciphers, "ECDHE+AESGCM");
}

TEST_F(LoaderTest, UpstreamTlsShortForms) {
    Config on = load_ok(std::string(kMinimal) + "    tls: true\n    send_proxy_protocol: v1\n");
    ASSERT_TRUE(on.upstreams.at("app").tls.has_value());
    const UpstreamTls& d = *on.upstreams.at("app").tls;
    EXPECT_TRUE(d.verify);  // secure by default, with the system's trust store
    EXPECT_EQ(d.ca, "");
    EXPECT_EQ(d.server_name, "");
    EXPECT_EQ(d.protocols, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
    EXPECT_EQ(on.upstreams.at("app").send_proxy_protocol, SendProxy::v1);
    Config off = load_ok(std::string(kMinimal) + "    tls: off\n    send_proxy_protocol: off\n");
    EXPECT_FALSE(off.upstreams.at("app").tls.has_value());
    EXPECT_EQ(off.upstreams.at("app").send_proxy_protocol, SendProxy::off);
    Config empty = load_ok(std::string(kMinimal) + "    tls:\n    send_proxy_protocol: false\n");
    EXPECT_FALSE(empty.upstreams.at("app").tls.has_value());
}

TEST_F(LoaderTest, UpstreamTlsErrorsNameTheKey) {
    EXPECT_EQ(errors_with("    send_proxy_protocol: v3\n"),
              std::vector<std::string>{"t.yaml:8:26: 'upstreams.app.send_proxy_protocol': "
                                       "invalid value 'v3' (valid: off, v1, v2)"});
    EXPECT_EQ(errors_with("    send_proxy_protocol: true\n"),
              std::vector<std::string>{"t.yaml:8:26: 'upstreams.app.send_proxy_protocol': "
                                       "invalid value 'true' (valid: off, v1, v2)"});
    EXPECT_EQ(errors_with("    tls: maybe\n"),
              std::vector<std::string>{
                  "t.yaml:8:10: 'upstreams.app.tls': expected a map, true or false, got 'maybe'"});
    EXPECT_EQ(errors_with("    tls:\n      certificate: conf/tls/cert.pem\n"),
              std::vector<std::string>{"t.yaml:9:7: 'upstreams.app.tls': missing required key "
                                       "'private_key' (with 'certificate')"});
    EXPECT_EQ(errors_with("    tls:\n      private_key: conf/tls/key.pem\n"),
              std::vector<std::string>{"t.yaml:9:7: 'upstreams.app.tls': missing required key "
                                       "'certificate' (with 'private_key')"});
    EXPECT_EQ(errors_with("    tls:\n      server_name: a b\n"),
              std::vector<std::string>{"t.yaml:9:20: 'upstreams.app.tls.server_name': invalid "
                                       "server name 'a b' (a DNS name or an IP address)"});
    EXPECT_EQ(errors_with("    tls:\n      protocols: [TLSv1.1]\n"),
              std::vector<std::string>{"t.yaml:9:19: 'upstreams.app.tls.protocols[0]': invalid "
                                       "value 'TLSv1.1' (valid: TLSv1.2, TLSv1.3)"});
    EXPECT_EQ(errors_with("    tls:\n      ca: conf/tls/none.pem\n"),
              std::vector<std::string>{"t.yaml:9:11: 'upstreams.app.tls.ca': cannot read '" +
                                       path("conf/tls/none.pem") +
                                       "': No such file or directory"});
    EXPECT_EQ(errors_with("    tls:\n      verfy: false\n"),
              std::vector<std::string>{
                  "t.yaml:9:7: unknown key 'verfy' in 'upstreams.app.tls' (valid: verify, ca, "
                  "server_name, certificate, private_key, protocols, ciphers)"});
}

TEST_F(LoaderTest, TlsFilesMustBeReadable) {
    LoadResult result = load(R"(upstreams:
  app:
    servers: [{address: 127.0.0.1:3001}]
listen:
  - address: 0.0.0.0:8443
    upstream: app
    tls:
      certificate: conf/tls/missing.pem
      private_key: conf/tls
)");
    EXPECT_EQ(
        texts(result.errors),
        (std::vector<std::string>{"t.yaml:8:20: 'listen[0].tls.certificate': cannot read '" +
                                      path("conf/tls/missing.pem") + "': No such file or directory",
                                  "t.yaml:9:20: 'listen[0].tls.private_key': cannot read '" +
                                      path("conf/tls") + "': is a directory"}));
}

TEST_F(LoaderTest, TlsNeedsOneFormOfCertificate) {
    const std::string head =
        "upstreams: {app: {servers: [{address: 127.0.0.1:3001}]}}\n"
        "listen:\n  - address: 0.0.0.0:8443\n    upstream: app\n    tls:\n";
    EXPECT_EQ(texts(load(head + "      protocols: [TLSv1.2]\n").errors),
              std::vector<std::string>{
                  "t.yaml:6:7: 'listen[0].tls': missing required key 'certificate' (with "
                  "'private_key') or 'certificates'"});
    EXPECT_EQ(texts(load(head + "      certificate: conf/tls/cert.pem\n").errors),
              std::vector<std::string>{
                  "t.yaml:6:7: 'listen[0].tls': missing required key 'private_key'"});
    EXPECT_EQ(texts(load(head + "      certificate: conf/tls/cert.pem\n"
                                "      private_key: conf/tls/key.pem\n"
                                "      certificates: []\n")
                        .errors),
              (std::vector<std::string>{
                  "t.yaml:6:7: 'listen[0].tls': use either 'certificate' and 'private_key', or "
                  "'certificates'",
                  "t.yaml:8:21: 'listen[0].tls.certificates': at least one certificate is "
                  "required"}));
    EXPECT_EQ(texts(load(head + "      certificates: [{certificate: conf/tls/cert.pem}]\n"
                                "      protocols: [SSLv3]\n")
                        .errors),
              (std::vector<std::string>{
                  "t.yaml:6:22: 'listen[0].tls.certificates[0]': missing required key "
                  "'private_key'",
                  "t.yaml:7:19: 'listen[0].tls.protocols[0]': invalid value 'SSLv3' (valid: "
                  "TLSv1.2, TLSv1.3)"}));
}

TEST_F(LoaderTest, AddressForms) {
    auto error_for = [&](const std::string& address) {
        LoadResult r = load(
            "upstreams: {app: {servers: [{address: 127.0.0.1:1}]}}\n"
            "listen: [{upstream: app, address: \"" +
            address + "\"}]\n");
        return r.errors.empty() ? std::string() : r.errors[0].message;
    };
    EXPECT_EQ(error_for("0.0.0.0:8080"), "");
    EXPECT_EQ(error_for("[::]:8080"), "");
    EXPECT_EQ(error_for("localhost:1"), "");
    EXPECT_EQ(error_for("[::1]:65535"), "");
    const std::string hint = " (use host:port or [ipv6]:port, e.g. 0.0.0.0:8080)";
    EXPECT_EQ(error_for("8080"),
              "'listen[0].address': invalid address '8080': expected host:port" + hint);
    EXPECT_EQ(error_for("::1:8080"),
              "'listen[0].address': invalid address '::1:8080': an "
              "IPv6 address must be written in brackets" +
                  hint);
    EXPECT_EQ(error_for("[zz]:80"),
              "'listen[0].address': invalid address '[zz]:80': invalid IPv6 address 'zz'" + hint);
    EXPECT_EQ(error_for("1.2.3.999:80"),
              "'listen[0].address': invalid address '1.2.3.999:80': "
              "invalid host '1.2.3.999'" +
                  hint);
    EXPECT_EQ(error_for("host:0"),
              "'listen[0].address': invalid address 'host:0': invalid port "
              "'0' (valid: 1..65535)" +
                  hint);
    EXPECT_EQ(error_for(":80"),
              "'listen[0].address': invalid address ':80': invalid host ''" + hint);
}

TEST_F(LoaderTest, TrustedProxiesAreValidatedAsCidrs) {
    EXPECT_EQ(errors_with("trusted_proxies: [10.0.0.0/33, 300.0.0.1, \"::/129\", ok]\n"),
              (std::vector<std::string>{
                  "t.yaml:8:19: 'trusted_proxies[0]': invalid CIDR '10.0.0.0/33' (use "
                  "address/prefix, e.g. 10.0.0.0/8, fd00::/8)",
                  "t.yaml:8:32: 'trusted_proxies[1]': invalid CIDR '300.0.0.1' (use "
                  "address/prefix, e.g. 10.0.0.0/8, fd00::/8)",
                  "t.yaml:8:43: 'trusted_proxies[2]': invalid CIDR '::/129' (use "
                  "address/prefix, e.g. 10.0.0.0/8, fd00::/8)",
                  "t.yaml:8:53: 'trusted_proxies[3]': invalid CIDR 'ok' (use "
                  "address/prefix, e.g. 10.0.0.0/8, fd00::/8)"}));
    Config c = load_ok(std::string(kMinimal) + "trusted_proxies: [\"::1\", 0.0.0.0/0]\n");
    EXPECT_EQ(c.trusted_proxies, (std::vector<std::string>{"::1/128", "0.0.0.0/0"}));
}

TEST_F(LoaderTest, ExpectStatusForms) {
    auto ranges = [&](const std::string& value) {
        const std::string yaml =
            "listen: [{address: 0.0.0.0:8080, upstream: app}]\nupstreams:\n  app:\n"
            "    servers: [{address: 127.0.0.1:3001}]\n    health_check:\n"
            "      expect_status: " +
            value + "\n";
        return load(yaml);
    };
    auto one = ranges("200");
    ASSERT_TRUE(one.config);
    const auto& r1 = one.config->upstreams.at("app").health_check->expect_status;
    ASSERT_EQ(r1.size(), 1u);
    EXPECT_EQ(r1[0].lo, 200);
    EXPECT_EQ(r1[0].hi, 200);
    auto list = ranges("[200-299, 404]");
    ASSERT_TRUE(list.config);
    EXPECT_EQ(list.config->upstreams.at("app").health_check->expect_status.size(), 2u);
    EXPECT_EQ(texts(ranges("399-200").errors),
              std::vector<std::string>{
                  "t.yaml:6:22: 'upstreams.app.health_check.expect_status': invalid status range "
                  "'399-200' (use a code or an inclusive range within 100..599, e.g. 200 or "
                  "200-399)"});
    EXPECT_EQ(texts(ranges("[200, 600]").errors),
              std::vector<std::string>{
                  "t.yaml:6:28: 'upstreams.app.health_check.expect_status[1]': invalid status "
                  "range '600' (use a code or an inclusive range within 100..599, e.g. 200 or "
                  "200-399)"});
}

TEST_F(LoaderTest, FailOnStatusTakesErrorStatusesOnly) {
    auto with = [&](const std::string& value) {
        return load("listen: [{address: 0.0.0.0:8080, upstream: app}]\nupstreams:\n  app:\n"
                    "    servers: [{address: 127.0.0.1:3001}]\n    fail_on_status: " +
                    value + "\n");
    };
    auto ok = with("500-599");
    ASSERT_TRUE(ok.config);
    EXPECT_EQ(ok.config->upstreams.at("app").fail_on_status.size(), 1u);
    EXPECT_EQ(texts(with("[502, 200-299]").errors),
              std::vector<std::string>{
                  "t.yaml:5:27: 'upstreams.app.fail_on_status[1]': invalid status range "
                  "'200-299' (use a code or an inclusive range within 400..599, e.g. 502 or "
                  "500-599)"});
    EXPECT_EQ(texts(with("{code: 500}").errors),
              std::vector<std::string>{
                  "t.yaml:5:21: 'upstreams.app.fail_on_status': expected a status code or range, "
                  "got a map"});
}

TEST_F(LoaderTest, AdminAddressMayNotBeAListenAddress) {
    EXPECT_EQ(errors_with("admin: {address: 0.0.0.0:8080}\n"),
              std::vector<std::string>{
                  "t.yaml:8:18: 'admin.address': '0.0.0.0:8080' is also a listen address"});
}

TEST_F(LoaderTest, MoreThanOneDocumentIsAnError) {
    EXPECT_EQ(errors_with("---\nworkers: 2\n"),
              std::vector<std::string>{"t.yaml:8:1: expected one YAML document, found 2"});
}

// ---- special values ------------------------------------------------------------------------

TEST_F(LoaderTest, AccessLogOffQuotedOrNot) {
    for (const char* value : {"off", "\"off\"", "'off'", "false"}) {
        Config c = load_ok(std::string(kMinimal) + "access_log:\n  path: " + value + "\n");
        EXPECT_EQ(c.access_log.path, "off") << value;
    }
    EXPECT_EQ(load_ok(std::string(kMinimal) + "access_log: {path: stderr}\n").access_log.path,
              "stderr");
    EXPECT_EQ(errors_with("access_log: {path: nowhere/x.log}\n"),
              std::vector<std::string>{"t.yaml:8:20: 'access_log.path': directory '" +
                                       path("nowhere") + "' does not exist"});
    EXPECT_EQ(errors_with("access_log: {format: xml}\n"),
              std::vector<std::string>{"t.yaml:8:22: 'access_log.format': invalid value 'xml' "
                                       "(valid: combined, json)"});
}

TEST_F(LoaderTest, AdminOff) {
    EXPECT_FALSE(load_ok(std::string(kMinimal) + "admin: off\n").admin.enabled);
    EXPECT_FALSE(load_ok(std::string(kMinimal) + "admin: false\n").admin.enabled);
    EXPECT_TRUE(load_ok(std::string(kMinimal) + "admin:\n").admin.enabled);
    EXPECT_EQ(errors_with("admin: maybe\n"),
              std::vector<std::string>{
                  "t.yaml:8:8: 'admin': expected a map with 'address', or off, got 'maybe'"});
}

TEST_F(LoaderTest, WorkersAutoOrPositive) {
    EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: auto\n").workers, 0);
    EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: 8\n").workers, 8);
    EXPECT_EQ(errors_with("workers: -1\n"),
              std::vector<std::string>{
                  "t.yaml:8:10: 'workers': invalid value '-1' (valid: auto or 1..1024)"});
}

TEST_F(LoaderTest, RedisUrlForm) {
    Config c = load_ok(std::string(kMinimal) + "redis:\n  address: redis://:pw@10.0.0.5:6380/2\n");
    ASSERT_TRUE(c.redis);
    EXPECT_EQ(c.redis->address.text(), "10.0.0.5:6380");
    EXPECT_EQ(c.redis->password, "pw");
    EXPECT_EQ(c.redis->db, 2);
    EXPECT_EQ(c.redis->key_prefix, "tether:");

    Config plain = load_ok(std::string(kMinimal) + "redis: {address: \"redis://cache:6379\"}\n");
    EXPECT_EQ(plain.redis->address.text(), "cache:6379");
    EXPECT_EQ(plain.redis->password, "");
    EXPECT_EQ(plain.redis->db, 0);

    // Explicit keys win over the URL.
    Config both = load_ok(std::string(kMinimal) +
                          "redis: {address: \"redis://:pw@h:1/2\", db: 5, password: mine}\n");
    EXPECT_EQ(both.redis->db, 5);
    EXPECT_EQ(both.redis->password, "mine");

    // The password never appears in a message.
    EXPECT_EQ(errors_with("redis: {address: \"redis://:pw@h:0/2\"}\n"),
              std::vector<std::string>{
                  "t.yaml:8:18: 'redis.address': invalid address 'redis://:***@h:0/2': invalid "
                  "port '0' (valid: 1..65535) (use host:port or "
                  "redis://[:password@]host:port[/db])"});
}

TEST_F(LoaderTest, RedisPasswordFromEnvironment) {
    ::setenv("REDIS_PASSWORD", "from-env", 1);
    EXPECT_EQ(load_ok(std::string(kMinimal) + "redis: {address: r:6379}\n").redis->password,
              "from-env");
    EXPECT_EQ(load_ok(std::string(kMinimal) + "redis: {address: r:6379, password: \"\"}\n")
                  .redis->password,
              "from-env");
    EXPECT_EQ(load_ok(std::string(kMinimal) + "redis: {address: r:6379, password: file}\n")
                  .redis->password,
              "file");
    EXPECT_FALSE(load_ok(kMinimal).redis.has_value());  // no redis block: env alone adds none
}

// ---- warnings ------------------------------------------------------------------------------

constexpr std::string_view kSid = R"(listen: [{address: 0.0.0.0:8080, upstream: io}]
upstreams:
  io:
    affinity: sid
    cookie: {secret: k}
    servers: [{address: 127.0.0.1:3001}]
)";

TEST_F(LoaderTest, SidWarnsAboutTimeoutsShorterThanTheHeartbeat) {
    LoadResult result = load(std::string(kSid) +
                             "timeouts:\n  tunnel: 30s\n"
                             "  upstream_response: 44999ms\n");
    EXPECT_TRUE(result.errors.empty());
    EXPECT_TRUE(result.config.has_value());
    const std::string tail =
        " is shorter than the Socket.IO heartbeat (pingInterval 25s + pingTimeout 20s = 45s) "
        "used by upstream 'io' (affinity: sid); idle clients would be cut off";
    EXPECT_EQ(texts(result.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:8:11: warning: 'timeouts.tunnel': 30s" + tail,
                  "t.yaml:9:22: warning: 'timeouts.upstream_response': 44999ms" + tail}));

    // 45s is enough, tunnel 0 means never, and other affinities do not care.
    EXPECT_TRUE(load(std::string(kSid) + "timeouts: {tunnel: 0, upstream_response: 45s}\n")
                    .warnings.empty());
    std::string cookie = std::string(kSid);
    cookie.replace(cookie.find("sid"), 3, "cookie");
    EXPECT_TRUE(load(cookie + "timeouts: {tunnel: 1s}\n").warnings.empty());
}

TEST_F(LoaderTest, EmptyCookieSecretWarnsUnlessTheEnvironmentHasOne) {
    std::string yaml = std::string(kSid);
    yaml.replace(yaml.find("{secret: k}"), 11, "{name: c}");
    LoadResult result = load(yaml);
    EXPECT_TRUE(result.config.has_value());
    EXPECT_EQ(texts(result.warnings, true),
              std::vector<std::string>{
                  "t.yaml:4:15: warning: 'upstreams.io.cookie.secret': empty and "
                  "TETHER_COOKIE_SECRET is not set; each process signs cookies with its own "
                  "random key, so replicas will not understand each other's cookies"});
    EXPECT_TRUE(load(kMinimal).warnings.empty());  // affinity none: no cookie, no warning

    ::setenv("TETHER_COOKIE_SECRET", "shared", 1);
    LoadResult with_env = load(yaml);
    EXPECT_TRUE(with_env.warnings.empty());
    EXPECT_EQ(with_env.config->upstreams.at("io").cookie.secret, "shared");
}

// ---- files ---------------------------------------------------------------------------------

TEST_F(LoaderTest, LoadConfigResolvesPathsAgainstTheFilesDirectory) {
    fs::create_directories(dir_ / "etc");
    fs::copy(dir_ / "conf", dir_ / "etc" / "conf", fs::copy_options::recursive);
    write("etc/tether.yaml",
          "upstreams: {app: {servers: [{address: 127.0.0.1:3001}]}}\n"
          "listen:\n  - address: 0.0.0.0:8443\n    upstream: app\n"
          "    tls: {certificate: conf/tls/cert.pem, private_key: conf/tls/key.pem}\n");
    const std::string file = path("etc/tether.yaml");
    LoadResult result = load_config(file);
    ASSERT_EQ(texts(result.errors), std::vector<std::string>{});
    EXPECT_EQ(result.config->source_path, file);
    EXPECT_EQ(result.config->listen[0].tls->certificates[0].certificate,
              path("etc/conf/tls/cert.pem"));
}

TEST_F(LoaderTest, UnreadableFileHasNoPosition) {
    const std::string file = path("absent.yaml");
    LoadResult result = load_config(file);
    EXPECT_FALSE(result.config.has_value());
    EXPECT_EQ(texts(result.errors),
              std::vector<std::string>{file + ": cannot read file: No such file or directory"});
}

TEST_F(LoaderTest, ErrorsInALoadedFileNameIt) {
    write("bad.yaml", std::string(kMinimal) + "timeouts: {connect: 5x}\n");
    LoadResult result = load_config(path("bad.yaml"));
    ASSERT_EQ(result.errors.size(), 1u);
    EXPECT_EQ(result.errors[0].text(), path("bad.yaml") +
                                           ":8:21: 'timeouts.connect': invalid duration '5x' " +
                                           std::string(kDurationHint));
}

TEST_F(LoaderTest, RepositoryDefaultConfigLoads) {
    // TETHER_TESTDATA is <source>/tests/data.
    fs::path file = (fs::path(TETHER_TESTDATA) / ".." / ".." / "conf" / "tether.yaml");
    LoadResult result = load_config(file.lexically_normal().string());
    EXPECT_EQ(texts(result.errors), std::vector<std::string>{});
    EXPECT_EQ(texts(result.warnings, true), std::vector<std::string>{});
}

// ---- small pieces --------------------------------------------------------------------------

TEST(HostPortText, BracketsIpv6Only) {
    EXPECT_EQ((HostPort{"0.0.0.0", 8080}.text()), "0.0.0.0:8080");
    EXPECT_EQ((HostPort{"::", 8080}.text()), "[::]:8080");
    EXPECT_EQ((HostPort{"localhost", 3001}.text()), "localhost:3001");
}

TEST(DiagnosticText, PositionAndWarningPrefix) {
    Diagnostic d{"a.yaml", 3, 7, "boom"};
    EXPECT_EQ(d.text(), "a.yaml:3:7: boom");
    EXPECT_EQ(d.text(true), "a.yaml:3:7: warning: boom");
    EXPECT_EQ((Diagnostic{"a.yaml", 0, 0, "cannot read file: x"}.text()),
              "a.yaml: cannot read file: x");
}

}  // namespace
}  // namespace tether::config
