// The converter's walk over nginx's contexts (main, events, http, server, location); see
// convert.hpp. Upstream blocks are converted first (upstream.cpp) since a server may name one
// defined after it. Server blocks are gathered with their scope (inherited proxy_set_header
// and ssl_* settings, nginx's inheritance rules) and turned into listeners at the end, where
// conflicts that tether cannot express (two upstreams behind one address) are reported.
#include <algorithm>
#include <filesystem>
#include <set>
#include <tuple>

#include "converter.hpp"
#include "model.hpp"

namespace tether::nginx {
namespace {

namespace fs = std::filesystem;
using Kind = Finding::Kind;

bool contains(const std::set<std::string_view>& list, std::string_view name) {
    return list.contains(name);
}

/// A `server` or `location` block: it inherits from its whole parent, wherever in the parent
/// the inherited directive stands (nginx merges after reading), so it is walked last.
bool nested(const Directive& d) { return d.block && (d.name == "server" || d.name == "location"); }

/// Calls `each` on the directives of `list`, nested blocks after all the others.
template <class Each>
void settings_then_blocks(const std::vector<Directive>& list, Each each) {
    for (const Directive& d : list)
        if (!nested(d)) each(d);
    for (const Directive& d : list)
        if (nested(d)) each(d);
}

// Directives that change nothing a client sees once tether proxies instead of nginx.
// clang-format off
const std::set<std::string_view> kHarmless = {
    "user", "pid", "error_log", "worker_rlimit_nofile", "worker_cpu_affinity", "worker_priority",
    "daemon", "master_process", "pcre_jit", "env", "load_module", "lock_file", "thread_pool",
    "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path", "timer_resolution",
    "working_directory", "sendfile", "tcp_nopush", "tcp_nodelay", "types", "default_type",
    "types_hash_max_size", "types_hash_bucket_size", "server_tokens",
    "server_names_hash_bucket_size", "server_names_hash_max_size", "variables_hash_max_size",
    "variables_hash_bucket_size", "log_format", "charset", "client_body_buffer_size",
    "client_header_buffer_size", "client_body_temp_path", "proxy_temp_path", "open_file_cache",
    "open_file_cache_valid", "open_file_cache_min_uses", "open_file_cache_errors",
    "reset_timedout_connection", "resolver", "resolver_timeout", "keepalive_requests",
    "keepalive_time", "map", "ssl_ciphers",
    "ssl_prefer_server_ciphers", "ssl_session_cache", "ssl_session_timeout", "ssl_session_tickets",
    "ssl_dhparam", "ssl_ecdh_curve", "ssl_stapling_verify",
    "ssl_trusted_certificate", "ssl_buffer_size", "ssl_conf_command", "proxy_buffering",
    "proxy_buffers", "proxy_buffer_size", "proxy_busy_buffers_size", "proxy_request_buffering",
    "proxy_max_temp_file_size", "proxy_temp_file_write_size", "proxy_redirect",
    "proxy_cache_bypass", "proxy_no_cache", "proxy_headers_hash_max_size",
    "proxy_headers_hash_bucket_size", "proxy_ignore_client_abort", "server_name", "index", "root",
    "error_page", "absolute_redirect", "port_in_redirect", "server_name_in_redirect", "http2",
    "gzip_vary", "gzip_proxied", "gzip_comp_level", "gzip_buffers", "gzip_http_version",
    "gzip_min_length", "gzip_types", "gzip_disable", "gzip", "real_ip_header", "real_ip_recursive",
    "proxy_send_timeout", "client_body_timeout", "send_timeout", "lingering_close",
    "lingering_time", "lingering_timeout", "underscores_in_headers", "ignore_invalid_headers",
    "proxy_intercept_errors", "proxy_next_upstream_timeout", "proxy_socket_keepalive", "aio",
    "directio", "output_buffers", "postpone_output",
    "chunked_transfer_encoding", "merge_slashes", "msie_padding", "etag",
    "if_modified_since", "sendfile_max_chunk"};
// clang-format on

// Directives whose effect tether does not reproduce and a client would notice.
// clang-format off
const std::set<std::string_view> kContent = {
    "root", "alias", "try_files", "return", "rewrite", "fastcgi_pass", "uwsgi_pass", "grpc_pass",
    "scgi_pass", "memcached_pass", "autoindex", "stub_status", "index", "expires", "empty_gif",
    "sub_filter"};
// clang-format on

/// What tether does instead of nginx's retries on errors and timeouts.
constexpr const char* kRetries =
    "tether retries a request on another server only while nothing of it was sent (a refused "
    "or timed-out connect; upstreams.*.retries), never after a backend received it";

}  // namespace

Conversion Converter::run(const std::vector<Directive>& top, const std::string& source) {
    collect_upstreams(top);
    Scope scope;
    settings_then_blocks(top, [&](const Directive& d) { main_directive(d, scope); });
    build_listeners();
    fail_statuses();
    unused_proxy_ssl();
    unused_stapling_files();
    check_headers();
    suggest_sid();
    if (out_.listen.empty())
        f_.add(Kind::not_translated, source, 0,
               "no server block proxies to an upstream: there is nothing to listen on");
    std::stable_sort(f_.list().begin(), f_.list().end(), [](auto& a, auto& b) {
        return std::tie(a.file, a.line) < std::tie(b.file, b.line);
    });
    Conversion result;
    result.yaml = write_yaml(out_, source);
    result.findings = std::move(f_.list());
    return result;
}

// ---- upstreams ------------------------------------------------------------------

void Converter::collect_upstreams(const std::vector<Directive>& list) {
    for (const Directive& d : list) {
        if (d.name == "http" && d.block) collect_upstreams(d.children);
        if (d.name == "limit_req_zone" || d.name == "limit_conn_zone") collect_zone(d);
        if (d.name != "upstream" || !d.block) continue;
        std::string name = sanitize_name(d.arg(0));
        if (upstream_index_.contains(d.arg(0))) {
            f_.differs(d, "duplicate upstream '" + d.arg(0) + "'; nginx refuses this");
            continue;
        }
        OutUpstream u;
        u.name = name;
        if (name != d.arg(0))
            f_.note(d, "upstream '" + d.arg(0) + "' renamed '" + name +
                           "' (tether names use letters, digits, '_', '-', '.')");
        convert_upstream(d, u, f_);
        upstream_index_[d.arg(0)] = out_.upstreams.size();
        out_.upstreams.push_back(std::move(u));
    }
}

/// The upstream a `proxy_pass` names: a block, or an implicit one for a bare host:port.
std::optional<std::string> Converter::proxy_target(const Directive& d, const std::string& path) {
    std::string target = d.arg(0);
    if (target.find('$') != std::string::npos)
        return f_.differs(d, "proxy_pass with variables cannot be translated"), std::nullopt;
    const bool tls = target.starts_with("https://");
    if (!tls && !target.starts_with("http://"))
        return f_.differs(d, "only http:// and https:// targets can be translated"), std::nullopt;
    target = target.substr(tls ? 8 : 7);
    auto slash = target.find('/');
    std::string host = target.substr(0, slash);
    std::string uri = slash == std::string::npos ? "" : target.substr(slash);
    if (!uri.empty() && !(uri == "/" && path == "/"))
        f_.differs(d, "proxy_pass with a URI replaces the matched prefix '" + path + "' by '" +
                          uri + "'; tether forwards the path unchanged");
    if (auto it = upstream_index_.find(host); it != upstream_index_.end())
        return out_.upstreams[it->second].name;
    auto address = parse_address(host, tls ? 443 : 80, "0.0.0.0");
    if (!address)
        return f_.differs(d, "proxy_pass target '" + host + "' is not a host:port"), std::nullopt;
    std::string name = sanitize_name(*address);
    if (!upstream_index_.contains(host)) {
        OutUpstream u;
        u.name = name;
        u.origin = d.where();
        u.comments.push_back("implicit upstream of proxy_pass " + d.arg(0).substr(0, tls ? 8 : 7) +
                             host);
        OutServer s;
        s.address = *address;
        s.origin = d.where();
        u.servers.push_back(s);
        upstream_index_[host] = out_.upstreams.size();
        out_.upstreams.push_back(std::move(u));
    }
    return name;
}

// ---- contexts -------------------------------------------------------------------

void Converter::main_directive(const Directive& d, Scope& scope) {
    if (d.name == "worker_processes") {
        out_.workers = d.arg(0) == "auto" ? "auto" : d.arg(0);
    } else if (d.name == "worker_shutdown_timeout" && parse_time(d.arg(0))) {
        set_value(out_.timeouts, "shutdown", format_ms(*parse_time(d.arg(0))),
                  *parse_time(d.arg(0)), d);
    } else if (d.name == "events") {
        for (const Directive& c : d.children)
            f_.ignored(c, "tether sizes its event loops itself (harmless)");
    } else if (d.name == "http") {
        Scope http = scope;
        http.own_headers = false;
        settings_then_blocks(d.children, [&](const Directive& c) { http_directive(c, http); });
    } else if (d.name == "stream" || d.name == "mail") {
        f_.differs(d, "TCP/UDP and mail proxying are not part of tether");
    } else {
        http_directive(d, scope);
    }
}

void Converter::http_directive(const Directive& d, Scope& scope) {
    if (d.name == "upstream") return;  // converted first
    if (d.name == "server" && d.block) return server_block(d, scope);
    if (d.name == "set_real_ip_from") {
        out_.trusted_proxies.push_back(d.arg(0));
        return f_.note(d,
                       "set_real_ip_from becomes trusted_proxies (tether believes "
                       "X-Forwarded-For from these peers)");
    }
    common(d, scope);
}

void Converter::server_block(const Directive& block, const Scope& parent) {
    ServerInfo server;
    server.block = &block;
    server.scope = parent;
    server.scope.own_headers = false;
    settings_then_blocks(block.children, [&](const Directive& d) {
        if (d.name == "listen") {
            server.listens.push_back(&d);
        } else if (d.name == "location" && d.block) {
            location_block(d, server.scope, server);
        } else if (d.name == "return" || d.name == "rewrite") {
            f_.differs(d, "tether has no redirects or rewrites; requests would be proxied");
        } else {
            common(d, server.scope);
        }
    });
    servers_.push_back(std::move(server));
}

void Converter::location_block(const Directive& block, const Scope& parent, ServerInfo& server) {
    Scope scope = parent;
    scope.own_headers = false;
    const std::string& path = block.args.empty() ? std::string() : block.args.back();
    const Directive* pass = nullptr;
    std::vector<const Directive*> content;
    settings_then_blocks(block.children, [&](const Directive& d) {
        if (d.name == "proxy_pass") {
            pass = &d;
        } else if (d.name == "location" && d.block) {
            location_block(d, scope, server);
        } else if (contains(kContent, d.name)) {
            content.push_back(&d);
        } else {
            common(d, scope);
        }
    });
    if (!pass) {
        if (block.children.empty() || std::all_of(block.children.begin(), block.children.end(),
                                                  [](auto& c) { return c.name == "location"; }))
            return;
        f_.differs(block, "location " + path +
                              " is answered by nginx itself (no proxy_pass); tether would "
                              "proxy these requests to the listener's upstream");
        for (const Directive* d : content)
            f_.ignored(*d, "inside location " + path + ", which is not translated");
        return;
    }
    for (const Directive* d : content)
        f_.differs(*d, "tether proxies every request; '" + d->name + "' is not applied");
    auto upstream = proxy_target(*pass, path);
    if (!upstream) return;
    upstream_scheme(*pass, scope, *upstream);
    server.proxies.push_back({path, *upstream, &block, scope.headers, scope.next_upstream});
}

/// proxy_next_upstream: the http_* statuses that nginx counts as failures become the
/// upstream's fail_on_status where a location under it proxies (fail_statuses()); the rest
/// (error, timeout, off, ...) has no setting of its own.
void Converter::next_upstream(const Directive& d, Scope& scope) {
    scope.next_upstream = nullptr;
    for (const std::string& a : d.args)
        if (a == "http_500" || a == "http_502" || a == "http_503" || a == "http_504" ||
            a == "http_429")
            scope.next_upstream = &d;
    if (scope.next_upstream)
        next_upstreams_.push_back(&d);
    else
        f_.ignored(d, kRetries);
}

/// Directives valid in http, server and location.
void Converter::common(const Directive& d, Scope& scope) {
    if (d.name == "proxy_set_header") {
        if (!scope.own_headers) scope.headers.clear();
        scope.own_headers = true;
        scope.headers.push_back(&d);
    } else if (d.name == "ssl_certificate") {
        scope.certificates.push_back(&d);
    } else if (d.name == "ssl_certificate_key") {
        scope.keys.push_back(&d);
    } else if (d.name == "ssl_protocols") {
        scope.protocols = &d;
    } else if (d.name == "ssl") {
        scope.ssl_on = d.arg(0) == "on";
    } else if (d.name == "ssl_stapling_file") {
        scope.stapling_file = &d;  // settled with the listener's certificate (settle.cpp)
        stapling_seen_.push_back(&d);
    } else if (d.name == "ssl_stapling") {
        scope.stapling_on = d.arg(0) == "on";
        if (scope.stapling_on)
            f_.ignored(d,
                       "tether never asks the OCSP responder itself; an ssl_stapling_file "
                       "becomes the certificate's ocsp_response, without one nothing is "
                       "stapled (clients that need stapling fall back to their own check)");
    } else if (d.name.starts_with("proxy_ssl_")) {  // judged by the proxy_pass https:// under it
        scope.proxy_ssl[d.name] = &d;  // each inherited on its own, as nginx does
        proxy_ssl_seen_.push_back(&d);
    } else if (d.name == "proxy_next_upstream") {
        next_upstream(d, scope);
    } else if (d.name == "proxy_http_version") {
        if (d.arg(0) != "1.1") f_.ignored(d, "tether always speaks HTTP/1.1 to backends");
    } else if (d.name == "access_log") {
        access_log(d);
    } else if (!timeouts_and_limits(d) && !rate_limits(d)) {
        if (contains(kHarmless, d.name))
            f_.ignored(d, "no tether equivalent; harmless for proxying");
        else if (d.name == "proxy_next_upstream_tries")
            f_.ignored(d, kRetries);
        else
            f_.differs(d, "not translated (no tether equivalent)");
    }
}

}  // namespace tether::nginx
