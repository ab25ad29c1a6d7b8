// The tether configuration being built by the converter, as plain values ready to print, and
// the helpers the converter's parts share: nginx value parsing (time, size, address) and the
// findings list. Private to tools/nginx_convert; single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "convert.hpp"

namespace tether::nginx {

struct OutServer {
    std::string address;  ///< host:port as tether writes it
    int weight = 1;
    int max_conns = 0;
    int max_fails = 1;                      ///< nginx's default (tether's is 3)
    std::int64_t fail_timeout_ms = 10'000;  ///< nginx's default (tether's is 30s)
    bool backup = false;
    std::string origin;  ///< FILE:LINE
};

/// upstreams.*.tls, from proxy_pass https:// and the proxy_ssl_* settings around it.
struct OutUpstreamTls {
    bool verify = false;  ///< nginx's proxy_ssl_verify default (tether's is true)
    std::string ca, server_name, certificate, private_key, ciphers;
    std::vector<std::string> protocols;  ///< empty = tether's default
    bool operator==(const OutUpstreamTls&) const = default;
};

struct OutUpstream {
    std::string name;
    std::string origin;
    std::string affinity = "none";
    std::string balance = "round_robin";  ///< nginx's default (tether's is least_conn)
    int prefix_v4 = -1;                   ///< -1 = not written
    int prefix_v6 = -1;
    std::string sid_path, sid_param, cookie_name;
    std::int64_t cookie_max_age_ms = -1;
    int keepalive = -1;
    int retries = -1;
    std::vector<int> fail_on_status;  ///< from proxy_next_upstream http_*, sorted
    std::string fail_on_status_origin;
    std::vector<OutServer> servers;
    std::optional<OutUpstreamTls> tls;  ///< proxied to with https://
    std::string scheme_origin;          ///< FILE:LINE of the first proxy_pass to it
    std::vector<std::string> comments;  ///< written above the upstream
};

struct OutCert {
    std::string certificate, private_key;
    std::string ocsp_response;  ///< from ssl_stapling_file ("" = none)
};

struct OutListener {
    std::string address;
    std::string upstream;
    bool proxy_protocol = false;
    bool tls = false;
    std::vector<OutCert> certs;
    std::vector<std::string> protocols;  ///< empty = tether's default
    std::string origin;
};

/// A global value (tether's timeouts and limits are process-wide) and where it came from.
struct OutValue {
    std::string text;
    std::int64_t number = 0;  ///< for picking the largest when nginx scopes differ
    std::string origin;
};

struct Output {
    std::string workers;
    std::vector<OutListener> listen;
    std::vector<OutUpstream> upstreams;
    std::map<std::string, OutValue> timeouts, limits;     ///< key -> value
    std::optional<OutValue> rate_per_second, rate_burst;  ///< limits.rate
    bool forwarded = false, request_id = false;
    std::string access_log_path = "stdout";
    std::vector<std::string> trusted_proxies;
};

/// Prints `out` as tether YAML.
std::string write_yaml(const Output& out, const std::string& source);

/// nginx time ("30", "30s", "1m30s", "500ms", "1d", "1w", "1M", "1y") in milliseconds.
std::optional<std::int64_t> parse_time(const std::string& text);
/// nginx size ("1024", "8k", "1m", "1g", either case) in bytes.
std::optional<std::uint64_t> parse_bytes(const std::string& text);
/// Milliseconds as a tether duration: the largest unit that divides it ("90s", "2m").
std::string format_ms(std::int64_t ms);
/// Bytes as a tether size ("16k", "1m", "1000").
std::string format_bytes(std::uint64_t bytes);
/// nginx address ("80", "*:80", "1.2.3.4", "host:3000", "[::1]:80") as tether host:port;
/// `default_port` when none is written. nullopt for unix: sockets and garbage.
std::optional<std::string> parse_address(const std::string& text, int default_port,
                                         const std::string& any_host);

/// Collects findings in the order they are made.
class Findings {
public:
    void add(Finding::Kind kind, const Directive& d, std::string message) {
        list_.push_back({kind, d.file, d.line, std::move(message)});
    }
    void add(Finding::Kind kind, std::string file, int line, std::string message) {
        list_.push_back({kind, std::move(file), line, std::move(message)});
    }
    void ignored(const Directive& d, const std::string& why) {
        add(Finding::Kind::ignored, d, "'" + d.name + "': " + why);
    }
    void note(const Directive& d, const std::string& what) { add(Finding::Kind::note, d, what); }
    void differs(const Directive& d, const std::string& why) {
        add(Finding::Kind::not_translated, d, "'" + d.name + "': " + why);
    }
    std::vector<Finding>& list() { return list_; }

private:
    std::vector<Finding> list_;
};

/// One `upstream` block into `out`; findings for what it cannot carry over.
void convert_upstream(const Directive& block, OutUpstream& out, Findings& findings);

/// An upstream name tether accepts ([A-Za-z0-9_.-]+) made from any text.
std::string sanitize_name(const std::string& text);

}  // namespace tether::nginx
