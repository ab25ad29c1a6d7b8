// Plain configuration structs, one per area of the YAML schema in SPEC.md.
// Every default is written once, here, as an in-class initialiser; the loader
// (loader.hpp) only overwrites what the file names. Immutable after loading:
// workers receive it inside a shared_ptr<const Config> snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tether::config {

using Duration = std::chrono::milliseconds;

/// host:port as written in the file ("0.0.0.0:8080", "[::]:8080", "redis:6379").
struct HostPort {
    std::string host;
    std::uint16_t port = 0;
    std::string text() const;  ///< back to "host:port" ("[v6]:port" for IPv6)
};

struct CertKey {
    std::string certificate;  ///< absolute path (resolved against the config dir)
    std::string private_key;
    std::string ocsp_response;  ///< DER OCSP response stapled with this certificate ("" = none)
};

struct TlsConfig {
    std::vector<CertKey> certificates;  ///< first one is the default (no SNI match)
    std::vector<std::string> protocols{"TLSv1.2", "TLSv1.3"};
    std::string ciphers;  ///< OpenSSL cipher list for TLS 1.2 ("" = OpenSSL's default)
};

struct Listener {
    HostPort address;
    std::string upstream;
    bool proxy_protocol = false;
    std::optional<TlsConfig> tls;
};

struct Admin {
    bool enabled = true;
    HostPort address{"127.0.0.1", 9901};
};

struct Redis {
    HostPort address{"127.0.0.1", 6379};
    std::string password;  ///< "" or taken from env REDIS_PASSWORD
    int db = 0;
    std::string key_prefix = "tether:";
    Duration timeout{100};
};

enum class Affinity { none, ip_hash, cookie, sid };
enum class Balance { least_conn, round_robin, random_two };
enum class SameSite { lax, strict, none };

struct CookieConfig {
    std::string name = "tether";
    std::string secret;  ///< "" = random per process (the loader warns)
    Duration max_age{0};  ///< 0 = session cookie
    bool secure = false;
    bool http_only = true;
    SameSite same_site = SameSite::lax;
};

struct SidConfig {
    std::string path = "/socket.io/";
    std::string param = "sid";
    bool fallback_cookie = true;
};

struct IpHashConfig {
    std::string hash = "maglev";
    int balance_factor = 150;  ///< percent of the mean; 0 = off
    int prefix_v4 = 32;
    int prefix_v6 = 64;
};

struct DrainConfig {
    Duration close_spread{30'000};
    /// On reload: tunnels to servers the new file no longer lists get 1001
    /// spread over close_spread (false: they run until they end).
    bool close_removed = false;
};

struct Server {
    std::string name;  ///< defaults to address text
    HostPort address;
    int weight = 1;
    int max_conns = 0;  ///< 0 = unlimited
    int max_fails = 3;
    Duration fail_timeout{30'000};
    bool backup = false;
};

/// An inclusive range of HTTP status codes, e.g. 200-399.
struct StatusRange {
    int lo = 200;
    int hi = 399;
};

/// True if `status` is in one of `ranges`.
inline bool status_in(int status, const std::vector<StatusRange>& ranges) {
    for (const auto& r : ranges)
        if (status >= r.lo && status <= r.hi) return true;
    return false;
}

struct HealthCheck {
    bool initial_up = true;
    std::string path = "/healthz";
    Duration interval{2'000};
    Duration timeout{1'000};
    int rise = 2;
    int fall = 3;
    std::vector<StatusRange> expect_status{StatusRange{}};
};

/// TLS to the servers of an upstream (nginx proxy_ssl_*, HAProxy `server ... ssl`).
struct UpstreamTls {
    bool verify = true;        ///< check the server's chain and name (HAProxy's default)
    std::string ca;            ///< PEM CA file ("" = the system's trust store)
    std::string server_name;   ///< SNI and name checked ("" = each server's host)
    std::string certificate;   ///< client certificate chain for mTLS ("" = none)
    std::string private_key;   ///< its key
    std::vector<std::string> protocols{"TLSv1.2", "TLSv1.3"};
    std::string ciphers;       ///< OpenSSL cipher list for TLS 1.2 ("" = OpenSSL's default)
};

/// PROXY protocol header sent first on each new connection to a server.
enum class SendProxy { off, v1, v2 };

struct Upstream {
    std::string name;
    Affinity affinity = Affinity::none;
    Balance balance = Balance::least_conn;
    Duration affinity_ttl{3'600'000};
    CookieConfig cookie;
    SidConfig sid;
    IpHashConfig ip_hash;
    DrainConfig drain;
    int keepalive = 32;
    int retries = 1;
    /// Passive checks also count these answers as failures (nginx's
    /// proxy_next_upstream http_5xx, HAProxy's observe layer7); empty = none.
    std::vector<StatusRange> fail_on_status;
    std::vector<Server> servers;
    std::optional<HealthCheck> health_check;
    std::optional<UpstreamTls> tls;  ///< absent: plain TCP to the servers
    SendProxy send_proxy_protocol = SendProxy::off;
};

struct Timeouts {
    Duration connect{5'000};
    Duration client_header{10'000};
    Duration idle{75'000};
    Duration upstream_response{60'000};
    Duration tunnel{3'600'000};  ///< 0 = never
    Duration shutdown{30'000};
};

struct RateLimit {
    double requests_per_second = 100;
    double burst = 200;
    bool shared = true;
};

struct Limits {
    int max_connections = 100'000;
    int max_connections_per_ip = 0;
    std::size_t max_header_size = 16 * 1024;
    std::size_t max_body_size = 1024 * 1024;
    std::size_t buffer_size = 16 * 1024;  ///< tether extension: one relay buffer
    std::size_t affinity_entries = 1'000'000;  ///< tether extension: local table bound
    std::optional<RateLimit> rate;
};

struct Headers {
    bool forwarded = true;
    bool request_id = true;
};

enum class LogFormat { combined, json };

struct AccessLog {
    std::string path = "stdout";  ///< stdout | stderr | off | absolute file path
    LogFormat format = LogFormat::combined;
};

struct Config {
    std::string source_path;  ///< the file it was loaded from
    int workers = 0;          ///< 0 = auto (CPUs in the affinity mask)
    std::vector<Listener> listen;
    Admin admin;
    std::optional<Redis> redis;
    std::vector<std::string> trusted_proxies;  ///< CIDRs
    std::map<std::string, Upstream> upstreams;
    Timeouts timeouts;
    Limits limits;
    Headers headers;
    AccessLog access_log;
};

}  // namespace tether::config
